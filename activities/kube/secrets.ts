// OpenBAO version -> Kubernetes Secret. Reads the version's data from OpenBAO and writes the mapped
// keys into the Secret in the same activity (values never leave it). Idempotent: a Secret already
// holding that data is not written; only annotations that lag behind are written.
//
// The write is a server-side apply with field manager `pedro-ops` of only what we build: the mapped
// keys, our label and our annotations. A replace (PUT) would send the whole object and drop what others
// own — ownerReferences, finalizers, keys we do not map, labels and annotations of other tools. With
// apply, the apiserver merges by field ownership and removes only fields this manager applied before
// and no longer sends (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management).
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
  immutable?: boolean;
  metadata: KubeObject['metadata'] & { annotations?: Record<string, string>; resourceVersion?: string };
};

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' } as const;

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

/**
 * Only the keys the entry maps: a Secret may hold keys that other tools own, and those must neither be
 * fingerprinted (they would make every run look changed) nor written.
 */
export function mappedSecretData(entry: SecretEntrySpec, data: Record<string, string> | undefined) {
  if (!data) return undefined;
  const keys = Object.keys(entry.kubernetes?.keys ?? {});
  return Object.fromEntries(keys.filter((k) => k in data).map((k) => [k, data[k]]));
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
  const curData = mappedSecretData(entry, decodeSecretData(cur));
  const same = curData !== undefined && fingerprint(key, curData) === fp;
  const result = { entryId: entry.id, fingerprint: fp, version: input.version };
  if (cur && same && Object.entries(annotations).every(([k, v]) => cur.metadata.annotations?.[k] === v))
    return { ...result, dataChanged: false, written: false, created: false };
  // Kubernetes refuses any change to the data of an immutable Secret ("field is immutable when
  // `immutable` is set", pkg/apis/core/validation ValidateSecretUpdate); only deleting and recreating it
  // changes it (https://kubernetes.io/docs/concepts/configuration/secret/#secret-immutable). That would
  // drop its owners' references and restart nothing by itself, so it is a decision for a person.
  if (cur?.immutable && !same)
    throw nonRetryable(
      ErrorType.BadConfig,
      `Secret ${namespace}/${name} (entry ${entry.id}) is immutable: Kubernetes refuses new data for it. ` +
        'Delete it (its consumers keep the old value until restarted) or make it mutable in its source, then retry',
    );
  // rotation-id names the rotation that last changed the data: an annotation-only write keeps it.
  const rotationId = same ? cur?.metadata.annotations?.[ANNOTATIONS.rotationId] : input.rotationId;
  const body: SecretObj = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace,
      labels: { ...MANAGED_BY },
      annotations: { ...annotations, ...(rotationId ? { [ANNOTATIONS.rotationId]: rotationId } : {}) },
      // A concurrent writer between the read and the apply answers 409 (retryable); the retry re-reads.
      ...(cur?.metadata.resourceVersion ? { resourceVersion: cur.metadata.resourceVersion } : {}),
    },
    // No `type`: apply defaults it to Opaque on create and leaves an existing Secret's type alone.
    data: Object.fromEntries(Object.entries(desired).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
  };
  await kube.patch(body, 'apply');
  if (same) return { ...result, dataChanged: false, written: true, created: false };
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
  const data = mappedSecretData(entry, decodeSecretData(cur))!;
  const v = Number(cur.metadata.annotations?.[ANNOTATIONS.version]);
  return {
    exists: true,
    fingerprint: fingerprint(fingerprintKey(deps.dataDir), data),
    annotatedVersion: Number.isFinite(v) && v > 0 ? v : undefined,
  };
}
