// The 1Password double's HTTP side. Each SDK call is one POST /rpc/<method> with {args}; errors
// travel as {error: {name, message}} so the client can rethrow the SDK's own error classes.
// Writes to one vault take a little time and a second write meanwhile gets the SDK's conflict,
// because that is how the real service behaves (the vault version is locked per write).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { CONFLICT_MESSAGE, OpError, VaultStore, resolveErrorMessage } from './store.js';
import type { StoredItem } from './fixture.js';
import { scalarText } from '../lab-util.js';

export interface OnePasswordCounters {
  resolveAll: number;
  resolve: number;
  itemsGet: number;
  itemsPut: number;
  itemsList: number;
  vaultsList: number;
  itemsCreate: number;
  itemsDelete: number;
}
export interface OnePasswordDouble {
  url: string;
  faults: {
    /** The next `nextCalls` calls (any method) throw RateLimitExceededError. */
    rateLimit(nextCalls: number): void;
    /**
     * Expires every session opened so far: their calls throw AuthExpiredError until clear(). A client
     * created afterwards opens a new session and works, as with the SDK (see client.ts).
     */
    expireAuth(): void;
    clear(): void;
  };
  /** Calls received per method, including ones a fault rejected. */
  counters(): OnePasswordCounters;
  stop(): Promise<void>;
}
export interface OnePasswordDoubleOptions {
  host: string;
  port?: number;
  fixturePath: string;
  statePath: string;
  /** How long a write holds its vault; concurrent writes to that vault conflict meanwhile. */
  writeHoldMs?: number;
}

const COUNTER_OF: Record<string, keyof OnePasswordCounters> = {
  'secrets.resolve': 'resolve',
  'secrets.resolveAll': 'resolveAll',
  'items.get': 'itemsGet',
  'items.put': 'itemsPut',
  'items.list': 'itemsList',
  'vaults.list': 'vaultsList',
  'items.create': 'itemsCreate',
  'items.delete': 'itemsDelete',
};
const MAX_BODY = 8 * 1024 * 1024;

export async function startOnePasswordDouble(opts: OnePasswordDoubleOptions): Promise<OnePasswordDouble> {
  const store = VaultStore.open(opts.fixturePath, opts.statePath);
  const holdMs = opts.writeHoldMs ?? 25;
  const busyVaults = new Set<string>();
  const counters: OnePasswordCounters = {
    resolveAll: 0,
    resolve: 0,
    itemsGet: 0,
    itemsPut: 0,
    itemsList: 0,
    vaultsList: 0,
    itemsCreate: 0,
    itemsDelete: 0,
  };
  let rateLimited = 0;
  // Sessions: each client opens one (POST /session, like the SDK's init_client with a service-account
  // token); expireAuth() expires the ones that exist, and only a new client gets a fresh one.
  const sessions = new Map<string, { expired: boolean }>();

  async function vaultWrite<T>(vaultId: string, write: () => T): Promise<T> {
    if (busyVaults.has(vaultId)) throw new OpError(CONFLICT_MESSAGE, 'Error', 409);
    busyVaults.add(vaultId);
    try {
      await new Promise((r) => setTimeout(r, holdMs));
      return write();
    } finally {
      busyVaults.delete(vaultId);
    }
  }

  async function call(method: string, args: unknown[]): Promise<unknown> {
    const a = (i: number): string => scalarText(args[i]);
    switch (method) {
      case 'secrets.resolve': {
        const r = store.resolve(a(0));
        if (r.error) throw new OpError(resolveErrorMessage(r.error));
        return r.content!.secret;
      }
      case 'secrets.resolveAll': {
        const refs = Array.isArray(args[0]) ? (args[0] as unknown[]).map(String) : [];
        return { individualResponses: Object.fromEntries(refs.map((ref) => [ref, store.resolve(ref)])) };
      }
      case 'items.get':
        return store.getItem(a(0), a(1));
      case 'items.list': {
        const filters = args.slice(1) as { type?: string; content?: { archived?: boolean } }[];
        return store.listItems(
          a(0),
          filters.some((f) => f?.type === 'ByState' && f.content?.archived),
        );
      }
      case 'vaults.list':
        return store.vaultOverviews();
      case 'items.put': {
        const item = args[0] as StoredItem;
        return vaultWrite(String(item?.vaultId ?? ''), () => store.putItem(item));
      }
      case 'items.create': {
        const params = (args[0] ?? {}) as Partial<StoredItem>;
        return vaultWrite(String(params.vaultId ?? ''), () => store.createItem(params));
      }
      case 'items.delete':
        return vaultWrite(a(0), () => store.deleteItem(a(0), a(1)));
      default:
        throw new OpError(`unknown method ${method}`, 'Error', 404);
    }
  }

  async function respond(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'POST' && req.url === '/session') {
      const id = randomUUID();
      sessions.set(id, { expired: false });
      return send(200, { result: { session: id } });
    }
    const match = /^\/rpc\/([a-zA-Z.]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !match) return send(404, { error: { name: 'Error', message: 'not found' } });
    const method = match[1];
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) return send(413, { error: { name: 'Error', message: 'message size exceeds the limit' } });
      chunks.push(chunk as Buffer);
    }
    const counter = COUNTER_OF[method];
    if (counter) counters[counter]++;
    try {
      const session = sessions.get(String(req.headers['x-op-session'] ?? ''));
      if (!session || session.expired) throw new OpError('session expired', 'AuthExpired', 401);
      if (rateLimited > 0) {
        rateLimited--;
        throw new OpError('rate limit exceeded', 'RateLimitExceeded', 429);
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { args?: unknown[] };
      send(200, { result: (await call(method, Array.isArray(body.args) ? body.args : [])) ?? null });
    } catch (e) {
      const err =
        e instanceof OpError
          ? e
          : new OpError(e instanceof SyntaxError ? 'bad request body' : 'internal error', 'Error', 500);
      send(err.status, { error: { name: err.sdkName, message: err.message } });
    }
  }

  const server = http.createServer((req, res) => void respond(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  return {
    url: `http://${host}:${port}`,
    faults: {
      rateLimit(nextCalls) {
        rateLimited = Math.max(0, Math.floor(nextCalls));
      },
      expireAuth() {
        for (const s of sessions.values()) s.expired = true;
      },
      clear() {
        rateLimited = 0;
        for (const s of sessions.values()) s.expired = false;
      },
    },
    counters: () => ({ ...counters }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
