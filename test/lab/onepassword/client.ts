// A client for the lab's 1Password double with the shape of @1password/sdk 0.5's Client for the
// calls this project makes. It uses the SDK's own JSON reviver/replacer (Dates) and throwError()
// (RateLimitExceededError, AuthExpiredError...), so callers cannot tell it from the real client by
// types, values or error classes. It never logs: values pass through it.
import { ReplacerFunc, ReviverFunc, throwError } from '@1password/sdk';
import type {
  Client,
  Item,
  ItemCreateParams,
  ItemListFilter,
  ItemOverview,
  ResolveAllResponse,
  VaultOverview,
} from '@1password/sdk';

export interface LabOnePasswordClient {
  secrets: Pick<Client['secrets'], 'resolve' | 'resolveAll'>;
  items: Pick<Client['items'], 'get' | 'put' | 'create' | 'list' | 'delete'>;
  vaults: Pick<Client['vaults'], 'list'>;
}

// Like the SDK's client, each client holds one session, opened on first use (the SDK opens it in
// createClient: client_builder.js initClient). @1password/sdk 0.5 core.js InnerClient.invoke
// re-initialises only on DesktopSessionExpiredError: a service-account client whose session expired
// keeps throwing AuthExpiredError, and only a new client recovers.
export function createLabOnePasswordClient(url: string): LabOnePasswordClient {
  const base = url.replace(/\/+$/, '');
  let session: Promise<string> | undefined;
  const open = async (): Promise<string> => {
    const res = await fetch(`${base}/session`, { method: 'POST' });
    if (!res.ok) throw new Error(`1Password lab double refused a session: HTTP ${res.status}`);
    return ((await res.json()) as { result: { session: string } }).result.session;
  };

  async function call<T>(method: string, args: unknown[]): Promise<T> {
    session ??= open();
    session.catch(() => (session = undefined));
    const res = await fetch(`${base}/rpc/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-op-session': await session },
      body: JSON.stringify({ args }, ReplacerFunc),
    });
    const text = await res.text();
    let parsed: { result?: T; error?: { name?: string; message?: string } };
    try {
      parsed = JSON.parse(text, ReviverFunc) as typeof parsed;
    } catch {
      throw new Error(`1Password lab double answered HTTP ${res.status} without a JSON body`);
    }
    if (!res.ok || parsed.error) {
      // The SDK's own mapping from {name, message} to its error classes.
      throwError(
        JSON.stringify({ name: parsed.error?.name ?? 'Error', message: parsed.error?.message ?? `HTTP ${res.status}` }),
      );
    }
    return (parsed.result ?? undefined) as T;
  }

  return {
    secrets: {
      resolve: (secretReference: string) => call<string>('secrets.resolve', [secretReference]),
      resolveAll: (secretReferences: string[]) => call<ResolveAllResponse>('secrets.resolveAll', [secretReferences]),
    },
    items: {
      get: (vaultId: string, itemId: string) => call<Item>('items.get', [vaultId, itemId]),
      put: (item: Item) => call<Item>('items.put', [item]),
      create: (params: ItemCreateParams) => call<Item>('items.create', [params]),
      list: (vaultId: string, ...filters: ItemListFilter[]) =>
        call<ItemOverview[]>('items.list', [vaultId, ...filters]),
      delete: async (vaultId: string, itemId: string) => {
        await call<null>('items.delete', [vaultId, itemId]);
      },
    },
    vaults: {
      list: () => call<VaultOverview[]>('vaults.list', []),
    },
  };
}
