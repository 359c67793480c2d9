// OpenBAO version -> Kubernetes Secret. Reads the version's data from OpenBAO and writes the mapped
// keys into the Secret in the same activity (values never leave it). Idempotent: a Secret already
// holding that data is not written; only annotations that lag behind are patched.
import type { ClusterSpec, SecretEntrySpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { fingerprint, fingerprintKey } from '../openbao/fingerprint.js';
import { readKv } from '../openbao/kv.js';
import { selectEntries } from '../openbao/sync.js';
import { openbaoFor } from '../openbao/token.js';
import type { KubeObject } from './client.js';

export const ANNOTATIONS = {
  path: 'pedro-ops.io/openbao-path',
  version: 'pedro-ops.io/openbao-version',
  fingerprint: 'pedro-ops.io/fingerprint',
  rotationId: 'pedro-ops.io/rotation-id',
} as const;

type SecretObj = KubeObject & {
  data?: Record<string, string>;
  metadata: KubeObject['metadata'] & { annotations?: Record<string, string>; resourceVersion?: string };
};

export interface ApplySecretInput {
  cluster: string;
  entryId: string;
  /** OpenBAO version whose data the Secret should hold. */
  version: number;
  rotationId: string;
}

export interface ApplySecretResult {
  entryId: string;
  /** The Secret's data changed (consumers must restart). */
  dataChanged: boolean;
  /** Anything was written (data or annotations). */
  written: boolean;
  created: boolean;
  fingerprint: string;
  version: number;
}

function entryOf(spec: ClusterSpec, id: string): SecretEntrySpec {
  return selectEntries(spec, [id])[0];
}

/** Secret data decoded into key -> value (values stay in this process). */
export function decodeSecretData(obj: SecretObj | undefined): Record<string, string> | undefined {
  if (!obj) return undefined;
  return Object.fromEntries(
    Object.entries(obj.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}

/** The Secret's projection of an OpenBAO version (Kubernetes key -> value). */
export function projectForSecret(entry: SecretEntrySpec, data: Record<string, string>): Record<string, string> {
  const keys = entry.kubernetes!.keys;
  const out: Record<string, string> = {};
  for (const [secretKey, baoKey] of Object.entries(keys)) {
    if (!(baoKey in data))
      throw nonRetryable(
        ErrorType.BadConfig,
        `entry ${entry.id}: Secret key ${secretKey} maps to OpenBAO key ${baoKey}, which ${entry.openbaoPath} does not hold`,
      );
    out[secretKey] = data[baoKey];
  }
  return out;
}

export async function applyKubeSecret(deps: ActivityDeps, input: ApplySecretInput): Promise<ApplySecretResult> {
  const spec = clusterOrFail(deps, input.cluster);
  const entry = entryOf(spec, input.entryId);
  if (!entry.kubernetes) throw nonRetryable(ErrorType.BadConfig, `entry ${entry.id} has no Kubernetes Secret mapping`);
  const { namespace, name } = entry.kubernetes;
  const vault = await openbaoFor(deps, spec);
  const kv = await readKv(vault, spec, entry.openbaoPath, input.version);
  if (!kv.data)
    throw nonRetryable(
      ErrorType.NotFound,
      `OpenBAO ${entry.openbaoPath} version ${input.version} holds no data (deleted or destroyed)`,
    );
  const desired = projectForSecret(entry, kv.data);
  const key = fingerprintKey(deps.dataDir);
  const fp = fingerprint(key, desired);
  const annotations = {
    [ANNOTATIONS.path]: `${spec.openbao.kvMount}/${entry.openbaoPath}`,
    [ANNOTATIONS.version]: String(input.version),
    [ANNOTATIONS.fingerprint]: fp,
  };
  const kube = deps.kube(spec);
  const cur = await kube.read<SecretObj>('v1', 'Secret', name, namespace);
  const curData = decodeSecretData(cur);
  const same = curData !== undefined && fingerprint(key, curData) === fp;
  const result = { entryId: entry.id, fingerprint: fp, version: input.version };
  if (cur && same) {
    const lagging = Object.entries(annotations).some(([k, v]) => cur.metadata.annotations?.[k] !== v);
    if (!lagging) return { ...result, dataChanged: false, written: false, created: false };
    await kube.patch({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, annotations } }, 'merge');
    return { ...result, dataChanged: false, written: true, created: false };
  }
  const body: SecretObj = {
    apiVersion: 'v1',
    kind: 'Secret',
    type: cur?.type ?? 'Opaque',
    metadata: {
      name,
      namespace,
      labels: { ...(cur?.metadata.labels ?? {}), 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
      annotations: { ...(cur?.metadata.annotations ?? {}), ...annotations, [ANNOTATIONS.rotationId]: input.rotationId },
      ...(cur?.metadata.resourceVersion ? { resourceVersion: cur.metadata.resourceVersion } : {}),
    },
    data: Object.fromEntries(Object.entries(desired).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
  };
  // resourceVersion makes the replace conditional: a concurrent edit answers 409 (retryable) and the retry re-reads.
  if (cur) await kube.replace(body);
  else await kube.create(body);
  deps.log.info(
    { entry: entry.id, secret: `${namespace}/${name}`, version: input.version, fingerprint: fp },
    cur ? 'Secret updated' : 'Secret created',
  );
  return { ...result, dataChanged: true, written: true, created: !cur };
}

export interface SecretFingerprint {
  exists: boolean;
  fingerprint?: string;
  annotatedVersion?: number;
}

/** Read-only: the Secret's fingerprint for drift checks. */
export async function kubeSecretFingerprint(
  deps: ActivityDeps,
  spec: ClusterSpec,
  entry: SecretEntrySpec,
): Promise<SecretFingerprint> {
  if (!entry.kubernetes) return { exists: false };
  const cur = await deps.kube(spec).read<SecretObj>('v1', 'Secret', entry.kubernetes.name, entry.kubernetes.namespace);
  if (!cur) return { exists: false };
  const data = decodeSecretData(cur)!;
  const v = Number(cur.metadata.annotations?.[ANNOTATIONS.version]);
  return {
    exists: true,
    fingerprint: fingerprint(fingerprintKey(deps.dataDir), data),
    annotatedVersion: Number.isFinite(v) && v > 0 ? v : undefined,
  };
}
