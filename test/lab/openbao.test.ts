// The OpenBAO double driven by the real node-vault 0.12 client, the way the activities drive OpenBAO.
import net from 'node:net';
import nodeVault from 'node-vault';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOpenBaoDouble, type OpenBaoDouble } from './openbao.js';

interface ApiError {
  message: string;
  response: { statusCode: number; body: { errors?: string[] } };
}
async function rejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    return e as ApiError;
  }
  throw new Error('expected the call to be rejected');
}

describe('OpenBAO double with node-vault', () => {
  let bao: OpenBaoDouble;
  let vault: ReturnType<typeof nodeVault>;
  let keys: string[] = [];
  let rootToken = '';

  beforeAll(async () => {
    bao = await startOpenBaoDouble({ host: '127.0.0.1' });
    vault = nodeVault({ endpoint: bao.url });
  });
  afterAll(async () => {
    await bao.stop();
  });

  it('reports 501 before init and refuses KV access while uninitialised', async () => {
    expect(await vault.health()).toMatchObject({ initialized: false, sealed: true });
    const raw = await fetch(`${bao.url}/v1/sys/health`);
    expect(raw.status).toBe(501);
    const e = await rejection(vault.read('secret/data/x'));
    expect(e.response.statusCode).toBe(503);
    expect(e.message).toBe('Vault is sealed');
  });

  it('validates the seal configuration', async () => {
    const e = await rejection(vault.init({ secret_shares: 2, secret_threshold: 3 }));
    expect(e.response.statusCode).toBe(400);
    expect(e.message).toMatch(/threshold must not be greater than shares/);
  });

  it('initialises with 5 shares / threshold 3 and refuses a second init', async () => {
    const out = await vault.init({ secret_shares: 5, secret_threshold: 3 });
    expect(out.keys).toHaveLength(5);
    expect(out.keys_base64).toHaveLength(5);
    expect(new Set(out.keys).size).toBe(5);
    expect(out.root_token).toMatch(/^s\./);
    keys = out.keys;
    rootToken = out.root_token;
    const again = await rejection(vault.init({ secret_shares: 5, secret_threshold: 3 }));
    expect(again.response.statusCode).toBe(400);
    expect(again.message).toBe('Vault is already initialized');
    expect(() => bao.initialize(5, 3)).toThrow(/already initialized/);
  });

  it('stays sealed (503) until three distinct keys are submitted', async () => {
    expect((await fetch(`${bao.url}/v1/sys/health`)).status).toBe(503);
    expect(await vault.status()).toMatchObject({ sealed: true, t: 3, n: 5, progress: 0 });
    let s = await vault.unseal({ key: keys[0] });
    expect(s).toMatchObject({ sealed: true, progress: 1 });
    s = await vault.unseal({ key: keys[0] }); // a repeated share does not count twice
    expect(s.progress).toBe(1);
    s = await vault.unseal({ reset: true });
    expect(s.progress).toBe(0);
    await vault.unseal({ key: keys[1] });
    await vault.unseal({ key: Buffer.from(keys[2], 'hex').toString('base64') }); // base64 form accepted
    s = await vault.unseal({ key: keys[3] });
    expect(s).toMatchObject({ sealed: false, progress: 0, t: 3, n: 5 });
    expect(await vault.health()).toMatchObject({ initialized: true, sealed: false, standby: false });
    expect((await fetch(`${bao.url}/v1/sys/health`)).status).toBe(200);
  });

  it('denies requests without the root token', async () => {
    const e = await rejection(vault.mounts());
    expect(e.response.statusCode).toBe(403);
    expect(e.response.body.errors).toEqual(['permission denied']);
    vault.token = 'bogus-token';
    expect((await rejection(vault.read('secret/data/x'))).response.statusCode).toBe(403);
    vault.token = rootToken;
  });

  it('enables KV v2 at secret/, answers 400 "Upgrading…" for a moment, and lists it in sys/mounts', async () => {
    await vault.mount({ mount_point: 'secret', type: 'kv', options: { version: '2' } });
    // internal/builtin/logical/kv/upgrade.go: a fresh KV v2 mount answers 400 while it upgrades.
    const early = await rejection(vault.read('secret/config'));
    expect(early.response.statusCode).toBe(400);
    expect(early.message).toMatch(/^Upgrading from non-versioned to versioned data/);
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await vault.read('secret/config').catch((e: ApiError) => e);
      if (!('response' in r && r.response.statusCode === 400)) break;
      if (Date.now() > deadline) throw new Error('KV v2 mount never finished upgrading');
      await new Promise((res) => setTimeout(res, 50));
    }
    const mounts = await vault.mounts();
    expect(mounts['secret/']).toMatchObject({ type: 'kv', options: { version: '2' } });
    expect(mounts.data['secret/'].type).toBe('kv');
    const dup = await rejection(vault.mount({ mount_point: 'secret', type: 'kv', options: { version: '2' } }));
    expect(dup.response.statusCode).toBe(400);
    expect(dup.message).toBe('path is already in use at secret/');
  });

  it('writes with check-and-set and reads versions back', async () => {
    const w1 = await vault.write('secret/data/apps/twitch', { options: { cas: 0 }, data: { client_id: 'a1' } });
    expect(w1.data).toMatchObject({ version: 1, destroyed: false, deletion_time: '' });
    expect(w1.data.created_time).toMatch(/^\d{4}-\d\d-\d\dT/);
    // cas 0 means "only if absent": the key exists now.
    const absent = await rejection(
      vault.write('secret/data/apps/twitch', { options: { cas: 0 }, data: { client_id: 'zz' } }),
    );
    expect(absent.response.statusCode).toBe(400);
    expect(absent.response.body.errors).toEqual(['check-and-set parameter did not match the current version']);
    const w2 = await vault.write('secret/data/apps/twitch', { options: { cas: 1 }, data: { client_id: 'a2' } });
    expect(w2.data.version).toBe(2);
    const stale = await rejection(
      vault.write('secret/data/apps/twitch', { options: { cas: 1 }, data: { client_id: 'a3' } }),
    );
    expect(stale.response.statusCode).toBe(400);
    expect(stale.message).toBe('check-and-set parameter did not match the current version');

    const v1 = await vault.read('secret/data/apps/twitch?version=1');
    expect(v1.data.data).toEqual({ client_id: 'a1' });
    expect(v1.data.metadata.version).toBe(1);
    const latest = await vault.read('secret/data/apps/twitch');
    expect(latest.data).toMatchObject({ data: { client_id: 'a2' }, metadata: { version: 2 } });

    const missing = await rejection(vault.read('secret/data/apps/nope'));
    expect(missing.response.statusCode).toBe(404);
    expect(missing.response.body).toEqual({ errors: [] });
  });

  it('round-trips metadata: custom_metadata, cas_required, max_versions trimming', async () => {
    await vault.write('secret/metadata/apps/twitch', {
      custom_metadata: { fingerprint: 'hmac:abc', source: 'op://pedro/TWITCH_ID/credential' },
    });
    const meta = await vault.read('secret/metadata/apps/twitch');
    expect(meta.data).toMatchObject({
      current_version: 2,
      oldest_version: 1,
      custom_metadata: { fingerprint: 'hmac:abc', source: 'op://pedro/TWITCH_ID/credential' },
    });
    expect(Object.keys(meta.data.versions)).toEqual(['1', '2']);
    const read = await vault.read('secret/data/apps/twitch');
    expect(read.data.metadata.custom_metadata).toEqual({
      fingerprint: 'hmac:abc',
      source: 'op://pedro/TWITCH_ID/credential',
    });

    const badMeta = await rejection(vault.write('secret/metadata/apps/twitch', { custom_metadata: { n: 5 } }));
    expect(badMeta.response.statusCode).toBe(400);

    await vault.write('secret/metadata/apps/twitch', { cas_required: true, max_versions: 2 });
    const noCas = await rejection(vault.write('secret/data/apps/twitch', { data: { client_id: 'a3' } }));
    expect(noCas.response.statusCode).toBe(400);
    expect(noCas.message).toBe('check-and-set parameter required for this call');
    await vault.write('secret/data/apps/twitch', { options: { cas: 2 }, data: { client_id: 'a3' } });
    const trimmed = await vault.read('secret/metadata/apps/twitch');
    expect(trimmed.data).toMatchObject({ current_version: 3, oldest_version: 2, max_versions: 2, cas_required: true });
    expect((await rejection(vault.read('secret/data/apps/twitch?version=1'))).response.statusCode).toBe(404);
  });

  it('lists keys (LIST verb and ?list=true) and soft-deletes versions', async () => {
    await vault.write('secret/data/apps/discord', { data: { secret: 'd1' } });
    await vault.write('secret/data/eleduck-analytics/github', { data: { token: 'g1' } });
    expect((await vault.list('secret/metadata/apps')).data.keys).toEqual(['discord', 'twitch']);
    expect((await vault.list('secret/metadata/')).data.keys).toEqual(['apps/', 'eleduck-analytics/']);
    const viaGet = await vault.read('secret/metadata/apps?list=true');
    expect(viaGet.data.keys).toEqual(['discord', 'twitch']);
    expect((await rejection(vault.list('secret/metadata/none'))).response.statusCode).toBe(404);

    await vault.delete('secret/data/apps/discord');
    const deleted = await rejection(vault.read('secret/data/apps/discord'));
    expect(deleted.response.statusCode).toBe(404);
    expect(
      (deleted.response.body as { data: { data: unknown; metadata: { deletion_time: string } } }).data.data,
    ).toBeNull();
    await vault.write('secret/undelete/apps/discord', { versions: [1] });
    expect((await vault.read('secret/data/apps/discord')).data.data).toEqual({ secret: 'd1' });
    await vault.write('secret/delete/apps/discord', { versions: [1] });
    expect((await rejection(vault.read('secret/data/apps/discord'))).response.statusCode).toBe(404);
  });

  it('answers 503 to node-vault when sealed, and unseals again with threshold keys', async () => {
    bao.faults.seal();
    const e = await rejection(vault.read('secret/data/eleduck-analytics/github'));
    expect(e.response.statusCode).toBe(503);
    expect(e.message).toBe('Vault is sealed');
    expect((await fetch(`${bao.url}/v1/sys/health`)).status).toBe(503);
    expect(await vault.health()).toMatchObject({ sealed: true });
    const wrong = await rejection(
      (async () => {
        await vault.unseal({ key: keys[0] });
        await vault.unseal({ key: keys[1] });
        await vault.unseal({ key: 'ab'.repeat(33) });
      })(),
    );
    // OpenBao answers 400 here (sys_seal.go: ErrInvalidKey), not 500, with the message observed on 2.6.2.
    expect(wrong.response.statusCode).toBe(400);
    expect(wrong.message).toMatch(
      /^unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: /,
    );
    expect((await vault.status()).progress).toBe(0);
    const short = await rejection(vault.unseal({ key: 'ab'.repeat(8 - 1) }));
    expect(short.response.statusCode).toBe(400);
    expect(short.message).toBe('invalid key: key is shorter than minimum 16 bytes');
    expect((await vault.status()).progress).toBe(0);
    for (const k of keys.slice(2, 5)) await vault.unseal({ key: k });
    expect((await vault.read('secret/data/eleduck-analytics/github')).data.data).toEqual({ token: 'g1' });
  });

  it('reports standby as 429 (200 with standbyok) and keeps serving', async () => {
    bao.faults.standby(true);
    expect((await fetch(`${bao.url}/v1/sys/health`)).status).toBe(429);
    expect((await fetch(`${bao.url}/v1/sys/health?standbyok=true`)).status).toBe(200);
    expect(await vault.health()).toMatchObject({ standby: true, sealed: false });
    expect((await vault.read('secret/data/eleduck-analytics/github')).data.data).toEqual({ token: 'g1' });
    bao.faults.clear();
    expect((await fetch(`${bao.url}/v1/sys/health`)).status).toBe(200);
  });

  it('rejects bad input with OpenBAO errors and leaves data unchanged', async () => {
    const noData = await rejection(vault.write('secret/data/apps/bad', { options: { cas: 0 } }));
    expect(noData.response.statusCode).toBe(400);
    expect(noData.message).toBe('no data provided');
    expect((await rejection(vault.read('secret/data/apps/bad'))).response.statusCode).toBe(404);
    const unmounted = await rejection(vault.read('nowhere/data/x'));
    expect(unmounted.response.statusCode).toBe(404);
    expect(unmounted.message).toMatch(/no handler for route/);
    const badKey = await rejection(vault.unseal({ key: 'not a key!' }));
    expect(badKey.response.statusCode).toBe(400);
    const badJson = await fetch(`${bao.url}/v1/secret/data/apps/bad`, {
      method: 'POST',
      headers: { 'X-Vault-Token': rootToken, 'Content-Type': 'application/json' },
      body: '{"data":',
    });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { errors: string[] }).errors[0]).toMatch(/failed to parse JSON input/);
    const badType = await rejection(vault.mount({ mount_point: 'pki', type: 'pki' }));
    expect(badType.message).toBe('plugin not found in the catalog: pki');
  });

  it('patches with merge-patch, destroys versions, deletes metadata', async () => {
    await vault.write('secret/data/apps/supabase', { data: { url: 'u1', jwt: 'j1' } });
    const patched = await vault.update('secret/data/apps/supabase', { data: { jwt: 'j2', url: null } });
    expect(patched.data.version).toBe(2);
    expect((await vault.read('secret/data/apps/supabase')).data.data).toEqual({ jwt: 'j2' });
    await vault.write('secret/destroy/apps/supabase', { versions: [1] });
    const gone = await rejection(vault.read('secret/data/apps/supabase?version=1'));
    expect(gone.response.statusCode).toBe(404);
    expect((await vault.read('secret/metadata/apps/supabase')).data.versions['1'].destroyed).toBe(true);
    await vault.delete('secret/metadata/apps/supabase');
    expect((await rejection(vault.read('secret/metadata/apps/supabase'))).response.statusCode).toBe(404);
    expect((await rejection(vault.update('secret/data/apps/supabase', { data: { a: '1' } }))).response.statusCode).toBe(
      404,
    );
  });

  it('speaks HTTP/1.1 on raw sockets: pipelined keep-alive requests, malformed request lines', async () => {
    const { hostname, port } = new URL(bao.url);
    const exchange = (payload: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const sock = net.connect(Number(port), hostname, () => sock.end(payload));
        let out = '';
        sock.on('data', (c) => (out += c.toString()));
        sock.on('end', () => resolve(out));
        sock.on('error', reject);
      });
    const two = await exchange(
      `GET /v1/sys/seal-status HTTP/1.1\r\nHost: x\r\n\r\nLIST /v1/secret/metadata/apps HTTP/1.1\r\nHost: x\r\nX-Vault-Token: ${rootToken}\r\nConnection: close\r\n\r\n`,
    );
    expect(two.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(two).toContain('"keys":["discord","twitch"]');
    expect(await exchange('GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('counts reads, writes and per-path operations', async () => {
    const before = bao.counters();
    await vault.write('secret/data/count/me', { data: { v: '1' } });
    await vault.read('secret/data/count/me');
    await rejection(vault.write('secret/data/count/me', { options: { cas: 0 }, data: { v: '2' } }));
    const after = bao.counters();
    expect(after.writes - before.writes).toBe(1); // the rejected CAS write changed nothing
    expect(after.reads - before.reads).toBe(1);
    expect(after.byPath['write:secret/data/count/me']).toBe(1);
    expect(after.byPath['read:secret/data/count/me']).toBe(1);
  });

  it('offers initialize/unsealAll/enableKv for the built state; KV v1 has no versions', async () => {
    const other = await startOpenBaoDouble({ host: '127.0.0.1' });
    try {
      const { keys: k, rootToken: t } = other.initialize(5, 3);
      expect(k).toHaveLength(5);
      expect(() => other.enableKv()).toThrow(/sealed/);
      other.unsealAll();
      other.enableKv('secret');
      other.enableKv('legacy', 1);
      const c = nodeVault({ endpoint: other.url, token: t });
      expect((await c.write('secret/data/a', { options: { cas: 0 }, data: { x: '1' } })).data.version).toBe(1);
      await c.write('legacy/a', { x: '1' });
      expect((await c.read('legacy/a')).data).toEqual({ x: '1' });
      expect((await rejection(c.read('legacy/data/a'))).response.statusCode).toBe(404);
      other.faults.seal();
      expect((await rejection(c.read('secret/data/a'))).response.statusCode).toBe(503);
      other.faults.clear(); // undoes the injected seal
      expect((await c.read('secret/data/a')).data.data).toEqual({ x: '1' });
    } finally {
      await other.stop();
    }
  });
});
