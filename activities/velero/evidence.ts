// What a drill keeps of its Restore before deleting it (issue 14 items 16 and 18). Deleting a Restore
// deletes its log and results from the bucket (velero v1.15.2 pkg/controller/restore_controller.go
// deleteExternalResources → backupStore.DeleteRestore), so the results are read first. And Velero does
// not stop a restore whose Restore is deleted: the reconciler runs the restore to its end and only then
// handles the deletion (finalizer restores.velero.io/external-resources-finalizer), re-creating any
// namespace it restores into that was deleted meanwhile (pkg/util/kube/utils.go
// EnsureNamespaceExistsAndIsReady). So "the Restore is gone" is the sign that nothing writes into the
// scratch namespaces any more.
import { randomBytes } from 'node:crypto';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { keepAlive } from '../heartbeat.js';
import { download, gunzipJson, loadKubeConfig, pollUntil, restoreInfo } from './client.js';
import { VELERO_API } from './types.js';

/** pkg/util/results/result.go Result, as putResults writes {"errors": Result, "warnings": Result}. */
interface VeleroResult {
  velero?: string[];
  cluster?: string[];
  namespaces?: Record<string, string[]>;
}

export interface ResultCounts {
  total: number;
  /** "velero", "cluster" or a namespace → count and the first messages (shortened). */
  by: Record<string, { count: number; messages: string[] }>;
}

export interface RestoreResultsSummary {
  errors: ResultCounts;
  warnings: ResultCounts;
  /** Why the results could not be had (the summary is then empty). */
  unavailable?: string;
}

const MESSAGES_KEPT = 5;
const MESSAGE_CHARS = 240;

/**
 * Velero's messages name objects and repeat apiserver errors; they carry no Secret data, but a message
 * may quote a field value, so only the start of a few messages is kept, and anything shaped like a
 * credential assignment is masked.
 */
export function shorten(msg: string): string {
  const masked = msg.replace(
    /((?:password|passwd|token|secret|key|credential)s?["']?\s*[:=]\s*)("[^"]*"|'[^']*'|\S+)/gi,
    '$1***',
  );
  return masked.length > MESSAGE_CHARS ? `${masked.slice(0, MESSAGE_CHARS - 1)}…` : masked;
}

export function summarise(r: VeleroResult | undefined): ResultCounts {
  const out: ResultCounts = { total: 0, by: {} };
  const add = (key: string, msgs: string[] | undefined) => {
    if (!msgs?.length) return;
    out.total += msgs.length;
    out.by[key] = { count: msgs.length, messages: msgs.slice(0, MESSAGES_KEPT).map(shorten) };
  };
  add('velero', r?.velero);
  add('cluster', r?.cluster);
  for (const [ns, msgs] of Object.entries(r?.namespaces ?? {})) add(ns, msgs);
  return out;
}

const empty = (): ResultCounts => ({ total: 0, by: {} });

export function veleroEvidenceActivities(deps: ActivityDeps) {
  const ctx = (cluster: string) => {
    const spec = clusterOrFail(deps, cluster);
    return { spec, kube: deps.kube(spec), ns: spec.backups.veleroNamespace };
  };
  return {
    /**
     * The Restore's results file through a DownloadRequest (kind RestoreResults, gzip JSON, as
     * `velero restore describe` reads it: pkg/cmd/util/downloadrequest). Never fails for a missing or
     * unreachable file: cleanup must go on, the summary then says why it is empty.
     */
    async veleroRestoreResults(input: {
      cluster: string;
      name: string;
      timeoutSeconds: number;
    }): Promise<RestoreResultsSummary> {
      const { spec, kube, ns } = ctx(input.cluster);
      const unavailable = (why: string): RestoreResultsSummary => ({
        errors: empty(),
        warnings: empty(),
        unavailable: why,
      });
      const req = `${input.name}-${randomBytes(4).toString('hex')}`.slice(-63).replace(/^[^a-z0-9]+/, '');
      await kube.create({
        apiVersion: VELERO_API,
        kind: 'DownloadRequest',
        metadata: { name: req, namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' } },
        spec: { target: { kind: 'RestoreResults', name: input.name } },
      });
      try {
        const url = await pollUntil(input.timeoutSeconds, `download request ${req}`, async () => {
          const d = await kube.read<{ status?: { downloadURL?: string } }>(VELERO_API, 'DownloadRequest', req, ns);
          return d?.status?.downloadURL || undefined;
        });
        if (!url) return unavailable(`DownloadRequest ${req} got no URL within ${input.timeoutSeconds}s`);
        let buf: Buffer;
        try {
          buf = await keepAlive(() => download(loadKubeConfig(spec, deps.dataDir), url));
        } catch (err) {
          return unavailable(`restore results download from ${new URL(url).origin} failed: ${(err as Error).message}`);
        }
        let parsed: { errors?: VeleroResult; warnings?: VeleroResult };
        try {
          parsed = gunzipJson(buf);
        } catch (err) {
          return unavailable(`restore results are not gzip JSON: ${(err as Error).message}`);
        }
        return { errors: summarise(parsed?.errors), warnings: summarise(parsed?.warnings) };
      } finally {
        await kube.delete(VELERO_API, 'DownloadRequest', req, ns).catch(() => undefined);
      }
    },

    /** Deletes the Restore and waits until Velero let it go (its restore has ended). */
    async veleroDeleteRestoreAndWait(input: {
      cluster: string;
      name: string;
      timeoutSeconds: number;
    }): Promise<{ gone: boolean; phase?: string }> {
      const { kube, ns } = ctx(input.cluster);
      await kube.delete(VELERO_API, 'Restore', input.name, ns);
      let phase: string | undefined;
      const gone = await pollUntil(input.timeoutSeconds, `restore ${input.name} deletion`, async () => {
        const r = await kube.read(VELERO_API, 'Restore', input.name, ns);
        if (!r) return true;
        phase = restoreInfo(r).phase;
        return undefined;
      });
      return { gone: Boolean(gone), ...(gone ? {} : { phase }) };
    },
  };
}
