// The 1Password port: the subset of @1password/sdk's Client the orchestrator uses, so the real SDK
// and the lab double are interchangeable. The lab client is chosen only when the cluster config
// names a lab URL explicitly — never as a silent fallback when the token is missing.
import {
  AuthExpiredError,
  createClient,
  type ItemCreateParams,
  type Item,
  type ItemOverview,
  type ResolveAllResponse,
  type VaultOverview,
} from '@1password/sdk';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';

export interface OnePasswordPort {
  secrets: {
    resolve(ref: string): Promise<string>;
    resolveAll(refs: string[]): Promise<ResolveAllResponse>;
  };
  items: {
    get(vaultId: string, itemId: string): Promise<Item>;
    put(item: Item): Promise<Item>;
    create(params: ItemCreateParams): Promise<Item>;
    list(vaultId: string): Promise<ItemOverview[]>;
  };
  vaults: {
    list(): Promise<VaultOverview[]>;
  };
}

const INTEGRATION = { integrationName: 'pedro-ops-orchestrator', integrationVersion: '0.1.0' };
const cache = new Map<string, Promise<OnePasswordPort>>();

export function onePasswordForCluster(
  spec: ClusterSpec,
  env: NodeJS.ProcessEnv = process.env,
): Promise<OnePasswordPort> {
  const labUrl = spec.onepassword.labUrl;
  const key = labUrl ? `lab:${labUrl}` : `sdk:${spec.onepassword.tokenEnv}`;
  let client = cache.get(key);
  if (!client) {
    client = (async (): Promise<OnePasswordPort> => {
      if (labUrl) {
        const { createLabOnePasswordClient } = await import('../../test/lab/onepassword/client.js');
        return createLabOnePasswordClient(labUrl);
      }
      const token = env[spec.onepassword.tokenEnv];
      if (!token)
        throw nonRetryable(
          ErrorType.BadConfig,
          `1Password service-account token missing: set ${spec.onepassword.tokenEnv}`,
        );
      return await createClient({ auth: token, ...INTEGRATION });
    })().then((c) => dropOnAuthExpiry(c, () => cache.get(key) === client && cache.delete(key)));
    client.catch(() => cache.delete(key));
    cache.set(key, client);
  }
  return client;
}

/**
 * @1password/sdk 0.5 re-initialises its session only for desktop sessions (dist/core.js,
 * InnerClient.invoke retries on DesktopSessionExpiredError alone): a service-account client whose
 * session expired throws AuthExpiredError on every call from then on. So the first AuthExpiredError
 * drops the cached client; the failure stays retryable and the next attempt builds a new client.
 */
function dropOnAuthExpiry(client: OnePasswordPort, drop: () => void): OnePasswordPort {
  const wrap = <T extends object>(group: T): T =>
    new Proxy(group, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return async (...args: unknown[]) => {
          try {
            return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            if (err instanceof AuthExpiredError) drop();
            throw err;
          }
        };
      },
    });
  return { secrets: wrap(client.secrets), items: wrap(client.items), vaults: wrap(client.vaults) };
}

/** Vault and item ids by name (the SDK's items API takes ids, references take names). */
export async function vaultIdByName(op: OnePasswordPort, name: string): Promise<string> {
  const vaults = await op.vaults.list();
  const v = vaults.find((x) => x.title.toLowerCase() === name.toLowerCase() || x.id === name);
  if (!v)
    throw nonRetryable(
      ErrorType.NotFound,
      `1Password vault "${name}" not found or not shared with the service account`,
    );
  return v.id;
}
