// The periodic drift check: a Temporal Schedule per cluster that starts rotateSecrets with dryRun.
// Created idempotently from the cluster config (secrets.driftCheck: cron, paused — paused by default
// in pedro-ops.yaml): a second call with the same settings changes nothing; different settings update it.
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { ClusterSpec } from '../config/schema.js';

export const driftScheduleId = (cluster: string) => `drift-check/${cluster}`;

export interface DriftScheduleOptions {
  taskQueue: string;
  /** Overrides of spec.secrets.driftCheck. */
  cron?: string;
  paused?: boolean;
}

export interface DriftScheduleState {
  scheduleId: string;
  cron: string;
  paused: boolean;
  /** What this call did. */
  action: 'created' | 'updated' | 'unchanged';
}

export async function ensureDriftCheckSchedule(
  client: Client,
  spec: ClusterSpec,
  opts: DriftScheduleOptions,
): Promise<DriftScheduleState> {
  const scheduleId = driftScheduleId(spec.name);
  const cron = opts.cron ?? spec.secrets.driftCheck.cron;
  const paused = opts.paused ?? spec.secrets.driftCheck.paused;
  // Described schedules return cron as calendar specs, so the note keeps the cron string to compare against.
  const note = `drift check of ${spec.name}; cron=${cron}`;
  const handle = client.schedule.getHandle(scheduleId);
  let current;
  try {
    current = await handle.describe();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
  }
  if (!current) {
    try {
      await client.schedule.create({
        scheduleId,
        spec: { cronExpressions: [cron] },
        action: {
          type: 'startWorkflow',
          workflowType: 'rotateSecrets',
          taskQueue: opts.taskQueue,
          // The schedule appends the start time, so each run gets its own id under the cluster's rotations.
          workflowId: `rotate-secrets/${spec.name}/drift-check`,
          args: [{ cluster: spec.name, dryRun: true, requestedBy: 'schedule' }],
        },
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
        state: { paused, note },
      });
      return { scheduleId, cron, paused, action: 'created' };
    } catch (err) {
      // Two callers raced: the other one created it; fall through to compare and update.
      if ((err as Error).name !== 'ScheduleAlreadyRunning') throw err;
      current = await handle.describe();
    }
  }
  const sameCron = current.state.note === note;
  const samePaused = current.state.paused === paused;
  const sameQueue = current.action.type === 'startWorkflow' && current.action.taskQueue === opts.taskQueue;
  if (sameCron && samePaused && sameQueue) return { scheduleId, cron, paused, action: 'unchanged' };
  await handle.update((prev) => ({
    ...prev,
    spec: { cronExpressions: [cron] },
    action: prev.action.type === 'startWorkflow' ? { ...prev.action, taskQueue: opts.taskQueue } : prev.action,
    state: { ...prev.state, paused, note },
  }));
  return { scheduleId, cron, paused, action: 'updated' };
}

export async function describeDriftCheckSchedule(
  client: Client,
  cluster: string,
): Promise<{
  scheduleId: string;
  exists: boolean;
  paused?: boolean;
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
      cron: /cron=(.*)$/.exec(d.state.note ?? '')?.[1],
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((x) => x.toISOString()),
      recentRuns: d.info.recentActions.slice(-3).map((a) => a.action.workflow.workflowId),
    };
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return { scheduleId, exists: false };
    throw err;
  }
}
