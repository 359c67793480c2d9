// Graceful worker shutdown (SIGTERM, what `docker compose stop` or a rolling update sends): the worker
// stops polling, lets its in-flight activities run for SHUTDOWN_GRACE_TIME, then cancels them so
// their attempt fails and the server hands it to another worker at once, not after a timeout. Real
// worker processes (test/chaos/worker-process.ts, built like production), a rotation whose consumer
// rollout is stalled in the lab so the wait is still running when SIGTERM arrives.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { msToNumber } from '@temporalio/common/lib/time.js';
import { temporal } from '@temporalio/proto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { startRotationLab, type RotationLab } from './rotate-secrets-lab.js';
import { WorkerProc } from '../chaos/supervisor.js';
import { rotateSecretsWorkflowId, type RotationReport } from '../../workflows/rotate-secrets.js';
import { SHUTDOWN_FORCE_TIME, SHUTDOWN_GRACE_TIME } from '../../worker/shutdown.js';
import { HEARTBEAT_TIMEOUT } from '../../workflows/activity-options.js';

const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let t: TestTemporal;
let r: RotationLab;

beforeAll(async () => {
  [t, r] = await Promise.all([testTemporal({ taskQueuePrefix: 'shutdown' }), startRotationLab()]);
});

afterAll(async () => {
  await t?.close();
  await r?.stop();
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(100);
  }
}

test('SIGTERM hands an in-flight wait back within the grace time; another worker finishes it, nothing repeated', async () => {
  const target = { address: t.address, taskQueue: t.taskQueue, dataDir: r.dataDir };
  const a = new WorkerProc(target, `shutdown-a-${randomUUID().slice(0, 4)}`);
  const b = new WorkerProc(target, `shutdown-b-${randomUUID().slice(0, 4)}`);
  try {
    await r.changeValues(['tailscale-oauth']);
    r.lab.faults.rollouts.stall('tailscale', 'Deployment', 'operator');
    await Promise.all([a.untilWarm(), b.untilWarm()]);
    await a.go();
    r.lab.resetCounters();
    const id = randomUUID();
    const h = await t.client.workflow.start('rotateSecrets', {
      taskQueue: t.taskQueue,
      workflowId: rotateSecretsWorkflowId('lab', id),
      args: [{ cluster: 'lab', entries: ['tailscale-oauth'], rolloutTimeoutSeconds: 180, requestId: id }],
    });
    const pendingRestart = async () =>
      ((await h.describe()).raw.pendingActivities ?? []).find(
        (x) => x.activityType?.name === 'rotationRestartConsumer',
      );
    await until('worker A running the rollout wait', async () => {
      const p = await pendingRestart();
      return p?.state === STARTED && p.lastWorkerIdentity === a.identity ? p : undefined;
    });
    await b.go();

    const termAt = Date.now();
    process.kill(a.pid, 'SIGTERM');
    // The attempt ends on worker A (a failure the server retries), not by a heartbeat timeout.
    const handedBack = await until('the attempt handed back', async () => {
      const p = await pendingRestart();
      return p && (p.attempt ?? 1) >= 2 ? p : undefined;
    });
    const handBackMs = Date.now() - termAt;
    await a.exited;
    const exitMs = Date.now() - termAt;
    r.lab.faults.clear();
    const rep: RotationReport = await h.result();

    expect(a.exitCode, `worker A stderr: ${a.stderr}`).toBe(0);
    expect(handedBack.lastFailure?.message ?? '').not.toMatch(/heartbeat/i);
    expect(handedBack.lastFailure?.timeoutFailureInfo ?? undefined).toBeUndefined();
    // Within the grace time (plus the poll that notices it), well before a lost worker's heartbeat
    // timeout would have started counting from its last beat; and the process exits by the force time.
    expect(handBackMs).toBeLessThan(msToNumber(SHUTDOWN_GRACE_TIME) + msToNumber(HEARTBEAT_TIMEOUT) / 2);
    expect(exitMs).toBeLessThan(msToNumber(SHUTDOWN_FORCE_TIME));
    expect(rep.state).toBe('ok');
    expect(rep.entries[0].status).toBe('rotated');
    // Worker B's attempt found the restart already done: one restart, not two.
    expect(r.lab.counters().kube.restarts).toEqual({ 'tailscale/Deployment/operator': 1 });
    const events = (await h.fetchHistory()).events ?? [];
    const completedBy = events
      .filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.identity);
    expect(completedBy).toContain(b.identity);
  } finally {
    r.lab.faults.clear();
    await Promise.all([a.stop(), b.stop()]);
  }
}, 240_000);
