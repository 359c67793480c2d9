// Chaos for recoverControlPlane: the worker process (test/chaos/worker-process.ts, built like
// production) is SIGKILLed while `k3s server --cluster-reset` is running on the node (the lab's
// datastore restore is held until the kill, so the kill lands inside the reset, not next to it). A
// second worker picks the run up; it completes, every node Ready, and the datastore was restored
// exactly once: the retried attempt waits for the reset the dead worker started instead of running
// another one.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { WorkerProc } from '../chaos/supervisor.js';
import { createActivities } from '../../activities/index.js';
import type { RecoverReport } from '../../workflows/recover-control-plane.js';
import { approveUpdate, type Progress } from '../../workflows/messages.js';
import { activity, startEtcdLab, type EtcdLab } from './etcd-lab.js';

const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CM = '/api/v1/namespaces/default/configmaps';

let t: TestTemporal;
let v: EtcdLab;
let snapshot: string;
const workers: WorkerProc[] = [];

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'recover-cp-chaos' }), startEtcdLab()]);
  await activity(() => createActivities(v.deps).prepareNode({ cluster: v.spec.name, node: 'control-plane' }));
  const api = v.lab.pieces.kube.controlPlane.api;
  await api.must('POST', CM, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'before-snapshot' } });
  const saved = await v.onNode('k3s etcd-snapshot save');
  snapshot = /Snapshot (\S+) saved/.exec(saved.stderr)![1];
  await api.must('POST', CM, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'after-snapshot' } });
}, 240_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await t?.close();
  await v?.stop();
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const x = await fn();
    if (x !== undefined) return x;
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(100);
  }
}

test('SIGKILL of the worker during the cluster-reset: the run completes and the datastore is restored once', async () => {
  // Count the lab's datastore restores (what `--cluster-reset-restore-path` posts) and hold each one
  // until released: the worker is killed while the reset is in flight on the node.
  const cp = v.lab.pieces.kube.controlPlane;
  const restore = cp.restore.bind(cp);
  let restores = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  cp.restore = async (body: Buffer) => {
    restores += 1;
    await released;
    return restore(body);
  };

  const target = { address: t.address, taskQueue: t.taskQueue, dataDir: v.dataDir };
  const a = new WorkerProc(target, `recover-a-${randomUUID().slice(0, 4)}`);
  const b = new WorkerProc(target, `recover-b-${randomUUID().slice(0, 4)}`);
  workers.push(a, b);
  await Promise.all([a.untilWarm(), b.untilWarm()]);
  await a.go();

  await cp.destroy();
  await v.onNode('rm -rf /var/lib/rancher/k3s/server/db/snapshots');
  const h = await t.client.workflow.start('recoverControlPlane', {
    taskQueue: t.taskQueue,
    workflowId: `recover-control-plane/lab/chaos-${randomUUID().slice(0, 8)}`,
    args: [{ cluster: v.spec.name, snapshot }],
  });
  await until('the approval gate', async () =>
    (await h.query<Progress>('progress')).state === 'waiting-approval' ? true : undefined,
  );
  await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test' }] });

  const pendingRestore = async () =>
    ((await h.describe()).raw.pendingActivities ?? []).find((x) => x.activityType?.name === 'restoreEtcdSnapshot');
  await until('the reset running on the node', async () => (restores > 0 ? true : undefined));
  expect((await pendingRestore())?.lastWorkerIdentity).toBe(a.identity);
  await a.kill();
  await b.go();
  // The retry on worker B is under way (after A's heartbeat timed out) before the first reset is let go.
  await until('the restore retried on worker B', async () => {
    const p = await pendingRestore();
    return p?.state === STARTED && p.lastWorkerIdentity === b.identity && (p.attempt ?? 1) >= 2 ? p : undefined;
  });
  await sleep(3000);
  release();

  const r = (await h.result()) as RecoverReport;
  expect(r.result, r.reasons.join('; ')).toBe('recovered');
  expect(restores).toBe(1);
  expect(r.nodesReady?.sort()).toEqual(['control-plane', 'worker-1', 'worker-2']);
  expect(await cp.api.get(`${CM}/before-snapshot`)).toBeTruthy();
  expect(await cp.api.get(`${CM}/after-snapshot`)).toBeFalsy();
  expect(r.drift?.total).toBe(0);
}, 420_000);
