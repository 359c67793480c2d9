// Hardening (issue 8 item 6): hundreds of malformed or hostile requests, generated from the OpenAPI
// document with a seeded PRNG, against the real app with auth and a real Temporal server. The
// cluster config is a copy of pedro-ops.yaml, so cluster routes resolve; no worker polls the task
// queue, so even a wrongly accepted start could never reach infrastructure — and the test proves none
// happened: no workflow on the task queue, no schedule pointing at it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, parseTokens, PUBLIC_PATHS } from '../../api/auth.js';
import { ClusterRegistry } from '../../config/registry.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { generate, operations, type FuzzRequest, type Operation } from './fuzz-cases.js';

const SEED = 0x5eed_0808;
const OPERATOR = 'fuzz-operator-token-0123456789abcdef';
const VIEWER = 'fuzz-viewer-token-0123456789abcdef';

let t: TestTemporal;
let app: FastifyInstance;
let dir: string;
let doc: { paths: Record<string, Record<string, Record<string, unknown>>> };
let ops: Operation[];
const controlIds: string[] = [];

beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'api-fuzz' });
  dir = mkdtempSync(join(tmpdir(), 'pedro-fuzz-'));
  copyFileSync(new URL('../../config/clusters/pedro-ops.yaml', import.meta.url), join(dir, 'pedro-ops.yaml'));
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: new ClusterRegistry(dir),
    auth: { tokens: parseTokens(`ops:operator:${hashToken(OPERATOR)},watcher:viewer:${hashToken(VIEWER)}`) },
    codec: testCodec,
    codecOrigins: ['http://127.0.0.1:8233'],
    // The limiter is tested in auth.test.ts; here it would only turn findings into 429s.
    mutationRateLimit: 1_000_000,
  });
  doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
  ops = operations(doc, new Set(PUBLIC_PATHS));
});

afterAll(async () => {
  for (const id of controlIds)
    await t?.client.workflow
      .getHandle(id)
      .terminate('fuzz test control')
      .catch(() => undefined);
  await app?.close();
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function workflowsOnQueue(): Promise<string[]> {
  const ids: string[] = [];
  for await (const w of t.client.workflow.list({ query: `TaskQueue="${t.taskQueue}"` })) ids.push(w.workflowId);
  return ids;
}

/** The outcome rules for one request; returns the violations. */
function judge(req: FuzzRequest, status: number, contentType: string, body: string, op?: Operation): string[] {
  const what = `${req.kind} ${req.method} ${req.url.slice(0, 120)} -> ${status}`;
  const bad: string[] = [];
  // /readyz documents its 503: with no worker polling, "not ready" is the right answer.
  const documented5xx = status >= 500 && op?.path === '/readyz' && op.documented.includes(status);
  if (status >= 500 && !documented5xx) bad.push(`${what}: server error ${body.slice(0, 200)}`);
  if (req.expect === 'reject' && (status < 400 || status >= 500)) bad.push(`${what}: hostile request not refused`);
  if (req.status !== undefined && status !== req.status) bad.push(`${what}: want ${req.status}`);
  if (status >= 400 && !documented5xx) {
    let parsed: { error?: unknown; message?: unknown } | undefined;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
    if (
      !contentType.startsWith('application/json') ||
      typeof parsed?.error !== 'string' ||
      typeof parsed?.message !== 'string'
    ) {
      bad.push(`${what}: error body is not JSON {error, message}: ${contentType} ${body.slice(0, 120)}`);
    }
  }
  return bad;
}

describe('API fuzz', () => {
  it('the document lists the core routes, and every request body and path param is strict', () => {
    const names = ops.map((o) => `${o.method} ${o.path}`);
    expect(names.length).toBeGreaterThanOrEqual(15);
    for (const core of [
      'GET /clusters',
      'GET /clusters/{name}',
      'POST /clusters/{name}/secrets/rotate',
      'GET /workflows/{id}',
      'POST /codec/encode',
    ])
      expect(names).toContain(core);
    const loose: string[] = [];
    const walk = (s: Record<string, unknown>, where: string) => {
      if (s.type === 'object' && s.additionalProperties !== false && typeof s.additionalProperties !== 'object')
        loose.push(`${where}: additionalProperties is not false`);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>))
        walk(v, `${where}.${k}`);
      if (s.items && typeof s.items === 'object') walk(s.items as Record<string, unknown>, `${where}[]`);
      for (const alt of (s.anyOf ?? s.oneOf ?? []) as Record<string, unknown>[]) walk(alt, where);
    };
    for (const op of ops) {
      if (op.body) walk(op.body, `${op.method} ${op.path} body`);
      for (const p of op.pathParams) {
        if (typeof p.schema.pattern !== 'string' && !Array.isArray(p.schema.enum))
          loose.push(`${op.method} ${op.path}: path param ${p.name} has neither pattern nor enum`);
      }
    }
    expect(loose).toEqual([]);
  });

  it('at least 500 hostile requests: no 5xx, every one refused with a JSON error, nothing started', async () => {
    const started = Date.now();
    const requests = generate(ops, { operator: OPERATOR, viewer: VIEWER }, SEED);
    // Traversal through the docs' static file server must not leave its folder.
    for (const u of [
      '/docs/static/..%2F..%2F..%2F..%2Fpackage.json',
      '/docs/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/docs/..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/docs/static/%00index.html',
    ]) {
      requests.push({
        kind: 'docs-traversal',
        op: 'GET /docs/*',
        method: 'GET',
        url: u,
        headers: {},
        expect: 'reject',
      });
    }
    expect(requests.length).toBeGreaterThanOrEqual(500);
    const byOp = new Map(ops.map((o) => [`${o.method} ${o.path}`, o]));
    const perStatus: Record<string, number> = {};
    const perKind: Record<string, number> = {};
    const violations: string[] = [];
    for (const req of requests) {
      const res = await app.inject({
        method: req.method as 'GET',
        url: req.url,
        headers: req.headers,
        payload: req.payload,
      });
      perStatus[res.statusCode] = (perStatus[res.statusCode] ?? 0) + 1;
      const kind = `${req.kind.split(':')[0]} ${res.statusCode}`;
      perKind[kind] = (perKind[kind] ?? 0) + 1;
      violations.push(
        ...judge(req, res.statusCode, String(res.headers['content-type'] ?? ''), res.body, byOp.get(req.op)),
      );
      if (req.kind === 'docs-traversal' && /pedro-ops-orchestrator|root:x:0:0/.test(res.body))
        violations.push(`${req.url}: served a file outside the docs`);
    }
    const stats = {
      seed: `0x${SEED.toString(16)}`,
      operations: ops.length,
      requests: requests.length,
      ms: Date.now() - started,
      perStatus,
      perKindAndStatus: Object.fromEntries(Object.entries(perKind).sort()),
    };
    process.stdout.write(`[fuzz] ${JSON.stringify(stats)}\n`);
    if (violations.length) process.stdout.write(`[fuzz] ${violations.length} violations:\n${violations.join('\n')}\n`);
    expect(violations.slice(0, 40)).toEqual([]);

    // Nothing started: no workflow on this queue, and no schedule that would start one here.
    for await (const s of t.client.schedule.list()) {
      const d = await t.client.schedule
        .getHandle(s.scheduleId)
        .describe()
        .catch(() => undefined);
      expect(
        d?.action.type === 'startWorkflow' && d.action.taskQueue === t.taskQueue,
        `schedule ${s.scheduleId} targets the fuzz task queue`,
      ).toBe(false);
    }
    // Control: one legitimate start through the API must show up in the same listing, which proves the
    // listing sees starts (visibility has caught up) — and that it is the only one.
    const control = await app.inject({
      method: 'POST',
      url: '/clusters/pedro-ops/secrets/rotate',
      headers: { authorization: `Bearer ${OPERATOR}` },
      payload: { dryRun: true, requestId: 'fuzz-control' },
    });
    expect(control.statusCode).toBe(202);
    controlIds.push(control.json().workflowId);
    let seen: string[] = [];
    for (let i = 0; i < 40 && !seen.includes(controlIds[0]); i++) {
      seen = await workflowsOnQueue();
      if (!seen.includes(controlIds[0])) await new Promise((r) => setTimeout(r, 250));
    }
    expect(seen).toEqual(controlIds);
  });
});
