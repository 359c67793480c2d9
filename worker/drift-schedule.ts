// The periodic drift check: a Temporal Schedule per cluster that starts checkDrift (the whole
// cluster: nodes, components, CoreDNS, Velero and the secret map; schedules made when it started
// rotateSecrets with dryRun are moved over, keeping their pause state). Created idempotently from the cluster config (secrets.driftCheck: cron, paused — paused by default
// in pedro-ops.yaml): a second call with the same settings changes nothing; a changed cron updates it.
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { ClusterSpec } from '../config/schema.js';

export const driftScheduleId = (cluster: string) => `drift-check/${cluster}`;
/** Workflow ids of drift checks: `drift-check/<cluster>/<request id | scheduled-<time> | reconcile-…>`. */
export const DRIFT_CHECK_PREFIX = 'drift-check/';

export interface DriftScheduleOptions {
  taskQueue: string;
  /** Overrides of spec.secrets.driftCheck. */
  cron?: string;
  /** An operator's explicit pause state (PUT /secrets/drift-check); absent at worker start. */
  paused?: boolean;
  /** Who asked (recorded in the schedule's note with an explicit pause state). */
  by?: string;
}

export interface DriftScheduleState {
  scheduleId: string;
  cron: string;
  paused: boolean;
  /** What this call did. */
  action: 'created' | 'updated' | 'unchanged';
}

const cronOf = (d: { action: { type: string; memo?: Record<string, unknown> }; state: { note?: string } }) =>
  (d.action.memo?.driftCron as string | undefined) ?? /cron=(.*)$/.exec(d.state.note ?? '')?.[1];

/**
 * Config and operator state are kept apart. The config owns the cron and the action (compared through
 * the action memo `driftCron`, since described schedules return cron as calendars); its `paused` only
 * applies when the schedule is created. Once it exists, pause state and note are the operator's
 * (the schedules API's pause/unpause, or an explicit `paused` here), so a worker or API restart,
 * which calls this without `paused`, never undoes an operator's pause or unpause.
 */
export async function ensureDriftCheckSchedule(
  client: Client,
  spec: ClusterSpec,
  opts: DriftScheduleOptions,
): Promise<DriftScheduleState> {
  const scheduleId = driftScheduleId(spec.name);
  const cron = opts.cron ?? spec.secrets.driftCheck.cron;
  const by = opts.by ?? 'config';
  const handle = client.schedule.getHandle(scheduleId);
  let current;
  try {
    current = await handle.describe();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
  }
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'checkDrift',
    taskQueue: opts.taskQueue,
    // The schedule appends the start time, so each run gets its own id under the cluster's drift checks.
    workflowId: `${DRIFT_CHECK_PREFIX}${spec.name}/scheduled`,
    args: [{ cluster: spec.name, requestedBy: 'schedule' }],
    memo: { driftCron: cron },
  };
  if (!current) {
    const paused = opts.paused ?? spec.secrets.driftCheck.paused;
    try {
      await client.schedule.create({
        scheduleId,
        spec: { cronExpressions: [cron] },
        action,
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
        state: {
          paused,
          note: `drift check of ${spec.name}; ${paused ? 'paused' : 'created'} by ${opts.paused === undefined ? 'config (secrets.driftCheck)' : by}`,
        },
      });
      return { scheduleId, cron, paused, action: 'created' };
    } catch (err) {
      // Two callers raced: the other one created it; fall through to compare and update.
      if ((err as Error).name !== 'ScheduleAlreadyRunning') throw err;
      current = await handle.describe();
    }
  }
  const sameCron = cronOf(current) === cron;
  const sameQueue = current.action.type === 'startWorkflow' && current.action.taskQueue === opts.taskQueue;
  const hasMemo = current.action.type === 'startWorkflow' && current.action.memo?.driftCron === cron;
  const sameType = current.action.type === 'startWorkflow' && current.action.workflowType === action.workflowType;
  let paused = current.state.paused;
  let action_: DriftScheduleState['action'] = 'unchanged';
  if (!sameCron || !sameQueue || !hasMemo || !sameType) {
    await handle.update((prev) => ({
      ...prev,
      spec: { cronExpressions: [cron] },
      action:
        prev.action.type === 'startWorkflow'
          ? {
              ...prev.action,
              workflowType: action.workflowType,
              workflowId: action.workflowId,
              args: action.args,
              taskQueue: opts.taskQueue,
              memo: { driftCron: cron },
            }
          : prev.action,
      // state (pause and its note) is the operator's: kept as it is.
    }));
    action_ = 'updated';
  }
  if (opts.paused !== undefined && opts.paused !== paused) {
    const note = `${opts.paused ? 'paused' : 'unpaused'} by ${by} (PUT /clusters/${spec.name}/secrets/drift-check)`;
    await (opts.paused ? handle.pause(note) : handle.unpause(note));
    paused = opts.paused;
    action_ = 'updated';
  }
  return { scheduleId, cron, paused, action: action_ };
}

export async function describeDriftCheckSchedule(
  client: Client,
  cluster: string,
): Promise<{
  scheduleId: string;
  exists: boolean;
  paused?: boolean;
  /** The operator's note of the last pause or unpause (who and why). */
  note?: string;
  cron?: string;
  nextRuns?: string[];
  recentRuns?: string[];
}> {
  const scheduleId = driftScheduleId(cluster);
  try {
    const d = await client.schedule.getHandle(scheduleId).describe();
    return {
      scheduleId,
      exists: true,
      paused: d.state.paused,
      note: d.state.note,
      cron: cronOf(d),
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((x) => x.toISOString()),
      recentRuns: d.info.recentActions.slice(-3).map((a) => a.action.workflow.workflowId),
    };
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return { scheduleId, exists: false };
    throw err;
  }
}
