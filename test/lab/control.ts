// The lab's fault-injection and counters API: how a test, the demo or a person at a terminal breaks
// one edge of the lab (drop SSH, seal OpenBAO, rate-limit 1Password, ...) without importing the lab.
// Loopback only; JSON in and out; unknown node or route 404, bad body 400.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LabNode, LabNodes, NodeCounters, NodeFacts } from './nodes/index.js';
import type { OnePasswordCounters } from './onepassword/index.js';
import type { DriftFaults } from './drift-faults.js';

export interface LabCounters {
  nodes: Record<string, NodeCounters>;
  kube: { writes: Record<string, number>; restarts: Record<string, number> };
  openbao: { writes: number; reads: number; byPath: Record<string, number> };
  onepassword: OnePasswordCounters;
}

/** Thin methods over the pieces' own faults; the routes below map one to one onto these. */
export interface LabFaults {
  ssh: Omit<LabNodes['faults'], 'setFacts'>;
  setFacts(node: string, facts: Partial<NodeFacts>): Promise<void>;
  /** A new, empty machine replaces the node under its name, at a new address (nodes/index.ts replace). */
  replaceNode(node: string): Promise<LabNode>;
  helmcharts: {
    fail(name: string, message?: string): void;
    /** Only this chart version fails: "a chart whose new version fails" (a rollback succeeds). */
    failVersion(name: string, version: string, message?: string): void;
    stall(name: string): void;
  };
  /** Upgrades: a PDB that blocks every eviction of the pods, a node that is never Ready on a k3s version. */
  upgrade: {
    blockDrain(namespace: string, matchLabels: Record<string, string>): Promise<void>;
    nodeNotReadyOn(node: string, version: string | undefined): Promise<void>;
  };
  openbao: { seal(): void; standby(on: boolean): void; clear(): void };
  onepassword: { rateLimit(calls: number): void; expireAuth(): void; clear(): void };
  velero: {
    backupPartiallyFailed(name?: string): void;
    restoreFailed(name?: string, reason?: string): void;
    restoreSlow(ms: number): void;
    restoreItemError(item: string, message: string): void;
    /** A restore of this backup (without a name: the next restore) restores no volume data. */
    restoreWithoutVolumeData(backup?: string): void;
    bslUnavailable(name: string): Promise<void>;
  };
  rollouts: { stall(namespace: string, kind: string, name: string): void };
  /** Hand edits that make the cluster drift from its config (drift-faults.ts). */
  drift: DriftFaults;
  kube: {
    /** The kube-apiserver process stops (connections refused) until apiserverUp() or clear(). */
    apiserverDown(): Promise<void>;
    apiserverUp(): Promise<void>;
    /**
     * The control-plane node is lost: kine's database is deleted and every control-plane process stops;
     * on the server node k3s's files (/var/lib/rancher, /etc/rancher, the k3s binary and unit) are gone.
     * Only a restore from an off-node snapshot (recoverControlPlane) brings the cluster back.
     */
    destroyControlPlane(): Promise<void>;
    /** A validating admission webhook refuses CREATE/UPDATE of this resource (plural) with the message. */
    rejectWrites(resource: string, message: string): Promise<void>;
  };
  /** Every fault of every piece off. */
  clear(): Promise<void>;
}

export interface ControlTarget {
  nodeNames: string[];
  faults: LabFaults;
  counters(): LabCounters;
  resetCounters(): void;
}

export interface ControlServer {
  url: string;
  stop(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Body = Record<string, unknown>;
type Handler = (params: string[], body: Body) => unknown; // or a Promise of it

const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'CronJob'];
const FACT_KEYS = [
  'cpus',
  'memoryMiB',
  'diskGiB',
  'arch',
  'osRelease',
  'packages',
  'swap',
  'timeSynced',
  'busyPorts',
  'storageMounted',
];

function str(body: Body, key: string, opts: { optional?: boolean; pattern?: RegExp } = {}): string | undefined {
  const v = body[key];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new HttpError(400, `body.${key}: must be a non-empty string`);
  if (opts.pattern && !opts.pattern.test(v))
    throw new HttpError(400, `body.${key}: does not match ${opts.pattern.source}`);
  return v;
}

function int(body: Body, key: string, min: number, fallback?: number): number {
  const v = body[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new HttpError(400, `body.${key}: must be an integer >= ${min}`);
  return v;
}

function facts(body: Body): Partial<NodeFacts> {
  const f = body.facts;
  if (!f || typeof f !== 'object' || Array.isArray(f)) throw new HttpError(400, 'body.facts: must be an object');
  const unknown = Object.keys(f).filter((k) => !FACT_KEYS.includes(k));
  if (unknown.length > 0)
    throw new HttpError(400, `body.facts.${unknown[0]}: is not a known fact (${FACT_KEYS.join(', ')})`);
  return f;
}

/** Route table: [method, path pattern with :params, handler]. Kept as data so GET / can list it. */
function routes(t: ControlTarget): Array<[string, string, Handler]> {
  const node = (name: string) => {
    if (!t.nodeNames.includes(name))
      throw new HttpError(404, `unknown node "${name}" (nodes: ${t.nodeNames.join(', ')})`);
    return name;
  };
  const ok = { ok: true };
  return [
    ['GET', '/counters', () => t.counters()],
    ['POST', '/counters/reset', () => (t.resetCounters(), t.counters())],
    ['POST', '/faults/clear', async () => (await t.faults.clear(), ok)],
    ['POST', '/faults/ssh/:node/refuse', ([n]) => (t.faults.ssh.refuse(node(n)), ok)],
    // {n} drops the nth next command session instead of the live connections.
    [
      'POST',
      '/faults/ssh/:node/drop',
      ([n], b) => {
        if (b.n === undefined) t.faults.ssh.drop(node(n));
        else t.faults.ssh.dropAfter(node(n), int(b, 'n', 1));
        return ok;
      },
    ],
    ['POST', '/faults/ssh/:node/drop-after', ([n], b) => (t.faults.ssh.dropAfter(node(n), int(b, 'n', 1)), ok)],
    ['POST', '/faults/ssh/:node/slow', ([n], b) => (t.faults.ssh.slow(node(n), int(b, 'ms', 0)), ok)],
    [
      'POST',
      '/faults/ssh/:node/rotate-host-key',
      async ([n]) => ({ hostKey: await t.faults.ssh.rotateHostKey(node(n)) }),
    ],
    ['POST', '/faults/ssh/:node/restore-host-key', async ([n]) => (await t.faults.ssh.restoreHostKey(node(n)), ok)],
    ['POST', '/faults/ssh/:node/clear', ([n]) => (t.faults.ssh.clear(node(n)), ok)],
    [
      'POST',
      '/faults/nodes/:node/facts',
      async ([n], b) => {
        const name = node(n);
        const f = facts(b);
        // The nodes piece validates values (types, ranges); its refusal is the caller's bad input.
        await t.faults.setFacts(name, f).catch((e: unknown) => {
          throw new HttpError(400, e instanceof Error ? e.message : String(e));
        });
        return ok;
      },
    ],
    [
      'POST',
      '/faults/helmcharts/:name/fail',
      ([n], b) => (t.faults.helmcharts.fail(n, str(b, 'message', { optional: true })), ok),
    ],
    ['POST', '/faults/helmcharts/:name/stall', ([n]) => (t.faults.helmcharts.stall(n), ok)],
    ['POST', '/faults/openbao/seal', () => (t.faults.openbao.seal(), ok)],
    [
      'POST',
      '/faults/openbao/standby',
      (_p, b) => {
        if (b.on !== undefined && typeof b.on !== 'boolean') throw new HttpError(400, 'body.on: must be a boolean');
        t.faults.openbao.standby(b.on !== false);
        return ok;
      },
    ],
    ['POST', '/faults/openbao/clear', () => (t.faults.openbao.clear(), ok)],
    ['POST', '/faults/onepassword/rate-limit', (_p, b) => (t.faults.onepassword.rateLimit(int(b, 'calls', 1, 1)), ok)],
    ['POST', '/faults/onepassword/expire-auth', () => (t.faults.onepassword.expireAuth(), ok)],
    ['POST', '/faults/onepassword/clear', () => (t.faults.onepassword.clear(), ok)],
    [
      'POST',
      '/faults/velero/backups/partially-failed',
      (_p, b) => (t.faults.velero.backupPartiallyFailed(str(b, 'name', { optional: true, pattern: NAME })), ok),
    ],
    [
      'POST',
      '/faults/velero/restores/failed',
      (_p, b) => {
        t.faults.velero.restoreFailed(
          str(b, 'name', { optional: true, pattern: NAME }),
          str(b, 'reason', { optional: true }),
        );
        return ok;
      },
    ],
    [
      'POST',
      '/faults/velero/restores/without-volume-data',
      (_p, b) => (t.faults.velero.restoreWithoutVolumeData(str(b, 'backup', { optional: true, pattern: NAME })), ok),
    ],
    [
      'POST',
      '/faults/velero/backup-storage-locations/:name/unavailable',
      async ([n]) => (await t.faults.velero.bslUnavailable(n), ok),
    ],
    ['POST', '/faults/kube/apiserver/down', async () => (await t.faults.kube.apiserverDown(), ok)],
    ['POST', '/faults/kube/apiserver/up', async () => (await t.faults.kube.apiserverUp(), ok)],
    ['POST', '/faults/kube/control-plane/destroy', async () => (await t.faults.kube.destroyControlPlane(), ok)],
    [
      'POST',
      '/faults/nodes/:node/replace',
      async ([n]) => {
        const { name, host, port, hostKey, hostname, lanIp } = await t.faults.replaceNode(node(n));
        return { ok: true, node: { name, host, port, hostKey, hostname, lanIp } };
      },
    ],
    [
      'POST',
      '/faults/kube/reject-writes',
      async (_p, b) => (
        await t.faults.kube.rejectWrites(str(b, 'resource', { pattern: NAME })!, str(b, 'message')!),
        ok
      ),
    ],
    [
      'POST',
      '/faults/drift/helmcharts/:name/edit',
      async ([n], b) => {
        if (!b.spec || typeof b.spec !== 'object' || Array.isArray(b.spec))
          throw new HttpError(400, 'body.spec: must be an object (the HelmChart spec fields to change)');
        await t.faults.drift.editHelmChart(n, b.spec as Record<string, unknown>);
        return ok;
      },
    ],
    [
      'POST',
      '/faults/drift/nodes/:node/k3s-config',
      async ([n], b) => {
        await t.faults.drift.editNodeFile(
          node(n),
          str(b, 'line')!,
          str(b, 'path', { optional: true, pattern: /^\/etc\/rancher\/k3s\/[a-z.]+$/ }),
        );
        return ok;
      },
    ],
    ['POST', '/faults/drift/nodes/:node/stop-k3s', async ([n]) => (await t.faults.drift.stopK3s(node(n)), ok)],
    [
      'POST',
      '/faults/drift/secrets/:namespace/:name/edit',
      async ([ns, n], b) => (await t.faults.drift.editSecret(ns, n, str(b, 'key')!), ok),
    ],
    [
      'POST',
      '/faults/rollouts/stall',
      (_p, b) => {
        const kind = str(b, 'kind')!;
        if (!WORKLOAD_KINDS.includes(kind))
          throw new HttpError(400, `body.kind: must be one of ${WORKLOAD_KINDS.join(', ')}`);
        t.faults.rollouts.stall(str(b, 'namespace', { pattern: NAME })!, kind, str(b, 'name', { pattern: NAME })!);
        return ok;
      },
    ],
  ];
}

function match(pattern: string, path: string): string[] | undefined {
  const p = pattern.split('/');
  const s = path.split('/');
  if (p.length !== s.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) {
      if (!s[i]) return undefined;
      params.push(decodeURIComponent(s[i]));
    } else if (p[i] !== s[i]) return undefined;
  }
  return params;
}

async function readBody(req: IncomingMessage): Promise<Body> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 64 * 1024) throw new HttpError(413, 'body too large');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'body: is not valid JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new HttpError(400, 'body: must be a JSON object');
  return parsed as Body;
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

export async function startControlServer(opts: {
  host: string;
  port?: number;
  target: ControlTarget;
}): Promise<ControlServer> {
  const table = routes(opts.target);
  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://lab').pathname.replace(/\/+$/, '') || '/';
      if (req.method === 'GET' && path === '/') {
        return send(res, 200, {
          endpoints: [['GET', '/'], ...table.map(([m, p]) => [m, p])].map(([m, p]) => `${m} ${p}`),
        });
      }
      const hits = table.map(([m, p, h]) => ({ m, h, params: match(p, path) })).filter((r) => r.params);
      const hit = hits.find((r) => r.m === req.method);
      if (!hit) {
        if (hits.length > 0) return send(res, 405, { error: `${req.method} not allowed on ${path}` });
        return send(res, 404, { error: `no route ${req.method} ${path}; GET / lists the endpoints` });
      }
      const body = await readBody(req);
      send(res, 200, (await hit.h(hit.params!, body)) ?? { ok: true });
    })().catch((err: unknown) => {
      if (err instanceof HttpError) return send(res, err.status, { error: err.message });
      send(res, 500, { error: err instanceof Error ? err.message : String(err) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
