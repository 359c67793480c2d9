// Velero's server in miniature: BackupStorageLocations validate, Backups walk New → InProgress →
// Completed recording a snapshot of their namespaces, Schedules enable, DeleteBackupRequests delete.
import { timestamp, type KObj } from '../util.js';
import { defer, rtOf, setStatus, type Ctx } from './ctx.js';

export const VELERO = 'velero.io/v1';

export interface Snapshot {
  objects: KObj[];
  log: string[];
}

/** Backups' recorded contents, keyed by Backup uid (a recreated Backup never sees old data). */
export type Snapshots = Map<string, Snapshot>;

export function parseDuration(s: string | undefined, fallbackMs: number): number {
  if (!s) return fallbackMs;
  let ms = 0;
  for (const [, n, u] of s.matchAll(/(\d+(?:\.\d+)?)(h|m|s)/g))
    ms += Number(n) * (u === 'h' ? 3_600_000 : u === 'm' ? 60_000 : 1000);
  return ms || fallbackMs;
}

const DEFAULT_TTL = 720 * 3_600_000;

export class VeleroController {
  constructor(
    private readonly ctx: Ctx,
    readonly snapshots: Snapshots,
  ) {
    ctx.store.on((e) => {
      if (e.rt.group !== 'velero.io') return;
      if (e.type === 'DELETED') {
        if (e.rt.kind === 'Backup') snapshots.delete(e.obj.metadata.uid!);
        return;
      }
      if (e.source !== 'api') return;
      const o = e.obj;
      switch (e.rt.kind) {
        case 'BackupStorageLocation':
          defer(ctx, () => this.validateLocation(o.metadata.namespace!, o.metadata.name));
          break;
        case 'Schedule':
          defer(ctx, () => this.enableSchedule(o, e.type === 'ADDED'));
          break;
        case 'Backup':
          if (e.type === 'ADDED' && (!o.status?.phase || o.status.phase === 'New')) defer(ctx, () => this.runBackup(o));
          break;
        case 'DeleteBackupRequest':
          if (e.type === 'ADDED') defer(ctx, () => this.deleteBackup(o));
          break;
      }
    });
    ctx.onClear.push(() => {
      for (const bsl of ctx.store.list(rtOf(ctx, VELERO, 'BackupStorageLocation')))
        this.validateLocation(bsl.metadata.namespace!, bsl.metadata.name);
    });
  }

  private rt(kind: string) {
    return rtOf(this.ctx, VELERO, kind);
  }

  validateLocation(ns: string, name: string): void {
    const down = this.ctx.faults.bslUnavailable.has(name);
    setStatus(this.ctx, this.rt('BackupStorageLocation'), ns, name, (c) => ({
      ...c.status,
      phase: down ? 'Unavailable' : 'Available',
      lastValidationTime: timestamp(),
      ...(down
        ? {
            message: `BackupStorageLocation "${name}" is unavailable: rpc error: code = Unknown desc = operation error S3: ListObjectsV2, https response error StatusCode: 503`,
          }
        : { message: undefined }),
    }));
  }

  /** A new Schedule is due at once (no lastBackup), so Velero backs up right away unless told to skip. */
  private enableSchedule(s: KObj, isNew: boolean): void {
    const fields = String(s.spec?.schedule ?? '')
      .trim()
      .split(/\s+/);
    const valid = fields.length === 5 || (fields.length === 1 && fields[0].startsWith('@'));
    const { name, namespace: ns } = s.metadata;
    const runNow = valid && isNew && !s.spec?.paused && !s.spec?.skipImmediately;
    const at = new Date();
    setStatus(this.ctx, this.rt('Schedule'), ns, name, (c) =>
      valid
        ? {
            ...c.status,
            phase: 'Enabled',
            validationErrors: undefined,
            ...(runNow ? { lastBackup: timestamp(at) } : {}),
          }
        : {
            ...c.status,
            phase: 'FailedValidation',
            validationErrors: [
              `invalid schedule: expected exactly 5 fields, found ${fields.length}: ${s.spec?.schedule}`,
            ],
          },
    );
    if (!runNow) return;
    const backup = this.ctx.store.create(
      this.rt('Backup'),
      ns,
      {
        metadata: {
          name: `${name}-${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`,
          labels: { 'velero.io/schedule-name': name },
        },
        spec: s.spec?.template ?? {},
      },
      'controller',
    );
    this.runBackup(backup);
  }

  private runBackup(b: KObj): void {
    const { name, namespace: ns } = b.metadata;
    const rt = this.rt('Backup');
    const cur = this.ctx.store.get(rt, ns, name);
    if (!cur || cur.metadata.uid !== b.metadata.uid) return;
    const loc = cur.spec?.storageLocation || 'default';
    const bsl = this.ctx.store.get(this.rt('BackupStorageLocation'), ns, loc);
    const problem = !bsl
      ? `an existing backup storage location wasn't specified at backup creation time and the default '${loc}' wasn't found. Please address this issue (see \`velero backup-location -h\` for options) and create a new backup. Error: BackupStorageLocation.velero.io "${loc}" not found`
      : bsl.status?.phase === 'Unavailable' || this.ctx.faults.bslUnavailable.has(loc)
        ? `backup can't be created because BackupStorageLocation ${loc} is in Unavailable status.`
        : undefined;
    const created = Date.parse(cur.metadata.creationTimestamp!);
    const expiration = timestamp(new Date(created + parseDuration(cur.spec?.ttl, DEFAULT_TTL)));
    if (problem) {
      setStatus(this.ctx, rt, ns, name, () => ({
        phase: 'FailedValidation',
        validationErrors: [problem],
        version: 1,
        formatVersion: '1.1.0',
        expiration,
      }));
      return;
    }
    this.ctx.store.update(
      rt,
      ns,
      name,
      {
        ...cur,
        metadata: { ...cur.metadata, labels: { ...cur.metadata.labels, 'velero.io/storage-location': loc } },
        status: { phase: 'New', version: 1, formatVersion: '1.1.0', expiration },
      },
      { source: 'controller' },
    );
    const step = this.ctx.delays.veleroStepMs;
    this.ctx.timers.after(step, () => {
      const objects = this.ctx.store
        .snapshot(cur.spec?.includedNamespaces)
        .filter((o) => !(cur.spec?.excludedNamespaces ?? []).includes(o.metadata.namespace ?? o.metadata.name));
      const log = objects.map(
        (o) =>
          `time="${timestamp()}" level=info msg="Backed up item" backup=${ns}/${name} logSource="pkg/backup/backup.go:499" name=${o.metadata.name} namespace=${o.metadata.namespace ?? ''} progress= resource=${o.kind}`,
      );
      this.snapshots.set(cur.metadata.uid!, { objects, log });
      const total = objects.length;
      const started = setStatus(this.ctx, rt, ns, name, (c) => ({
        ...c.status,
        phase: 'InProgress',
        startTimestamp: timestamp(),
        progress: { totalItems: total, itemsBackedUp: 0 },
      }));
      if (!started) return;
      this.ctx.timers.after(step, () => {
        setStatus(this.ctx, rt, ns, name, (c) => ({
          ...c.status,
          progress: { totalItems: total, itemsBackedUp: Math.floor(total / 2) },
        }));
        this.ctx.timers.after(step, () => this.finishBackup(cur, total));
      });
    });
  }

  private finishBackup(b: KObj, total: number): void {
    const { name, namespace: ns } = b.metadata;
    const f = this.ctx.faults.backupPartiallyFailed;
    let partial = false;
    if (f.names.delete(name)) partial = true;
    else if (f.next) {
      f.next = false;
      partial = true;
    }
    const snap = this.snapshots.get(b.metadata.uid!);
    if (snap && partial)
      snap.log.push(
        `time="${timestamp()}" level=error msg="Error backing up item" backup=${ns}/${name} error="lab: injected item failure"`,
      );
    setStatus(this.ctx, this.rt('Backup'), ns, name, (c) =>
      c.metadata.uid !== b.metadata.uid
        ? c.status
        : {
            ...c.status,
            phase: partial ? 'PartiallyFailed' : 'Completed',
            completionTimestamp: timestamp(),
            progress: { totalItems: total, itemsBackedUp: partial ? Math.max(0, total - 1) : total },
            ...(partial ? { errors: 1 } : {}),
            warnings: 0,
          },
    );
  }

  /** A finished Backup with its snapshot, as the seeded cluster and tests need without waiting. */
  seedCompleted(ns: string, name: string, spec: object, labels: Record<string, string>, at: Date): KObj {
    const rt = this.rt('Backup');
    const created = this.ctx.store.create(rt, ns, { metadata: { name, labels }, spec }, 'controller');
    const objects = this.ctx.store.snapshot(created.spec?.includedNamespaces);
    this.snapshots.set(created.metadata.uid!, {
      objects,
      log: [`time="${timestamp(at)}" level=info msg="Backup completed" backup=${ns}/${name}`],
    });
    return setStatus(this.ctx, rt, ns, name, () => ({
      phase: 'Completed',
      version: 1,
      formatVersion: '1.1.0',
      startTimestamp: timestamp(at),
      completionTimestamp: timestamp(new Date(at.getTime() + 60_000)),
      expiration: timestamp(new Date(at.getTime() + parseDuration(created.spec?.ttl, DEFAULT_TTL))),
      progress: { totalItems: objects.length, itemsBackedUp: objects.length },
      warnings: 0,
    }))!;
  }

  private deleteBackup(req: KObj): void {
    const { name, namespace: ns } = req.metadata;
    const backupName = req.spec?.backupName;
    const rt = this.rt('DeleteBackupRequest');
    setStatus(this.ctx, rt, ns, name, () => ({ phase: 'InProgress' }));
    this.ctx.timers.after(this.ctx.delays.veleroStepMs, () => {
      const backupRt = this.rt('Backup');
      const exists = this.ctx.store.get(backupRt, ns, backupName);
      if (exists) this.ctx.store.delete(backupRt, ns, backupName, 'controller');
      setStatus(this.ctx, rt, ns, name, () => ({
        phase: 'Processed',
        ...(exists ? {} : { errors: [`backup ${ns}/${backupName} not found`] }),
      }));
    });
  }
}
