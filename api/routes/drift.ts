// Drift across the whole cluster: run a check now, read the latest report (or one run's), and
// reconcile — a plan of repairs that waits for an approval naming the drift it approves.
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ErrorBody, conflict, notFound } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { RequestId, RunStatus, Started, runStatus } from './backups.js';
import { ApprovalTimeout, Decision, DecisionBody, RunParams } from './dr.js';
import { approveUpdate } from '../../workflows/messages.js';
import { DRIFT_CHECK_PREFIX } from '../../worker/drift-schedule.js';
import { DRIFT_KINDS } from '../../workflows/drift-types.js';

export const driftCheckWorkflowId = (cluster: string, id: string) => `${DRIFT_CHECK_PREFIX}${cluster}/${id}`;
export const reconcileWorkflowId = (cluster: string) => `reconcile/${cluster}`;

const Finding = {
  type: 'object',
  required: ['kind', 'group', 'object', 'want', 'have', 'action'],
  additionalProperties: true,
  properties: {
    kind: { type: 'string', enum: [...DRIFT_KINDS] },
    group: { type: 'string' },
    object: { type: 'string' },
    want: { type: 'string' },
    have: { type: 'string' },
    action: { type: 'string' },
    repair: { type: 'object', additionalProperties: true },
  },
} as const;

const DriftReport = {
  type: 'object',
  required: ['cluster', 'workflowId', 'checkedAt', 'driftId', 'total', 'counts', 'findings'],
  additionalProperties: true,
  properties: {
    cluster: { type: 'string' },
    workflowId: { type: 'string' },
    checkedAt: { type: 'string' },
    driftId: { type: 'string', description: 'hash of the findings; a reconcile approval names it' },
    total: { type: 'integer' },
    checked: { type: 'integer' },
    counts: { type: 'object', additionalProperties: { type: 'integer' } },
    findings: { type: 'array', items: Finding },
  },
} as const;

const ReconcileBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    approvalTimeout: ApprovalTimeout,
  },
} as const;

const ApproveBody = {
  type: 'object',
  additionalProperties: false,
  required: ['driftId'],
  properties: {
    driftId: { type: 'string', pattern: '^[0-9a-f]{16}$', description: 'the plan.driftId you reviewed' },
    note: { type: 'string', maxLength: 500 },
  },
} as const;

export const driftRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Params: { name: string }; Body: { requestId?: string } | undefined }>(
      '/clusters/:name/drift-check',
      {
        schema: {
          tags: ['drift'],
          summary: 'Check the whole cluster against its config now (read-only)',
          params: ClusterNameParam,
          body: {
            type: 'object',
            additionalProperties: false,
            properties: { requestId: RequestId },
          },
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const id = req.body?.requestId ?? randomUUID();
        const requestedBy = identityOf(req);
        const started = await startRun(ctx, {
          workflowType: 'checkDrift',
          workflowId: driftCheckWorkflowId(spec.name, id),
          args: [{ cluster: spec.name, requestedBy }],
          requestedBy,
          statusUrl: `/clusters/${spec.name}/drift/${id}`,
          reuse: 'reject-duplicate',
          what: `drift check ${id}`,
        });
        return reply.status(202).send({ id, ...started });
      },
    );

    app.get<{ Params: { name: string } }>(
      '/clusters/:name/drift',
      {
        schema: {
          tags: ['drift'],
          summary: 'The latest drift report (scheduled, requested or made by a reconcile)',
          params: ClusterNameParam,
          response: { 200: DriftReport, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const query = `WorkflowType = 'checkDrift' AND ClusterName = '${spec.name}' AND ExecutionStatus = 'Completed'`;
        let latest: { workflowId: string; runId: string; closed: number } | undefined;
        let seen = 0;
        // Visibility lists newest first; the first few are compared by close time to be sure.
        for await (const info of ctx.client.workflow.list({ query })) {
          const closed = info.closeTime?.getTime() ?? 0;
          if (!latest || closed > latest.closed) latest = { workflowId: info.workflowId, runId: info.runId, closed };
          if (++seen >= 20) break;
        }
        if (!latest) throw notFound(`no drift check of ${spec.name} has completed yet`, {});
        return ctx.client.workflow.getHandle(latest.workflowId, latest.runId).result();
      },
    );

    app.get<{ Params: { name: string; id: string } }>(
      '/clusters/:name/drift/:id',
      {
        schema: {
          tags: ['drift'],
          summary: 'One drift check: progress while it runs, then its report',
          params: RunParams,
          response: { 200: RunStatus, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return runStatus(ctx, req.params.id, driftCheckWorkflowId(spec.name, req.params.id), 'drift check');
      },
    );

    app.post<{ Params: { name: string }; Body: { approvalTimeout?: string } | undefined }>(
      '/clusters/:name/reconcile',
      {
        schema: {
          tags: ['drift'],
          summary: 'Plan the repair of the current drift; nothing changes until the plan is approved',
          params: ClusterNameParam,
          body: ReconcileBody,
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const requestedBy = identityOf(req);
        const base = `/clusters/${spec.name}/reconcile`;
        const started = await startRun(ctx, {
          workflowType: 'reconcile',
          workflowId: reconcileWorkflowId(spec.name),
          args: [{ cluster: spec.name, requestedBy, approvalTimeout: req.body?.approvalTimeout }],
          requestedBy,
          statusUrl: base,
          // One at a time per cluster (409 while one runs); a finished one may be followed by another.
          reuse: 'allow-duplicate',
          what: `a reconcile of ${spec.name}`,
        });
        return reply.status(202).send({ ...started, approveUrl: `${base}/approve`, rejectUrl: `${base}/reject` });
      },
    );

    app.get<{ Params: { name: string } }>(
      '/clusters/:name/reconcile',
      {
        schema: {
          tags: ['drift'],
          summary: 'The latest reconcile: its plan (on the approval step) and progress, then its report',
          params: ClusterNameParam,
          response: { 200: RunStatus, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return runStatus(ctx, spec.name, reconcileWorkflowId(spec.name), 'reconcile of cluster');
      },
    );

    for (const decision of ['approve', 'reject'] as const) {
      app.post<{ Params: { name: string }; Body: { driftId?: string; note?: string } }>(
        `/clusters/:name/reconcile/${decision}`,
        {
          schema: {
            tags: ['drift'],
            summary:
              decision === 'approve'
                ? 'Approve the waiting repair plan; name its driftId (a plan for other drift is refused)'
                : 'Reject the waiting repair plan; nothing changes',
            params: ClusterNameParam,
            body: decision === 'approve' ? ApproveBody : DecisionBody,
            response: { 200: Decision, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
          },
        },
        async (req) => {
          const spec = clusterOr404(ctx, req.params.name);
          const workflowId = reconcileWorkflowId(spec.name);
          const handle = ctx.client.workflow.getHandle(workflowId);
          const by = identityOf(req);
          try {
            const desc = await handle.describe();
            if (desc.status.name !== 'RUNNING')
              throw conflict(`the reconcile of ${spec.name} is ${desc.status.name.toLowerCase()}`, { workflowId });
            const res = await handle.executeUpdate(approveUpdate, {
              args: [{ approved: decision === 'approve', by, note: req.body?.note, driftId: req.body?.driftId }],
            });
            return { accepted: res.accepted, workflowId, decision, by };
          } catch (err) {
            if (err instanceof WorkflowNotFoundError)
              throw notFound(`no reconcile of cluster ${spec.name}`, { workflowId });
            if (err instanceof WorkflowUpdateFailedError)
              throw conflict(`${decision} refused: ${err.cause?.message ?? err.message}`, { workflowId });
            throw err;
          }
        },
      );
    }
  };
