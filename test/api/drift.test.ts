// Drift API through inject against a built lab and a real worker: no report before the first check
// (404), a check run now and read back as the latest report, a stopped k3s in it, then a reconcile
// whose approval must name the plan's drift (409 otherwise, 400 without it) and which repairs.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { withBuiltLab, type LabOrchestrator } from '../helpers/lab-deps.js';
import type { Lab } from '../lab/index.js';

// A cluster name of its own: GET /drift lists checks by cluster on the shared dev server.
const C = 'drift-api';
let t: TestTemporal;
let lab: Lab;
let o: LabOrchestrator;
let stopLab: () => Promise<void>;
let app: FastifyInstance;

beforeAll(async () => {
  [t, [lab, o, stopLab]] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'api-drift' }),
    withBuiltLab({ prefix: 'pedro-ops-api-drift', patch: (s) => void (s.name = C) }, (l, x, s) => [l, x, s] as const),
  ]);
  await t.startWorker(o.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: o.deps.clusters,
  });
}, 300_000);
afterAll(async () => {
  await app?.close();
  await t?.close();
  await stopLab?.();
});

const post = (url: string, payload?: object) => app.inject({ method: 'POST', url, payload: payload ?? {} });
const get = async (url: string) => (await app.inject({ method: 'GET', url })).json();
async function until(url: string, pred: (s: Record<string, any>) => boolean, ms = 300_000) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await get(url);
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out on ${url}: ${JSON.stringify(s).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe('drift API', () => {
  test('check now, latest report, reconcile with an approval naming the drift', async () => {
    expect((await app.inject({ method: 'GET', url: `/clusters/${C}/drift` })).statusCode).toBe(404);
    expect((await post('/clusters/nope/drift-check')).statusCode).toBe(404);

    const r = await post(`/clusters/${C}/drift-check`);
    expect(r.statusCode).toBe(202);
    const first = await until(r.json().statusUrl, (s) => s.running === false);
    expect(first.report).toMatchObject({ cluster: C, total: 0 });

    await lab.faults.drift.stopK3s('worker-2');
    const again = await post(`/clusters/${C}/drift-check`);
    const second = (await until(again.json().statusUrl, (s) => s.running === false)).report;
    const latest = await until(`/clusters/${C}/drift`, (s) => s.workflowId === second.workflowId, 30_000);
    expect(latest.findings).toEqual([
      expect.objectContaining({ kind: 'k3s-service', group: 'node worker-2', want: 'active', have: 'inactive' }),
    ]);
    expect(latest.counts['k3s-service']).toBe(1);

    const rec = await post(`/clusters/${C}/reconcile`, { approvalTimeout: '10m' });
    expect(rec.statusCode).toBe(202);
    expect((await post(`/clusters/${C}/reconcile`)).statusCode).toBe(409);
    const waiting = await until(`/clusters/${C}/reconcile`, (s) => s.progress?.state === 'waiting-approval');
    const detail: string = waiting.progress.steps.find((s: { id: string }) => s.id.startsWith('approval-')).detail;
    expect(detail).toContain('k3s/worker-2');
    const driftId = /^drift ([0-9a-f]{16})/.exec(detail)![1];
    expect((await post(`/clusters/${C}/reconcile/approve`, {})).statusCode).toBe(400);
    const wrong = await post(`/clusters/${C}/reconcile/approve`, { driftId: 'ffffffffffffffff' });
    expect(wrong.statusCode).toBe(409);
    expect(wrong.json().message).toMatch(/plan waiting is for drift/);
    const ok = await post(`/clusters/${C}/reconcile/approve`, { driftId, note: 'restart it' });
    expect(ok.statusCode).toBe(200);
    const done = await until(`/clusters/${C}/reconcile`, (s) => s.running === false);
    expect(done.report).toMatchObject({ result: 'repaired', after: { total: 0 } });
  }, 600_000);
});
