// Velero restores (recreate a Backup's snapshot, with namespaceMapping and existingResourcePolicy)
// and DownloadRequests (gzip resource lists and logs behind a URL on this server).
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { timestamp, type KObj } from '../util.js';
import { apply, defer, ensureNamespace, rtOf, setStatus, type Ctx } from './ctx.js';
import { VELERO, type Snapshots } from './velero.js';

const SKIP_KINDS = new Set(['Pod', 'Event', 'Node']);

export class RestoreController {
  /** token → gzip body served at /lab/velero/download/<token>, like a presigned object-store URL. */
  readonly downloads = new Map<string, Buffer>();
  private readonly restoreLogs = new Map<string, string[]>();

  constructor(
    private readonly ctx: Ctx,
    private readonly snapshots: Snapshots,
  ) {
    ctx.store.on((e) => {
      if (e.rt.group !== 'velero.io' || e.source !== 'api' || e.type !== 'ADDED') return;
      if (e.rt.kind === 'Restore' && !e.obj.status?.phase) defer(ctx, () => this.runRestore(e.obj));
      if (e.rt.kind === 'DownloadRequest') defer(ctx, () => this.download(e.obj));
    });
  }

  private rt(kind: string) {
    return rtOf(this.ctx, VELERO, kind);
  }

  private findBackup(r: KObj): KObj | undefined {
    const ns = r.metadata.namespace;
    if (r.spec?.backupName) return this.ctx.store.get(this.rt('Backup'), ns, r.spec.backupName);
    if (!r.spec?.scheduleName) return undefined;
    return this.ctx.store
      .list(this.rt('Backup'), ns)
      .filter(
        (b) =>
          b.metadata.labels?.['velero.io/schedule-name'] === r.spec.scheduleName &&
          ['Completed', 'PartiallyFailed'].includes(b.status?.phase),
      )
      .sort((a, b) => String(b.status?.completionTimestamp).localeCompare(String(a.status?.completionTimestamp)))[0];
  }

  private runRestore(r: KObj): void {
    const { name, namespace: ns } = r.metadata;
    const rt = this.rt('Restore');
    const backup = this.findBackup(r);
    const problem = !backup
      ? `Error retrieving backup: backups.velero.io "${r.spec?.backupName ?? r.spec?.scheduleName}" not found`
      : !['Completed', 'PartiallyFailed'].includes(backup.status?.phase)
        ? `backup "${backup.metadata.name}" is not in a restorable state (phase ${backup.status?.phase ?? 'New'}); it must be Completed or PartiallyFailed`
        : undefined;
    if (problem) {
      setStatus(this.ctx, rt, ns, name, () => ({ phase: 'FailedValidation', validationErrors: [problem] }));
      return;
    }
    const backupName = backup!.metadata.name;
    const objects = this.select(r, this.snapshots.get(backup!.metadata.uid!)?.objects ?? []);
    const step = this.ctx.delays.veleroStepMs;
    setStatus(this.ctx, rt, ns, name, () => ({ phase: 'New' }));
    this.ctx.timers.after(step, () => {
      const started = setStatus(this.ctx, rt, ns, name, () => ({
        phase: 'InProgress',
        startTimestamp: timestamp(),
        progress: { totalItems: objects.length, itemsRestored: 0 },
      }));
      if (!started) return;
      this.ctx.timers.after(step, () => {
        const f = this.ctx.faults.restoreFailed;
        let reason = f.names.get(name);
        if (reason !== undefined) f.names.delete(name);
        else if (f.next !== undefined) {
          reason = f.next;
          f.next = undefined;
        }
        if (reason !== undefined) {
          setStatus(this.ctx, rt, ns, name, (c) => ({
            ...c.status,
            phase: 'Failed',
            failureReason: reason,
            completionTimestamp: timestamp(),
            errors: 1,
          }));
          return;
        }
        const { restored, warnings, log } = this.recreate(r, name, backupName, objects);
        this.restoreLogs.set(`${ns}/${name}`, log);
        setStatus(this.ctx, rt, ns, name, (c) => ({
          ...c.status,
          phase: 'Completed',
          completionTimestamp: timestamp(),
          progress: { totalItems: objects.length, itemsRestored: restored },
          warnings,
          errors: 0,
        }));
      });
    });
  }

  private select(r: KObj, objects: KObj[]): KObj[] {
    const inc: string[] = r.spec?.includedNamespaces ?? ['*'];
    const exc: string[] = r.spec?.excludedNamespaces ?? [];
    return objects.filter((o) => {
      if (SKIP_KINDS.has(o.kind!) || o.metadata.ownerReferences?.length) return false;
      const ns = o.kind === 'Namespace' ? o.metadata.name : o.metadata.namespace!;
      return (inc.includes('*') || inc.includes(ns)) && !exc.includes(ns);
    });
  }

  /** Recreates objects the way velero's restore does: fresh identity, status dropped, labelled. */
  private recreate(r: KObj, restoreName: string, backupName: string, objects: KObj[]) {
    const mapping: Record<string, string> = r.spec?.namespaceMapping ?? {};
    const policy = r.spec?.existingResourcePolicy ?? 'none';
    const labels = { 'velero.io/backup-name': backupName, 'velero.io/restore-name': restoreName };
    const log: string[] = [];
    let restored = 0;
    let warnings = 0;
    // Namespaces first, as velero orders them.
    const ordered = [...objects].sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
    for (const o of ordered) {
      const srcNs = o.kind === 'Namespace' ? o.metadata.name : o.metadata.namespace!;
      const ns = mapping[srcNs] ?? srcNs;
      if (o.kind === 'Namespace') {
        ensureNamespace(this.ctx, ns, { ...o.metadata.labels, 'kubernetes.io/metadata.name': ns, ...labels });
        restored++;
        continue;
      }
      ensureNamespace(this.ctx, ns, labels);
      const obj = cleanForRestore(o, ns, labels);
      const rt = rtOf(this.ctx, obj.apiVersion!, obj.kind!);
      const exists = this.ctx.store.get(rt, ns, obj.metadata.name);
      if (exists && policy !== 'update') {
        warnings++;
        log.push(
          `time="${timestamp()}" level=warning msg="could not restore, ${obj.kind} \\"${obj.metadata.name}\\" already exists. Warning: the in-cluster version is different than the backed-up version" restore=${r.metadata.namespace}/${restoreName}`,
        );
        continue;
      }
      apply(this.ctx, obj);
      restored++;
      log.push(
        `time="${timestamp()}" level=info msg="Restored ${obj.kind} ${ns}/${obj.metadata.name}" restore=${r.metadata.namespace}/${restoreName}`,
      );
    }
    return { restored, warnings, log };
  }

  private download(d: KObj): void {
    const { name, namespace: ns } = d.metadata;
    const target = d.spec?.target ?? {};
    let body: Buffer | undefined;
    if (target.kind === 'BackupResourceList' || target.kind === 'BackupLog') {
      const b = this.ctx.store.get(this.rt('Backup'), ns, target.name);
      const snap = b && this.snapshots.get(b.metadata.uid!);
      if (snap && target.kind === 'BackupLog') body = gzipSync(`${snap.log.join('\n')}\n`);
      if (snap && target.kind === 'BackupResourceList') body = gzipSync(JSON.stringify(resourceList(snap.objects)));
    } else if (target.kind === 'RestoreLog') {
      const log = this.restoreLogs.get(`${ns}/${target.name}`);
      if (log) body = gzipSync(`${log.join('\n')}\n`);
    } else if (target.kind === 'RestoreResults') {
      if (this.ctx.store.get(this.rt('Restore'), ns, target.name))
        body = gzipSync(JSON.stringify({ errors: {}, warnings: {} }));
    }
    // A missing target still gets a URL, which then answers 404 like an absent object-store key.
    const token = randomBytes(16).toString('hex');
    if (body) this.downloads.set(token, body);
    setStatus(this.ctx, this.rt('DownloadRequest'), ns, name, () => ({
      phase: 'Processed',
      downloadURL: `${this.ctx.baseUrl}/lab/velero/download/${token}`,
      expiration: timestamp(new Date(Date.now() + 10 * 60_000)),
    }));
  }
}

function cleanForRestore(o: KObj, ns: string, labels: Record<string, string>): KObj {
  const {
    uid: _u,
    resourceVersion: _r,
    creationTimestamp: _c,
    generation: _g,
    managedFields: _m,
    deletionTimestamp: _d,
    ownerReferences: _o,
    ...meta
  } = o.metadata;
  const obj: KObj = {
    ...structuredClone(o),
    metadata: { ...meta, namespace: ns, labels: { ...meta.labels, ...labels } },
  };
  delete obj.status;
  if (obj.kind === 'Service' && obj.spec?.clusterIP !== 'None') {
    delete obj.spec.clusterIP;
    delete obj.spec.clusterIPs;
  }
  if (obj.kind === 'Job') {
    // The Job's selector and pod labels are tied to the old uid; velero's job action strips them.
    delete obj.spec.selector;
    for (const k of ['controller-uid', 'batch.kubernetes.io/controller-uid'])
      delete obj.spec.template?.metadata?.labels?.[k];
  }
  return obj;
}

/** Velero's resource-list.json: `{"v1/Secret": ["ns/name"], "apps/v1/Deployment": [...]}`. */
export function resourceList(objects: KObj[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    (out[key] ??= []).push(o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);
  }
  for (const v of Object.values(out)) v.sort();
  return out;
}
