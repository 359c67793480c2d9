// Drift check (rotateSecrets with dryRun): per entry, do 1Password, OpenBAO and the Kubernetes Secret
// agree? Compared by fingerprint only, read-only everywhere.
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { resolveBatched, type Resolved } from '../onepassword/read.js';
import { kubeSecretFingerprint, projectForSecret } from '../kube/secrets.js';
import { fingerprint, fingerprintKey } from './fingerprint.js';
import { META, readKv } from './kv.js';
import { selectEntries } from './sync.js';
import { openbaoFor } from './token.js';

export interface DriftInput {
  cluster: string;
  entryIds?: string[];
}

export interface DriftEntry {
  id: string;
  inSync: boolean;
  /** What disagrees, or why it could not be judged. */
  findings: string[];
  onepassword?: string;
  openbao?: { version: number; fingerprint?: string; rolledBack: boolean };
  kubernetes?: { exists: boolean; fingerprint?: string; expected?: string; annotatedVersion?: number };
}

export async function checkSecretDrift(
  deps: ActivityDeps,
  input: DriftInput,
): Promise<{ entries: DriftEntry[]; resolveAllCalls: number }> {
  const spec = clusterOrFail(deps, input.cluster);
  const entries = selectEntries(spec, input.entryIds);
  const op = await deps.onepassword(spec);
  const stats = { resolveAllCalls: 0, vaults: 0 };
  const resolved = await resolveBatched(
    op,
    entries.flatMap((e) => Object.values(e.fields)),
    stats,
  );
  const vault = await openbaoFor(deps, spec, op);
  const key = fingerprintKey(deps.dataDir);
  const out: DriftEntry[] = [];
  for (const entry of entries) {
    const findings: string[] = [];
    const results = Object.entries(entry.fields).map(([k, ref]) => [k, resolved.get(ref)!] as const);
    const missing = results.filter(([, r]) => !r.ok).map(([, r]) => (r as Extract<Resolved, { ok: false }>).message);
    const source =
      missing.length === 0
        ? Object.fromEntries(results.map(([k, r]) => [k, (r as Extract<Resolved, { ok: true }>).value]))
        : undefined;
    if (missing.length) findings.push(`1Password: ${missing.join('; ')}`);
    const opFp = source ? fingerprint(key, source) : undefined;

    const cur = await readKv(vault, spec, entry.openbaoPath);
    const rolledBack = cur.version > 0 && cur.custom[META.rolledBackVersion] === String(cur.version);
    const baoFp = cur.data ? fingerprint(key, cur.data) : undefined;
    if (!cur.data) findings.push(`OpenBAO ${entry.openbaoPath} holds no current data`);
    else if (opFp && opFp !== baoFp)
      findings.push(`OpenBAO ${entry.openbaoPath} v${cur.version} differs from 1Password`);
    if (rolledBack)
      findings.push(
        `OpenBAO v${cur.version} is marked rolled back; Kubernetes serves v${cur.custom[META.servingVersion] ?? '?'}`,
      );

    let kubernetes: DriftEntry['kubernetes'];
    if (entry.kubernetes) {
      const k = await kubeSecretFingerprint(deps, spec, entry);
      // The Secret should hold the served version's projection (the rolled-back-to version after a rollback).
      const servedVersion = rolledBack ? Number(cur.custom[META.servingVersion]) : cur.version;
      const served =
        servedVersion === cur.version
          ? cur
          : servedVersion > 0
            ? await readKv(vault, spec, entry.openbaoPath, servedVersion)
            : undefined;
      let expected: string | undefined;
      try {
        expected = served?.data ? fingerprint(key, projectForSecret(entry, served.data)) : undefined;
      } catch (err) {
        findings.push((err as Error).message);
      }
      kubernetes = { ...k, expected };
      if (!k.exists) findings.push(`Secret ${entry.kubernetes.namespace}/${entry.kubernetes.name} does not exist`);
      else if (expected && k.fingerprint !== expected)
        findings.push(
          `Secret ${entry.kubernetes.namespace}/${entry.kubernetes.name} differs from OpenBAO v${servedVersion}`,
        );
    }
    out.push({
      id: entry.id,
      inSync: findings.length === 0,
      findings,
      onepassword: opFp,
      openbao: { version: cur.version, fingerprint: baoFp, rolledBack },
      kubernetes,
    });
  }
  return { entries: out, resolveAllCalls: stats.resolveAllCalls };
}
