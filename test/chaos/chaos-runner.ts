// Runs one workflow while SIGKILLing its worker at seeded random points, starting a new worker after
// each kill, and measures how long the new worker takes to pick the run up again.
//
// Crash detection is natural by default: after a SIGKILL the server learns that an activity died
// when its heartbeat timeout (8 s) or, for a short activity, its start-to-close (8 s) expires
// (workflows/activity-options.ts), and a workflow task bound to the dead worker's sticky queue waits
// out the sticky schedule-to-start timeout (3 s, worker/shutdown.ts). Nothing here helps.
// CHAOS_DETECTOR=1 (quick local runs only) makes the harness do what those timers would do, at once:
// it clears the run's sticky queue and fails the killed worker's started activities by id as
// retryable, the same transition a timeout makes. Each kill records the timeout the server waits
// without that help (naturalBoundS).
import { ApplicationFailure, tsToMs } from '@temporalio/common';
import { ServiceError, type Client, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { eventsQuery, progressQuery } from '../../workflows/messages.js';
import type { WorkerSupervisor } from './supervisor.js';

type Event = temporal.api.history.v1.IHistoryEvent;
const STARTED_ACTIVITY = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const STARTED_WFT = temporal.api.enums.v1.PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED;

/** mulberry32: small, seedable, good enough to spread kill points. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)],
  };
}
export type Rng = ReturnType<typeof rng>;

export type KillMode = 'delay' | 'step' | 'activity';

export interface KillRecord {
  workflow: string;
  workflowId: string;
  index: number;
  mode: KillMode;
  /** What fired the kill: "delay 412ms", "step k3s/worker-1 running", "activity installComponent started", "fallback". */
  trigger: string;
  killedWorker: string;
  killedPid: number;
  killedAt: number;
  sinceRunStartMs: number;
  orphaned: { activityId: string; type: string; attempt: number }[];
  workflowTaskInFlight: boolean;
  newWorker: string;
  newWorkerReadyAt: number;
  /** The new worker's "go" -> polling (connect + Worker.create with the bundle already built). */
  newWorkerStartMs: number;
  /**
   * New worker polling -> first workflow or activity task it started: the earlier of the history (tasks
   * that closed) and the harness seeing it hold a started activity (attempts killed before they closed
   * leave no history event).
   */
  resumeMs?: number;
  /** When the harness saw the new worker holding a started activity or having run a workflow task. */
  pickedUpAt?: number;
  /** New worker polling -> the next step turning running (progress events, workflow time). */
  nextStepMs?: number;
  /** The next kill landed before any next step: this kill has no next-step time (the next one covers it). */
  interrupted?: boolean;
  nextStep?: string;
  /** What the server would have waited without the detector: the orphans' heartbeat or start-to-close timeout. */
  naturalBoundS?: number;
  /** History between the kill and the next step (offsets from the kill, ms). */
  timeline: string[];
  /** Timeouts the server fired between this kill and the next one (e.g. a workflow task bound to the dead worker). */
  timeouts: string[];
}

export interface ChaosOptions {
  client: Client;
  supervisor: WorkerSupervisor;
  rng: Rng;
  workflow: string;
  kills: number;
  /** Upper bound of the random delay in "delay" mode. */
  maxDelayMs: number;
  detector?: boolean;
  log?: (line: string) => void;
  /** Sees every kill record as it happens (kept even when the run later fails). */
  onKill?: (k: KillRecord) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (ts: unknown) => tsToMs(ts as never);
const durationS = (d: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  d ? Number(d.seconds ?? 0) + (d.nanos ?? 0) / 1e9 : undefined;

function identityOf(e: Event): string | undefined {
  return e.workflowTaskStartedEventAttributes?.identity ?? e.activityTaskStartedEventAttributes?.identity ?? undefined;
}

async function closed(h: WorkflowHandle): Promise<boolean> {
  return (await patient(`describe ${h.workflowId}`, () => h.describe())).status.name !== 'RUNNING';
}

/** The worker started a workflow task, or holds a started activity (history records those only when they close). */
async function workedBy(h: WorkflowHandle, identity: string): Promise<boolean> {
  const d = await patient(`describe ${h.workflowId}`, () => h.describe());
  if ((d.raw.pendingActivities ?? []).some((a) => a.state === STARTED_ACTIVITY && a.lastWorkerIdentity === identity))
    return true;
  const events = (await patient(`history of ${h.workflowId}`, () => h.fetchHistory())).events ?? [];
  return events.some((e) => identityOf(e) === identity);
}

/** Where a run stands, for a failure message: parked steps, pending activities and workflow task. */
async function situation(h: WorkflowHandle): Promise<string> {
  const d = await h.describe();
  const acts = (d.raw.pendingActivities ?? []).map(
    (a) =>
      `${a.activityType?.name}#${a.attempt} state ${a.state} by ${a.lastWorkerIdentity || '-'}${a.lastFailure?.message ? ` (last failure: ${a.lastFailure.message})` : ''}`,
  );
  const p = await h.query(progressQuery).catch(() => undefined);
  const parked = p?.steps
    .filter((s) => s.state === 'needs-attention')
    .map((s) => `${s.id}: ${s.lastError?.type} ${s.lastError?.message}`) ?? ['(progress query unanswered)'];
  return `run ${d.status.name}; pending activities: ${acts.join(', ') || 'none'}; workflow task: ${d.raw.pendingWorkflowTask ? `state ${d.raw.pendingWorkflowTask.state}` : 'none'}; needs-attention: ${parked.join('; ') || 'none'}`;
}

/** Waits until `pred` holds; false when the run closed first. */
async function until(
  h: WorkflowHandle,
  pred: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (await pred()) return true;
    if (await closed(h)) return false;
    // A parked step waits for an operator that never comes here: say so now, not at the timeout.
    if (i % 20 === 19 && (await h.query(progressQuery).catch(() => undefined))?.state === 'needs-attention') {
      throw new Error(`chaos: ${h.workflowId} parked while waiting for ${what}: ${await situation(h)}`);
    }
    if (Date.now() > end)
      throw new Error(`chaos: ${what} did not happen within ${timeoutMs} ms: ${await situation(h)}`);
    await sleep(100);
  }
}

/** Fires in the chosen mode; returns the trigger text, or undefined when the run closed first. */
async function trigger(
  h: WorkflowHandle,
  mode: KillMode,
  o: ChaosOptions,
  identity: string,
): Promise<string | undefined> {
  const deadline = Date.now() + 6_000;
  if (mode === 'delay') {
    const d = o.rng.int(0, o.maxDelayMs);
    await sleep(d);
    return (await closed(h)) ? undefined : `delay ${d}ms`;
  }
  if (mode === 'step') {
    const progress = () => patient(`progress of ${h.workflowId}`, () => h.query(progressQuery));
    const seen = new Set(
      (await progress()).steps.filter((s) => s.state === 'running').map((s) => `${s.id}@${s.startedAt}`),
    );
    while (Date.now() < deadline) {
      const p = await progress();
      const fresh = p.steps.find((s) => s.state === 'running' && !seen.has(`${s.id}@${s.startedAt}`));
      if (fresh) return `step ${fresh.id} running`;
      if (p.state !== 'running' || (await closed(h))) return undefined;
      await sleep(30);
    }
    return 'fallback';
  }
  while (Date.now() < deadline) {
    const d = await patient(`describe ${h.workflowId}`, () => h.describe());
    if (d.status.name !== 'RUNNING') return undefined;
    const a = (d.raw.pendingActivities ?? []).find(
      (x) => x.state === STARTED_ACTIVITY && x.lastWorkerIdentity === identity,
    );
    if (a) return `activity ${a.activityType?.name} started`;
    await sleep(30);
  }
  return 'fallback';
}

/** Plays the crash detector for the killed worker (see the file comment). */
async function detect(o: ChaosOptions, h: WorkflowHandle, runId: string, orphaned: KillRecord['orphaned']) {
  await o.client.workflowService.resetStickyTaskQueue({
    namespace: 'default',
    execution: { workflowId: h.workflowId, runId },
  });
  for (const a of orphaned) {
    try {
      await o.client.activity.fail(
        { workflowId: h.workflowId, runId, activityId: a.activityId },
        ApplicationFailure.retryable(`worker process killed (chaos) during attempt ${a.attempt}`, 'WorkerCrashed'),
      );
    } catch {
      // It completed or timed out meanwhile: nothing left to fail.
    }
  }
}

export interface ChaosRun<T> {
  result: T;
  kills: KillRecord[];
  startedAt: number;
  finishedAt: number;
}

/** Drives an already started run to completion with `o.kills` SIGKILLs (fewer if it finishes first). */
export async function runWithKills<T>(h: WorkflowHandle, o: ChaosOptions): Promise<ChaosRun<T>> {
  const detector = o.detector ?? process.env.CHAOS_DETECTOR === '1';
  const startedAt = Date.now();
  const runId = (await h.describe()).runId;
  const kills: KillRecord[] = [];
  if (!o.supervisor.current) await o.supervisor.start();
  const pickedUp = async (w: { identity: string }) => {
    const ok = await until(h, () => workedBy(h, w.identity), 90_000, `worker ${w.identity} picking up the run`);
    const k = kills[kills.length - 1];
    if (ok && k?.newWorker === w.identity) k.pickedUpAt = Date.now();
    return ok;
  };
  while (kills.length < o.kills) {
    const w = o.supervisor.current!;
    // Every kill lands after the current worker did something: a kill before that tests nothing new.
    // Without the detector an orphaned activity waits out its own timeout (8 s here).
    if (!(await pickedUp(w))) break;
    await o.supervisor.standbyWarm();
    const mode = o.rng.pick(['delay', 'step', 'activity'] as const);
    const fired = await trigger(h, mode, o, w.identity);
    if (!fired) break;
    const { killedAt } = await o.supervisor.killCurrent();
    const d = await patient(`describe ${h.workflowId}`, () => h.describe());
    const orphaned = (d.raw.pendingActivities ?? [])
      .filter((a) => a.state === STARTED_ACTIVITY && a.lastWorkerIdentity === w.identity)
      .map((a) => ({ activityId: a.activityId!, type: a.activityType?.name ?? '?', attempt: a.attempt ?? 1 }));
    if (detector && d.status.name === 'RUNNING') await detect(o, h, runId, orphaned);
    const next = await o.supervisor.start();
    const rec: KillRecord = {
      workflow: o.workflow,
      workflowId: h.workflowId,
      index: kills.length + 1,
      mode,
      trigger: fired,
      killedWorker: w.identity,
      killedPid: w.pid,
      killedAt,
      sinceRunStartMs: killedAt - startedAt,
      orphaned,
      workflowTaskInFlight: d.raw.pendingWorkflowTask?.state === STARTED_WFT,
      newWorker: next.identity,
      newWorkerReadyAt: next.readyAt!,
      newWorkerStartMs: next.readyAt! - killedAt,
      timeouts: [],
      timeline: [],
    };
    kills.push(rec);
    o.onKill?.(rec);
    o.log?.(
      `[chaos] ${o.workflow} kill ${rec.index} (${fired}) pid ${w.pid}; orphaned: ${orphaned.map((a) => `${a.type}#${a.attempt}`).join(', ') || 'none'}`,
    );
  }
  // The last replacement's pick-up, as for the others (false when the run closed first).
  if (o.supervisor.current && kills.length > 0) await pickedUp(o.supervisor.current).catch(() => false);
  const result = await awaitResult<T>(h);
  const finishedAt = Date.now();
  await measure(h, kills);
  return { result, kills, startedAt, finishedAt };
}

/** The run's result; fails fast when a step parks in needs-attention (nobody would resolve it here). */
/**
 * Retries a client call a few times: on this loaded machine a long poll to the dev server now and
 * then ends in a gRPC error that says nothing about the run, and a query sent while the replacement
 * worker has not yet taken the run's workflow task can fail the same way ("Failed to query
 * Workflow"). The last failure names its cause.
 */
async function patient<T>(what: string, fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error & { cause?: Error };
      if (i >= attempts || !(err instanceof ServiceError)) {
        throw new Error(`${what}: ${e.message}${e.cause ? ` (cause: ${e.cause.message})` : ''}`, { cause: err });
      }
      // said, so a retried call is visible in the run's log
      process.stderr.write(
        `[chaos] ${what}: attempt ${i} failed: ${e.message}${e.cause ? ` (cause: ${e.cause.message})` : ''}; retrying\n`,
      );
      await sleep(1000);
    }
  }
}

export async function awaitResult<T>(h: WorkflowHandle): Promise<T> {
  let done = false;
  const res = patient(`result of ${h.workflowId}`, () => h.result()).finally(() => (done = true));
  while (!done) {
    await Promise.race([res.catch(() => undefined), sleep(2000)]);
    if (done) break;
    const p = await h.query(progressQuery).catch(() => undefined);
    if (p?.state === 'needs-attention') {
      const parked = p.steps
        .filter((s) => s.state === 'needs-attention')
        .map((s) => `${s.id}: ${s.lastError?.type} ${s.lastError?.message}`);
      throw new Error(`${h.workflowId} parked in needs-attention: ${parked.join('; ')}`);
    }
  }
  return (await res) as T;
}

/** Fills resumeMs, nextStepMs and naturalBoundS from the run's history and progress events. */
async function measure(h: WorkflowHandle, kills: KillRecord[]): Promise<void> {
  const events = (await patient(`history of ${h.workflowId}`, () => h.fetchHistory())).events ?? [];
  // A kill while a child workflow runs (reconcile's checks and syncs, the recovery's sync and drift
  // check) is resumed in the child: its steps count as the run's next step too, labelled child:step.
  const children = [
    ...new Set(
      events
        .map((e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId)
        .filter((x): x is string => Boolean(x)),
    ),
  ];
  const progress = (
    await Promise.all([
      patient(`progress of ${h.workflowId}`, () => h.query(eventsQuery, 0)),
      ...children.map((id) =>
        patient(`progress of ${id}`, () => h.client.getHandle(id).query(eventsQuery, 0)).then((evs) =>
          evs.map((e) => ({ ...e, step: e.step && `${id.split('/')[0]}:${e.step}` })),
        ),
      ),
    ])
  )
    .flat()
    .sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const scheduled = new Map<string, Event>();
  for (const e of events)
    if (e.activityTaskScheduledEventAttributes?.activityId)
      scheduled.set(e.activityTaskScheduledEventAttributes.activityId, e);
  for (const k of kills) {
    const end = kills[kills.indexOf(k) + 1]?.killedAt ?? Infinity;
    for (const e of events) {
      const t = ms(e.eventTime);
      if (t < k.killedAt || t > end) continue;
      const wft = e.workflowTaskTimedOutEventAttributes;
      const act = e.activityTaskTimedOutEventAttributes;
      if (wft)
        k.timeouts.push(
          `workflow task ${temporal.api.enums.v1.TimeoutType[wft.timeoutType ?? 0]} after ${t - k.killedAt} ms`,
        );
      if (act) k.timeouts.push(`activity ${String(act.scheduledEventId)} timed out after ${t - k.killedAt} ms`);
    }
    const stepAt = progress.find(
      (p) => p.kind === 'step' && p.state === 'running' && Date.parse(p.at) >= k.newWorkerReadyAt,
    );
    const upTo = Math.min(end, stepAt ? Date.parse(stepAt.at) : end);
    for (const e of events) {
      const t = ms(e.eventTime);
      if (t < k.killedAt || t > upTo || k.timeline.length >= 16) continue;
      const type = temporal.api.enums.v1.EventType[e.eventType ?? 0].replace('EVENT_TYPE_', '');
      const who = identityOf(e);
      const q = e.workflowTaskScheduledEventAttributes?.taskQueue;
      k.timeline.push(
        `+${t - k.killedAt} ${type}${who ? ` by ${who}` : ''}${q ? ` on ${q.kind === temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_STICKY ? 'sticky' : 'normal'}` : ''}`,
      );
    }
    const first = events.find((e) => identityOf(e) === k.newWorker);
    const resumed = [first ? ms(first.eventTime) : undefined, k.pickedUpAt].filter((x): x is number => x !== undefined);
    if (resumed.length) k.resumeMs = Math.max(0, Math.min(...resumed) - k.newWorkerReadyAt);
    const step = progress.find(
      (p) => p.kind === 'step' && p.state === 'running' && Date.parse(p.at) >= k.newWorkerReadyAt,
    );
    if (step && Date.parse(step.at) <= end) {
      k.nextStepMs = Date.parse(step.at) - k.newWorkerReadyAt;
      k.nextStep = step.step;
    } else if (step) {
      k.interrupted = true;
    }
    const bounds = k.orphaned.map((a) => {
      const s = scheduled.get(a.activityId)?.activityTaskScheduledEventAttributes;
      const hb = durationS(s?.heartbeatTimeout);
      return hb ? hb : (durationS(s?.startToCloseTimeout) ?? 0);
    });
    // A kill with no activity in flight still leaves the run's next workflow task on the dead worker's sticky queue.
    k.naturalBoundS = Math.max(10, ...bounds);
  }
}
