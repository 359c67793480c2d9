// DR restore API through inject against the built lab and a real worker: plan visible while it
// waits, approve → restored and verified, reject → ends cleanly, one decision only (409), bad input
// 400 with the field, unknown run 404.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { startVeleroLab, type VeleroLab } from '../workflows/velero-lab.js';

let t: TestTemporal;
let v: VeleroLab;
let app: FastifyInstance;
let backup: string;

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'api-dr' }), startVeleroLab()]);
  await t.startWorker(v.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: v.deps.clusters,
  });
  backup = (await v.kube.list('velero.io/v1', 'Backup', 'velero'))
    .map((b) => b.metadata!.name!)
    .filter((n) => n.startsWith('daily-'))
    .sort()
    .at(-1)!;
});
afterAll(async () => {
  await app?.close();
  await t?.close();
  await v?.stop();
});

const post = (url: string, payload?: object) => app.inject({ method: 'POST', url, payload: payload ?? {} });
const get = async (url: string) => (await app.inject({ method: 'GET', url })).json();

async function untilWaiting(url: string) {
  for (let i = 0; i < 100; i++) {
    const s = await get(url);
    if (s.progress?.state === 'waiting-approval') return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('never waiting for approval');
}

describe('DR restore API', () => {
  test('plan → approve → restored and verified; a second decision is 409', async () => {
    const r = await post('/clusters/lab/dr/restore', {
      backup,
      namespaces: ['eleduck-analytics'],
      target: { 'eleduck-analytics': 'ea-api' },
      approvalTimeout: '5m',
    });
    expect(r.statusCode).toBe(202);
    const started = r.json();
    expect(started.workflowId).toBe(`dr-restore/lab/${started.id}`);
    const waiting = await untilWaiting(started.statusUrl);
    const approval = waiting.progress.steps.find((s: { id: string }) => s.id === 'approval');
    expect(approval.detail).toBe(
      `restore backup ${backup} (Completed): eleduck-analytics → ea-api; existing resources: kept`,
    );
    const ok = await post(started.approveUrl, { note: 'INC-9' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ accepted: true, decision: 'approve', by: 'anonymous' });
    const again = await post(started.rejectUrl);
    expect([409]).toContain(again.statusCode);
    await t.client.workflow.getHandle(started.workflowId).result();
    const done = await get(started.statusUrl);
    expect(done).toMatchObject({
      workflowStatus: 'COMPLETED',
      report: { result: 'restored', approval: { approved: true, by: 'anonymous', note: 'INC-9' } },
    });
    expect(await v.kube.read('v1', 'Namespace', 'ea-api')).toBeDefined();
    await v.kube.delete('v1', 'Namespace', 'ea-api');
  });

  test('reject ends cleanly with nothing restored', async () => {
    v.lab.resetCounters();
    const started = (
      await post('/clusters/lab/dr/restore', {
        backup,
        namespaces: ['eleduck-analytics'],
        target: { 'eleduck-analytics': 'ea-no' },
      })
    ).json();
    await untilWaiting(started.statusUrl);
    expect((await post(started.rejectUrl, { note: 'not now' })).statusCode).toBe(200);
    await t.client.workflow.getHandle(started.workflowId).result();
    expect(await get(started.statusUrl)).toMatchObject({
      workflowStatus: 'COMPLETED',
      report: { result: 'rejected', reasons: ['rejected by anonymous: not now'] },
    });
    expect(v.writes('create:Restore')).toBe(0);
    // Finished runs take no decision.
    expect((await post(started.approveUrl)).statusCode).toBe(409);
  });

  test('bad input is 400 with the field path; unknown cluster or run is 404', async () => {
    const noNs = await post('/clusters/lab/dr/restore', { backup });
    expect(noNs.json()).toMatchObject({ error: 'BadRequest', field: 'body.namespaces' });
    const badTarget = await post('/clusters/lab/dr/restore', { backup, namespaces: ['a'], target: { b: 'c' } });
    expect(badTarget.statusCode).toBe(400);
    expect(badTarget.json().field).toBe('body.target.b');
    const policy = await post('/clusters/lab/dr/restore', {
      backup,
      namespaces: ['a'],
      existingResourcePolicy: 'overwrite',
    });
    expect(policy.json().field).toBe('body.existingResourcePolicy');
    const timeout = await post('/clusters/lab/dr/restore', { backup, namespaces: ['a'], approvalTimeout: 'soon' });
    expect(timeout.json().field).toBe('body.approvalTimeout');
    expect((await post('/clusters/nope/dr/restore', { backup, namespaces: ['a'] })).statusCode).toBe(404);
    expect((await post(`/clusters/lab/dr/restore/${randomUUID()}/approve`)).statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: '/clusters/lab/dr/restore/nothing-here' })).statusCode).toBe(404);
  });
});
