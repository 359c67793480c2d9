// Scheduled DR drills: one Temporal Schedule `dr-drill/<cluster>` per cluster, from
// backups.drill.cron, overlap SKIP (a slow drill never stacks a second one). Created or updated
// idempotently at startup; an operator's pause survives restarts (only the config's `paused: true`
// pauses, it never unpauses).
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import type { ClusterSpec } from '../config/schema.js';
import type { VerifyBackupInput } from '../workflows/verify-backup.js';
import { ClusterName, Operation } from '../workflows/search-attributes.js';
import { drillSkippedSignal } from '../workflows/messages.js';
import { DRILL_CLEANUP_MARGIN_SECONDS, DRILL_DEADLINE_SECONDS } from '../workflows/drill-limits.js';

export const drillScheduleId = (cluster: string) => `dr-drill/${cluster}`;

export interface EnsureScheduleResult {
  scheduleId: string;
  action: 'created' | 'updated' | 'unchanged';
  paused: boolean;
}

function drillOptions(spec: ClusterSpec, taskQueue: string) {
  const scheduleId = drillScheduleId(spec.name);
  const args: [VerifyBackupInput] = [
    { cluster: spec.name, latestFromSchedule: true, requestedBy: `schedule:${scheduleId}` },
  ];
  return {
    scheduleId,
    spec: { cronExpressions: [spec.backups.drill.cron] },
    action: {
      type: 'startWorkflow' as const,
      workflowType: 'verifyBackup',
      // Temporal appends the scheduled time: dr-drill/<cluster>-2026-11-30T04:00:00Z.
      workflowId: scheduleId,
      taskQueue,
      args,
      // The server keeps cron specs only as compiled calendars; the source cron rides here so an
      // update can tell whether the config changed.
      memo: { drillCron: spec.backups.drill.cron },
      // A backstop above the drill's own deadline (which still cleans up): a drill that somehow never
      // ends cannot hold the schedule, and with overlap SKIP every later drill, forever.
      workflowRunTimeout: `${DRILL_DEADLINE_SECONDS + DRILL_CLEANUP_MARGIN_SECONDS}s`,
      typedSearchAttributes: [
        { key: ClusterName, value: spec.name },
        { key: Operation, value: 'verify-backup' },
      ],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
    memo: { cluster: spec.name, kind: 'dr-drill' },
  } satisfies ScheduleOptions;
}

/** What decides whether an existing schedule needs an update: cron, task queue, workflow args, overlap. */
function fingerprint(
  a: {
    workflowType?: string;
    taskQueue?: string;
    args?: unknown[];
    memo?: Record<string, unknown>;
    workflowRunTimeout?: unknown;
  },
  overlap: unknown,
): string {
  return JSON.stringify({
    cron: a.memo?.drillCron,
    type: a.workflowType,
    tq: a.taskQueue,
    args: a.args ?? [],
    overlap,
    runTimeoutMs: a.workflowRunTimeout === undefined ? undefined : msOf(a.workflowRunTimeout),
  });
}

// Described schedules give durations in ms; options may carry a duration string.
const msOf = (d: unknown): number =>
  typeof d === 'number' ? d : typeof d === 'string' ? Number(d.replace(/s$/, '')) * 1000 : NaN;

/**
 * The alert for a skipped scheduled drill. With overlap SKIP, a drill that runs long (or is parked)
 * makes the schedule drop every drill due meanwhile, silently. Called periodically by the API server:
 * when the schedule's numActionsSkippedOverlap has grown since `seen`, the running drill is signalled
 * (drillSkipped), and it counts the skips in search attribute DrillsSkipped and in metric
 * pedro_ops_drills_skipped (exported by the worker). Returns the skips found in this call.
 */
export async function checkDrillSkips(
  client: Client,
  cluster: string,
  seen: Map<string, number>,
  log?: { warn(obj: object, msg: string): void },
): Promise<number> {
  const scheduleId = drillScheduleId(cluster);
  let d;
  try {
    d = await client.schedule.getHandle(scheduleId).describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return 0;
    throw err;
  }
  const total = d.info.numActionsSkippedOverlap;
  const before = seen.get(scheduleId);
  seen.set(scheduleId, total);
  // The first look is the baseline (skips before this process started were reported by it, or are history).
  const count = before === undefined ? 0 : total - before;
  if (count <= 0) return 0;
  const running = d.info.runningActions[0]?.workflow;
  log?.warn(
    { cluster, scheduleId, skipped: count, total, runningDrill: running?.workflowId },
    'scheduled DR drill skipped: the previous drill is still running (overlap SKIP)',
  );
  if (running) {
    await client.workflow
      .getHandle(running.workflowId, running.firstExecutionRunId)
      .signal(drillSkippedSignal, { count, total })
      .catch(() => undefined); // it may have just finished; the next skip finds the next drill
  }
  return count;
}

export async function ensureDrillSchedule(
  client: Client,
  spec: ClusterSpec,
  taskQueue: string,
): Promise<EnsureScheduleResult> {
  const opts = drillOptions(spec, taskQueue);
  const configPaused = spec.backups.drill.paused;
  try {
    await client.schedule.create({
      ...opts,
      state: configPaused
        ? { paused: true, note: 'paused by config (backups.drill.paused)' }
        : { note: 'created at startup' },
    });
    return { scheduleId: opts.scheduleId, action: 'created', paused: configPaused };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  const handle = client.schedule.getHandle(opts.scheduleId);
  const cur = await handle.describe();
  let action: EnsureScheduleResult['action'] = 'unchanged';
  if (
    fingerprint(cur.action as never, cur.policies.overlap) !== fingerprint(opts.action, opts.policies.overlap) ||
    (cur.spec.intervals?.length ?? 0) > 0
  ) {
    await handle.update((prev) => ({
      ...prev,
      spec: opts.spec,
      action: opts.action,
      policies: { ...prev.policies, ...opts.policies },
    }));
    action = 'updated';
  }
  let paused = cur.state.paused;
  if (configPaused && !paused) {
    await handle.pause('paused by config (backups.drill.paused)');
    paused = true;
  }
  return { scheduleId: opts.scheduleId, action, paused };
}

/** Removes a cluster's drill schedule; false when there was none. */
export async function deleteDrillSchedule(client: Client, cluster: string): Promise<boolean> {
  try {
    await client.schedule.getHandle(drillScheduleId(cluster)).delete();
    return true;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return false;
    throw err;
  }
}
