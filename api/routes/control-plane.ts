// Control-plane recovery: start one (it plans, then waits for a human), approve or reject it, and
// read its plan, progress and report (RTO, RPO). The workflow is workflows/recover-control-plane.ts.
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { ErrorBody } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { RequestId, RunStatus, Started, runStatus } from './backups.js';
import { ApprovalTimeout, RunParams, approvalRoutes } from './dr.js';
import type { RecoverControlPlaneInput } from '../../workflows/recover-control-plane.js';

export const recoverWorkflowId = (cluster: string, requestId: string) =>
  `recover-control-plane/${cluster}/${requestId}`;

const RecoverBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    node: ClusterNameParam.properties.name,
    snapshot: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,253}$' },
    approvalTimeout: ApprovalTimeout,
    requestId: RequestId,
  },
} as const;

export const controlPlaneRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{
      Params: { name: string };
      Body: Pick<RecoverControlPlaneInput, 'node' | 'snapshot' | 'requestId'> & { approvalTimeout?: string };
    }>(
      '/clusters/:name/control-plane/recover',
      {
        schema: {
          tags: ['dr'],
          summary:
            'Plan a control-plane recovery from an off-node etcd snapshot; it waits for approval before changing anything',
          params: ClusterNameParam,
          body: RecoverBody,
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const requestId = req.body?.requestId ?? randomUUID();
        const workflowId = recoverWorkflowId(spec.name, requestId);
        const requestedBy = identityOf(req);
        const base = `/clusters/${spec.name}/control-plane/recover/${requestId}`;
        const started = await startRun(ctx, {
          workflowType: 'recoverControlPlane',
          workflowId,
          args: [{ cluster: spec.name, ...req.body, requestId, requestedBy }],
          requestedBy,
          statusUrl: base,
          reuse: 'reject-duplicate',
          what: `control-plane recovery ${requestId}`,
        });
        return reply
          .status(202)
          .send({ id: requestId, ...started, approveUrl: `${base}/approve`, rejectUrl: `${base}/reject` });
      },
    );

    app.get<{ Params: { name: string; id: string } }>(
      '/clusters/:name/control-plane/recover/:id',
      {
        schema: {
          tags: ['dr'],
          summary: 'A control-plane recovery: its plan and progress, then its report (RTO, RPO)',
          params: RunParams,
          response: { 200: RunStatus, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return runStatus(
          ctx,
          req.params.id,
          recoverWorkflowId(spec.name, req.params.id),
          `control-plane recovery for cluster ${spec.name}:`,
        );
      },
    );

    approvalRoutes(app, ctx, {
      path: '/clusters/:name/control-plane/recover/:id',
      tag: 'dr',
      what: 'control-plane recovery',
      workflowId: recoverWorkflowId,
    });
  };
