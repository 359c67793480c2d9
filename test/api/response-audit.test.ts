// The test harness's response audit (test/helpers/app.ts) is a plugin, not a product switch: it must
// still see the body of every route, including those in the encapsulated route plugins registered
// after it, and error bodies from the error handler.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Client, Connection } from '@temporalio/client';
import { buildApp } from '../../api/app.js';
import { ClusterRegistry } from '../../config/registry.js';
import { temporalSettings } from '../../worker/settings.js';
import { RESPONSES_FILE, responseAudit } from '../helpers/app.js';

let dir: string;
let app: FastifyInstance;
let connection: Connection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pedro-ops-response-audit-'));
  // None of the routes called here reaches Temporal; a lazy connection to a closed port proves it.
  connection = Connection.lazy({ address: '127.0.0.1:1' });
  app = await buildApp({
    client: new Client({ connection }),
    settings: temporalSettings({}),
    clusters: new ClusterRegistry(mkdtempSync(join(dir, 'clusters-'))),
    plugins: [responseAudit(dir)],
  });
});
afterAll(async () => {
  await app?.close();
  await connection?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('every route and error body reaches the audit file; product buildApp without the plugin writes none', async () => {
  const health = await app.inject({ method: 'GET', url: '/healthz' });
  const clusters = await app.inject({ method: 'GET', url: '/clusters' });
  const missing = await app.inject({ method: 'GET', url: '/clusters/no-such-cluster' });
  expect([health.statusCode, clusters.statusCode, missing.statusCode]).toEqual([200, 200, 404]);
  const audited = readFileSync(join(dir, RESPONSES_FILE), 'utf8').split('\n');
  for (const body of [health.payload, clusters.payload, missing.payload]) expect(audited).toContain(body);

  const plainDir = mkdtempSync(join(dir, 'plain-'));
  const plain = await buildApp({
    client: new Client({ connection }),
    settings: temporalSettings({}),
    clusters: new ClusterRegistry(plainDir),
  });
  try {
    expect((await plain.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect(readFileSync(join(dir, RESPONSES_FILE), 'utf8').split('\n').filter(Boolean)).toHaveLength(3);
  } finally {
    await plain.close();
  }
});
