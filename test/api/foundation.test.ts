// The API's front door against the real dev server: health, readiness that follows real worker
// polling, cluster listing, error bodies, and the generated OpenAPI document.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps } from '../../activities/deps.js';
import { temporalSettings } from '../../worker/settings.js';
import { memoryLogger, testTemporal, type TestTemporal } from '../helpers/temporal.js';

let t: TestTemporal;
let app: FastifyInstance;

beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'api-foundation' });
  const settings = { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue };
  app = await buildTestApp({ client: t.client, settings, clusters: new ClusterRegistry() });
});
afterAll(async () => {
  await app?.close();
  await t?.close();
});

describe('API foundation', () => {
  it('healthz answers without Temporal work', async () => {
    const r = await app.inject({ method: 'GET', url: '/healthz' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ status: 'ok' });
  });

  it('readyz is 503 with the reason until a worker polls, then 200', async () => {
    const before = await app.inject({ method: 'GET', url: '/readyz' });
    expect(before.statusCode).toBe(503);
    expect(before.json().reason).toContain(`no worker polls task queue ${t.taskQueue}`);
    const dataDir = mkdtempSync(join(tmpdir(), 'pedro-api-'));
    const w = await t.startWorker(defaultDeps({ dataDir, log: memoryLogger() }));
    let after = await app.inject({ method: 'GET', url: '/readyz' });
    for (let i = 0; i < 40 && after.statusCode !== 200; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = await app.inject({ method: 'GET', url: '/readyz' });
    }
    expect(after.statusCode).toBe(200);
    expect(after.json()).toMatchObject({ status: 'ready', taskQueue: t.taskQueue });
    await w.stop();
  });

  it('readyz is 503 naming the address when Temporal is unreachable', async () => {
    const { Client, Connection } = await import('@temporalio/client');
    const conn = Connection.lazy({ address: '127.0.0.1:1', connectTimeout: 500 });
    const dead = await buildTestApp({
      client: new Client({ connection: conn }),
      settings: { ...temporalSettings({}), address: '127.0.0.1:1' },
      clusters: new ClusterRegistry(),
    });
    const r = await dead.inject({ method: 'GET', url: '/readyz' });
    expect(r.statusCode).toBe(503);
    expect(r.json().reason).toContain('127.0.0.1:1 unreachable');
    await dead.close();
  });

  it('lists clusters and shows a summary without secret material', async () => {
    const list = await app.inject({ method: 'GET', url: '/clusters' });
    expect(list.statusCode).toBe(200);
    expect(list.json().clusters.map((c: { name: string }) => c.name)).toContain('pedro-ops');
    const one = await app.inject({ method: 'GET', url: '/clusters/pedro-ops' });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({
      name: 'pedro-ops',
      vip: '100.81.89.100',
      k3sVersion: expect.stringMatching(/\+k3s/),
    });
    expect(one.body).not.toMatch(/op:\/\//);
  });

  it('unknown cluster is 404 with a JSON error; a bad name is 400 naming the param', async () => {
    const r = await app.inject({ method: 'GET', url: '/clusters/nope' });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toMatchObject({ error: 'NotFound', message: 'unknown cluster "nope"' });
    const bad = await app.inject({ method: 'GET', url: '/clusters/..%2Fetc' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'BadRequest', field: 'params.name' });
    const none = await app.inject({ method: 'GET', url: '/nowhere' });
    expect(none.statusCode).toBe(404);
    expect(none.json().error).toBe('NotFound');
  });

  it('serves an OpenAPI 3 document generated from the route schemas', async () => {
    const r = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(r.statusCode).toBe(200);
    const doc = r.json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/healthz', '/readyz', '/clusters', '/clusters/{name}']),
    );
  });
});
