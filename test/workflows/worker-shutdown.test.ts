// Graceful worker shutdown (SIGTERM, what `docker compose stop` or a rolling update sends): the worker
// stops polling, lets its in-flight activities run for SHUTDOWN_GRACE_TIME, then cancels them so
// their attempt fails and the server hands it to another worker at once, not after a timeout. Real
// worker processes (test/chaos/worker-process.ts, built like production) run a drill whose backup
// wait is held (CHAOS_HOLD_FILE) so it is still running when SIGTERM arrives.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { msToNumber } from '@temporalio/common/lib/time.js';
import { temporal } from '@temporalio/proto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { startVeleroLab, type VeleroLab } from './velero-lab.js';
import { WorkerProc } from '../chaos/supervisor.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import { SHUTDOWN_FORCE_TIME, SHUTDOWN_GRACE_TIME } from '../../worker/shutdown.js';

const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let t: TestTemporal;
let v: VeleroLab;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pedro-ops-shutdown-'));
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'shutdown' }), startVeleroLab()]);
});

afterAll(async () => {
  await t?.close();
  await v?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const x = await fn();
    if (x !== undefined) return x;
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(100);
  }
}

test('SIGTERM hands an in-flight wait back within the grace time; another worker finishes it, nothing repeated', async () => {
  const hold = join(dir, 'hold');
  writeFileSync(hold, '');
  const target = { address: t.address, taskQueue: t.taskQueue, dataDir: v.dataDir };
  const env = { CHAOS_HOLD_FILE: hold };
  const a = new WorkerProc(target, `shutdown-a-${randomUUID().slice(0, 4)}`, env);
  const b = new WorkerProc(target, `shutdown-b-${randomUUID().slice(0, 4)}`, env);
  try {
    await Promise.all([a.untilWarm(), b.untilWarm()]);
    await a.go();
    v.lab.resetCounters();
    const h = await t.client.workflow.start('verifyBackup', {
      taskQueue: t.taskQueue,
      workflowId: `verify-backup/lab/shutdown-${randomUUID().slice(0, 8)}`,
      args: [{ cluster: 'lab', createNew: true }],
    });
    const pendingWait = async () =>
      ((await h.describe()).raw.pendingActivities ?? []).find((x) => x.activityType?.name === 'veleroWaitBackup');
    await until('worker A running the backup wait', async () => {
      const p = await pendingWait();
      return p?.state === STARTED && p.lastWorkerIdentity === a.identity ? p : undefined;
    });
    await b.go();

    const termAt = Date.now();
    process.kill(a.pid, 'SIGTERM');
    const seen: string[] = [];
    // The attempt ends on worker A with a failure the server retries at once, not by a timeout.
    const handedBack = await until('the attempt handed back', async () => {
      const p = await pendingWait();
      const line = `${p ? `attempt ${p.attempt} ${p.state} by ${p.lastWorkerIdentity}, last failure ${p.lastFailure?.message}` : 'no pending wait'}; A ${a.alive ? 'alive' : `exited ${a.exitCode}`}`;
      if (!seen.at(-1)?.endsWith(line)) seen.push(`+${Date.now() - termAt} ms: ${line}`);
      if (Date.now() - termAt > 60_000) throw new Error(`no hand-back: ${seen.join(' | ')}; A stderr: ${a.stderr}`);
      return p && (p.attempt ?? 1) >= 2 ? p : undefined;
    });
    const handBackMs = Date.now() - termAt;
    await a.exited;
    const exitMs = Date.now() - termAt;
    rmSync(hold);
    const rep: DrillReport = await h.result();
    process.stderr.write(
      `[shutdown] SIGTERM -> attempt handed back ${handBackMs} ms, worker exited ${exitMs} ms (code ${a.exitCode}); last failure: ${handedBack.lastFailure?.message}; ${seen.join(' | ')}\n`,
    );

    expect(a.exitCode, `worker A stderr: ${a.stderr}`).toBe(0);
    expect(handedBack.lastFailure?.timeoutFailureInfo ?? undefined, seen.join(' | ')).toBeUndefined();
    expect(handedBack.lastFailure?.message ?? '', seen.join(' | ')).not.toMatch(/timeout/i);
    // Handed back once the grace time ran out (plus the describe poll), and the process is gone by the force time.
    expect(handBackMs, seen.join(' | ')).toBeGreaterThanOrEqual(msToNumber(SHUTDOWN_GRACE_TIME) - 500);
    expect(handBackMs, seen.join(' | ')).toBeLessThan(msToNumber(SHUTDOWN_GRACE_TIME) + 5_000);
    expect(exitMs).toBeLessThan(msToNumber(SHUTDOWN_FORCE_TIME));
    expect(rep.result, rep.reasons.join('; ')).toBe('passed');
    expect(v.writes('create:Backup')).toBe(1);
    expect(v.writes('create:Restore')).toBe(1);
    const events = (await h.fetchHistory()).events ?? [];
    const wait = events.find(
      (e) =>
        e.activityTaskStartedEventAttributes &&
        events.some(
          (s) =>
            s.eventId?.toString() === e.activityTaskStartedEventAttributes!.scheduledEventId?.toString() &&
            s.activityTaskScheduledEventAttributes?.activityType?.name === 'veleroWaitBackup',
        ),
    );
    expect(wait?.activityTaskStartedEventAttributes?.identity).toBe(b.identity);
    expect(wait?.activityTaskStartedEventAttributes?.attempt).toBe(2);
  } finally {
    rmSync(hold, { force: true });
    await Promise.all([a.stop(), b.stop()]);
  }
}, 240_000);
