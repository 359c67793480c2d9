// The secrets API through inject, against a real worker and the built lab: bad input refused with the
// field path and nothing started, a rotation started (202 with ids), its per-entry status read live
// while a rollout is still waiting and again when done, a repeated requestId refused, and the
// drift-check schedule created idempotently (paused by default per config).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { driftScheduleId, ensureDriftCheckSchedule } from '../../worker/drift-schedule.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';

let t: TestTemporal;
let r: RotationLab;
let app: FastifyInstance;

beforeAll(async () => {
  [t, r] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'secrets-api' }),
    // A StatefulSet consumer whose rollout can be held, so a rotation stays running long enough to query.
    startRotationLab((spec) => {
      spec.secrets.entries.find((e) => e.id === 'github')!.consumers = [
        { kind: 'StatefulSet', namespace: 'openbao-system', name: 'openbao' },
      ];
    }),
  ]);
  await t.startWorker(r.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: r.deps.clusters,
  });
});

afterAll(async () => {
  await t?.client.schedule
    .getHandle(driftScheduleId('lab'))
    .delete()
    .catch(() => undefined);
  await app?.close();
  await t?.close();
  await r?.stop();
});

const post = (body: unknown, cluster = 'lab') =>
  app.inject({ method: 'POST', url: `/clusters/${cluster}/secrets/rotate`, payload: body as object });
const get = (id: string) => app.inject({ method: 'GET', url: `/clusters/lab/secrets/rotations/${id}` });

describe('POST /clusters/:name/secrets/rotate', () => {
  test('bad input is refused with the field path and starts nothing', async () => {
    const cases: Array<[unknown, string]> = [
      [{ entries: ['github', 'nope'] }, 'body.entries[1]'],
      [{ entries: ['github'], extra: 1 }, 'body.extra'],
      [{ requestId: 'has space' }, 'body.requestId'],
      [{ entries: [] }, 'body.entries'],
      [{ generate: ['github'] }, 'body.generate[0]'],
      [{ rolloutTimeoutSeconds: 1 }, 'body.rolloutTimeoutSeconds'],
    ];
    for (const [body, field] of cases) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().field).toBe(field);
    }
    expect((await post({}, 'no-such-cluster')).statusCode).toBe(404);
    expect((await get('never-started')).statusCode).toBe(404);
    const running = await t.client.workflow.count(`TaskQueue = "${t.taskQueue}"`);
    expect(running.count).toBe(0);
  });

  test('202 with ids; status is live while a rollout waits and final when done; a repeated requestId is 409', async () => {
    await r.changeValues(['github']);
    r.lab.pieces.kube.faults.stallRollout('openbao-system', 'StatefulSet', 'openbao');
    const requestId = `api-${randomUUID().slice(0, 8)}`;
    const res = await post({ entries: ['github', 'twitch'], requestId, rolloutTimeoutSeconds: 5 });
    expect(res.statusCode).toBe(202);
    const body = res.json();
    expect(body).toMatchObject({
      rotationId: requestId,
      workflowId: `rotate-secrets/lab/${requestId}`,
      statusUrl: `/clusters/lab/secrets/rotations/${requestId}`,
    });
    expect(body.temporalWebUrl).toContain(encodeURIComponent(body.workflowId));
    expect(body.runId).toMatch(/[0-9a-f-]{36}/);

    const dup = await post({ entries: ['github'], requestId });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().workflowId).toBe(body.workflowId);

    // Two queries (report, progress) are answered independently: poll until both show the rollout waiting.
    let live;
    for (let i = 0; i < 100; i++) {
      const res = await get(requestId);
      live = res.statusCode === 200 ? res.json() : undefined;
      const waiting = live?.progress?.steps?.some(
        (s: { id: string; state: string }) => s.id.startsWith('restart:') && s.state === 'running',
      );
      if (waiting && live.entries.length === 2) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(live.running).toBe(true);
    expect(live.state).toBe('running');
    expect(live.entries.map((e: { id: string }) => e.id)).toEqual(['twitch', 'github']);
    expect(live.progress.steps.some((s: { id: string }) => s.id === 'restart:openbao-system/StatefulSet/openbao')).toBe(
      true,
    );

    await t.client.workflow.getHandle(body.workflowId).result();
    const done = (await get(requestId)).json();
    expect(done.running).toBe(false);
    expect(done.workflowStatus).toBe('COMPLETED');
    expect(done.state).toBe('partial');
    const github = done.entries.find((e: { id: string }) => e.id === 'github');
    expect(github.status).toBe('rolled-back');
    expect(github.reason).toMatch(/openbao-system\/StatefulSet\/openbao: timeout/);
    expect(done.entries.find((e: { id: string }) => e.id === 'twitch').status).toBe('unchanged');
    await r.lab.faults.clear();
  });
});

describe('drift-check schedule', () => {
  test('created paused from the config, unchanged on repeat, updated on request', async () => {
    const put = (payload: object = {}) =>
      app.inject({ method: 'PUT', url: '/clusters/lab/secrets/drift-check', payload });
    expect((await app.inject({ method: 'GET', url: '/clusters/lab/secrets/drift-check' })).json()).toMatchObject({
      exists: false,
    });
    const first = await put();
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({
      scheduleId: 'drift-check/lab',
      paused: true,
      cron: r.spec.secrets.driftCheck.cron,
      action: 'created',
    });
    expect((await put()).json().action).toBe('unchanged');
    expect((await put({ paused: false })).json()).toMatchObject({ action: 'updated', paused: false });
    const desc = (await app.inject({ method: 'GET', url: '/clusters/lab/secrets/drift-check' })).json();
    expect(desc).toMatchObject({ exists: true, paused: false, cron: r.spec.secrets.driftCheck.cron });
    expect(desc.nextRuns.length).toBeGreaterThan(0);
    expect((await put({ cron: 'x' })).statusCode).toBe(400);
  });

  test("an operator's pause survives worker and API restarts; the note says who paused", async () => {
    const at = (op: 'pause' | 'unpause', note: string) =>
      app.inject({ method: 'POST', url: `/clusters/lab/schedules/drift-check/${op}`, payload: { note } });
    // What every worker start does (worker/ensure-schedules.ts): ensure from the config alone.
    const restart = () => ensureDriftCheckSchedule(t.client, r.spec, { taskQueue: t.taskQueue });
    expect((await at('pause', 'investigating drift noise')).statusCode).toBe(200);
    expect(await restart()).toMatchObject({ action: 'unchanged', paused: true });
    const desc = (await app.inject({ method: 'GET', url: '/clusters/lab/secrets/drift-check' })).json();
    expect(desc).toMatchObject({ paused: true, cron: r.spec.secrets.driftCheck.cron });
    expect(desc.note).toMatch(/^investigating drift noise \(by .+\)$/);
    // The config says paused: an operator's unpause survives a restart too.
    expect(r.spec.secrets.driftCheck.paused).toBe(true);
    expect((await at('unpause', 'noise fixed')).statusCode).toBe(200);
    expect(await restart()).toMatchObject({ action: 'unchanged', paused: false });
    expect((await t.client.schedule.getHandle(driftScheduleId('lab')).describe()).state.paused).toBe(false);
    // A config change of the cron still reaches the schedule, and keeps the operator's pause state.
    expect(
      await ensureDriftCheckSchedule(
        t.client,
        { ...r.spec, secrets: { ...r.spec.secrets, driftCheck: { cron: '15 */6 * * *', paused: true } } },
        { taskQueue: t.taskQueue },
      ),
    ).toMatchObject({ action: 'updated', paused: false, cron: '15 */6 * * *' });
  });

  test('the schedule starts the whole-cluster checkDrift; one made for rotateSecrets dryRun is moved over, keeping its pause', async () => {
    const handle = t.client.schedule.getHandle(driftScheduleId('lab'));
    await handle.update((prev) => ({
      ...prev,
      action:
        prev.action.type === 'startWorkflow'
          ? { ...prev.action, workflowType: 'rotateSecrets', args: [{ cluster: 'lab', dryRun: true }] }
          : prev.action,
    }));
    await handle.pause('operator paused the old check');
    const res = await ensureDriftCheckSchedule(t.client, r.spec, { taskQueue: t.taskQueue });
    expect(res).toMatchObject({ action: 'updated', paused: true });
    const d = await handle.describe();
    expect(d.action.type === 'startWorkflow' && d.action.workflowType).toBe('checkDrift');
    expect(d.action.type === 'startWorkflow' && d.action.args).toEqual([{ cluster: 'lab', requestedBy: 'schedule' }]);
    expect(d.state.note).toBe('operator paused the old check');
    expect((await ensureDriftCheckSchedule(t.client, r.spec, { taskQueue: t.taskQueue })).action).toBe('unchanged');
  });
});
