// OpenBAO KV v2 as the rotation uses it: the custom_metadata keys the orchestrator owns, reading a
// path's current (or a given) version with its metadata, and writing custom_metadata. The sync that
// writes values is activities/openbao/sync.ts; the token is activities/openbao/token.ts.
import type { ClusterSpec } from '../../config/schema.js';
import { classifyVaultError, vaultStatus, type VaultClient } from './client.js';

/** custom_metadata keys the orchestrator owns on every mapped path (string map, OpenBAO's limits). */
export const META = {
  fingerprint: 'fingerprint',
  sourceVersion: 'source_item_version',
  rotationId: 'rotation_id',
  writtenVersion: 'written_version',
  previousVersion: 'previous_version',
  rolledBackVersion: 'rolled_back_version',
  rolledBackBy: 'rolled_back_by',
  servingVersion: 'serving_version',
  rejectedFingerprint: 'rejected_fingerprint',
} as const;

export interface KvState {
  /** 0 when the path has never been written. */
  version: number;
  data?: Record<string, string>;
  custom: Record<string, string>;
}

export const dataPath = (spec: ClusterSpec, path: string) => `${spec.openbao.kvMount}/data/${path}`;
const metaPath = (spec: ClusterSpec, path: string) => `${spec.openbao.kvMount}/metadata/${path}`;

// node-vault types every response as `any`: these are the KV v2 response fields read here, as OpenBao's
// KV v2 HTTP API answers them (read metadata, read a version, create/update with cas) and as the lab
// double (test/lab/openbao/kv.ts) reproduces them.
interface KvMetadataResponse {
  data?: { current_version?: number; custom_metadata?: Record<string, string> | null };
}
interface KvReadResponse {
  data?: { data?: unknown };
}
export interface KvWriteResponse {
  data?: { version?: number };
}

function strings(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((data ?? {}) as Record<string, unknown>))
    out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}

/** Current (or a given) version's data plus the path's custom_metadata. */
export async function readKv(vault: VaultClient, spec: ClusterSpec, path: string, version?: number): Promise<KvState> {
  let meta: KvMetadataResponse['data'];
  try {
    meta = ((await vault.read(metaPath(spec, path))) as KvMetadataResponse).data;
  } catch (err) {
    if (vaultStatus(err) !== 404) throw classifyVaultError(err, `read metadata of ${path}`);
  }
  const current = meta?.current_version ?? 0;
  const custom = meta?.custom_metadata ?? {};
  const want = version ?? current;
  if (want === 0) return { version: 0, custom };
  try {
    const res = (await vault.read(`${dataPath(spec, path)}?version=${want}`)) as KvReadResponse;
    return { version: want, data: strings(res.data?.data), custom };
  } catch (err) {
    // Deleted/destroyed versions answer 404: the version exists but holds nothing to serve.
    if (vaultStatus(err) === 404) return { version: want, custom };
    throw classifyVaultError(err, `read ${path} version ${want}`);
  }
}

export async function writeCustomMetadata(
  vault: VaultClient,
  spec: ClusterSpec,
  path: string,
  custom: Record<string, string>,
): Promise<void> {
  try {
    await vault.write(metaPath(spec, path), { custom_metadata: custom });
  } catch (err) {
    throw classifyVaultError(err, `write metadata of ${path}`);
  }
}
