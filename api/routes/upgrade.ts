// Rolling upgrade: start upgradeCluster (workflow id upgrade/<name>; one at a time per cluster, and
// never beside another mutating run of the cluster), or show its plan without starting anything (dryRun).
import type { FastifyPluginAsync } from 'fastify';
import { ErrorBody, conflict } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun, startedSchema } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { DryRunQuery } from './provision.js';
import { buildUpgradePlan, upgradeWorkflowId } from '../../workflows/upgrade-plan.js';
import { MUTATING_OPERATIONS } from '../../activities/upgrade/k3s.js';

const Plan = {
  type: 'object',
  additionalProperties: true,
  properties: {
    dryRun: { type: 'boolean' },
    cluster: { type: 'string' },
    workflowId: { type: 'string' },
    targetVersion: { type: 'string' },
    snapshotName: { type: 'string' },
    concurrency: { type: 'integer' },
    batches: { type: 'array', items: { type: 'array', items: { type: 'string' } } },
    charts: { type: 'array', items: { type: 'string' } },
    drainTimeoutSeconds: { type: 'integer' },
    nodeReadyTimeoutSeconds: { type: 'integer' },
  },
} as const;

export const upgradeRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Params: { name: string }; Querystring: { dryRun?: boolean } }>(
      '/clusters/:name/upgrade',
      {
        schema: {
          tags: ['upgrade'],
          summary: 'Rolling upgrade of k3s and the charts to the config (dryRun=true: show the plan, start nothing)',
          params: ClusterNameParam,
          querystring: DryRunQuery,
          // Nothing to choose in the body: the config is the plan. An unknown field is refused, not ignored.
          body: { type: 'object', additionalProperties: false, properties: {} },
          response: { 200: Plan, 202: startedSchema(), 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const plan = buildUpgradePlan(spec);
        if (req.query.dryRun) return reply.status(200).send({ dryRun: true, ...plan });
        const workflowId = upgradeWorkflowId(spec.name);
        // Another mutating run of this cluster: 409 naming it (the workflow's preflight checks again).
        const q = `ClusterName="${spec.name}" AND ExecutionStatus="Running"`;
        for await (const info of ctx.client.workflow.list({ query: q })) {
          const op = (info.searchAttributes as Record<string, unknown[] | undefined>).Operation?.[0];
          if (info.workflowId !== workflowId && MUTATING_OPERATIONS.includes(String(op)))
            throw conflict(`a ${String(op)} of ${spec.name} is running`, { workflowId: info.workflowId });
        }
        const requestedBy = identityOf(req);
        const started = await startRun(ctx, {
          workflowType: 'upgradeCluster',
          workflowId,
          args: [{ cluster: spec.name, requestedBy }],
          requestedBy,
          statusUrl: `/workflows/${encodeURIComponent(workflowId)}`,
          reuse: 'allow-duplicate',
          what: `an upgrade of ${spec.name}`,
          summary: `upgrade ${spec.name} to ${plan.targetVersion}`,
        });
        return reply.status(202).send(started);
      },
    );
  };
