// POST /clusters/:name/backups/verify and GET .../verifications/:id through inject, against the
// built lab and a real worker: a drill runs to a passed report; duplicates, bad input and unknown
// names get 409/400/404 with the field path.
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

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'api-backups' }), startVeleroLab()]);
  await t.startWorker(v.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: v.deps.clusters,
  });
});
afterAll(async () => {
  await app?.close();
  await t?.close();
  await v?.stop();
});

const post = (url: string, payload?: object) => app.inject({ method: 'POST', url, payload: payload ?? {} });

describe('backup verification API', () => {
  test('starts a drill (202 with ids and a Temporal Web link) and serves its report', async () => {
    const requestId = `r-${randomUUID().slice(0, 8)}`;
    const r = await post('/clusters/lab/backups/verify', { requestId });
    expect(r.statusCode).toBe(202);
    const body = r.json();
    expect(body).toMatchObject({
      id: requestId,
      workflowId: `verify-backup/lab/${requestId}`,
      statusUrl: `/clusters/lab/backups/verifications/${requestId}`,
    });
    expect(body.temporalWebUrl).toContain(encodeURIComponent(`verify-backup/lab/${requestId}`));
    await t.client.workflow.getHandle(body.workflowId).result();
    const s = await app.inject({ method: 'GET', url: body.statusUrl });
    expect(s.statusCode).toBe(200);
    const status = s.json();
    expect(status).toMatchObject({
      workflowStatus: 'COMPLETED',
      running: false,
      report: { result: 'passed', reasons: [] },
    });
    expect(status.report.rtoSeconds).toBeGreaterThanOrEqual(1);
    expect(status.progress.state).toBe('succeeded');
    // The same requestId again is a conflict naming the run, not a second drill.
    const dup = await post('/clusters/lab/backups/verify', { requestId });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().workflowId).toBe(`verify-backup/lab/${requestId}`);
  });

  test('bad input is 400 with the field path; unknown cluster or verification is 404', async () => {
    const both = await post('/clusters/lab/backups/verify', { backup: 'daily-1', createNew: true });
    expect(both.statusCode).toBe(400);
    expect(both.json().field).toBe('body.createNew');
    const extra = await post('/clusters/lab/backups/verify', { bogus: 1 });
    expect(extra.json()).toMatchObject({ error: 'BadRequest', field: 'body.bogus' });
    const ns = await post('/clusters/lab/backups/verify', { namespaces: ['Not_A_Namespace'] });
    expect(ns.statusCode).toBe(400);
    expect(ns.json().field).toBe('body.namespaces[0]');
    expect((await post('/clusters/nope/backups/verify')).statusCode).toBe(404);
    const missing = await app.inject({ method: 'GET', url: '/clusters/lab/backups/verifications/no-such-run' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().workflowId).toBe('verify-backup/lab/no-such-run');
  });
});
