// 1Password -> OpenBAO KV v2 for a rotation, in one activity so values move from source to sink
// without ever leaving it (DESIGN rule 1). Every write is check-and-set against the version just
// read; a CAS mismatch (someone else wrote) means re-read and decide again, never a blind overwrite.
// An entry whose fingerprint matches the current version is not written at all.
import type { ClusterSpec, SecretEntrySpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { classifyOpError, resolveBatched, type Resolved, type ResolveStats } from '../onepassword/read.js';
import type { OnePasswordPort } from '../onepassword/client.js';
import { classifyVaultError, type VaultClient } from './client.js';
import { fingerprint, fingerprintKey } from './fingerprint.js';
import { dataPath, META, readKv, writeCustomMetadata, type KvWriteResponse } from './kv.js';
import { cachedToken, openbaoFor, openbaoTokenRef, rememberToken } from './token.js';

/** The secret entries a rotation covers: all of the cluster's, or the named ones (unknown names are bad config). */
export function selectEntries(spec: ClusterSpec, ids?: string[]): SecretEntrySpec[] {
  if (!ids) return spec.secrets.entries;
  return ids.map((id) => {
    const e = spec.secrets.entries.find((x) => x.id === id);
    if (!e) throw nonRetryable(ErrorType.BadConfig, `cluster ${spec.name} has no secret entry "${id}"`);
    return e;
  });
}

export interface SyncInput {
  cluster: string;
  entryIds?: string[];
  rotationId: string;
}

export interface SyncEntryResult {
  id: string;
  outcome: 'written' | 'unchanged' | 'failed';
  path: string;
  /** The version Kubernetes should serve after this step. */
  version?: number;
  /** The version served before (what a rollback returns to); absent for a first write. */
  previousVersion?: number;
  fingerprint?: string;
  casRetries?: number;
  error?: { type: string; message: string };
}

export interface SyncResult {
  entries: SyncEntryResult[];
  onepassword: ResolveStats & { itemsListCalls: number };
}

const MAX_CAS_ROUNDS = 5;

/** Source item versions ("<itemId>@<updatedAt>"): one items.list per vault, only when something is written. */
async function itemVersions(
  op: OnePasswordPort,
  vaultId: string,
  cache: Map<string, Map<string, string>>,
  stats: { itemsListCalls: number },
) {
  let m = cache.get(vaultId);
  if (!m) {
    try {
      const items = await op.items.list(vaultId);
      stats.itemsListCalls += 1;
      m = new Map(items.map((i) => [i.id, new Date(i.updatedAt).toISOString()]));
    } catch (err) {
      throw classifyOpError(err, `listing items of vault ${vaultId}`);
    }
    cache.set(vaultId, m);
  }
  return m;
}

export async function syncOnePasswordToOpenBao(deps: ActivityDeps, input: SyncInput): Promise<SyncResult> {
  const spec = clusterOrFail(deps, input.cluster);
  const entries = selectEntries(spec, input.entryIds);
  const op = await deps.onepassword(spec);
  const stats = { resolveAllCalls: 0, vaults: 0, itemsListCalls: 0 };
  const tokenRef = openbaoTokenRef(spec);
  const needToken = !cachedToken(spec);
  const refs = entries.flatMap((e) => Object.values(e.fields));
  const resolved = await resolveBatched(op, needToken ? [...refs, tokenRef] : refs, stats);
  const vault = await deps.openbao(spec, needToken ? rememberToken(spec, resolved.get(tokenRef)) : cachedToken(spec));
  const key = fingerprintKey(deps.dataDir);
  const listCache = new Map<string, Map<string, string>>();
  const out: SyncEntryResult[] = [];

  for (const entry of entries) {
    const path = entry.openbaoPath;
    const missing = Object.values(entry.fields)
      .map((r) => resolved.get(r)!)
      .filter((r): r is Extract<Resolved, { ok: false }> => !r.ok);
    if (missing.length > 0) {
      const message = `1Password reference(s) not readable: ${[...new Set(missing.map((m) => m.message))].join('; ')}`;
      deps.log.warn({ entry: entry.id, rotationId: input.rotationId }, message);
      out.push({ id: entry.id, outcome: 'failed', path, error: { type: ErrorType.SecretMissing, message } });
      continue;
    }
    const values: Record<string, string> = {};
    for (const [k, ref] of Object.entries(entry.fields))
      values[k] = (resolved.get(ref) as Extract<Resolved, { ok: true }>).value;
    const fp = fingerprint(key, values);
    const items = new Map<string, { itemId: string; vaultId: string }>();
    for (const ref of Object.values(entry.fields)) {
      const r = resolved.get(ref) as Extract<Resolved, { ok: true }>;
      items.set(`${r.vaultId}/${r.itemId}`, { itemId: r.itemId, vaultId: r.vaultId });
    }
    out.push(
      await storeEntry(deps, spec, vault, op, {
        entry,
        values,
        fp,
        rotationId: input.rotationId,
        listCache,
        stats,
        items: [...items.values()],
      }),
    );
  }
  return { entries: out, onepassword: stats };
}

interface StoreCtx {
  entry: SecretEntrySpec;
  values: Record<string, string>;
  fp: string;
  rotationId: string;
  listCache: Map<string, Map<string, string>>;
  stats: { itemsListCalls: number };
  /** The 1Password items the entry's fields come from. */
  items: Array<{ itemId: string; vaultId: string }>;
}

async function storeEntry(
  deps: ActivityDeps,
  spec: ClusterSpec,
  vault: VaultClient,
  op: OnePasswordPort,
  c: StoreCtx,
): Promise<SyncEntryResult> {
  const { entry, values, fp } = c;
  const path = entry.openbaoPath;
  const key = fingerprintKey(deps.dataDir);
  for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
    const cur = await readKv(vault, spec, path);
    // Marked by markRolledBack (older runs): the current version holds the rejected value, Kubernetes serves another.
    const rolledBack = cur.version > 0 && cur.custom[META.rolledBackVersion] === String(cur.version);
    const serving = rolledBack ? Number(cur.custom[META.servingVersion]) || undefined : cur.version || undefined;
    // Restored by restoreRolledBack: the current version holds the previous data again; the rejected
    // value is known by its fingerprint and stays refused until 1Password changes.
    if (
      !rolledBack &&
      cur.custom[META.servingVersion] === String(cur.version) &&
      cur.custom[META.rejectedFingerprint] === fp
    ) {
      const message = `OpenBAO ${path} version ${cur.custom[META.rolledBackVersion] ?? '?'} was rolled back by rotation ${cur.custom[META.rolledBackBy] ?? '?'} (restored as version ${cur.version}) and 1Password still holds that value: change it in 1Password to rotate again`;
      return {
        id: entry.id,
        outcome: 'failed',
        path,
        version: cur.version,
        fingerprint: fp,
        casRetries: round,
        error: { type: ErrorType.VerificationFailed, message },
      };
    }
    // Bookkeeping of a version this rotation wrote: who wrote it and what Kubernetes served before it.
    const record = async (written: number, served: number | undefined): Promise<SyncEntryResult> => {
      const sources = await sourceVersions(op, c);
      const {
        [META.rolledBackVersion]: _a,
        [META.rolledBackBy]: _b,
        [META.servingVersion]: _c,
        [META.rejectedFingerprint]: _d,
        ...keep
      } = cur.custom;
      await writeCustomMetadata(vault, spec, path, {
        ...keep,
        [META.fingerprint]: fp,
        [META.sourceVersion]: sources.slice(0, 500),
        [META.rotationId]: c.rotationId,
        [META.writtenVersion]: String(written),
        ...(served ? { [META.previousVersion]: String(served) } : {}),
      });
      deps.log.info(
        { entry: entry.id, path, version: written, previousVersion: served, fingerprint: fp },
        'OpenBAO version written',
      );
      return {
        id: entry.id,
        outcome: 'written',
        path,
        version: written,
        previousVersion: served,
        fingerprint: fp,
        casRetries: round,
      };
    };
    if (cur.data && fingerprint(key, cur.data) === fp) {
      if (rolledBack) {
        const message = `OpenBAO ${path} version ${cur.version} was rolled back by rotation ${cur.custom[META.rolledBackBy] ?? '?'} and 1Password still holds that value: change it in 1Password to rotate again`;
        return {
          id: entry.id,
          outcome: 'failed',
          path,
          version: serving,
          fingerprint: fp,
          casRetries: round,
          error: { type: ErrorType.VerificationFailed, message },
        };
      }
      // An earlier attempt of this same rotation wrote this version and died before reporting it:
      // it is still this run's write (the entry's Secret and consumers must follow), not "unchanged".
      if (
        cur.custom[META.rotationId] === c.rotationId &&
        cur.custom[META.writtenVersion] === String(cur.version) &&
        cur.custom[META.fingerprint] === fp
      ) {
        return {
          id: entry.id,
          outcome: 'written',
          path,
          version: cur.version,
          previousVersion: Number(cur.custom[META.previousVersion]) || undefined,
          fingerprint: fp,
          casRetries: round,
        };
      }
      // Newer than our last bookkeeping and holding exactly these values: an earlier attempt wrote it and
      // died before its metadata write. Finish that bookkeeping; Kubernetes still serves the recorded version.
      const recorded = Number(cur.custom[META.writtenVersion]) || 0;
      if (recorded > 0 && recorded < cur.version && cur.custom[META.fingerprint] !== fp) {
        const recordedRolledBack = cur.custom[META.rolledBackVersion] === String(recorded);
        return record(cur.version, recordedRolledBack ? Number(cur.custom[META.servingVersion]) || recorded : recorded);
      }
      // Same value: nothing to write. Metadata written by someone else (or by the seed) is brought up to date once.
      if (cur.custom[META.fingerprint] !== fp) {
        await writeCustomMetadata(vault, spec, path, {
          ...cur.custom,
          [META.fingerprint]: fp,
          [META.writtenVersion]: String(cur.version),
        });
      }
      const prev = Number(cur.custom[META.previousVersion]) || (cur.version > 1 ? cur.version - 1 : undefined);
      return {
        id: entry.id,
        outcome: 'unchanged',
        path,
        version: cur.version,
        previousVersion: prev,
        fingerprint: fp,
        casRetries: round,
      };
    }
    let written: number;
    try {
      const res = (await vault.write(`${spec.openbao.kvMount}/data/${path}`, {
        options: { cas: cur.version },
        data: values,
      })) as KvWriteResponse | undefined;
      written = Number(res?.data?.version ?? cur.version + 1);
    } catch (err) {
      const failure = classifyVaultError(err, `write ${path} (cas ${cur.version})`);
      if (failure.type === ErrorType.Conflict) {
        deps.log.warn(
          { entry: entry.id, path, cas: cur.version, round },
          'OpenBAO check-and-set mismatch: another writer was first; re-reading',
        );
        continue;
      }
      throw failure;
    }
    return record(written, serving);
  }
  throw retryable(
    ErrorType.Conflict,
    `OpenBAO ${path}: check-and-set kept failing after ${MAX_CAS_ROUNDS} re-reads (a concurrent writer keeps winning)`,
  );
}

async function sourceVersions(op: OnePasswordPort, c: StoreCtx): Promise<string> {
  // itemId/vaultId came back with resolveAll; the version stamp costs one items.list per vault.
  const parts = new Set<string>();
  for (const { itemId, vaultId } of c.items) {
    const versions = await itemVersions(op, vaultId, c.listCache, c.stats);
    parts.add(`${itemId}@${versions.get(itemId) ?? 'unknown'}`);
  }
  return [...parts].sort().join(',');
}

export interface MarkRolledBackInput {
  cluster: string;
  entryId: string;
  /** The version that failed verification. */
  version: number;
  /** The version Kubernetes serves again. */
  servingVersion: number;
  rotationId: string;
}

/** Marks a version rolled back in custom_metadata; the next rotation then knows what Kubernetes serves. */
export async function markRolledBack(deps: ActivityDeps, input: MarkRolledBackInput): Promise<{ marked: boolean }> {
  const spec = clusterOrFail(deps, input.cluster);
  const entry = selectEntries(spec, [input.entryId])[0];
  const vault = await openbaoFor(deps, spec);
  const cur = await readKv(vault, spec, entry.openbaoPath);
  if (cur.version !== input.version) {
    // Someone wrote a newer version meanwhile: that one is not ours to mark.
    deps.log.warn(
      { entry: entry.id, version: input.version, current: cur.version },
      'not marking rollback: a newer OpenBAO version exists',
    );
    return { marked: false };
  }
  const want = {
    [META.rolledBackVersion]: String(input.version),
    [META.rolledBackBy]: input.rotationId,
    [META.servingVersion]: String(input.servingVersion),
  };
  if (Object.entries(want).every(([k, v]) => cur.custom[k] === v)) return { marked: false };
  await writeCustomMetadata(vault, spec, entry.openbaoPath, { ...cur.custom, ...want });
  return { marked: true };
}

export interface RestoreInput {
  cluster: string;
  entryId: string;
  /** The version that failed verification (what this rotation wrote). */
  rejectedVersion: number;
  /** The version whose data is served again. */
  toVersion: number;
  rotationId: string;
}

export interface RestoreResult {
  /** The new version holding `toVersion`'s data; what Kubernetes serves from now on. */
  version: number;
  outcome: 'written' | 'already-restored' | 'superseded';
  message: string;
}

/**
 * Rollback in OpenBAO itself: KV v2 reads serve `current_version`, so marking a version alone would
 * leave every reader (the injector, `bao kv get`) on the rejected value. The previous data is written
 * again as a new version, check-and-set against the rejected version (a newer writer wins and is left
 * alone), and the metadata records which version was rejected, which one restored it, and the rejected
 * value's fingerprint (the next rotation refuses that value until 1Password changes).
 * Idempotent: a retry finds its own restore (rolled_back_by + serving_version) and returns it.
 */
export async function restoreRolledBack(deps: ActivityDeps, input: RestoreInput): Promise<RestoreResult> {
  const spec = clusterOrFail(deps, input.cluster);
  const entry = selectEntries(spec, [input.entryId])[0];
  const path = entry.openbaoPath;
  const vault = await openbaoFor(deps, spec);
  for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
    const cur = await readKv(vault, spec, path);
    if (
      cur.custom[META.rolledBackBy] === input.rotationId &&
      cur.custom[META.rolledBackVersion] === String(input.rejectedVersion) &&
      cur.custom[META.servingVersion] === String(cur.version)
    )
      return {
        version: cur.version,
        outcome: 'already-restored',
        message: `v${input.toVersion} already restored as v${cur.version}`,
      };
    if (cur.version !== input.rejectedVersion) {
      deps.log.warn(
        { entry: entry.id, rejected: input.rejectedVersion, current: cur.version },
        'not restoring OpenBAO: a newer version exists',
      );
      return {
        version: cur.version,
        outcome: 'superseded',
        message: `v${cur.version} was written after the rejected v${input.rejectedVersion}; left as is`,
      };
    }
    const previous = await readKv(vault, spec, path, input.toVersion);
    if (!previous.data)
      throw nonRetryable(
        ErrorType.NotFound,
        `OpenBAO ${path} version ${input.toVersion} holds no data (deleted, destroyed or trimmed by max_versions): cannot roll back to it`,
      );
    const key = fingerprintKey(deps.dataDir);
    let written: number;
    try {
      const res = (await vault.write(dataPath(spec, path), {
        options: { cas: cur.version },
        data: previous.data,
      })) as KvWriteResponse | undefined;
      written = Number(res?.data?.version ?? cur.version + 1);
    } catch (err) {
      const failure = classifyVaultError(err, `restore ${path} v${input.toVersion} (cas ${cur.version})`);
      if (failure.type === ErrorType.Conflict) continue;
      throw failure;
    }
    const { [META.rolledBackVersion]: _a, [META.rolledBackBy]: _b, [META.servingVersion]: _c, ...keep } = cur.custom;
    await writeCustomMetadata(vault, spec, path, {
      ...keep,
      [META.fingerprint]: fingerprint(key, previous.data),
      [META.rejectedFingerprint]: cur.data ? fingerprint(key, cur.data) : (cur.custom[META.fingerprint] ?? 'unknown'),
      [META.rotationId]: input.rotationId,
      [META.writtenVersion]: String(written),
      [META.previousVersion]: String(input.toVersion),
      [META.rolledBackVersion]: String(input.rejectedVersion),
      [META.rolledBackBy]: input.rotationId,
      [META.servingVersion]: String(written),
    });
    deps.log.info(
      { entry: entry.id, path, rejected: input.rejectedVersion, restoredFrom: input.toVersion, version: written },
      'OpenBAO rolled back: previous data written as a new version',
    );
    return {
      version: written,
      outcome: 'written',
      message: `v${input.toVersion} restored as v${written} (v${input.rejectedVersion} rejected)`,
    };
  }
  throw retryable(
    ErrorType.Conflict,
    `OpenBAO ${path}: check-and-set kept failing while restoring v${input.toVersion}`,
  );
}
