// The lab's OpenBAO: its HTTP API as node-vault 0.12 uses it (sys/health, init, unseal, seal-status,
// mounts, KV v1/v2), with OpenBAO's status codes and error bodies. State lives in memory only; the
// lab process owns it and the worker reaches it over loopback HTTP.
import { recordSecrets } from './audit.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { listenRaw, type RawRequest, type RawResponse } from './openbao/http.js';
import { envelope, KvV1, KvV2, unsupported, type KvResult } from './openbao/kv.js';
import { scalarText } from './lab-util.js';

export interface OpenBaoDouble {
  url: string;
  /** Same as PUT /sys/init (for the built state): the vault is initialised and sealed afterwards. */
  initialize(shares: number, threshold: number): { keys: string[]; rootToken: string };
  /** Lab helper: submit `threshold` of the keys from initialize()/sys/init, as an operator would. */
  unsealAll(): void;
  /** Lab helper: mount a KV engine (v2 unless told otherwise), like POST /sys/mounts/<mount>. */
  enableKv(mount?: string, version?: 1 | 2): void;
  faults: {
    /** Seal now; reads and writes answer 503 until `threshold` unseal keys are submitted again. */
    seal(): void;
    /** Health reports standby (429); requests are still served, as OpenBAO forwards them to the active node. */
    standby(on: boolean): void;
    /** Standby off, and a vault sealed by faults.seal() is unsealed again. */
    clear(): void;
  };
  /**
   * reads: KV reads/lists; writes: successful KV data + metadata mutations; byPath: "<op>:<mount>/<path>",
   * plus "unsealed:sys/unseal", one per sealed → unsealed transition.
   */
  counters(): { writes: number; reads: number; byPath: Record<string, number> };
  stop(): Promise<void>;
}

interface Mount {
  type: string;
  version: 1 | 2;
  engine: KvV1 | KvV2;
  accessor: string;
  uuid: string;
  description: string;
  /** Until then the mount answers as a KV v2 mount does while it upgrades (see mount()). */
  upgradingUntil: number;
}

const VERSION = '2.1.0';
const SYSTEM_MOUNTS = ['cubbyhole/', 'identity/', 'sys/'];

/** How long a KV v2 mount enabled over HTTP answers "Upgrading from non-versioned to versioned data". */
export const KV_UPGRADE_MS = 300;
const KV_UPGRADING =
  'Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service shortly.';

export async function startOpenBaoDouble(opts: {
  host: string;
  port?: number;
  kvUpgradeMs?: number;
}): Promise<OpenBaoDouble> {
  const clusterName = `openbao-cluster-${randomBytes(4).toString('hex')}`;
  const clusterId = randomUUID();
  let initialized = false;
  let sealed = true;
  let standby = false;
  let sealedByFault = false;
  let shares = 0;
  let threshold = 0;
  let keys: Buffer[] = [];
  let rootToken = '';
  let progress: Buffer[] = [];
  let nonce = '';
  const mounts = new Map<string, Mount>();
  const counters = { writes: 0, reads: 0, byPath: {} as Record<string, number> };

  const err = (status: number, ...errors: string[]): RawResponse => ({ status, body: { errors } });

  function init(secretShares: number, secretThreshold: number): { keys: string[]; rootToken: string } {
    keys = Array.from({ length: secretShares }, () => randomBytes(33));
    rootToken = `s.${randomBytes(18).toString('base64url')}`;
    shares = secretShares;
    threshold = secretThreshold;
    initialized = true;
    sealed = true;
    progress = [];
    recordSecrets([...keys.map((k) => k.toString('hex')), ...keys.map((k) => k.toString('base64')), rootToken]);
    return { keys: keys.map((k) => k.toString('hex')), rootToken };
  }

  function sealStatus(): Record<string, unknown> {
    return {
      type: 'shamir',
      initialized,
      sealed,
      t: threshold,
      n: shares,
      progress: progress.length,
      nonce,
      version: VERSION,
      build_date: '2024-12-01T00:00:00Z',
      migration: false,
      recovery_seal: false,
      storage_type: 'raft',
      ...(initialized && !sealed ? { cluster_name: clusterName, cluster_id: clusterId } : {}),
    };
  }

  // OpenBao internal/http/sys_seal.go handleSysUnseal: ErrInvalidKey and barrier-key errors answer 400,
  // only other failures 500. internal/vault/seal_manager.go: a share under the minimum length is
  // "key is shorter than minimum 16 bytes"; bad shares are noticed only when the threshold is reached,
  // as "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: …" (the
  // message observed against OpenBao 2.6.2, REFERENCE.md), and the unseal progress is reset.
  function submitKey(raw: string): RawResponse {
    const key = decodeKey(raw);
    if (!key) return err(400, "'key' must be a valid hex or base64 string");
    if (!sealed) return { status: 200, body: sealStatus() };
    if (key.length < 16) return err(400, 'invalid key: key is shorter than minimum 16 bytes');
    if (progress.length === 0) nonce = randomUUID();
    if (!progress.some((p) => p.equals(key))) progress.push(key);
    if (progress.length < threshold) return { status: 200, body: sealStatus() };
    const valid = progress.every((p) => keys.some((k) => k.equals(p)));
    progress = [];
    nonce = '';
    if (!valid)
      return err(
        400,
        'unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: cipher: message authentication failed',
      );
    sealed = false;
    sealedByFault = false;
    bump('unsealed:sys/unseal'); // one count per sealed → unsealed transition, whoever submitted the keys
    return { status: 200, body: sealStatus() };
  }

  function health(query: URLSearchParams): RawResponse {
    const code = (name: string, fallback: number): number => Number(query.get(name) ?? fallback) || fallback;
    let status: number;
    if (!initialized) status = code('uninitcode', 501);
    else if (sealed) status = code('sealedcode', 503);
    else if (standby && !['true', '1'].includes(query.get('standbyok') ?? '')) status = code('standbycode', 429);
    else status = code('activecode', 200);
    const body = {
      initialized,
      sealed,
      standby: sealed || standby,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(Date.now() / 1000),
      version: VERSION,
      ...(initialized ? { cluster_name: clusterName, cluster_id: clusterId } : {}),
    };
    return { status, body };
  }

  function mountView(m: Mount): Record<string, unknown> {
    return {
      type: m.type,
      description: m.description,
      accessor: m.accessor,
      uuid: m.uuid,
      config: { default_lease_ttl: 0, max_lease_ttl: 0, force_no_cache: false },
      options: m.type === 'kv' ? { version: String(m.version) } : null,
      local: false,
      seal_wrap: false,
      external_entropy_access: false,
      plugin_version: '',
    };
  }

  function listMounts(): RawResponse {
    const table: Record<string, unknown> = {};
    for (const name of SYSTEM_MOUNTS) {
      table[name] = mountView({
        type: name.slice(0, -1),
        version: 1,
        engine: new KvV1(),
        accessor: `${name.slice(0, -1)}_lab`,
        uuid: name,
        description: '',
        upgradingUntil: 0,
      });
    }
    for (const [name, m] of mounts) table[name] = mountView(m);
    return { status: 200, body: { ...table, ...envelope(table) } };
  }

  // OpenBao internal/builtin/logical/kv/upgrade.go upgradeCheck: a KV v2 mount upgrades its storage in
  // the background after it is enabled, and meanwhile every request (after a 15 ms grace sleep)
  // answers 400 (logical.ErrInvalidRequest) "Upgrading from non-versioned to versioned data. …".
  function mount(
    path: string,
    body: Record<string, unknown>,
    upgradeMs = opts.kvUpgradeMs ?? KV_UPGRADE_MS,
  ): RawResponse {
    const name = `${path.replace(/^\/+|\/+$/g, '')}/`;
    if (name === '/') return err(400, 'missing mount path');
    const clash = [...SYSTEM_MOUNTS, ...mounts.keys()].find((m) => name.startsWith(m) || m.startsWith(name));
    if (clash) return err(400, `path is already in use at ${clash}`);
    const type = scalarText(body.type);
    const options = (body.options ?? {}) as Record<string, unknown>;
    if (type !== 'kv' && type !== 'kv-v2') return err(400, `plugin not found in the catalog: ${type}`);
    const version: 1 | 2 = type === 'kv-v2' || scalarText(options.version, '1') === '2' ? 2 : 1;
    mounts.set(name, {
      type: 'kv',
      version,
      engine: version === 2 ? new KvV2() : new KvV1(),
      accessor: `kv_${randomBytes(4).toString('hex')}`,
      uuid: randomUUID(),
      description: scalarText(body.description),
      upgradingUntil: version === 2 ? Date.now() + upgradeMs : 0,
    });
    bump(`write:sys/mounts/${name}`);
    return { status: 204 };
  }

  function bump(key: string): void {
    counters.byPath[key] = (counters.byPath[key] ?? 0) + 1;
  }

  function count(name: string, sub: string, res: KvResult): void {
    if (!res.op) return;
    if (res.op === 'read' || res.op === 'list') counters.reads++;
    else if (res.status < 300) counters.writes++;
    else return;
    bump(`${res.op}:${name}${sub}`);
  }

  function handle(req: RawRequest): RawResponse {
    if (!req.path.startsWith('/v1/')) return err(404);
    const path = req.path.slice(4);
    let body: Record<string, unknown> = {};
    if (req.body.length) {
      try {
        const parsed: unknown = JSON.parse(req.body.toString('utf8'));
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
      } catch (e) {
        return err(400, `failed to parse JSON input: ${(e as Error).message}`);
      }
    }
    const write = req.method === 'PUT' || req.method === 'POST';

    // Unauthenticated sys endpoints answer whatever the seal state is.
    if (path === 'sys/health' && (req.method === 'GET' || req.method === 'HEAD')) return health(req.query);
    if (path === 'sys/seal-status' && req.method === 'GET') return { status: 200, body: sealStatus() };
    if (path === 'sys/leader' && req.method === 'GET') {
      return {
        status: 200,
        body: { ha_enabled: true, is_self: initialized && !sealed && !standby, leader_address: `http://${opts.host}` },
      };
    }
    if (path === 'sys/init') {
      if (req.method === 'GET') return { status: 200, body: { initialized } };
      if (!write) return err(405);
      bump('write:sys/init'); // every init attempt counts, refused ones too: "never re-init" tests read it
      if (initialized) return err(400, 'Vault is already initialized');
      const n = Number(body.secret_shares);
      const t = Number(body.secret_threshold);
      if (!Number.isInteger(n) || n < 1) return err(400, 'invalid seal configuration: shares must be at least one');
      if (!Number.isInteger(t) || t < 1) return err(400, 'invalid seal configuration: threshold must be at least one');
      if (t > n) return err(400, 'invalid seal configuration: threshold must not be greater than shares');
      if (n > 1 && t === 1)
        return err(400, 'invalid seal configuration: threshold must be greater than one for multiple shares');
      const out = init(n, t);
      return {
        status: 200,
        body: { keys: out.keys, keys_base64: keys.map((k) => k.toString('base64')), root_token: out.rootToken },
      };
    }
    if (path === 'sys/unseal') {
      if (!write) return err(405);
      if (!initialized) return err(400, 'Vault is not initialized');
      if (body.reset === true) {
        if (!sealed) return err(400, 'vault is unsealed');
        progress = [];
        nonce = '';
        return { status: 200, body: sealStatus() };
      }
      if (typeof body.key !== 'string' || !body.key)
        return err(400, "'key' must be specified in request body as JSON, or 'reset' set to true");
      return submitKey(body.key);
    }

    if (!initialized || sealed) return err(503, 'Vault is sealed');
    const token = req.headers['x-vault-token'] ?? req.headers.authorization?.replace(/^Bearer\s+/i, '');
    if (!token || token !== rootToken) return err(403, 'permission denied');

    if (path === 'sys/seal' && write) {
      sealed = true;
      return { status: 204 };
    }
    if (path === 'sys/mounts' && req.method === 'GET') return listMounts();
    if (path.startsWith('sys/mounts/')) {
      const name = `${path.slice('sys/mounts/'.length).replace(/\/+$/, '')}/`;
      if (write) return mount(name, body);
      if (req.method === 'DELETE') {
        mounts.delete(name);
        return { status: 204 };
      }
      const m = mounts.get(name);
      return m ? { status: 200, body: envelope(mountView(m)) } : err(400, `No secret engine mount at ${name}`);
    }
    if (path === 'auth/token/lookup-self' && req.method === 'GET') {
      return {
        status: 200,
        body: envelope({
          id: rootToken,
          policies: ['root'],
          ttl: 0,
          renewable: false,
          display_name: 'root',
          path: 'auth/token/root',
        }),
      };
    }

    const name = [...mounts.keys()].filter((m) => `${path}/`.startsWith(m)).sort((a, b) => b.length - a.length)[0];
    if (!name) return unsupported(path);
    const sub = path.slice(name.length);
    const m = mounts.get(name)!;
    if (m.upgradingUntil > Date.now() + 15) return err(400, KV_UPGRADING);
    const res = m.engine.handle({
      method: req.method,
      path: sub,
      query: req.query,
      contentType: req.headers['content-type'] ?? '',
      body,
    });
    count(name, sub, res);
    return {
      status: res.status,
      body:
        res.body && typeof res.body === 'object' && 'request_id' in res.body
          ? { ...res.body, mount_type: 'kv' }
          : res.body,
    };
  }

  const server = await listenRaw(opts.host, opts.port ?? 0, handle);
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  return {
    url: `http://${host}:${server.port}`,
    initialize(n, t) {
      if (initialized) throw new Error('Vault is already initialized');
      if (!(Number.isInteger(n) && Number.isInteger(t) && t >= 1 && t <= n))
        throw new Error('invalid seal configuration');
      return init(n, t);
    },
    unsealAll() {
      if (!initialized) throw new Error('Vault is not initialized');
      progress = [];
      for (const k of keys.slice(0, threshold)) submitKey(k.toString('hex'));
    },
    enableKv(mountPath = 'secret', version = 2) {
      if (!initialized || sealed) throw new Error('Vault is sealed');
      // The built state's mount was enabled long ago: its upgrade is over.
      const res = mount(mountPath, { type: 'kv', options: { version: String(version) } }, 0);
      if (res.status >= 300) throw new Error((res.body as { errors: string[] }).errors[0]);
    },
    faults: {
      seal() {
        if (!initialized || sealed) return;
        sealed = true;
        sealedByFault = true;
        progress = [];
        nonce = '';
      },
      standby(on) {
        standby = on;
      },
      clear() {
        standby = false;
        if (sealedByFault && sealed) {
          sealed = false;
          progress = [];
        }
        sealedByFault = false;
      },
    },
    counters: () => ({ writes: counters.writes, reads: counters.reads, byPath: { ...counters.byPath } }),
    stop: () => server.close(),
  };
}

function decodeKey(raw: string): Buffer | undefined {
  const s = raw.trim();
  if (/^[0-9a-fA-F]+$/.test(s) && s.length % 2 === 0) return Buffer.from(s, 'hex');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return Buffer.from(s, 'base64');
  return undefined;
}
