// Operator actions and views shared by every long workflow, because every one of them parks through
// the same StepRunner (workflows/steps.ts): resolving a parked step through its `resolveStep` update,
// and listing runs from Temporal visibility by the search attributes the StepRunner upserts.
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type WorkflowExecutionInfo } from '@temporalio/client';
import { progressQuery, resolveStepUpdate, type ResolveAction } from '../workflows/messages.js';
import { workflowWebUrl } from '../worker/settings.js';
import type { AppContext } from './context.js';
import { conflict, notFound } from './errors.js';

export const StepName = { type: 'string', minLength: 1, maxLength: 200, pattern: '^[a-z0-9][a-z0-9/_.:-]*$' } as const;

export const ResolveBody = {
  type: 'object',
  additionalProperties: false,
  required: ['action'],
  properties: {
    action: { type: 'string', enum: ['retry', 'skip', 'abort'] },
    note: { type: 'string', maxLength: 500 },
  },
} as const;

export const Resolved = {
  type: 'object',
  properties: {
    accepted: { type: 'boolean' },
    workflowId: { type: 'string' },
    step: { type: 'string' },
    action: { type: 'string' },
    by: { type: 'string' },
  },
} as const;

export interface ResolveRequest {
  workflowId: string;
  step: string;
  action: ResolveAction;
  note?: string;
  by: string;
  /** For the 404 message: "cluster lab has no running provision". */
  notRunning?: string;
}

/**
 * Sends the StepRunner's resolveStep update. 404 when the workflow does not exist or is no longer
 * running (a closed run has nothing parked); 409 when the workflow's validator refuses (the step is
 * not parked, skip is not allowed for it, no such step). The identity goes into the update's input,
 * so the run's history records who resolved what (audit).
 */
export async function resolveStep(
  ctx: AppContext,
  r: ResolveRequest,
  log?: { info(o: object, m: string): void },
): Promise<{ accepted: boolean; workflowId: string; step: string; action: ResolveAction; by: string }> {
  const handle = ctx.client.workflow.getHandle(r.workflowId);
  const missing = () => notFound(r.notRunning ?? `no running workflow "${r.workflowId}"`, { workflowId: r.workflowId });
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw missing();
    throw err;
  }
  if (status !== 'RUNNING')
    throw notFound(r.notRunning ?? `workflow "${r.workflowId}" is ${status.toLowerCase()}: nothing to resolve`, {
      workflowId: r.workflowId,
      status,
    });
  try {
    const res = await handle.executeUpdate(resolveStepUpdate, {
      args: [{ step: r.step, action: r.action, by: r.by, note: r.note }],
    });
    log?.info({ workflowId: r.workflowId, step: r.step, action: r.action, by: r.by }, 'step resolved by operator');
    return { accepted: res.accepted, workflowId: r.workflowId, step: r.step, action: r.action, by: r.by };
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError)
      throw conflict(err.cause?.message ?? 'update rejected', { workflowId: r.workflowId, step: r.step });
    if (err instanceof WorkflowNotFoundError) throw missing();
    throw err;
  }
}

/** `?state=` values: the StepRunner's run states, plus `completed` (any run that closed without error). */
export const RUN_STATES = [
  'running',
  'needs-attention',
  'waiting-approval',
  'succeeded',
  'partial',
  'failed',
  'cancelled',
  'completed',
] as const;
export type RunStateFilter = (typeof RUN_STATES)[number];

const q = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

/**
 * Visibility query. The State attribute is what the workflow last upserted; a run that was terminated
 * or timed out never upserts again, so live states also require ExecutionStatus="Running" and
 * `failed` also matches executions that closed as failed, terminated or timed out.
 */
export function runsQuery(cluster?: string, state?: RunStateFilter): string {
  const parts: string[] = [];
  if (cluster) parts.push(`ClusterName=${q(cluster)}`);
  if (state === 'running' || state === 'needs-attention' || state === 'waiting-approval')
    parts.push(`State=${q(state)}`, 'ExecutionStatus="Running"');
  else if (state === 'failed')
    parts.push(
      `(State="failed" OR ExecutionStatus="Failed" OR ExecutionStatus="Terminated" OR ExecutionStatus="TimedOut")`,
    );
  else if (state === 'cancelled') parts.push(`(State="cancelled" OR ExecutionStatus="Canceled")`);
  else if (state === 'completed') parts.push('ExecutionStatus="Completed"');
  else if (state) parts.push(`State=${q(state)}`);
  return parts.length ? parts.join(' AND ') : 'ClusterName IS NOT NULL';
}

export interface RunSummary {
  workflowId: string;
  runId: string;
  type: string;
  cluster?: string;
  operation?: string;
  /** The run's own state (State search attribute), or how the execution closed when it never said. */
  state: string;
  status: string;
  phase?: string;
  /** Steps waiting for an operator (only for runs in needs-attention), with their errors. */
  parked: { step: string; error?: string; attempts: number }[];
  startTime: string;
  closeTime?: string;
  ageSeconds: number;
  temporalWebUrl: string;
}

const kw = (info: WorkflowExecutionInfo, key: string): string | undefined => {
  const v = (info.searchAttributes as Record<string, unknown[] | undefined>)[key];
  return Array.isArray(v) && v.length ? String(v[0]) : undefined;
};

function effectiveState(info: WorkflowExecutionInfo): string {
  const said = kw(info, 'State');
  const status = info.status.name;
  if (status === 'RUNNING' || status === 'COMPLETED') return said ?? status.toLowerCase();
  // Closed without upserting a final state: the execution status says how.
  if (said && !['running', 'needs-attention', 'waiting-approval'].includes(said)) return said;
  return status === 'CANCELLED' ? 'cancelled' : status === 'TIMED_OUT' ? 'timed-out' : status.toLowerCase();
}

export async function listRuns(
  ctx: AppContext,
  opts: { cluster?: string; state?: RunStateFilter; limit: number },
): Promise<RunSummary[]> {
  const infos: WorkflowExecutionInfo[] = [];
  for await (const info of ctx.client.workflow.list({ query: runsQuery(opts.cluster, opts.state) })) {
    infos.push(info);
    if (infos.length >= opts.limit) break;
  }
  const now = Date.now();
  return Promise.all(
    infos.map(async (info): Promise<RunSummary> => {
      const state = effectiveState(info);
      let parked: RunSummary['parked'] = [];
      if (state === 'needs-attention' && info.status.name === 'RUNNING') {
        // The parked step is not a search attribute (it changes per step): the run's progress query says it.
        const p = await ctx.client.workflow
          .getHandle(info.workflowId, info.runId)
          .query(progressQuery)
          .catch(() => undefined);
        parked = (p?.steps ?? [])
          .filter((s) => s.state === 'needs-attention')
          .map((s) => ({ step: s.id, error: s.lastError?.message, attempts: s.attempts }));
      }
      return {
        workflowId: info.workflowId,
        runId: info.runId,
        type: info.type,
        cluster: kw(info, 'ClusterName'),
        operation: kw(info, 'Operation'),
        state,
        status: info.status.name,
        phase: kw(info, 'Phase'),
        parked,
        startTime: info.startTime.toISOString(),
        closeTime: info.closeTime?.toISOString(),
        ageSeconds: Math.max(0, Math.round((now - info.startTime.getTime()) / 1000)),
        temporalWebUrl: workflowWebUrl(ctx.settings, info.workflowId, info.runId),
      };
    }),
  );
}

/** Runs parked in needs-attention right now, per cluster and operation (the Prometheus gauge). */
export async function parkedRunCounts(
  ctx: AppContext,
): Promise<Map<string, { cluster: string; operation: string; n: number }>> {
  const counts = new Map<string, { cluster: string; operation: string; n: number }>();
  for await (const info of ctx.client.workflow.list({ query: runsQuery(undefined, 'needs-attention') })) {
    const cluster = kw(info, 'ClusterName') ?? '';
    const operation = kw(info, 'Operation') ?? '';
    const key = `${cluster}\n${operation}`;
    const c = counts.get(key) ?? { cluster, operation, n: 0 };
    c.n += 1;
    counts.set(key, c);
  }
  return counts;
}
