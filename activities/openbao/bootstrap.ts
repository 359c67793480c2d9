// OpenBAO bootstrap: init (shares/threshold from the spec), unseal keys + root token straight into
// 1Password item `openbao.unsealItem` (never disk, logs or history), unseal, enable KV v2.
// Re-runs observe first: initialised -> unseal from 1Password; initialised but the item is gone ->
// UnsealKeysMissing for a human (a re-init would orphan every stored secret).
import type { Item } from '@1password/sdk';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { vaultIdByName, type OnePasswordPort } from '../onepassword/client.js';
import { beat, sleep } from '../heartbeat.js';
import { classifyVaultError, INVALID_UNSEAL_KEY, vaultErrors, vaultStatus, type VaultClient } from './client.js';
import { preflightOpenBaoPath, type Health } from './preflight.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from '../kube/rollout.js';
import { kubeconfigPathFor } from '../kube/client.js';
import { existsSync } from 'node:fs';

export interface BootstrapResult {
  initialized: 'now' | 'before';
  unsealed: 'now' | 'before';
  kvMount: 'enabled' | 'present';
  /** 1Password reference of the item holding the keys (a reference, not a value). */
  unsealItemRef: string;
  satisfied: boolean;
}

const keyField = (i: number) => `unseal-key-${i + 1}`;
const ROOT_FIELD = 'root-token';

async function findItem(op: OnePasswordPort, vaultId: string, title: string): Promise<Item | undefined> {
  const overview = (await op.items.list(vaultId)).find((i) => i.title === title);
  return overview ? op.items.get(vaultId, overview.id) : undefined;
}

/**
 * Right after `sys/init` the unseal keys exist only in this activity: if storing them failed the
 * activity, its retry would find OpenBAO initialised and the keys gone (UnsealKeysMissing, a human
 * re-initialises). So the write is retried here, with backoff, for as long as a rate limit or an
 * outage plausibly lasts; the keys never leave the activity.
 */
export const KEY_STORE_ATTEMPTS = 8;
async function storeKeysPersistently(
  create: () => Promise<unknown>,
  log: ActivityDeps['log'],
  backoffMs = 1000,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await create();
      return;
    } catch (err) {
      if (attempt >= KEY_STORE_ATTEMPTS) throw err;
      const delay = Math.min(backoffMs * 2 ** (attempt - 1), 30_000);
      log.warn(
        { attempt, delayMs: delay, error: (err as Error).name },
        'storing the new OpenBAO unseal keys in 1Password failed; retrying inside the activity',
      );
      beat({ step: 'storing unseal keys in 1Password', attempt });
      await sleep(delay);
    }
  }
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw classifyVaultError(err, what);
  }
}

async function unseal(bao: VaultClient, keys: string[], threshold: number, ref: string): Promise<void> {
  const wrongKeys = (detail: string) =>
    nonRetryable(ErrorType.UnsealKeysMissing, `the 1Password item ${ref} holds the wrong keys: ${detail}`);
  // A half-finished unseal (another attempt, an operator) would mix its shares with ours.
  await call('unseal reset', () => bao.unseal({ reset: true })).catch(() => undefined);
  for (const key of keys.slice(0, Math.max(threshold, 1))) {
    let r: { sealed?: boolean };
    try {
      r = (await bao.unseal({ key })) as { sealed?: boolean };
    } catch (err) {
      // OpenBao answers 400 for a bad share, at the latest when the threshold is reached (sys_seal.go).
      if (vaultStatus(err) === 400 && INVALID_UNSEAL_KEY.test(vaultErrors(err)))
        throw wrongKeys(`unseal answered HTTP 400: ${vaultErrors(err)}`);
      throw classifyVaultError(err, 'unseal');
    }
    if (r.sealed === false) return;
  }
  const h = (await bao.health({ sealedcode: 200, uninitcode: 200, standbycode: 200 })) as Health;
  if (h.sealed) throw wrongKeys('OpenBAO is still sealed after applying the stored unseal keys');
}

/**
 * A new KV v2 mount answers 400 "Upgrading from non-versioned to versioned data" until its storage
 * upgrade is done (OpenBao internal/builtin/logical/kv/upgrade.go). Wait here until it serves, so the
 * step after bootstrap never sees it; beyond this wait the failure stays retryable (NotReady).
 */
async function waitForKvMount(authed: VaultClient, mount: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await authed.read(`${mount}/config`);
      return;
    } catch (err) {
      const failure = classifyVaultError(err, `read ${mount}/config`);
      if (failure.type !== ErrorType.NotReady || Date.now() > deadline) throw failure;
      beat({ step: 'kv mount upgrading' });
      await sleep(100);
    }
  }
}

/**
 * A restarted OpenBAO pod comes back sealed (its master key lives only in memory): unseal it with the
 * keys kept in 1Password, as bootstrap does on a re-run. Returns whether it had to. Used after an
 * OnDelete restart deletes an OpenBAO pod (kube/restart.ts).
 */
export async function unsealIfSealed(deps: ActivityDeps, spec: ClusterSpec): Promise<boolean> {
  const bao = await deps.openbao(spec);
  const health = (await bao.health({ sealedcode: 200, uninitcode: 200, standbycode: 200 }).catch(() => undefined)) as
    Health | undefined;
  if (!health?.initialized || !health.sealed) return false;
  const op = await deps.onepassword(spec);
  const vaultId = await vaultIdByName(op, spec.onepassword.vault);
  const ref = `op://${spec.onepassword.vault}/${spec.openbao.unsealItem}`;
  const item = await findItem(op, vaultId, spec.openbao.unsealItem);
  const keys = Array.from(
    { length: spec.openbao.shares },
    (_, i) => item?.fields.find((f) => f.id === keyField(i) || f.title === keyField(i))?.value,
  ).filter((k): k is string => Boolean(k));
  if (keys.length < spec.openbao.threshold)
    throw nonRetryable(
      ErrorType.UnsealKeysMissing,
      `OpenBAO is sealed and 1Password item ${ref} holds ${keys.length} of ${spec.openbao.threshold} unseal keys`,
    );
  await unseal(bao, keys, spec.openbao.threshold, ref);
  deps.log.info({ cluster: spec.name }, 'OpenBAO unsealed after its pod restarted');
  return true;
}

/**
 * Unsealed, OpenBAO's pods pass their readiness probe (`bao status`) and become Ready: wait for that
 * here, so what follows (KV writes through the Service, a drill) sees a Ready StatefulSet. The pods of
 * the component in `openbao.namespace` that were allowed to be merely Running before the unseal.
 */
async function waitOpenBaoPodsReady(deps: ActivityDeps, spec: ClusterSpec, timeoutMs = 120_000): Promise<void> {
  const workloads = spec.components
    .filter((c) => c.namespace === spec.openbao.namespace)
    .flatMap((c) =>
      c.workloads.filter((w) => w.readyWhen === 'running').map((w) => ({ ...w, ns: w.namespace ?? c.namespace })),
    );
  // No kubeconfig: OpenBAO is not one of this cluster's components yet (bootstrap run on its own).
  if (workloads.length === 0 || !existsSync(kubeconfigPathFor(spec, deps.dataDir))) return;
  const kube = deps.kube(spec);
  const deadline = Date.now() + timeoutMs;
  for (const w of workloads) {
    for (;;) {
      const obj = await kube.read(WORKLOAD_API_VERSION[w.kind], w.kind, w.name, w.ns);
      if (!obj) break; // not deployed through its chart here
      const st = rolloutStatus(w.kind, obj);
      if (st.done) break;
      if (Date.now() > deadline)
        throw retryable(
          ErrorType.NotReady,
          `OpenBAO is unsealed but ${w.kind} ${w.ns}/${w.name} is not Ready: ${st.message}`,
        );
      beat({ step: 'waiting for OpenBAO pods to turn Ready', workload: `${w.kind}/${w.name}`, status: st.message });
      await sleep(500);
    }
  }
}

export function openbaoBootstrapActivities(deps: ActivityDeps) {
  return {
    async bootstrapOpenBao(input: { cluster: string }): Promise<BootstrapResult> {
      const spec: ClusterSpec = clusterOrFail(deps, input.cluster);
      // The path first: a finding that names what is missing (Service, endpoints, TLS) beats a timeout.
      beat({ step: 'preflight: path to OpenBAO' });
      const { bao, health } = await preflightOpenBaoPath(deps, spec);
      const op = await deps.onepassword(spec);
      const vaultId = await vaultIdByName(op, spec.onepassword.vault);
      const title = spec.openbao.unsealItem;
      const ref = `op://${spec.onepassword.vault}/${title}`;

      let initialized: BootstrapResult['initialized'] = 'before';
      let keys: string[];
      let rootToken: string;
      if (!health.initialized) {
        // A leftover item from an earlier cluster would be overwritten by nothing: refuse instead of guessing.
        if (await findItem(op, vaultId, title)) {
          throw nonRetryable(
            ErrorType.BadConfig,
            `OpenBAO is not initialised but 1Password item ${ref} already exists; move it aside before a fresh init`,
          );
        }
        beat({ step: 'init' });
        const init = (await call('init', () =>
          bao.init({ secret_shares: spec.openbao.shares, secret_threshold: spec.openbao.threshold }),
        )) as { keys: string[]; root_token: string };
        keys = init.keys;
        rootToken = init.root_token;
        const field = (id: string, value: string) => ({ id, title: id, fieldType: 'Concealed', value }) as never;
        beat({ step: 'storing unseal keys in 1Password' });
        await storeKeysPersistently(
          () =>
            op.items.create({
              category: 'Password' as never,
              vaultId,
              title,
              fields: [...keys.map((k, i) => field(keyField(i), k)), field(ROOT_FIELD, rootToken)],
              sections: [],
              tags: ['openbao', spec.name],
            }),
          deps.log,
        );
        initialized = 'now';
      } else {
        const item = await findItem(op, vaultId, title);
        const value = (id: string) => item?.fields.find((f) => f.id === id || f.title === id)?.value;
        rootToken = value(ROOT_FIELD) ?? '';
        keys = Array.from({ length: spec.openbao.shares }, (_, i) => value(keyField(i))).filter((k): k is string =>
          Boolean(k),
        );
        if (!item || !rootToken || keys.length < spec.openbao.threshold) {
          throw nonRetryable(
            ErrorType.UnsealKeysMissing,
            `OpenBAO is initialised but 1Password item ${ref} ${item ? `holds ${keys.length} of ${spec.openbao.threshold} needed unseal keys${rootToken ? '' : ' and no root token'}` : 'is missing'}; restore the item (never re-initialise) and retry`,
          );
        }
      }

      let unsealed: BootstrapResult['unsealed'] = 'before';
      if (initialized === 'now' || health.sealed) {
        beat({ step: 'unseal' });
        await unseal(bao, keys, spec.openbao.threshold, ref);
        unsealed = 'now';
      }

      beat({ step: 'kv mount' });
      const authed = await deps.openbao(spec, rootToken);
      const mounts = (await call('list mounts', () => authed.mounts())) as Record<string, unknown> & {
        data?: Record<string, unknown>;
      };
      const table = mounts.data ?? mounts;
      let kvMount: BootstrapResult['kvMount'] = 'present';
      if (!table[`${spec.openbao.kvMount}/`]) {
        await call(`enable kv-v2 at ${spec.openbao.kvMount}`, () =>
          authed.mount({ mount_point: spec.openbao.kvMount, type: 'kv', options: { version: '2' } }),
        );
        kvMount = 'enabled';
      }
      await waitForKvMount(authed, spec.openbao.kvMount);
      await waitOpenBaoPodsReady(deps, spec);
      return {
        initialized,
        unsealed,
        kvMount,
        unsealItemRef: ref,
        satisfied: initialized === 'before' && unsealed === 'before' && kvMount === 'present',
      };
    },
  };
}
