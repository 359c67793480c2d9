// The auth matrix: every route the OpenAPI document lists × {no token, viewer, operator}. Requests
// target an unknown cluster so that passing auth never starts anything (404 proves auth let it through).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, loadAuthConfig, parseTokens, type AuthConfig } from '../../api/auth.js';
import { ClusterRegistry } from '../../config/registry.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const OPERATOR = 'op-token-for-tests-0123456789';
const VIEWER = 'viewer-token-for-tests-0123456789';
const auth: AuthConfig = parseAuth();
function parseAuth(): AuthConfig {
  return { tokens: parseTokens(`ops:operator:${hashToken(OPERATOR)},watcher:viewer:${hashToken(VIEWER)}`) };
}

let t: TestTemporal;
let app: FastifyInstance;
beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'api-auth' });
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: new ClusterRegistry(),
    auth,
    codec: testCodec,
    codecOrigins: ['http://127.0.0.1:8233'],
    mutationRateLimit: 1000,
  });
});
afterAll(async () => {
  await app?.close();
  await t?.close();
});

const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.json']);
function concrete(path: string): string {
  return path.replace(/\{name\}/g, 'no-such-cluster').replace(/\{(\w+)\}/g, 'x-$1');
}

describe('API authentication', () => {
  it('every documented route × {none, viewer, operator} gives the documented status', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const rows: string[] = [];
    let checked = 0;
    for (const [path, ops] of Object.entries<Record<string, unknown>>(doc.paths)) {
      for (const method of Object.keys(ops).map((m) => m.toUpperCase())) {
        if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) continue;
        const url = concrete(path);
        const send = (token?: string) =>
          app.inject({
            method: method as 'GET',
            url,
            headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
            payload: method === 'GET' || method === 'DELETE' ? undefined : '{}',
          });
        const [none, viewer, operator] = [await send(), await send(VIEWER), await send(OPERATOR)];
        checked++;
        if (PUBLIC.has(path)) {
          if ([none, viewer, operator].some((r) => r.statusCode === 401 || r.statusCode === 403))
            rows.push(`${method} ${path} should be public`);
          continue;
        }
        if (none.statusCode !== 401) rows.push(`${method} ${path}: no token gave ${none.statusCode}, want 401`);
        const codecEncode = path === '/codec/encode';
        const viewerAllowed = method === 'GET' || path === '/codec/decode';
        if (viewerAllowed && [401, 403].includes(viewer.statusCode))
          rows.push(`${method} ${path}: viewer refused (${viewer.statusCode})`);
        if (!viewerAllowed && viewer.statusCode !== 403)
          rows.push(
            `${method} ${path}: viewer gave ${viewer.statusCode}, want 403${codecEncode ? ' (encode is operator-only)' : ''}`,
          );
        if ([401, 403].includes(operator.statusCode))
          rows.push(`${method} ${path}: operator refused (${operator.statusCode})`);
        if (operator.statusCode >= 500) rows.push(`${method} ${path}: operator got ${operator.statusCode}`);
      }
    }
    expect(rows).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(5);
    // ~3 s alone; three requests per route (now over 60 routes) took over 60 s inside the full suite on
    // 2 busy cores, so the bound is for load, not for the work.
  }, 180_000);

  it('401 and 403 bodies say which', async () => {
    const none = await app.inject({ method: 'GET', url: '/clusters' });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ error: 'Unauthorized', required: 'viewer' });
    const wrong = await app.inject({
      method: 'GET',
      url: '/clusters',
      headers: { authorization: 'Bearer not-a-token' },
    });
    expect(wrong.statusCode).toBe(401);
    const enc = await app.inject({
      method: 'POST',
      url: '/codec/encode',
      headers: { authorization: `Bearer ${VIEWER}` },
      payload: { payloads: [] },
    });
    expect(enc.statusCode).toBe(403);
    expect(enc.json().message).toContain('needs role operator');
  });

  it('an operator decodes through the codec endpoint; encoded payloads round-trip', async () => {
    const { defaultPayloadConverter } = await import('@temporalio/common');
    const [enc] = await testCodec.encode([defaultPayloadConverter.toPayload({ hello: 'world' })]);
    const b64 = (u?: Uint8Array | null) => Buffer.from(u ?? []).toString('base64');
    const body = {
      payloads: [
        {
          metadata: Object.fromEntries(Object.entries(enc.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
          data: b64(enc.data),
        },
      ],
    };
    const r = await app.inject({
      method: 'POST',
      url: '/codec/decode',
      headers: { authorization: `Bearer ${OPERATOR}` },
      payload: body,
    });
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(Buffer.from(r.json().payloads[0].data, 'base64').toString())).toEqual({ hello: 'world' });
  });

  it('rate-limits mutating requests per identity', async () => {
    const limited = await buildTestApp({
      client: t.client,
      settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
      clusters: new ClusterRegistry(),
      auth,
      mutationRateLimit: 3,
      codec: testCodec,
    });
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) {
      codes.push(
        (
          await limited.inject({
            method: 'POST',
            url: '/codec/encode',
            headers: { authorization: `Bearer ${OPERATOR}` },
            payload: { payloads: [] },
          })
        ).statusCode,
      );
    }
    expect(codes).toEqual([200, 200, 200, 429, 429]);
    expect(
      (await limited.inject({ method: 'GET', url: '/clusters', headers: { authorization: `Bearer ${OPERATOR}` } }))
        .statusCode,
    ).toBe(200);
    await limited.close();
  });

  it('token config: parsed strictly; dev mode generates 0600 tokens once; production refuses to start without', () => {
    expect(() => parseTokens('ops:admin:' + 'a'.repeat(64))).toThrow(/role must be viewer or operator/);
    expect(() => parseTokens('ops:operator:plaintext-token')).toThrow(/SHA-256/);
    const dir = mkdtempSync(join(tmpdir(), 'pedro-auth-'));
    const a = loadAuthConfig({ env: {}, dataDir: dir, devMode: true });
    const b = loadAuthConfig({ env: {}, dataDir: dir, devMode: true });
    expect(a.tokens.map((x) => x.sha256)).toEqual(b.tokens.map((x) => x.sha256));
    expect(statSync(join(dir, 'api-tokens.json')).mode & 0o777).toBe(0o600);
    expect(() => loadAuthConfig({ env: {}, dataDir: dir, devMode: false })).toThrow(/no API tokens/);
  });
});
