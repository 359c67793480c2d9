// Velero Backup/Restore activities: observe first, create only what is missing (DESIGN rule 2), and
// report phases as data so the workflow decides what a PartiallyFailed backup or Failed restore means.
import { randomBytes } from 'node:crypto';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { keepAlive } from '../heartbeat.js';
import { backupInfo, download, gunzipJson, loadKubeConfig, pollUntil, restoreInfo } from './client.js';
import { fsBackupField } from './volumes.js';
import {
  BACKUP_TERMINAL,
  RESTORE_TERMINAL,
  VELERO_API,
  type BackupInfo,
  type FindBackupResult,
  type ResourceList,
  type ResourceListResult,
  type RestoreInfo,
  type StorageLocationInfo,
} from './types.js';

const MANAGED = { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' };

export interface EnsureBackupInput {
  cluster: string;
  name: string;
  namespaces: string[];
  labels?: Record<string, string>;
}

export interface EnsureRestoreInput {
  cluster: string;
  name: string;
  backup: string;
  includedNamespaces: string[];
  namespaceMapping?: Record<string, string>;
  existingResourcePolicy?: 'none' | 'update';
  labels?: Record<string, string>;
  /** A ConfigMap of resource modifiers in Velero's namespace (Restore spec.resourceModifier). */
  resourceModifierConfigMap?: string;
}

export function veleroBackupActivities(deps: ActivityDeps) {
  const ctx = (cluster: string) => {
    const spec = clusterOrFail(deps, cluster);
    return { spec, kube: deps.kube(spec), ns: spec.backups.veleroNamespace };
  };

  return {
    async veleroStorageLocation(input: { cluster: string }): Promise<StorageLocationInfo> {
      const { spec, kube, ns } = ctx(input.cluster);
      const name = spec.backups.storageLocation;
      const bsl = await kube.read<{ status?: { phase?: string; message?: string } }>(
        VELERO_API,
        'BackupStorageLocation',
        name,
        ns,
      );
      if (!bsl) return { name, available: false, message: `BackupStorageLocation ${ns}/${name} does not exist` };
      const phase = bsl.status?.phase;
      return { name, available: phase === 'Available', phase, message: bsl.status?.message };
    },

    async veleroGetBackup(input: { cluster: string; name: string }): Promise<BackupInfo | undefined> {
      const { kube, ns } = ctx(input.cluster);
      const b = await kube.read(VELERO_API, 'Backup', input.name, ns);
      return b ? backupInfo(b) : undefined;
    },

    /** The named backup, or the newest Completed backup of a Velero Schedule. */
    async veleroFindBackup(input: {
      cluster: string;
      name?: string;
      schedule?: string;
      /** Only backups completed at or before this time (a backfilled drill verifies the backup of its own time). */
      notAfter?: string;
    }): Promise<FindBackupResult> {
      const { kube, ns } = ctx(input.cluster);
      if (input.name) {
        const b = await kube.read(VELERO_API, 'Backup', input.name, ns);
        return b
          ? { backup: backupInfo(b), skipped: [] }
          : { reason: `backup ${ns}/${input.name} does not exist`, skipped: [] };
      }
      const schedule = input.schedule!;
      let items = (await kube.list(VELERO_API, 'Backup', ns, `velero.io/schedule-name=${schedule}`)).map(backupInfo);
      // Backups synced from another cluster's bucket may lack the label; Velero names them <schedule>-<timestamp>.
      if (items.length === 0)
        items = (await kube.list(VELERO_API, 'Backup', ns))
          .map(backupInfo)
          .filter((b) => b.name.startsWith(`${schedule}-`));
      const when = (b: BackupInfo) => b.completionTimestamp ?? b.startTimestamp ?? '';
      const seen = items.length;
      if (input.notAfter) {
        const limit = Date.parse(input.notAfter);
        items = items.filter((b) => when(b) !== '' && Date.parse(when(b)) <= limit);
      }
      items.sort((a, b) => when(b).localeCompare(when(a)) || b.name.localeCompare(a.name));
      const skipped: FindBackupResult['skipped'] = [];
      for (const b of items) {
        if (b.phase === 'Completed' && b.errors === 0) return { backup: b, skipped };
        skipped.push({ name: b.name, phase: b.phase });
      }
      return {
        reason: `schedule ${schedule} has no Completed backup without errors${input.notAfter ? ` at or before ${input.notAfter}` : ''} (${seen} backups seen${input.notAfter ? `, ${items.length} of them by then` : ''})`,
        skipped,
      };
    },

    async veleroEnsureBackup(input: EnsureBackupInput): Promise<BackupInfo> {
      const { spec, kube, ns } = ctx(input.cluster);
      const cur = await kube.read(VELERO_API, 'Backup', input.name, ns);
      if (cur) return backupInfo(cur);
      const created = await kube.create({
        apiVersion: VELERO_API,
        kind: 'Backup',
        metadata: { name: input.name, namespace: ns, labels: { ...MANAGED, ...input.labels } },
        spec: {
          includedNamespaces: input.namespaces,
          storageLocation: spec.backups.storageLocation,
          ttl: `${spec.backups.schedule.ttlHours}h0m0s`,
          ...fsBackupField(spec),
        },
      });
      deps.log.info({ cluster: spec.name, backup: input.name, namespaces: input.namespaces }, 'velero backup created');
      return backupInfo(created);
    },

    /** Waits for a terminal phase; returns {timedOut: true} with the last phase seen otherwise. */
    async veleroWaitBackup(input: { cluster: string; name: string; timeoutSeconds: number }): Promise<BackupInfo> {
      const { kube, ns } = ctx(input.cluster);
      let last: BackupInfo | undefined;
      const done = await pollUntil(input.timeoutSeconds, `backup ${input.name}`, async () => {
        const b = await kube.read(VELERO_API, 'Backup', input.name, ns);
        if (!b) throw nonRetryable(ErrorType.NotFound, `backup ${ns}/${input.name} disappeared while waiting for it`);
        last = backupInfo(b);
        return (BACKUP_TERMINAL as readonly (string | undefined)[]).includes(last.phase) ? last : undefined;
      });
      return done ?? { ...last!, timedOut: true };
    },

    async veleroEnsureRestore(input: EnsureRestoreInput): Promise<RestoreInfo> {
      const { spec, kube, ns } = ctx(input.cluster);
      const cur = await kube.read(VELERO_API, 'Restore', input.name, ns);
      if (cur) {
        const info = restoreInfo(cur);
        if (info.backupName !== input.backup)
          throw nonRetryable(
            ErrorType.BadConfig,
            `restore ${ns}/${input.name} exists for backup ${info.backupName}, not ${input.backup}`,
          );
        return info;
      }
      const created = await kube.create({
        apiVersion: VELERO_API,
        kind: 'Restore',
        metadata: { name: input.name, namespace: ns, labels: { ...MANAGED, ...input.labels } },
        spec: {
          backupName: input.backup,
          includedNamespaces: input.includedNamespaces,
          ...(input.namespaceMapping && Object.keys(input.namespaceMapping).length > 0
            ? { namespaceMapping: input.namespaceMapping }
            : {}),
          ...(input.existingResourcePolicy ? { existingResourcePolicy: input.existingResourcePolicy } : {}),
          ...(input.resourceModifierConfigMap
            ? { resourceModifier: { kind: 'ConfigMap', name: input.resourceModifierConfigMap } }
            : {}),
          restorePVs: true,
        },
      });
      deps.log.info(
        { cluster: spec.name, restore: input.name, backup: input.backup, mapping: input.namespaceMapping },
        'velero restore created',
      );
      return restoreInfo(created);
    },

    async veleroWaitRestore(input: { cluster: string; name: string; timeoutSeconds: number }): Promise<RestoreInfo> {
      const { kube, ns } = ctx(input.cluster);
      let last: RestoreInfo | undefined;
      const done = await pollUntil(input.timeoutSeconds, `restore ${input.name}`, async () => {
        const r = await kube.read(VELERO_API, 'Restore', input.name, ns);
        if (!r) throw nonRetryable(ErrorType.NotFound, `restore ${ns}/${input.name} disappeared while waiting for it`);
        last = restoreInfo(r);
        return (RESTORE_TERMINAL as readonly (string | undefined)[]).includes(last.phase) ? last : undefined;
      });
      return done ?? { ...last!, timedOut: true };
    },

    async veleroDeleteRestore(input: { cluster: string; name: string }): Promise<boolean> {
      const { kube, ns } = ctx(input.cluster);
      return kube.delete(VELERO_API, 'Restore', input.name, ns);
    },

    /**
     * The backup's resource list through a DownloadRequest (gzip JSON). Returns {unavailable} rather
     * than failing: the comparison can fall back to counts per kind.
     */
    async veleroBackupResourceList(input: {
      cluster: string;
      backup: string;
      timeoutSeconds: number;
    }): Promise<ResourceListResult> {
      const { spec, kube, ns } = ctx(input.cluster);
      // Velero's own CLI names download requests <backup>-<random>; they expire on their own too.
      const name = `${input.backup}-${randomBytes(4).toString('hex')}`.slice(-63).replace(/^[^a-z0-9]+/, '');
      await kube.create({
        apiVersion: VELERO_API,
        kind: 'DownloadRequest',
        metadata: { name, namespace: ns, labels: MANAGED },
        spec: { target: { kind: 'BackupResourceList', name: input.backup } },
      });
      try {
        const url = await pollUntil(input.timeoutSeconds, `download request ${name}`, async () => {
          const d = await kube.read<{ status?: { phase?: string; downloadURL?: string } }>(
            VELERO_API,
            'DownloadRequest',
            name,
            ns,
          );
          return d?.status?.phase === 'Processed' && d.status.downloadURL ? d.status.downloadURL : undefined;
        });
        if (!url)
          return {
            unavailable: `DownloadRequest for ${input.backup} was not processed within ${input.timeoutSeconds}s`,
          };
        let buf: Buffer;
        try {
          buf = await keepAlive(() => download(loadKubeConfig(spec, deps.dataDir), url));
        } catch (err) {
          // Velero signs the URL for the BSL's publicUrl, else its s3Url, often an in-cluster name the
          // worker cannot reach: compare by counts instead of retrying (and parking) on it.
          return {
            unavailable: `resource list download from ${new URL(url).origin} failed (${(err as Error).message}); set backups.publicUrl to an object-store address the worker reaches`,
          };
        }
        const list = gunzipJson<ResourceList>(buf);
        if (!list || typeof list !== 'object' || Array.isArray(list))
          return { unavailable: 'resource list is not a JSON object' };
        return { list };
      } catch (err) {
        const e = err as { nonRetryable?: boolean; message?: string };
        if (e.nonRetryable) throw err;
        if (err instanceof SyntaxError) return { unavailable: `resource list is not valid JSON: ${err.message}` };
        throw err;
      } finally {
        await kube.delete(VELERO_API, 'DownloadRequest', name, ns).catch(() => undefined);
      }
    },
  };
}
