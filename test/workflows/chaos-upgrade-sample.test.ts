// upgradeCluster with its worker process SIGKILLed twice at chosen points, not random ones: once while a
// drain is in flight (drainNode started) and once while an install is (installK3sVersion started), a
// new worker started each time. The run must finish with every node on the new version, none upgraded
// twice (one kubeletVersion change and one cordon per node, seen from outside), none left cordoned,
// and one etcd snapshot. Crash detection is natural: each orphaned wait is noticed at its heartbeat
// timeout (test/chaos/README.md), so each kill costs seconds.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { awaitResult } from '../chaos/chaos-runner.js';
import { upgradeScenario, type Scenario } from '../chaos/scenarios.js';
import { WorkerSupervisor } from '../chaos/supervisor.js';

const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
let t: TestTemporal;
let scenario: Scenario;

beforeAll(async () => {
  [t, scenario] = await Promise.all([testTemporal({ taskQueuePrefix: 'chaos-upgrade' }), upgradeScenario()]);
}, 600_000);

afterAll(async () => {
  await t?.close();
  await scenario?.stop();
});

/** Resolves once `worker` holds a started `activity` of the run (a retry after a kill counts too). */
async function activityStarted(h: WorkflowHandle, activity: string, worker: string, ms = 240_000): Promise<string> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const d = await h.describe();
    if (d.status.name !== 'RUNNING') throw new Error(`run closed before ${activity} started`);
    const a = (d.raw.pendingActivities ?? []).find(
      (x) => x.state === STARTED && x.activityType?.name === activity && x.lastWorkerIdentity === worker,
    );
    if (a) return `${activity} attempt ${a.attempt}`;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${activity} did not start on ${worker} within ${ms} ms`);
}

test('upgradeCluster survives a SIGKILL during a drain and one during an install: no node upgraded twice, none left cordoned', async () => {
  const supervisor = new WorkerSupervisor(
    { address: t.address, taskQueue: t.taskQueue, dataDir: scenario.dataDir },
    'upgrade-sample',
    1,
  );
  try {
    await supervisor.start();
    await supervisor.standbyWarm();
    const h = await scenario.start(t.client, t.taskQueue);
    const kills: string[] = [];
    for (const activity of ['drainNode', 'installK3sVersion']) {
      const w = supervisor.current!;
      const what = await activityStarted(h, activity, w.identity);
      // a moment in: the activity is doing its work (evictions under way, the installer running)
      await new Promise((r) => setTimeout(r, 300));
      await supervisor.standbyWarm();
      await supervisor.killCurrent();
      const next = await supervisor.start();
      kills.push(`${what}: killed ${w.identity} (pid ${w.pid}), ${next.identity} took over`);
    }
    const result = await awaitResult(h);
    process.stderr.write(`[chaos-upgrade] ${kills.join('; ')}\n`);
    const check = await scenario.check(result);
    process.stderr.write(`[chaos-upgrade] counts ${JSON.stringify(check.counts)}\n`);
    expect(kills).toHaveLength(2);
    expect(check.problems).toEqual([]);
    expect(check.repeated).toEqual([]);
  } finally {
    await supervisor.stopAll();
  }
}, 600_000);
