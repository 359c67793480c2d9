// The 1Password port: the subset of @1password/sdk's Client the orchestrator uses, so the real SDK
// and the lab double are interchangeable. The lab client is chosen only when the cluster config
// names a lab URL explicitly — never as a silent fallback when the token is missing.
import {
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
    })();
    client.catch(() => cache.delete(key));
    cache.set(key, client);
  }
  return client;
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
