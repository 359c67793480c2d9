// Starting a workflow from a route, the same way everywhere: the requester recorded in the memo
// (audit), the id-reuse policy of the operation, the 202 body with the Temporal Web link, and a 409
// that names the existing run when the id is taken.
import { WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy } from '@temporalio/client';
import { workflowWebUrl } from '../worker/settings.js';
import type { AppContext } from './context.js';
import { conflict } from './errors.js';

export interface StartRun {
  workflowType: string;
  workflowId: string;
  args: unknown[];
  requestedBy: string;
  statusUrl: string;
  /** REJECT_DUPLICATE for request-id runs (a repeated POST never runs twice); ALLOW_DUPLICATE for converging ones. */
  reuse: 'reject-duplicate' | 'allow-duplicate';
  /** "rotation <id>", "a provision of pedro-ops": used in the 409 message. */
  what: string;
  summary?: string;
}

export async function startRun(
  ctx: AppContext,
  run: StartRun,
): Promise<{ workflowId: string; runId: string; statusUrl: string; temporalWebUrl: string }> {
  try {
    const handle = await ctx.client.workflow.start(run.workflowType, {
      taskQueue: ctx.settings.taskQueue,
      workflowId: run.workflowId,
      workflowIdReusePolicy:
        run.reuse === 'reject-duplicate'
          ? WorkflowIdReusePolicy.REJECT_DUPLICATE
          : WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      memo: { requestedBy: run.requestedBy },
      ...(run.summary ? { staticSummary: run.summary } : {}),
      args: run.args,
    });
    return {
      workflowId: run.workflowId,
      runId: handle.firstExecutionRunId,
      statusUrl: run.statusUrl,
      temporalWebUrl: workflowWebUrl(ctx.settings, run.workflowId, handle.firstExecutionRunId),
    };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      const existing = await ctx.client.workflow
        .getHandle(run.workflowId)
        .describe()
        .catch(() => undefined);
      const state = existing?.status.name === 'RUNNING' ? 'is already running' : 'already exists';
      throw conflict(`${run.what} ${state}`, {
        workflowId: run.workflowId,
        ...(existing ? { runId: existing.runId } : {}),
        statusUrl: run.statusUrl,
      });
    }
    throw err;
  }
}

/** Response schema of a 202 from startRun, plus the route's own id field(s). */
export function startedSchema(extra: Record<string, { type: 'string' }> = {}) {
  return {
    type: 'object',
    properties: {
      ...extra,
      workflowId: { type: 'string' },
      runId: { type: 'string' },
      statusUrl: { type: 'string' },
      temporalWebUrl: { type: 'string', description: 'the run in Temporal Web' },
    },
    required: ['workflowId', 'runId', 'statusUrl', 'temporalWebUrl'],
    additionalProperties: true,
  } as const;
}
