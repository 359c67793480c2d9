// Schedule endpoints through inject on the real dev server: list, describe (next runs, last
// results), pause/unpause with a note, trigger (409 while a drill runs), backfill, delete.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { deleteDrillSchedule, ensureDrillSchedule } from '../../worker/schedules.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { holdAtStorageLocation, startVeleroLab, type VeleroLab } from '../workflows/velero-lab.js';

const CLUSTER = 'lab-api-sched';
let t: TestTemporal;
let v: VeleroLab;
let app: FastifyInstance;
let hold = false;

beforeAll(async () => {
  [t, v] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'api-schedules' }),
    startVeleroLab((s) => void (s.name = CLUSTER)),
  ]);
  await t.startWorker(v.deps, { activities: holdAtStorageLocation(v.deps, () => hold) });
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: v.deps.clusters,
  });
  await deleteDrillSchedule(t.client, CLUSTER);
  await ensureDrillSchedule(t.client, v.spec, t.taskQueue);
});
afterAll(async () => {
  hold = false;
  await app?.close();
  await deleteDrillSchedule(t.client, CLUSTER).catch(() => undefined);
  await t?.close();
  await v?.stop();
});

const base = `/clusters/${CLUSTER}/schedules`;
const post = (url: string, payload?: object) => app.inject({ method: 'POST', url, payload: payload ?? {} });
const get = (url: string) => app.inject({ method: 'GET', url });

async function until<T>(fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const r = await fn();
    if (r !== undefined) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('condition not met');
}

describe('schedule API', () => {
  test('list and describe show the drill schedule with its next runs', async () => {
    const list = await get(base);
    expect(list.statusCode).toBe(200);
    expect(list.json().schedules).toEqual([
      expect.objectContaining({
        scheduleId: `dr-drill/${CLUSTER}`,
        workflowType: 'verifyBackup',
        cron: '0 4 * * 0',
        paused: false,
        overlap: 'SKIP',
      }),
    ]);
    const d = await get(`${base}/dr-drill`);
    expect(d.statusCode).toBe(200);
    expect(d.json().nextRuns.length).toBe(5);
    expect(new Date(d.json().nextRuns[0]).getUTCDay()).toBe(0);
    // The full id works URL-encoded; another cluster's schedule does not.
    expect((await get(`${base}/${encodeURIComponent(`dr-drill/${CLUSTER}`)}`)).statusCode).toBe(200);
    expect((await get(`${base}/${encodeURIComponent('dr-drill/pedro-ops')}`)).statusCode).toBe(404);
    expect((await get(`${base}/no-such`)).statusCode).toBe(404);
    expect((await get('/clusters/nope/schedules')).statusCode).toBe(404);
  });

  test('pause and unpause need a note and record it', async () => {
    expect((await post(`${base}/dr-drill/pause`)).json()).toMatchObject({ error: 'BadRequest', field: 'body.note' });
    const p = await post(`${base}/dr-drill/pause`, { note: 'disk swap' });
    expect(p.json()).toMatchObject({ paused: true, note: 'disk swap (by anonymous)' });
    const u = await post(`${base}/dr-drill/unpause`, { note: 'done' });
    expect(u.json()).toMatchObject({ paused: false, note: 'done (by anonymous)' });
  });

  test('trigger starts a drill now; a second trigger while it runs is 409 naming it; describe shows the result', async () => {
    hold = true;
    expect((await post(`${base}/dr-drill/trigger`)).statusCode).toBe(202);
    const running = await until(async () => (await get(`${base}/dr-drill`)).json().running[0] as string | undefined);
    const second = await post(`${base}/dr-drill/trigger`);
    expect(second.statusCode).toBe(409);
    expect(second.json().workflowId).toBe(running);
    hold = false;
    await t.client.workflow.getHandle(running).result();
    const d = await until(async () => {
      const body = (await get(`${base}/dr-drill`)).json();
      return body.recentRuns[0]?.status === 'COMPLETED' && body.running.length === 0 ? body : undefined;
    });
    expect(d.actionsTaken).toBe(1);
    expect(d.recentRuns[0]).toMatchObject({ workflowId: running, result: { result: 'passed' } });
    // The drill is readable through the verification endpoint by its workflow id too.
    const v1 = await get(`/clusters/${CLUSTER}/backups/verifications/${encodeURIComponent(running)}`);
    expect(v1.json()).toMatchObject({ workflowStatus: 'COMPLETED', report: { result: 'passed' } });
  });

  test('backfill validates its range and runs the missed drill', async () => {
    expect(
      (await post(`${base}/dr-drill/backfill`, { start: '2026-01-02T00:00:00Z', end: '2026-01-01T00:00:00Z' })).json()
        .field,
    ).toBe('body.end');
    expect(
      (await post(`${base}/dr-drill/backfill`, { start: 'yesterday', end: '2026-01-01T00:00:00Z' })).json().field,
    ).toBe('body.start');
    // 2026-11-01 is a Sunday: one drill at 04:00. The lab's backups are from the last two days, so
    // that drill has no backup of its own time and says so (it never verifies a newer one).
    const r = await post(`${base}/dr-drill/backfill`, { start: '2026-11-01T03:00:00Z', end: '2026-11-01T05:00:00Z' });
    expect(r.statusCode).toBe(202);
    const id = `dr-drill/${CLUSTER}-2026-11-01T04:00:00Z`;
    await until(async () =>
      (await get(`${base}/dr-drill`)).json().recentRuns.some((x: { workflowId: string }) => x.workflowId === id)
        ? true
        : undefined,
    );
    const old = (await t.client.workflow.getHandle(id).result()) as { result: string; reasons: string[] };
    expect(old.result).toBe('failed');
    expect(old.reasons.join('\n')).toMatch(/no Completed backup .*at or before 2026-11-01T04:00:00\.000Z/);
  });

  test('backfill buffers every missed time (BufferAll) and each run verifies the backup of its own time', async () => {
    // Hourly for this test, so two missed times fall between the lab's two seeded daily backups
    // (2 days and 1 day ago): both runs must verify the older one, not the newest.
    const hourly = structuredClone(v.spec);
    hourly.backups.drill.cron = '0 * * * *';
    await ensureDrillSchedule(t.client, hourly, t.taskQueue);
    const backups = (await v.kube.list('velero.io/v1', 'Backup', hourly.backups.veleroNamespace))
      .map((b) => ({
        name: b.metadata!.name!,
        done: String((b as { status?: { completionTimestamp?: string } }).status?.completionTimestamp),
      }))
      .sort((a, b) => a.done.localeCompare(b.done));
    const [older, newer] = backups;
    const tick = new Date(Date.parse(older.done) + 6 * 3_600_000);
    tick.setUTCMinutes(0, 0, 0);
    expect(tick.getTime()).toBeLessThan(Date.parse(newer.done));
    const ids = [0, 1].map(
      (h) => `dr-drill/${CLUSTER}-${new Date(tick.getTime() + h * 3_600_000).toISOString().replace(/\.000Z$/, 'Z')}`,
    );
    const r = await post(`${base}/dr-drill/backfill`, {
      start: new Date(tick.getTime() - 60_000).toISOString(),
      end: new Date(tick.getTime() + 3_600_000 + 60_000).toISOString(),
    });
    expect(r.statusCode).toBe(202);
    const sched = t.client.schedule.getHandle(`dr-drill/${CLUSTER}`);
    const reports = await Promise.all(
      ids.map(async (id) => {
        // Polled on the Temporal client, not the API (its rate limit is for people).
        await until(async () =>
          (await sched.describe()).info.recentActions.some((a) => a.action.workflow.workflowId === id)
            ? true
            : undefined,
        );
        return (await t.client.workflow.getHandle(id).result()) as { result: string; backup: string };
      }),
    );
    expect(reports.map((x) => [x.result, x.backup])).toEqual([
      ['passed', older.name],
      ['passed', older.name],
    ]);
    await ensureDrillSchedule(t.client, v.spec, t.taskQueue);
  });

  test('delete removes it; afterwards it is 404', async () => {
    const r = await app.inject({ method: 'DELETE', url: `${base}/dr-drill` });
    expect(r.json()).toEqual({ scheduleId: `dr-drill/${CLUSTER}`, deleted: true });
    expect((await get(`${base}/dr-drill`)).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: `${base}/dr-drill` })).statusCode).toBe(404);
  });
});
