// The scheduled DR drill on the real Temporal dev server: ensureDrillSchedule creates/updates the
// `dr-drill/<cluster>` schedule idempotently; trigger starts a drill at once; two triggers while one
// runs give one drill (overlap SKIP); pause/unpause keep their note; backfill runs missed times.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type ScheduleHandle } from '@temporalio/client';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { checkDrillSkips, deleteDrillSchedule, drillScheduleId, ensureDrillSchedule } from '../../worker/schedules.js';
import { DRILL_CLEANUP_MARGIN_SECONDS, DRILL_DEADLINE_SECONDS } from '../../workflows/drill-limits.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import { holdAtStorageLocation, startVeleroLab, type VeleroLab } from './velero-lab.js';

// A cluster name of its own: the dev server is shared by every test file of the run.
const CLUSTER = 'lab-drill';
let t: TestTemporal;
let v: VeleroLab;
let handle: ScheduleHandle;
/** While true, drills hold at their first step, so "a drill is running" lasts as long as a test needs. */
let hold = false;

beforeAll(async () => {
  [t, v] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'drill-schedule' }),
    startVeleroLab((s) => void (s.name = CLUSTER)),
  ]);
  await t.startWorker(v.deps, { activities: holdAtStorageLocation(v.deps, () => hold) });
  handle = t.client.schedule.getHandle(drillScheduleId(CLUSTER));
});

afterAll(async () => {
  hold = false;
  await deleteDrillSchedule(t.client, CLUSTER).catch(() => undefined);
  await t?.close();
  await v?.stop();
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await fn();
    if (r !== undefined) return r;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

const actionIds = async () => (await handle.describe()).info.recentActions.map((a) => a.action.workflow.workflowId);

describe('drill schedule', () => {
  test('ensureDrillSchedule creates dr-drill/<cluster> once, then updates only on change', async () => {
    await deleteDrillSchedule(t.client, CLUSTER);
    expect(await ensureDrillSchedule(t.client, v.spec, t.taskQueue)).toEqual({
      scheduleId: `dr-drill/${CLUSTER}`,
      action: 'created',
      paused: false,
    });
    expect(await ensureDrillSchedule(t.client, v.spec, t.taskQueue)).toMatchObject({
      action: 'unchanged',
      paused: false,
    });
    const desc = await handle.describe();
    expect(desc.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    // A run timeout above the drill's own deadline: no drill holds the schedule forever.
    expect(desc.action.workflowRunTimeout).toBe((DRILL_DEADLINE_SECONDS + DRILL_CLEANUP_MARGIN_SECONDS) * 1000);
    expect(desc.action.workflowType).toBe('verifyBackup');
    expect(desc.action.taskQueue).toBe(t.taskQueue);
    expect(desc.action.args).toEqual([
      { cluster: CLUSTER, latestFromSchedule: true, requestedBy: `schedule:dr-drill/${CLUSTER}` },
    ]);
    // "0 4 * * 0": Sundays 04:00 UTC.
    const next = desc.info.nextActionTimes;
    expect(next.length).toBeGreaterThan(0);
    for (const d of next) expect([d.getUTCDay(), d.getUTCHours(), d.getUTCMinutes()]).toEqual([0, 4, 0]);

    const changed = structuredClone(v.spec);
    changed.backups.drill.cron = '30 3 * * *';
    expect(await ensureDrillSchedule(t.client, changed, t.taskQueue)).toMatchObject({ action: 'updated' });
    const after = await handle.describe();
    expect([after.info.nextActionTimes[0].getUTCHours(), after.info.nextActionTimes[0].getUTCMinutes()]).toEqual([
      3, 30,
    ]);
    // Config paused: true pauses; an unpaused config never unpauses an operator's pause.
    changed.backups.drill.paused = true;
    expect(await ensureDrillSchedule(t.client, changed, t.taskQueue)).toMatchObject({
      action: 'unchanged',
      paused: true,
    });
    expect(await ensureDrillSchedule(t.client, v.spec, t.taskQueue)).toMatchObject({ action: 'updated', paused: true });
    await handle.unpause('test');
  });

  test('trigger starts a drill at once; it passes', async () => {
    const before = (await actionIds()).length;
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    const ids = await until('a triggered action', async () => {
      const a = await actionIds();
      return a.length > before ? a : undefined;
    });
    const id = ids.at(-1)!;
    expect(id.startsWith(`dr-drill/${CLUSTER}-`)).toBe(true);
    const report = (await t.client.workflow.getHandle(id).result()) as DrillReport;
    expect(report.result).toBe('passed');
    expect(report.rtoSeconds).toBeGreaterThanOrEqual(1);
    expect(await v.scratchNamespaces()).toEqual([]);
  });

  test('two triggers while a drill runs give one drill (overlap skip), and the skips are alerted', async () => {
    hold = true;
    const seen = new Map<string, number>();
    expect(await checkDrillSkips(t.client, CLUSTER, seen)).toBe(0); // baseline
    const before = (await actionIds()).length;
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    await until('the first drill running', async () =>
      (await handle.describe()).info.runningActions.length === 1 ? true : undefined,
    );
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    // Give the schedule time to process both triggers; they must be skipped, not queued.
    await new Promise((r) => setTimeout(r, 1500));
    const desc = await handle.describe();
    expect(desc.info.runningActions).toHaveLength(1);
    expect(desc.info.recentActions.length - before).toBe(1);
    expect(desc.info.numActionsSkippedOverlap).toBeGreaterThanOrEqual(1);
    const running = desc.info.runningActions[0].workflow.workflowId;
    // The alert: the running drill is told, and shows it (search attribute DrillsSkipped, report).
    expect(await checkDrillSkips(t.client, CLUSTER, seen)).toBeGreaterThanOrEqual(1);
    expect(await checkDrillSkips(t.client, CLUSTER, seen)).toBe(0);
    await until('DrillsSkipped on the running drill', async () => {
      const sa = (await t.client.workflow.getHandle(running).describe()).searchAttributes.DrillsSkipped as
        number[] | undefined;
      return sa && sa[0] >= 1 ? true : undefined;
    });
    hold = false;
    const done = (await t.client.workflow.getHandle(running).result()) as DrillReport;
    expect(done.result).toBe('passed');
    expect(done.drillsSkipped).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await actionIds()).length - before).toBe(1);
  });

  test('pause and unpause keep the operator note', async () => {
    await handle.pause('maintenance window INC-7');
    let d = await handle.describe();
    expect(d.state.paused).toBe(true);
    expect(d.state.note).toBe('maintenance window INC-7');
    await handle.unpause('maintenance over');
    d = await handle.describe();
    expect(d.state.paused).toBe(false);
    expect(d.state.note).toBe('maintenance over');
  });

  test('backfill runs the drill for a missed time in the range', async () => {
    // With overlap SKIP a backfill is skipped while the schedule still counts a drill as running.
    await until('no running drill', async () =>
      (await handle.describe()).info.runningActions.length === 0 ? true : undefined,
    );
    const before = (await actionIds()).length;
    // The first test's last ensure restored the config cron: Sundays 04:00 UTC.
    const lastSunday = new Date();
    lastSunday.setUTCDate(lastSunday.getUTCDate() - ((lastSunday.getUTCDay() + 7) % 7 || 7));
    lastSunday.setUTCHours(4, 0, 0, 0);
    await handle.backfill([
      {
        start: new Date(lastSunday.getTime() - 60_000),
        end: new Date(lastSunday.getTime() + 60_000),
        overlap: ScheduleOverlapPolicy.BUFFER_ALL,
      },
    ]);
    const ids = await until('a backfilled action', async () => {
      const a = await actionIds();
      return a.length > before ? a : undefined;
    });
    expect(ids.at(-1)).toBe(`dr-drill/${CLUSTER}-${lastSunday.toISOString().replace(/\.000Z$/, 'Z')}`);
    // The backfilled drill verifies the backup of its own time: the newest completed by then, if any.
    const byThen = (await v.kube.list('velero.io/v1', 'Backup', v.spec.backups.veleroNamespace))
      .map((b) => ({
        name: b.metadata!.name!,
        done: (b as { status?: { completionTimestamp?: string } }).status?.completionTimestamp ?? '',
      }))
      .filter((b) => b.done && Date.parse(b.done) <= lastSunday.getTime())
      .sort((a, b) => b.done.localeCompare(a.done))[0];
    const report = (await t.client.workflow.getHandle(ids.at(-1)!).result()) as DrillReport;
    if (byThen) expect([report.result, report.backup]).toEqual(['passed', byThen.name]);
    else {
      expect(report.result).toBe('failed');
      expect(report.reasons.join('\n')).toContain(`at or before ${lastSunday.toISOString()}`);
    }
  });

  test('delete removes the schedule', async () => {
    expect(await deleteDrillSchedule(t.client, CLUSTER)).toBe(true);
    await expect(handle.describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
    expect(await deleteDrillSchedule(t.client, CLUSTER)).toBe(false);
  });
});
