// Heartbeats and cancellable sleeps for long activities (DESIGN rule 10: a crash costs seconds). An
// activity with a heartbeat timeout (workflows/activity-options.ts, 8 s) must beat more often than
// that, also while it sits in one long call (an apt install over SSH, a 1Password request backing off),
// so the server notices a dead worker within seconds. Outside an activity (unit tests, benches) these
// degrade to a no-op and a plain timer, so activity functions can be called directly.
import { Context } from '@temporalio/activity';

/** Beat at least this often. The SDK sends at most one heartbeat per 0.8 × heartbeatTimeout anyway. */
export const KEEPALIVE_MS = 3_000;

function current(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // not in an activity context
  }
}

// The last details each running activity sent, so a keepalive repeats them instead of erasing them
// (the server keeps only the latest heartbeat's details, and a retry resumes from those).
const lastDetails = new WeakMap<Context, unknown>();

function last(c: Context): unknown {
  return lastDetails.has(c) ? lastDetails.get(c) : c.info.heartbeatDetails;
}

/**
 * This activity execution, the same across its retries and different for any other one (a new run,
 * or an operator's retry, which schedules a new activity): `workflowId/runId/activityId`. Undefined
 * outside an activity.
 */
export function activityKey(): string | undefined {
  const i = current()?.info;
  const run = i?.workflowExecution;
  return i && run ? `${run.workflowId}/${run.runId}/${i.activityId}` : undefined;
}

/** Heartbeat with progress details (Temporal Web shows them); a no-op outside an activity. */
export function beat(details: unknown): void {
  const c = current();
  if (!c) return;
  lastDetails.set(c, details);
  c.heartbeat(details);
}

/**
 * What the previous attempt of this activity last reported (its heartbeat details), for resuming after
 * a crash or a handed-back attempt; undefined on a first attempt or outside an activity.
 */
export function resumeDetails<T>(): Partial<T> | undefined {
  const d: unknown = current()?.info.heartbeatDetails;
  return d && typeof d === 'object' ? d : undefined;
}

/**
 * The deadline of a wait of `timeoutSeconds`, kept across attempts: a retry after a crash finds the
 * first attempt's deadline in the heartbeat details (`{ waiting: what, deadline }`) instead of
 * starting the clock again. Callers put both fields into every beat of that wait.
 */
export function waitDeadline(timeoutSeconds: number, what: string): number {
  const prev = resumeDetails<{ waiting: string; deadline: number }>();
  const fresh = Date.now() + timeoutSeconds * 1000;
  // A deadline further out than a fresh one cannot be this wait's (clock skew between workers aside).
  return prev?.waiting === what && typeof prev.deadline === 'number' && prev.deadline <= fresh ? prev.deadline : fresh;
}

/**
 * Runs `fn` (one or more calls that may each take a while) while repeating the last heartbeat every
 * KEEPALIVE_MS, so the worker proves it is alive without the call having to. `onCancel` runs when the
 * activity is cancelled (worker shutdown after its grace time, or the workflow cancelling): it should
 * abort what `fn` waits for, so the attempt ends and is handed back at once.
 */
export async function keepAlive<T>(fn: () => Promise<T>, onCancel?: () => void): Promise<T> {
  const c = current();
  if (!c) return fn();
  const timer = setInterval(() => c.heartbeat(last(c)), KEEPALIVE_MS);
  const abort = () => onCancel?.();
  if (onCancel) c.cancellationSignal.addEventListener('abort', abort, { once: true });
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    c.cancellationSignal.removeEventListener('abort', abort);
  }
}

/**
 * Sleeps; inside an activity it rejects with CancelledFailure once cancellation is delivered, and a
 * sleep longer than KEEPALIVE_MS keeps beating (a 30 s backoff must not look like a dead worker).
 */
export async function sleep(ms: number): Promise<void> {
  const c = current();
  if (!c) return new Promise((r) => setTimeout(r, ms));
  const end = Date.now() + ms;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return;
    await c.sleep(Math.min(left, KEEPALIVE_MS));
    if (end - Date.now() > 0) c.heartbeat(last(c));
  }
}
