// upgradeCluster with its worker process SIGKILLed twice at chosen points, not random ones: once while a
// drain is in flight (drainNode started) and once while an install is (installK3sVersion started), a
// new worker started each time. The run must finish with every node on the new version, none upgraded
// twice (one kubeletVersion change and one cordon per node, seen from outside), none left cordoned,
// and one etcd snapshot. Crash detection is natural: each orphaned wait is noticed at its heartbeat
// timeout (test/chaos/README.md), so each kill costs seconds.
// Then the same lab's charts: a SIGKILL while a failed chart upgrade is being rolled back. The new
// worker must finish that rollback, not try the failing version again: one helm run of the new
// version and one of the rollback.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { ClusterSpec } from '../../config/schema.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { resolve, stepOf, until } from './provision-lab.js';
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

test('a SIGKILL during the rollback of a failed chart upgrade: the rollback finishes once, the failing version is not tried again', async () => {
  const lab = scenario.lab;
  const file = join(scenario.dataDir, 'clusters', 'upgrade-chaos.yaml');
  const raw = parse(readFileSync(file, 'utf8')) as ClusterSpec;
  const contour = raw.components.find((c) => c.name === 'contour')!;
  const was = contour.version;
  contour.version = '0.1.1';
  writeFileSync(file, stringify(raw, { lineWidth: 0 }));
  lab.faults.helmcharts.failVersion('contour', '0.1.1');
  expect(was).not.toBe('0.1.1');
  const chartVersion = async () => {
    const c = await lab.pieces.kube.controlPlane.api.get(
      '/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/contour',
    );
    return (c as { spec?: { version?: string } } | undefined)?.spec?.version;
  };
  let watching = false;
  const supervisor = new WorkerSupervisor(
    { address: t.address, taskQueue: t.taskQueue, dataDir: scenario.dataDir },
    'rollback-sample',
    1,
  );
  try {
    await supervisor.start();
    await supervisor.standbyWarm();
    const h = await t.client.workflow.start('upgradeCluster', {
      taskQueue: t.taskQueue,
      workflowId: 'upgrade/upgrade-chaos',
      args: [{ cluster: 'upgrade-chaos', requestedBy: 'chaos' }],
    });
    // The chart's version as seen from outside, every 25 ms: each helm run of another spec shows as a change.
    const versions: string[] = [];
    watching = true;
    const watcher = (async () => {
      while (watching) {
        const v = await chartVersion().catch(() => undefined);
        if (v && v !== versions.at(-1)) versions.push(v);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    // the new version applied, then the previous one written back: the rollback is in flight
    for (const end = Date.now() + 300_000; versions.join(' ') !== `${was} 0.1.1 ${was}`;) {
      if (Date.now() > end) throw new Error(`the rollback never started (versions ${versions.join(' → ')})`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const w = supervisor.current!;
    const held = ((await h.describe()).raw.pendingActivities ?? []).find(
      (x) => x.state === STARTED && x.activityType?.name === 'upgradeComponent',
    );
    expect(held?.lastWorkerIdentity, 'upgradeComponent is running on the worker about to die').toBe(w.identity);
    await supervisor.standbyWarm();
    await supervisor.killCurrent();
    await supervisor.start();

    const p = await until(h, 'contour parked', (x) => stepOf(x, 'chart/contour').state === 'needs-attention', 240_000);
    const err = stepOf(p, 'chart/contour').lastError!;
    expect(err.type).toBe('InstallFailed');
    expect(err.message).toContain(`rolled back to version ${was}`);
    expect(await chartVersion()).toBe(was);
    await new Promise((r) => setTimeout(r, 500));
    watching = false;
    await watcher;
    // one upgrade to the failing version and one rollback: a retry that upgraded again shows 0.1.1 twice
    expect(versions).toEqual([was, '0.1.1', was]);
    await resolve(h, 'chart/contour', 'skip');
    const report = (await h.result()) as UpgradeReport;
    expect(report.state).toBe('partial');
    expect(report.charts.find((c) => c.name === 'contour')?.detail).toContain(`rolled back to version ${was}`);
  } finally {
    watching = false;
    await lab.faults.clear();
    await supervisor.stopAll();
  }
}, 600_000);
