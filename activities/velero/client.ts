// What the Velero activities share: polling with heartbeats, the raw-object → info mappers, and
// the download of Velero's gzip artefacts (DownloadRequest URLs).
import { request as httpsRequest } from 'node:https';
import { gunzipSync } from 'node:zlib';
import { beat, sleep as pause, waitDeadline } from '../heartbeat.js';
import { KubeConfig } from '@kubernetes/client-node';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { kubeconfigPathFor, type KubeObject } from '../kube/client.js';
import type { BackupInfo, RestoreInfo } from './types.js';
import { namespacesNotCovered } from '../../workflows/namespaces.js';

export { beat, pause };

export const POLL_MS = 500;

/**
 * Polls `check` until it returns a value or the deadline passes (then returns undefined).
 * Heartbeats every round (a dead worker is noticed within the heartbeat timeout, a cancelled workflow
 * stops the wait promptly); a retry after a crash keeps the first attempt's deadline.
 */
export async function pollUntil<T>(
  timeoutSeconds: number,
  what: string,
  check: () => Promise<T | undefined>,
  /** More heartbeat details (what the activity already finished, for its retry to skip). */
  progress?: Record<string, unknown>,
): Promise<T | undefined> {
  const deadline = waitDeadline(timeoutSeconds, what);
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) return undefined;
    beat({ ...progress, waiting: what, deadline });
    await pause(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
  }
}

/** The Backup and Restore status fields read here (velero pkg/apis/velero/v1 backup_types.go, restore_types.go). */
interface VeleroStatus {
  phase?: string;
  errors?: number;
  warnings?: number;
  failureReason?: string;
  validationErrors?: string[];
  startTimestamp?: string;
  completionTimestamp?: string;
  progress?: { totalItems?: number; itemsBackedUp?: number; itemsRestored?: number };
}
type Raw = KubeObject & {
  spec?: {
    includedNamespaces?: string[];
    excludedNamespaces?: string[];
    storageLocation?: string;
    backupName?: string;
  };
  status?: VeleroStatus;
};

export function backupInfo(o: KubeObject): BackupInfo {
  const b = o as Raw;
  const s: VeleroStatus = b.status ?? {};
  return {
    name: b.metadata!.name!,
    phase: s.phase,
    errors: s.errors ?? 0,
    warnings: s.warnings ?? 0,
    failureReason: s.failureReason || undefined,
    validationErrors: s.validationErrors?.length ? s.validationErrors : undefined,
    includedNamespaces: b.spec?.includedNamespaces ?? [],
    excludedNamespaces: b.spec?.excludedNamespaces ?? [],
    storageLocation: b.spec?.storageLocation,
    scheduleName: b.metadata?.labels?.['velero.io/schedule-name'],
    startTimestamp: s.startTimestamp,
    completionTimestamp: s.completionTimestamp,
    totalItems: s.progress?.totalItems,
    itemsBackedUp: s.progress?.itemsBackedUp,
  };
}

export function restoreInfo(o: KubeObject): RestoreInfo {
  const r = o as Raw;
  const s: VeleroStatus = r.status ?? {};
  return {
    name: r.metadata!.name!,
    backupName: r.spec?.backupName,
    phase: s.phase,
    errors: s.errors ?? 0,
    warnings: s.warnings ?? 0,
    failureReason: s.failureReason || undefined,
    validationErrors: s.validationErrors?.length ? s.validationErrors : undefined,
    totalItems: s.progress?.totalItems,
    itemsRestored: s.progress?.itemsRestored,
  };
}

/** The namespaces of `want` the backup does not hold (Velero's include/exclude rule, globs included). */
export function backupCovers(
  b: Pick<BackupInfo, 'includedNamespaces' | 'excludedNamespaces'>,
  want: string[],
): string[] {
  return namespacesNotCovered(b, want);
}

export function loadKubeConfig(spec: ClusterSpec, dataDir: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(kubeconfigPathFor(spec, dataDir));
  } catch (err) {
    throw nonRetryable(ErrorType.BadConfig, `no usable kubeconfig for cluster ${spec.name}: ${(err as Error).message}`);
  }
  return kc;
}

/**
 * Fetches a DownloadRequest URL. A URL on the API server's own origin gets the kubeconfig's CA and
 * credentials; any other origin (a presigned S3 URL) gets no credentials at all.
 */
export async function download(kc: KubeConfig, url: string): Promise<Buffer> {
  const server = kc.getCurrentCluster()?.server;
  const sameOrigin = server !== undefined && new URL(server).origin === new URL(url).origin;
  if (!sameOrigin || !url.startsWith('https:')) {
    const res = await fetch(url).catch((e: unknown) => {
      throw retryable(ErrorType.Transient, `download ${new URL(url).origin}: ${(e as Error).message}`);
    });
    if (!res.ok) throw retryable(ErrorType.Transient, `download ${new URL(url).origin}: HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  }
  const opts: { headers?: Record<string, string>; ca?: Buffer | string; method: string } = {
    method: 'GET',
    headers: {},
  };
  await kc.applyToHTTPSOptions(opts);
  return new Promise<Buffer>((resolve, reject) => {
    const req = httpsRequest(url, opts as never, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 400)
          reject(retryable(ErrorType.Transient, `download ${new URL(url).pathname}: HTTP ${res.statusCode}`));
        else resolve(Buffer.concat(chunks));
      });
      res.on('error', (e) => reject(retryable(ErrorType.Transient, `download: ${e.message}`)));
    });
    req.on('error', (e) => reject(retryable(ErrorType.Transient, `download: ${e.message}`)));
    req.end();
  });
}

/** Velero stores its artefacts gzipped; tolerate a server that already inflated them. */
export function gunzipJson<T>(buf: Buffer): T {
  const text =
    buf.length > 2 && buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf).toString('utf8') : buf.toString('utf8');
  return JSON.parse(text) as T;
}

/** "apps/v1/Deployment" → {apiVersion: "apps/v1", kind: "Deployment"}. */
export function splitGvk(key: string): { apiVersion: string; kind: string } {
  const i = key.lastIndexOf('/');
  return { apiVersion: key.slice(0, i), kind: key.slice(i + 1) };
}

/** DNS-1123 label: at most 63 characters, no trailing dash. */
export function dnsLabel(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
}
