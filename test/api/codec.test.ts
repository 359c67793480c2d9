import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { codecRoutes, type CodecRoutesOptions } from '../../api/routes/codec.js';
import { AesGcmCodec, ENCODING_ENCRYPTED, dataConverterFor } from '../../worker/codec.js';

const UI = 'http://localhost:8233';
const key = randomBytes(32);
const codec = new AesGcmCodec({ keys: [{ id: 'k1', key }], activeId: 'k1' });

type JsonPayload = { metadata: Record<string, string>; data: string };
const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(
    Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
  ),
  data: Buffer.from(p.data ?? []).toString('base64'),
});
const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(
    Object.entries(p.metadata).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))]),
  ),
  data: new Uint8Array(Buffer.from(p.data, 'base64')),
});

const apps: FastifyInstance[] = [];
async function build(extra: Partial<CodecRoutesOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  apps.push(app);
  await app.register(codecRoutes, { codec, allowedOrigins: [UI], ...extra });
  await app.ready();
  return app;
}
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

const post = (a: FastifyInstance, action: string, body: unknown, headers: Record<string, string> = {}) =>
  a.inject({
    method: 'POST',
    url: `/codec/${action}`,
    headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('codec routes (Temporal remote codec protocol)', () => {
  it('encode then decode round-trips payloads the way Temporal Web sends them', async () => {
    const a = await build();
    const values = [{ cluster: 'pedro-ops', n: 1 }, 'text', null];
    const plain = values.map((v) => toJson(defaultPayloadConverter.toPayload(v)));

    const enc = await post(a, 'encode', { payloads: plain });
    expect(enc.statusCode).toBe(200);
    expect(enc.headers['content-type']).toMatch(/application\/json/);
    expect(enc.headers['cache-control']).toBe('no-store');
    const sealed = enc.json().payloads as JsonPayload[];
    expect(sealed).toHaveLength(3);
    for (const p of sealed) {
      expect(Buffer.from(p.metadata.encoding, 'base64').toString()).toBe(ENCODING_ENCRYPTED);
      expect(Buffer.from(p.metadata['encryption-key-id'], 'base64').toString()).toBe('k1');
    }
    // What the API encrypted, the worker's codec opens (same wire format both ways).
    expect(defaultPayloadConverter.fromPayload((await codec.decode([fromJson(sealed[0])]))[0])).toEqual(values[0]);

    const dec = await post(a, 'decode', { payloads: sealed });
    expect(dec.statusCode).toBe(200);
    expect(dec.json()).toEqual({ payloads: plain });
    expect((dec.json().payloads as JsonPayload[]).map((p) => defaultPayloadConverter.fromPayload(fromJson(p)))).toEqual(
      values,
    );
  });

  it('decodes worker-sealed payloads and passes plain ones through; accepts URL-safe base64 and {}', async () => {
    const a = await build();
    const [sealed] = await codec.encode([defaultPayloadConverter.toPayload({ ref: 'op://v/i/f' })]);
    const plain = toJson(defaultPayloadConverter.toPayload(42));
    const urlSafe = {
      ...toJson(sealed),
      data: toJson(sealed).data.replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, ''),
    };
    const res = await post(a, 'decode', { payloads: [urlSafe, plain] });
    expect(res.statusCode).toBe(200);
    const out = (res.json().payloads as JsonPayload[]).map((p) => defaultPayloadConverter.fromPayload(fromJson(p)));
    expect(out).toEqual([{ ref: 'op://v/i/f' }, 42]);

    const empty = await post(a, 'decode', {});
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual({ payloads: [] });
  });

  it('a payload that fails to decode gives 400 naming its index, not the key', async () => {
    const a = await build();
    const good = await codec.encode([defaultPayloadConverter.toPayload('ok')]);
    const bad = Buffer.from(good[0].data!);
    bad[bad.length - 1] ^= 1;
    const res = await post(a, 'decode', { payloads: [toJson(good[0]), toJson({ ...good[0], data: bad })] });
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.index).toBe(1);
    expect(body.message).toMatch(/^payloads\[1\] could not be decoded: .*key id "k1"/);
    expect(res.body).not.toContain(key.toString('base64'));
    expect(res.body).not.toContain(key.toString('hex'));

    const other = new AesGcmCodec({ keys: [{ id: 'k-old', key: randomBytes(32) }], activeId: 'k-old' });
    const foreign = await other.encode([defaultPayloadConverter.toPayload(1)]);
    const unknown = await post(a, 'decode', { payloads: [toJson(foreign[0])] });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().message).toMatch(/payloads\[0\].*unknown encryption key id "k-old"/);
  });

  it('malformed bodies get a 400 JSON error and never reach the codec', async () => {
    let calls = 0;
    const counting = {
      encode: (p: Payload[]) => (calls++, codec.encode(p)),
      decode: (p: Payload[]) => (calls++, codec.decode(p)),
    };
    const a = await build({ codec: counting });
    const cases: unknown[] = [
      '{"payloads": [',
      { payloads: 'nope' },
      { payloads: [{ data: 'not base64!' }] },
      { payloads: [{ metadata: { encoding: '***' }, data: '' }] },
      { payloads: [{ data: 'QUJDRA=', extra: 1 }] },
      { payloads: [], extra: true },
      { payloads: [{ data: 'QUJDR' }] }, // 4n+1 characters: not base64 at all
      { payloads: [{ data: 12 }] },
    ];
    for (const body of cases) {
      const res = await post(a, 'decode', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json()).toMatchObject({ statusCode: 400, error: 'Bad Request' });
      expect(typeof res.json().message).toBe('string');
    }
    const tooMany = await build({ codec: counting, maxPayloads: 2 }).then((b) =>
      post(b, 'encode', { payloads: [{}, {}, {}] }),
    );
    expect(tooMany.statusCode).toBe(400);
    expect(calls).toBe(0);
  });

  it('enforces the body limit', async () => {
    const a = await build({ bodyLimit: 1024 });
    const res = await post(a, 'encode', { payloads: [{ data: Buffer.alloc(2048).toString('base64') }] });
    expect(res.statusCode).toBe(413);
  });

  it('CORS preflight: allowed origin is echoed with credentials; others get no CORS headers', async () => {
    const a = await build({ allowedOrigins: [UI, 'https://temporal.lab.example/'] });
    const ok = await a.inject({
      method: 'OPTIONS',
      url: '/codec/decode',
      headers: {
        origin: UI,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-namespace,content-type,authorization',
      },
    });
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe(UI);
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    expect(ok.headers['access-control-allow-methods']).toBe('POST, OPTIONS');
    const allowHeaders = String(ok.headers['access-control-allow-headers'])
      .split(/,\s*/)
      .map((h) => h.toLowerCase());
    expect(allowHeaders).toEqual(expect.arrayContaining(['x-namespace', 'content-type', 'authorization']));
    expect(ok.headers.vary).toMatch(/Origin/);

    const second = await a.inject({
      method: 'OPTIONS',
      url: '/codec/encode',
      headers: { origin: 'https://temporal.lab.example' },
    });
    expect(second.headers['access-control-allow-origin']).toBe('https://temporal.lab.example');

    for (const origin of ['http://evil.example', 'http://localhost:8234', 'null']) {
      const no = await a.inject({
        method: 'OPTIONS',
        url: '/codec/decode',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
      expect(no.statusCode).toBe(403);
      expect(Object.keys(no.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
  });

  it('actual requests: allowed origin gets CORS headers, a foreign origin is refused before any work', async () => {
    let calls = 0;
    const counting = {
      encode: (p: Payload[]) => (calls++, codec.encode(p)),
      decode: (p: Payload[]) => (calls++, codec.decode(p)),
    };
    const a = await build({ codec: counting });
    const body = { payloads: [toJson(defaultPayloadConverter.toPayload(1))] };
    const ok = await post(a, 'decode', body, { origin: UI });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(UI);
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    expect(calls).toBe(1);

    const evil = await post(a, 'decode', body, { origin: 'http://evil.example' });
    expect(evil.statusCode).toBe(403);
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    expect(calls).toBe(1);
  });

  it('rejects misconfigured origins at registration', async () => {
    await expect(build({ allowedOrigins: ['*'] })).rejects.toThrow();
    await expect(build({ allowedOrigins: ['http://localhost:8233/ui'] })).rejects.toThrow(/not an origin/);
  });

  it('authorize runs first with the action; its statusCode passes through', async () => {
    const seen: string[] = [];
    let calls = 0;
    const counting = {
      encode: (p: Payload[]) => (calls++, codec.encode(p)),
      decode: (p: Payload[]) => (calls++, codec.decode(p)),
    };
    const a = await build({
      codec: counting,
      authorize: (req, action) => {
        seen.push(`${action}:${String(req.headers['x-namespace'])}`);
        if (action === 'encode') throw Object.assign(new Error('encode is for operators only'), { statusCode: 403 });
        if (!req.headers.authorization) throw Object.assign(new Error('missing bearer token'), { statusCode: 401 });
      },
    });
    const body = { payloads: [toJson(defaultPayloadConverter.toPayload('x'))] };

    const denied = await post(a, 'encode', body, { origin: UI, 'x-namespace': 'pedro-ops' });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ statusCode: 403, message: 'encode is for operators only' });
    // The browser must be able to read the refusal.
    expect(denied.headers['access-control-allow-origin']).toBe(UI);

    // Authorization runs before the body is even parsed.
    expect((await post(a, 'decode', '{broken')).statusCode).toBe(401);
    expect((await post(a, 'decode', body, { authorization: 'Bearer t' })).statusCode).toBe(200);
    expect(seen).toEqual(['encode:pedro-ops', 'decode:default', 'decode:default']);
    expect(calls).toBe(1);

    // Preflights carry no credentials, so they are never sent to authorize.
    const pre = await a.inject({ method: 'OPTIONS', url: '/codec/encode', headers: { origin: UI } });
    expect(pre.statusCode).toBe(204);
    expect(seen).toHaveLength(3);
  });

  it('an authorize error without statusCode is a generic 500', async () => {
    const a = await build({
      authorize: async () => {
        throw new Error('db down: secret=hunter2');
      },
    });
    const res = await post(a, 'decode', { payloads: [] });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('hunter2');
  });

  it('honours X-Namespace: restricted to configured namespaces', async () => {
    const a = await build({ namespaces: ['default'] });
    expect((await post(a, 'decode', { payloads: [] })).statusCode).toBe(200);
    const other = await post(a, 'decode', { payloads: [] }, { 'x-namespace': 'payments' });
    expect(other.statusCode).toBe(400);
    expect(other.json().message).toMatch(/does not serve namespace "payments"/);
  });
});

describe('with the real Temporal dev server', () => {
  it('a client using the codec stores only ciphertext; the endpoint decodes it as Temporal Web would', async () => {
    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      const client = new Client({ connection, dataConverter: dataConverterFor(codec) });
      const input = { cluster: 'pedro-ops', ref: 'op://homelab/k3s/token' };
      const workflowId = `codec-probe-${randomBytes(4).toString('hex')}`;
      // No worker needed: the start event already holds the encoded input.
      const handle = await client.workflow.start('codecProbe', {
        taskQueue: `codec-${workflowId}`,
        workflowId,
        args: [input],
      });
      try {
        const history = await handle.fetchHistory();
        const stored = history.events![0].workflowExecutionStartedEventAttributes!.input!.payloads!;
        expect(stored).toHaveLength(1);
        expect(Buffer.from(stored[0].metadata!.encoding).toString()).toBe(ENCODING_ENCRYPTED);
        expect(Buffer.from(stored[0].data!).includes('op://')).toBe(false);

        const a = await build();
        const res = await post(a, 'decode', { payloads: stored.map((p) => toJson(p)) }, { origin: UI });
        expect(res.statusCode).toBe(200);
        expect(defaultPayloadConverter.fromPayload(fromJson(res.json().payloads[0]))).toEqual(input);
      } finally {
        await handle.terminate('codec test done');
      }
    } finally {
      await connection.close();
    }
  });
});
