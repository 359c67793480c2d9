// Velero's server in miniature, against the real apiserver (Velero has no build here; see REFERENCE).
// Each behaviour copies vmware-tanzu/velero (v1.15):
// - BackupStorageLocations validate to Available/Unavailable (pkg/controller/backup_storage_location_controller.go).
// - Backups walk New → InProgress → Completed/PartiallyFailed recording the objects of their namespaces;
//   a missing or Unavailable location fails validation with velero's messages (pkg/controller/backup_controller.go).
// - A new Schedule is due at once unless skipImmediately/paused (pkg/controller/schedule_controller.go).
// - DeleteBackupRequests delete the Backup (pkg/controller/backup_deletion_controller.go).
// - Restores recreate a Backup's objects (pkg/restore/restore.go): namespaces first then Velero's
//   resource priorities; metadata reset (resetMetadata drops uid, resourceVersion, generation,
//   creationTimestamp, ownerReferences …), status dropped, labels velero.io/backup-name and
//   velero.io/restore-name added; completed Jobs and finished Pods skipped ("skipping item because it's
//   completed"); a Service's clusterIP cleared, its nodePorts cleared unless explicitly specified
//   (pkg/restore/actions/service_action.go, velero-modifiers.ts); resource modifiers applied (velero-modifiers.ts);
//   existing objects left alone with a warning unless existingResourcePolicy=update; a namespace that is
//   Terminating is waited for and created again, before every item restored into it
//   (pkg/restore/restore.go restoreItem → pkg/util/kube/utils.go EnsureNamespaceExistsAndIsReady).
// - Restores get the finalizer restores.velero.io/external-resources-finalizer. A deleted Restore goes
//   only when its restore has run to the end (the reconciler runs the restore synchronously and sees the
//   deletion on its next reconcile; nothing cancels a running restore), and then its log and results are
//   deleted from the bucket (pkg/controller/restore_controller.go Reconcile, deleteExternalResources).
// - The results file holds {"errors": Result, "warnings": Result}, Result = {velero?, cluster?,
//   namespaces?: {<target ns>: [msg]}} (restore_controller.go putResults, pkg/util/results/result.go).
// - DownloadRequests get a URL to a gzip object (pkg/controller/download_request_controller.go), served
//   by the lab's object store.
// - Volumes (file-system backup, PodVolumeBackups/Restores, CSI VolumeSnapshots): velero-volumes.ts.
import { gzipSync } from 'node:zlib';
import { pathOf, type KObj, type LabApi } from '../lab-api.js';
import {
  applyModifiers,
  clearNodePorts,
  groupResource,
  loadModifiers,
  type ResourceModifiers,
} from './velero-modifiers.js';
import { PodVolumes, volumeRestoreActions, type VolumeFaults } from './velero-volumes.js';

const RESTORE_FINALIZER = 'restores.velero.io/external-resources-finalizer';
type Result = { velero?: string[]; cluster?: string[]; namespaces?: Record<string, string[]> };

export const VELERO = 'velero.io/v1';

export interface VeleroFaults {
  bslUnavailable: Set<string>;
  backupPartiallyFailed: { next: boolean; names: Set<string> };
  restoreFailed: { next?: string; names: Map<string, string> };
  /** Each restored item takes this long (a restore that is still InProgress when cleanup starts). */
  restoreItemMs: number;
  /** The apiserver-side error restoring this item ("Kind/name"), as Velero records it. */
  restoreItemError: Map<string, string>;
  volumes: VolumeFaults;
}

export const newVeleroFaults = (): VeleroFaults => ({
  bslUnavailable: new Set(),
  backupPartiallyFailed: { next: false, names: new Set() },
  restoreFailed: { names: new Map() },
  restoreItemMs: 0,
  restoreItemError: new Map(),
  volumes: { lostPodVolumeBackups: new Set(), nextRestoreLosesPodVolumeBackups: false },
});

interface Snapshot {
  objects: KObj[];
  log: string[];
}

/** What a Backup holds, by resource type, in Velero's restore priority order (pkg/cmd/server/server.go defaultRestorePriorities). */
export const BACKED_UP: { apiVersion: string; plural: string; kind: string }[] = [
  { apiVersion: 'snapshot.storage.k8s.io/v1', plural: 'volumesnapshots', kind: 'VolumeSnapshot' },
  { apiVersion: 'v1', plural: 'persistentvolumeclaims', kind: 'PersistentVolumeClaim' },
  { apiVersion: 'v1', plural: 'secrets', kind: 'Secret' },
  { apiVersion: 'v1', plural: 'configmaps', kind: 'ConfigMap' },
  { apiVersion: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount' },
  { apiVersion: 'v1', plural: 'pods', kind: 'Pod' },
  { apiVersion: 'apps/v1', plural: 'replicasets', kind: 'ReplicaSet' },
  { apiVersion: 'v1', plural: 'services', kind: 'Service' },
  { apiVersion: 'apps/v1', plural: 'deployments', kind: 'Deployment' },
  { apiVersion: 'apps/v1', plural: 'statefulsets', kind: 'StatefulSet' },
  { apiVersion: 'apps/v1', plural: 'daemonsets', kind: 'DaemonSet' },
  { apiVersion: 'batch/v1', plural: 'jobs', kind: 'Job' },
  { apiVersion: 'batch/v1', plural: 'cronjobs', kind: 'CronJob' },
  { apiVersion: 'networking.k8s.io/v1', plural: 'ingresses', kind: 'Ingress' },
  { apiVersion: 'networking.k8s.io/v1', plural: 'networkpolicies', kind: 'NetworkPolicy' },
  { apiVersion: 'policy/v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget' },
];
const PLURAL = new Map(BACKED_UP.map((r) => [r.kind, r]));

const timestamp = (d = new Date()) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function parseDuration(s: string | undefined, fallbackMs: number): number {
  if (!s) return fallbackMs;
  let ms = 0;
  for (const [, n, u] of s.matchAll(/(\d+(?:\.\d+)?)(h|m|s)/g))
    ms += Number(n) * (u === 'h' ? 3_600_000 : u === 'm' ? 60_000 : 1000);
  return ms || fallbackMs;
}
const DEFAULT_TTL = 720 * 3_600_000;

/** Velero's namespace include/exclude with globs (pkg/util/collections/includes_excludes.go). */
export function nsIncluded(ns: string, inc: string[] | undefined, exc: string[] | undefined): boolean {
  const glob = (p: string) =>
    new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
  if ((exc ?? []).some((p) => glob(p).test(ns))) return false;
  const i = inc && inc.length > 0 ? inc : ['*'];
  return i.some((p) => glob(p).test(ns));
}

export class VeleroServer {
  /** Backups' recorded contents, keyed by Backup uid (a recreated Backup never sees old data). */
  readonly snapshots = new Map<string, Snapshot>();
  private readonly restoreLogs = new Map<string, string[]>();
  /** The bucket's restores/<name>/restore-<name>-results.gz, by "<ns>/<restore>". */
  readonly restoreResults = new Map<string, { errors: Result; warnings: Result }>();
  /** Restores being run, by uid: a deletion waits for its restore to end. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly seen = new Set<string>();
  private watches: { stop(): void }[] = [];
  private readonly volumes: PodVolumes;

  constructor(
    private readonly api: LabApi,
    readonly faults: VeleroFaults,
    private readonly serveDownload: (body: Buffer | undefined, base: string, key: string) => string,
    private readonly stepMs = 150,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.volumes = new PodVolumes(api, stepMs);
  }

  start(): void {
    const w = (plural: string, fn: (o: KObj, type: string) => Promise<void> | void) =>
      this.api.watch(`/apis/velero.io/v1/${plural}`, (e) => {
        if (e.type === 'DELETED') {
          if (plural === 'backups') this.snapshots.delete(e.object.metadata.uid!);
          return;
        }
        if (plural === 'restores' && e.object.metadata.deletionTimestamp) {
          const key = `restores-deleted/${e.object.metadata.uid}`;
          if (!this.seen.has(key)) {
            this.seen.add(key);
            this.finalizeRestore(e.object).catch((err: unknown) => this.log(`velero restores: ${String(err)}`));
          }
          return;
        }
        // Velero's CRDs have no status subresource, so every status write bumps metadata.generation:
        // Backups, Restores and requests are acted on once per object (their reconcilers skip a
        // processed phase), locations and schedules once per spec.
        const once = ['backups', 'restores', 'deletebackuprequests', 'downloadrequests'].includes(plural);
        const key = `${plural}/${e.object.metadata.uid}${once ? '' : `/${JSON.stringify(e.object.spec ?? {})}`}`;
        if (this.seen.has(key)) return;
        this.seen.add(key);
        Promise.resolve(fn(e.object, e.type)).catch((err: unknown) => this.log(`velero ${plural}: ${String(err)}`));
      });
    this.watches.push(
      w('backupstoragelocations', (o) => this.validateLocation(o.metadata.namespace!, o.metadata.name)),
      w('schedules', (o, type) => this.enableSchedule(o, type === 'ADDED' && !o.status?.phase)),
      w('backups', (o) => (!o.status?.phase || o.status.phase === 'New' ? this.runBackup(o) : undefined)),
      w('deletebackuprequests', (o) => (!o.status?.phase ? this.deleteBackup(o) : undefined)),
      w('restores', (o) => (!o.status?.phase ? this.trackRestore(o) : undefined)),
      w('downloadrequests', (o) => (!o.status?.phase ? this.download(o) : undefined)),
    );
  }

  stop(): void {
    for (const x of this.watches) x.stop();
    this.watches = [];
  }

  private p(plural: string, ns: string, name?: string) {
    return pathOf(VELERO, plural, ns, name);
  }

  private async setStatus(plural: string, o: KObj, status: Record<string, unknown>): Promise<boolean> {
    const cur = await this.api.get(this.p(plural, o.metadata.namespace!, o.metadata.name));
    if (!cur || cur.metadata.uid !== o.metadata.uid) return false;
    await this.api.mergePatch(this.p(plural, o.metadata.namespace!, o.metadata.name), { status });
    return true;
  }

  async validateLocation(ns: string, name: string): Promise<void> {
    const down = this.faults.bslUnavailable.has(name);
    const path = this.p('backupstoragelocations', ns, name);
    if (!(await this.api.get(path))) return;
    await this.api.mergePatch(path, {
      status: {
        phase: down ? 'Unavailable' : 'Available',
        lastValidationTime: timestamp(),
        message: down
          ? `BackupStorageLocation "${name}" is unavailable: rpc error: code = Unknown desc = operation error S3: ListObjectsV2, https response error StatusCode: 503`
          : null,
      },
    });
  }

  async revalidateAll(): Promise<void> {
    for (const bsl of await this.api.list('/apis/velero.io/v1/backupstoragelocations'))
      await this.validateLocation(bsl.metadata.namespace!, bsl.metadata.name);
  }

  private async enableSchedule(s: KObj, isNew: boolean): Promise<void> {
    const fields = String(s.spec?.schedule ?? '')
      .trim()
      .split(/\s+/);
    const valid = fields.length === 5 || (fields.length === 1 && fields[0].startsWith('@'));
    const runNow = valid && isNew && !s.spec?.paused && !s.spec?.skipImmediately;
    const at = new Date();
    await this.setStatus(
      'schedules',
      s,
      valid
        ? { phase: 'Enabled', validationErrors: null, ...(runNow ? { lastBackup: timestamp(at) } : {}) }
        : {
            phase: 'FailedValidation',
            validationErrors: [
              `invalid schedule: expected exactly 5 fields, found ${fields.length}: ${s.spec?.schedule}`,
            ],
          },
    );
    if (!runNow) return;
    await this.api.must('POST', this.p('backups', s.metadata.namespace!), {
      apiVersion: VELERO,
      kind: 'Backup',
      metadata: {
        name: `${s.metadata.name}-${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`,
        labels: { 'velero.io/schedule-name': s.metadata.name },
      },
      spec: s.spec?.template ?? {},
    });
  }

  /** Every object of the included namespaces (and the Namespace objects themselves). */
  async collect(inc?: string[], exc?: string[]): Promise<KObj[]> {
    const namespaces = (await this.api.list('/api/v1/namespaces')).filter((n) => nsIncluded(n.metadata.name, inc, exc));
    const out: KObj[] = namespaces.map((n) => ({ ...n, apiVersion: 'v1', kind: 'Namespace' }));
    const names = new Set(namespaces.map((n) => n.metadata.name));
    for (const r of BACKED_UP) {
      for (const o of await this.api.list(pathOf(r.apiVersion, r.plural))) {
        if (names.has(o.metadata.namespace!)) out.push({ ...o, apiVersion: r.apiVersion, kind: r.kind });
      }
    }
    return out;
  }

  private async runBackup(b: KObj): Promise<void> {
    const { name, namespace: ns } = b.metadata;
    const loc = b.spec?.storageLocation || 'default';
    const bsl = await this.api.get(this.p('backupstoragelocations', ns!, loc));
    const problem = !bsl
      ? `an existing backup storage location wasn't specified at backup creation time and the default '${loc}' wasn't found. Please address this issue (see \`velero backup-location -h\` for options) and create a new backup. Error: BackupStorageLocation.velero.io "${loc}" not found`
      : bsl.status?.phase === 'Unavailable' || this.faults.bslUnavailable.has(loc)
        ? `backup can't be created because BackupStorageLocation ${loc} is in Unavailable status.`
        : undefined;
    const created = Date.parse(b.metadata.creationTimestamp!);
    const expiration = timestamp(new Date(created + parseDuration(b.spec?.ttl, DEFAULT_TTL)));
    if (problem) {
      await this.setStatus('backups', b, {
        phase: 'FailedValidation',
        validationErrors: [problem],
        version: 1,
        formatVersion: '1.1.0',
        expiration,
      });
      return;
    }
    await this.api.mergePatch(this.p('backups', ns!, name), {
      metadata: { labels: { 'velero.io/storage-location': loc } },
      status: { phase: 'New', version: 1, formatVersion: '1.1.0', expiration },
    });
    await sleep(this.stepMs);
    const objects = await this.collect(b.spec?.includedNamespaces, b.spec?.excludedNamespaces);
    const log = objects.map(
      (o) =>
        `time="${timestamp()}" level=info msg="Backed up item" backup=${ns}/${name} logSource="pkg/backup/backup.go:499" name=${o.metadata.name} namespace=${o.metadata.namespace ?? ''} progress= resource=${o.kind}`,
    );
    this.snapshots.set(b.metadata.uid!, { objects, log });
    const total = objects.length;
    if (
      !(await this.setStatus('backups', b, {
        phase: 'InProgress',
        startTimestamp: timestamp(),
        progress: { totalItems: total, itemsBackedUp: 0 },
      }))
    )
      return;
    await sleep(this.stepMs);
    await this.setStatus('backups', b, { progress: { totalItems: total, itemsBackedUp: Math.floor(total / 2) } });
    // The Backup waits for its PodVolumeBackups (pkg/backup/backup.go waits on the pod volume backupper).
    const podVolumes = await this.volumes.backup(
      b,
      objects.filter((o) => o.kind === 'Pod'),
    );
    if (podVolumes > 0)
      log.push(
        `time="${timestamp()}" level=info msg="Backed up ${podVolumes} pod volumes with the node-agent" backup=${ns}/${name}`,
      );
    await sleep(this.stepMs);
    const f = this.faults.backupPartiallyFailed;
    let partial = false;
    if (f.names.delete(name)) partial = true;
    else if (f.next) {
      f.next = false;
      partial = true;
    }
    if (partial)
      log.push(
        `time="${timestamp()}" level=error msg="Error backing up item" backup=${ns}/${name} error="lab: injected item failure"`,
      );
    await this.setStatus('backups', b, {
      phase: partial ? 'PartiallyFailed' : 'Completed',
      completionTimestamp: timestamp(),
      progress: { totalItems: total, itemsBackedUp: partial ? Math.max(0, total - 1) : total },
      ...(partial ? { errors: 1 } : {}),
      warnings: 0,
    });
  }

  /** A finished Backup recording the cluster as it is now (the seeded cluster's history). */
  async seedCompleted(
    ns: string,
    name: string,
    spec: Record<string, any>,
    labels: Record<string, string>,
    at: Date,
  ): Promise<void> {
    const objects = await this.collect(spec.includedNamespaces, spec.excludedNamespaces);
    const status = {
      phase: 'Completed',
      version: 1,
      formatVersion: '1.1.0',
      startTimestamp: timestamp(at),
      completionTimestamp: timestamp(new Date(at.getTime() + 60_000)),
      expiration: timestamp(new Date(at.getTime() + parseDuration(spec.ttl, DEFAULT_TTL))),
      progress: { totalItems: objects.length, itemsBackedUp: objects.length },
      warnings: 0,
    };
    // The phase is set on create, so the server never runs this Backup again.
    const created = await this.api.must('POST', this.p('backups', ns), {
      apiVersion: VELERO,
      kind: 'Backup',
      metadata: { name, labels },
      spec,
      status,
    });
    this.seen.add(`backups/${created.metadata.uid}`);
    await this.volumes.backup(
      created,
      objects.filter((o) => o.kind === 'Pod'),
    );
    this.snapshots.set(created.metadata.uid, {
      objects,
      log: [`time="${timestamp(at)}" level=info msg="Backup completed" backup=${ns}/${name}`],
    });
  }

  private async deleteBackup(req: KObj): Promise<void> {
    const { namespace: ns } = req.metadata;
    const backupName = req.spec?.backupName;
    await this.setStatus('deletebackuprequests', req, { phase: 'InProgress' });
    await sleep(this.stepMs);
    const path = this.p('backups', ns!, backupName);
    const exists = Boolean(await this.api.get(path));
    if (exists) await this.api.delete(path);
    await this.setStatus('deletebackuprequests', req, {
      phase: 'Processed',
      ...(exists ? {} : { errors: [`backup ${ns}/${backupName} not found`] }),
    });
  }

  private async findBackup(r: KObj): Promise<KObj | undefined> {
    const ns = r.metadata.namespace!;
    if (r.spec?.backupName) return this.api.get(this.p('backups', ns, r.spec.backupName));
    if (!r.spec?.scheduleName) return undefined;
    return (await this.api.list(this.p('backups', ns)))
      .filter(
        (b) =>
          b.metadata.labels?.['velero.io/schedule-name'] === r.spec.scheduleName &&
          ['Completed', 'PartiallyFailed'].includes(b.status?.phase),
      )
      .sort((a, b) => String(b.status?.completionTimestamp).localeCompare(String(a.status?.completionTimestamp)))[0];
  }

  private trackRestore(r: KObj): Promise<void> {
    const run = this.runRestore(r).finally(() => this.running.delete(r.metadata.uid!));
    this.running.set(r.metadata.uid!, run);
    return run;
  }

  /** Reconcile's deletion branch: after the restore's run, delete its files, then drop the finalizer. */
  private async finalizeRestore(r: KObj): Promise<void> {
    await this.running.get(r.metadata.uid!)?.catch(() => undefined);
    const key = `${r.metadata.namespace}/${r.metadata.name}`;
    this.restoreLogs.delete(key);
    this.restoreResults.delete(key);
    const path = this.p('restores', r.metadata.namespace!, r.metadata.name);
    const cur = await this.api.get(path);
    if (!cur || cur.metadata.uid !== r.metadata.uid) return;
    const finalizers = (cur.metadata.finalizers ?? []).filter((f) => f !== RESTORE_FINALIZER);
    await this.api.request(
      'PATCH',
      path,
      [
        { op: 'test', path: '/metadata/resourceVersion', value: cur.metadata.resourceVersion },
        { op: 'replace', path: '/metadata/finalizers', value: finalizers },
      ],
      'application/json-patch+json',
    );
  }

  private async runRestore(r: KObj): Promise<void> {
    const { name, namespace: ns } = r.metadata;
    // Reconcile adds the finalizer before it looks at the phase.
    await this.api.mergePatch(this.p('restores', ns!, name), {
      metadata: {
        finalizers: [...(r.metadata.finalizers ?? []).filter((f) => f !== RESTORE_FINALIZER), RESTORE_FINALIZER],
      },
    });
    const backup = await this.findBackup(r);
    let mods: ResourceModifiers | string | undefined;
    const ref = r.spec?.resourceModifier as { kind?: string; name?: string } | undefined;
    if (ref && String(ref.kind).toLowerCase() === 'configmap')
      mods = loadModifiers(await this.api.get(`/api/v1/namespaces/${ns}/configmaps/${ref.name}`), ns!, ref.name!);
    const problem =
      typeof mods === 'string'
        ? mods
        : !backup
          ? `Error retrieving backup: backups.velero.io "${r.spec?.backupName ?? r.spec?.scheduleName}" not found`
          : !['Completed', 'PartiallyFailed'].includes(backup.status?.phase)
            ? `backup "${backup.metadata.name}" is not in a restorable state (phase ${backup.status?.phase ?? 'New'}); it must be Completed or PartiallyFailed`
            : undefined;
    if (problem) {
      await this.setStatus('restores', r, { phase: 'FailedValidation', validationErrors: [problem] });
      return;
    }
    const objects = (this.snapshots.get(backup!.metadata.uid!)?.objects ?? []).filter((o) => {
      const src = o.kind === 'Namespace' ? o.metadata.name : o.metadata.namespace!;
      return nsIncluded(src, r.spec?.includedNamespaces, r.spec?.excludedNamespaces);
    });
    await this.setStatus('restores', r, { phase: 'New' });
    await sleep(this.stepMs);
    if (
      !(await this.setStatus('restores', r, {
        phase: 'InProgress',
        startTimestamp: timestamp(),
        progress: { totalItems: objects.length, itemsRestored: 0 },
      }))
    )
      return;
    await sleep(this.stepMs);
    const f = this.faults.restoreFailed;
    let reason = f.names.get(name);
    if (reason !== undefined) f.names.delete(name);
    else if (f.next !== undefined) {
      reason = f.next;
      f.next = undefined;
    }
    if (reason !== undefined) {
      await this.setStatus('restores', r, {
        phase: 'Failed',
        failureReason: reason,
        completionTimestamp: timestamp(),
        errors: 1,
      });
      return;
    }
    const pvbs = await this.volumes.backupsOf(ns!, backup!.metadata.name, this.faults.volumes);
    const { restored, warnings, errors, log, results } = await this.recreate(
      r,
      backup!.metadata.name,
      objects,
      pvbs,
      mods as ResourceModifiers | undefined,
    );
    this.restoreLogs.set(`${ns}/${name}`, log);
    this.restoreResults.set(`${ns}/${name}`, results);
    await this.setStatus('restores', r, {
      phase: errors > 0 ? 'PartiallyFailed' : 'Completed',
      completionTimestamp: timestamp(),
      progress: { totalItems: objects.length, itemsRestored: restored },
      warnings,
      errors,
    });
  }

  private async ensureNamespace(ns: string, labels: Record<string, string>): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const cur = await this.api.get(`/api/v1/namespaces/${ns}`);
      if (cur && !cur.metadata.deletionTimestamp) return;
      if (!cur) {
        await this.api.createIfAbsent('/api/v1/namespaces', { metadata: { name: ns, labels } });
        continue;
      }
      await sleep(100); // Terminating: wait for it to go, then create it again
    }
  }

  private async recreate(r: KObj, backupName: string, objects: KObj[], pvbs: KObj[], mods?: ResourceModifiers) {
    const mapping: Record<string, string> = r.spec?.namespaceMapping ?? {};
    const policy = r.spec?.existingResourcePolicy ?? 'none';
    const restoreName = r.metadata.name;
    const labels = { 'velero.io/backup-name': backupName, 'velero.io/restore-name': restoreName };
    const log: string[] = [];
    let restored = 0;
    let warnings = 0;
    let errors = 0;
    const results = { errors: {} as Result, warnings: {} as Result };
    const add = (which: Result, ns: string, msg: string) => ((which.namespaces ??= {})[ns] ??= []).push(msg);
    const at = `restore=${r.metadata.namespace}/${restoreName}`;
    for (const o of objects.filter((x) => x.kind === 'Namespace')) {
      const ns = mapping[o.metadata.name] ?? o.metadata.name;
      await this.ensureNamespace(ns, { ...o.metadata.labels, 'kubernetes.io/metadata.name': ns, ...labels });
      restored++;
    }
    for (const rt of BACKED_UP) {
      for (const o of objects.filter((x) => x.kind === rt.kind)) {
        if (isCompleted(o)) {
          log.push(
            `time="${timestamp()}" level=info msg="${o.kind} ${o.metadata.namespace}/${o.metadata.name} is complete - skipping" ${at}`,
          );
          continue;
        }
        const ns = mapping[o.metadata.namespace!] ?? o.metadata.namespace!;
        if (this.faults.restoreItemMs > 0) await sleep(this.faults.restoreItemMs);
        await this.ensureNamespace(ns, labels);
        let obj = cleanForRestore(o, ns, labels);
        // Velero's built-in restore item actions first (service_action.go, the CSI actions), then the
        // resource modifiers (restore.go applies them after the actions, before the namespace switch).
        if (obj.kind === 'Service') clearNodePorts(obj, o.metadata.managedFields, r.spec?.preserveNodePorts === true);
        const refused = volumeRestoreActions(obj, o, r.metadata.uid!);
        if (refused) {
          errors++;
          add(results.errors, ns, `error preparing ${rt.plural}/${ns}/${o.metadata.name}: ${refused}`);
          log.push(
            `time="${timestamp()}" level=error msg="error preparing ${rt.plural}/${ns}/${o.metadata.name}: ${refused}" ${at}`,
          );
          continue;
        }
        if (mods) {
          // Matched as the item came from the backup: its source namespace, no restore labels yet.
          const view = {
            ...obj,
            metadata: { ...obj.metadata, namespace: o.metadata.namespace, labels: o.metadata.labels },
          };
          const modErrors = applyModifiers(mods, view, groupResource(rt.apiVersion, rt.plural));
          for (const m of modErrors) add(results.errors, ns, m);
          errors += modErrors.length;
          obj = {
            ...view,
            metadata: { ...view.metadata, namespace: ns, labels: { ...view.metadata.labels, ...labels } },
          };
        }
        const path = pathOf(rt.apiVersion, rt.plural, ns);
        const injected = this.faults.restoreItemError.get(`${o.kind}/${o.metadata.name}`);
        const res = injected ? { status: 500, body: { message: injected } } : await this.api.request('POST', path, obj);
        if (res.status === 409) {
          // restore.go (v1.15.2, restoreItem): the in-cluster object, its metadata reset to name,
          // namespace, labels and annotations (resetMetadataAndStatus) and given the restore labels,
          // is compared with the backed-up one: equal is no news; a ServiceAccount is merged and
          // patched, never warned about; anything else that differs is a warning.
          const live = await this.api.get(`${path}/${obj.metadata.name}`);
          if (live && (obj.kind === 'ServiceAccount' || sameAsRestored(live, obj))) {
            restored++;
            continue;
          }
          if (policy === 'update') {
            await this.api.request(
              'PATCH',
              `${path}/${obj.metadata.name}`,
              { metadata: { labels: obj.metadata.labels } },
              'application/merge-patch+json',
            );
            restored++;
            continue;
          }
          warnings++;
          // The two spellings are upstream's: `%s %q` under existingResourcePolicy none, `%s:%s` without one.
          const which = r.spec?.existingResourcePolicy
            ? `${obj.kind} "${obj.metadata.name}"`
            : `${obj.kind}:${obj.metadata.name}`;
          const msg = `could not restore, ${which} already exists. Warning: the in-cluster version is different than the backed-up version`;
          add(results.warnings, ns, msg);
          log.push(`time="${timestamp()}" level=warning msg="${msg.replaceAll('"', '\\"')}" ${at}`);
          continue;
        }
        if (res.status >= 300) {
          errors++;
          add(
            results.errors,
            ns,
            `error restoring ${rt.plural}/${ns}/${obj.metadata.name}: ${res.body?.message ?? res.status}`,
          );
          log.push(
            `time="${timestamp()}" level=error msg="error restoring ${rt.plural}/${ns}/${obj.metadata.name}: ${res.body?.message ?? res.status}" ${at}`,
          );
          continue;
        }
        restored++;
        log.push(`time="${timestamp()}" level=info msg="Restored ${obj.kind} ${ns}/${obj.metadata.name}" ${at}`);
        if (obj.kind === 'Pod') {
          const volumes = await this.volumes.restore(r, res.body as KObj, o.metadata.namespace!, pvbs);
          if (volumes > 0)
            log.push(
              `time="${timestamp()}" level=info msg="Restored ${volumes} pod volumes of ${ns}/${obj.metadata.name}" ${at}`,
            );
        }
      }
    }
    return { restored, warnings, errors, log, results };
  }

  private async download(d: KObj): Promise<void> {
    const { namespace: ns } = d.metadata;
    const target = d.spec?.target ?? {};
    let body: Buffer | undefined;
    if (target.kind === 'BackupResourceList' || target.kind === 'BackupLog') {
      const b = await this.api.get(this.p('backups', ns!, target.name));
      const snap = b && this.snapshots.get(b.metadata.uid!);
      if (snap && target.kind === 'BackupLog') body = gzipSync(`${snap.log.join('\n')}\n`);
      if (snap && target.kind === 'BackupResourceList') body = gzipSync(JSON.stringify(resourceList(snap.objects)));
    } else if (target.kind === 'RestoreLog') {
      const log = this.restoreLogs.get(`${ns}/${target.name}`);
      if (log) body = gzipSync(`${log.join('\n')}\n`);
    } else if (target.kind === 'RestoreResults') {
      const results = this.restoreResults.get(`${ns}/${target.name}`);
      if (results) body = gzipSync(JSON.stringify(results));
    }
    // Signed for the BSL's publicUrl when set, else its s3Url (often an in-cluster name):
    // pkg/persistence/object_store.go. A missing target still gets a URL, which answers 404.
    const backupName = target.kind?.startsWith('Restore')
      ? (await this.api.get(this.p('restores', ns!, target.name)))?.spec?.backupName
      : target.name;
    const backup = backupName ? await this.api.get(this.p('backups', ns!, backupName)) : undefined;
    const bsl = await this.api.get(this.p('backupstoragelocations', ns!, backup?.spec?.storageLocation || 'default'));
    const cfg = bsl?.spec?.config ?? {};
    const base = String(cfg.publicUrl || cfg.s3Url || 'http://s3.invalid');
    // pkg/persistence/object_store_layout.go: restores/<name>/restore-<name>-logs.gz, -results.gz.
    const file =
      target.kind === 'RestoreLog'
        ? `restore-${target.name}-logs.gz`
        : target.kind === 'RestoreResults'
          ? `restore-${target.name}-results.gz`
          : `${target.name}-${String(target.kind).toLowerCase()}.json.gz`;
    const key = `${bsl?.spec?.objectStorage?.bucket ?? 'velero'}/${target.kind?.startsWith('Restore') ? 'restores' : 'backups'}/${target.name}/${file}`;
    await this.setStatus('downloadrequests', d, {
      phase: 'Processed',
      downloadURL: this.serveDownload(body, base, key),
      expiration: timestamp(new Date(Date.now() + 10 * 60_000)),
    });
  }
}

/** pkg/restore/restore.go isCompleted: Jobs with a completionTime, Pods that Succeeded or Failed. */
function isCompleted(o: KObj): boolean {
  if (o.kind === 'Job') return Boolean(o.status?.completionTime);
  if (o.kind === 'Pod') return o.status?.phase === 'Succeeded' || o.status?.phase === 'Failed';
  return false;
}

/** restore.go's equality.Semantic.DeepEqual after resetMetadataAndStatus on the in-cluster copy. */
function sameAsRestored(live: KObj, obj: KObj): boolean {
  const { status: _s, metadata, ...rest } = structuredClone(live) as KObj & { status?: unknown };
  const m = metadata as Record<string, any>;
  const reset = {
    ...rest,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(m.annotations ? { annotations: m.annotations } : {}),
      labels: { ...m.labels, ...obj.metadata.labels },
    },
  };
  const want = structuredClone(obj) as KObj & { status?: unknown };
  delete want.status;
  const canon = (x: unknown): string =>
    JSON.stringify(x, (_k, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
        : v,
    );
  return canon(reset) === canon(want);
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
    selfLink: _s,
    ...meta
  } = o.metadata as Record<string, any>;
  const obj: KObj = {
    ...structuredClone(o),
    metadata: { ...meta, name: o.metadata.name, namespace: ns, labels: { ...meta.labels, ...labels } },
  };
  delete obj.status;
  if (obj.kind === 'Service' && obj.spec?.clusterIP !== 'None') {
    delete obj.spec.clusterIP;
    delete obj.spec.clusterIPs;
  }
  if (obj.kind === 'Job') {
    // The Job's selector and pod labels are tied to the old uid; velero's job action strips them
    // (pkg/restore/actions/job_action.go).
    delete obj.spec.selector;
    for (const k of [
      'controller-uid',
      'batch.kubernetes.io/controller-uid',
      'batch.kubernetes.io/job-name',
      'job-name',
    ])
      delete obj.spec.template?.metadata?.labels?.[k];
  }
  if (obj.kind === 'Pod') {
    // pkg/restore/actions/pod_action.go: nodeName is kept, the service-account token volume dropped.
    obj.spec.volumes = (obj.spec.volumes ?? []).filter((v: { name: string }) => !v.name.startsWith('kube-api-access-'));
    for (const c of obj.spec.containers ?? [])
      c.volumeMounts = (c.volumeMounts ?? []).filter((m: { name: string }) => !m.name.startsWith('kube-api-access-'));
  }
  return obj;
}

/** The BackupResourceList format: {"<group/version>/<Kind>": ["ns/name", …]} (pkg/backup/item_collector.go). */
function resourceList(objects: KObj[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    (out[key] ??= []).push(o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);
  }
  return out;
}
export { PLURAL as BACKED_UP_BY_KIND };
