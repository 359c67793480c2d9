// DR restores: start one (it plans, then waits for a human), approve or reject it (a Temporal
// update, recorded with the caller's identity), and read its plan, progress and report.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ErrorBody, badRequest, conflict, notFound } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { NsName, RequestId, RunStatus, Started, runStatus } from './backups.js';
import type { DrRestoreInput } from '../../workflows/dr-restore.js';
import { approveUpdate } from '../../workflows/messages.js';

export const drRestoreWorkflowId = (cluster: string, requestId: string) => `dr-restore/${cluster}/${requestId}`;

export const ApprovalTimeout = {
  type: 'string',
  pattern: '^[1-9][0-9]{0,6}(s|m|h|d)$',
  description: 'e.g. 30m, 24h (default 24h)',
} as const;

const RestoreBody = {
  type: 'object',
  additionalProperties: false,
  required: ['backup', 'namespaces'],
  properties: {
    backup: { type: 'string', minLength: 1, maxLength: 253 },
    namespaces: { type: 'array', minItems: 1, uniqueItems: true, items: NsName },
    existingResourcePolicy: { type: 'string', enum: ['none', 'update'] },
    target: { type: 'object', additionalProperties: NsName, propertyNames: NsName },
    force: { type: 'boolean' },
    approvalTimeout: ApprovalTimeout,
    requestId: RequestId,
  },
} as const;

/** `/clusters/:name/…/:id`: the cluster and a run's request id (DR restores, recoveries, drift checks). */
export const RunParams = {
  type: 'object',
  properties: { name: ClusterNameParam.properties.name, id: RequestId },
  required: ['name', 'id'],
  additionalProperties: false,
} as const;

export const DecisionBody = {
  type: 'object',
  additionalProperties: false,
  properties: { note: { type: 'string', maxLength: 500 } },
} as const;
export const Decision = {
  type: 'object',
  properties: {
    accepted: { type: 'boolean' },
    workflowId: { type: 'string' },
    decision: { type: 'string' },
    by: { type: 'string' },
  },
} as const;

export const drRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{
      Params: { name: string };
      Body: Omit<DrRestoreInput, 'cluster' | 'requestedBy' | 'approvalTimeout'> & { approvalTimeout?: string };
    }>(
      '/clusters/:name/dr/restore',
      {
        schema: {
          tags: ['dr'],
          summary: 'Plan a DR restore from a Velero backup; it waits for approval before restoring anything',
          params: ClusterNameParam,
          body: RestoreBody,
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const body = req.body;
        for (const ns of Object.keys(body.target ?? {})) {
          if (!body.namespaces.includes(ns))
            throw badRequest(`body.target.${ns} maps a namespace that is not in body.namespaces`, {
              field: `body.target.${ns}`,
            });
        }
        const requestId = body.requestId ?? randomUUID();
        const workflowId = drRestoreWorkflowId(spec.name, requestId);
        const requestedBy = identityOf(req);
        const base = `/clusters/${spec.name}/dr/restore/${requestId}`;
        const started = await startRun(ctx, {
          workflowType: 'drRestore',
          workflowId,
          args: [{ cluster: spec.name, ...body, requestId, requestedBy }],
          requestedBy,
          statusUrl: base,
          reuse: 'reject-duplicate',
          what: `DR restore ${requestId}`,
        });
        return reply
          .status(202)
          .send({ id: requestId, ...started, approveUrl: `${base}/approve`, rejectUrl: `${base}/reject` });
      },
    );

    app.get<{ Params: { name: string; id: string } }>(
      '/clusters/:name/dr/restore/:id',
      {
        schema: {
          tags: ['dr'],
          summary: 'A DR restore: its plan and progress (the plan is on the approval step), then its report',
          params: RunParams,
          response: { 200: RunStatus, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return runStatus(
          ctx,
          req.params.id,
          drRestoreWorkflowId(spec.name, req.params.id),
          `DR restore for cluster ${spec.name}:`,
        );
      },
    );

    approvalRoutes(app, ctx, {
      path: '/clusters/:name/dr/restore/:id',
      tag: 'dr',
      what: 'DR restore',
      workflowId: drRestoreWorkflowId,
    });
  };

/**
 * POST <path>/approve and <path>/reject: the `approve` update of a run waiting at its approval gate,
 * recorded with the caller's identity. Shared by every approval-gated workflow (DR restore, control-plane recovery).
 */
export function approvalRoutes(
  app: FastifyInstance,
  ctx: AppContext,
  o: { path: string; tag: string; what: string; workflowId: (cluster: string, id: string) => string },
): void {
  for (const decision of ['approve', 'reject'] as const) {
    app.post<{ Params: { name: string; id: string }; Body: { note?: string } }>(
      `${o.path}/${decision}`,
      {
        schema: {
          tags: [o.tag],
          summary:
            decision === 'approve'
              ? `Approve a planned ${o.what} (recorded with your identity)`
              : `Reject a planned ${o.what}; it ends having changed nothing`,
          params: RunParams,
          body: DecisionBody,
          response: { 200: Decision, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const workflowId = o.workflowId(spec.name, req.params.id);
        const handle = ctx.client.workflow.getHandle(workflowId);
        const by = identityOf(req);
        try {
          const desc = await handle.describe();
          if (desc.status.name !== 'RUNNING')
            throw conflict(
              `${o.what} ${req.params.id} is ${desc.status.name.toLowerCase()}, not waiting for approval`,
              {
                workflowId,
              },
            );
          const res = await handle.executeUpdate(approveUpdate, {
            args: [{ approved: decision === 'approve', by, note: req.body?.note }],
          });
          return { accepted: res.accepted, workflowId, decision, by };
        } catch (err) {
          if (err instanceof WorkflowNotFoundError)
            throw notFound(`no ${o.what} ${req.params.id} for cluster ${spec.name}`, { workflowId });
          if (err instanceof WorkflowUpdateFailedError)
            throw conflict(`${decision} refused: ${err.cause?.message ?? err.message}`, { workflowId });
          throw err;
        }
      },
    );
  }
}
