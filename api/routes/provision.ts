// Cluster build: start provisionCluster (one run per cluster at a time: workflow id provision/<name>),
// show the plan without starting anything (dryRun), read live progress, and resolve a parked step.
import type { FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ErrorBody, notFound } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun, startedSchema } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { workflowWebUrl } from '../../worker/settings.js';
import { buildProvisionPlan, provisionWorkflowId } from '../../workflows/provision-plan.js';
import { progressQuery, type ResolveAction } from '../../workflows/messages.js';
import { ResolveBody, Resolved, StepName, resolveStep } from '../runs.js';
import type { ProvisionInput } from '../../workflows/provision-cluster.js';

const ProvisionBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    allowTofu: { type: 'boolean', description: 'Accept unpinned nodes\u2019 host keys and report them for the config' },
    skipPreflight: { type: 'boolean' },
  },
} as const;

export const DryRunQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { dryRun: { type: 'boolean', default: false } },
} as const;

const Started = startedSchema();

const Plan = {
  type: 'object',
  additionalProperties: true,
  properties: {
    dryRun: { type: 'boolean' },
    cluster: { type: 'string' },
    workflowId: { type: 'string' },
    parallelism: { type: 'integer' },
    criticalPathSeconds: { type: 'number' },
    steps: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: true,
        properties: {
          id: { type: 'string' },
          phase: { type: 'string' },
          title: { type: 'string' },
          dependsOn: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    layers: { type: 'array', items: { type: 'array', items: { type: 'string' } } },
  },
} as const;

const ProgressBody = {
  type: 'object',
  additionalProperties: true,
  properties: {
    workflowId: { type: 'string' },
    runId: { type: 'string' },
    status: { type: 'string' },
    temporalWebUrl: { type: 'string' },
  },
} as const;

const StepParams = {
  type: 'object',
  properties: {
    name: ClusterNameParam.properties.name,
    step: StepName,
  },
  required: ['name', 'step'],
  additionalProperties: false,
} as const;

export const provisionRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{
      Params: { name: string };
      Querystring: { dryRun?: boolean };
      Body: Omit<ProvisionInput, 'cluster' | 'requestedBy'> | undefined;
    }>(
      '/clusters/:name/provision',
      {
        schema: {
          tags: ['provision'],
          summary: 'Build the cluster from bare nodes (dryRun=true: show the plan, start nothing)',
          params: ClusterNameParam,
          querystring: DryRunQuery,
          body: ProvisionBody,
          response: { 200: Plan, 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const plan = buildProvisionPlan(spec);
        if (req.query.dryRun) return reply.status(200).send({ dryRun: true, ...plan });
        const workflowId = provisionWorkflowId(spec.name);
        const requestedBy = identityOf(req);
        // A finished build may be run again (it converges); a running one is never duplicated.
        const started = await startRun(ctx, {
          workflowType: 'provisionCluster',
          workflowId,
          args: [{ cluster: spec.name, ...(req.body ?? {}), requestedBy }],
          requestedBy,
          statusUrl: `/clusters/${spec.name}/provision`,
          reuse: 'allow-duplicate',
          what: `a provision of ${spec.name}`,
          summary: `provision ${spec.name}`,
        });
        return reply.status(202).send(started);
      },
    );

    app.get<{ Params: { name: string } }>(
      '/clusters/:name/provision',
      {
        schema: {
          tags: ['provision'],
          summary: 'Progress of the latest provision run',
          params: ClusterNameParam,
          response: { 200: ProgressBody, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const workflowId = provisionWorkflowId(spec.name);
        const handle = ctx.client.workflow.getHandle(workflowId);
        try {
          const desc = await handle.describe();
          const progress = await handle.query(progressQuery);
          return {
            workflowId,
            runId: desc.runId,
            status: desc.status.name,
            temporalWebUrl: workflowWebUrl(ctx.settings, workflowId, desc.runId),
            ...progress,
          };
        } catch (err) {
          if (err instanceof WorkflowNotFoundError)
            throw notFound(`cluster ${spec.name} has no provision run`, { workflowId });
          throw err;
        }
      },
    );

    app.post<{ Params: { name: string; step: string }; Body: { action: ResolveAction; note?: string } }>(
      '/clusters/:name/provision/steps/:step',
      {
        schema: {
          tags: ['provision'],
          summary: 'Resolve a step in needs-attention: retry, skip (where safe) or abort',
          params: StepParams,
          body: ResolveBody,
          response: { 200: Resolved, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return resolveStep(
          ctx,
          {
            workflowId: provisionWorkflowId(spec.name),
            step: req.params.step,
            action: req.body.action,
            note: req.body.note,
            by: identityOf(req),
            notRunning: `cluster ${spec.name} has no running provision`,
          },
          req.log,
        );
      },
    );
  };
