// "What needs me now": runs of every long workflow from Temporal visibility (ClusterName, Operation,
// Phase, State search attributes), with the parked step of each run in needs-attention.
import type { FastifyPluginAsync } from 'fastify';
import { ErrorBody } from '../errors.js';
import { clusterOr404, type AppContext } from '../context.js';
import { ClusterNameParam } from './clusters.js';
import { RUN_STATES, listRuns, type RunStateFilter } from '../runs.js';

const RunsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: [...RUN_STATES] },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  },
} as const;

const Run = {
  type: 'object',
  additionalProperties: true,
  properties: {
    workflowId: { type: 'string' },
    runId: { type: 'string' },
    type: { type: 'string' },
    cluster: { type: 'string' },
    operation: { type: 'string' },
    state: { type: 'string' },
    status: { type: 'string' },
    phase: { type: 'string' },
    parked: {
      type: 'array',
      items: {
        type: 'object',
        properties: { step: { type: 'string' }, error: { type: 'string' }, attempts: { type: 'integer' } },
      },
    },
    startTime: { type: 'string' },
    closeTime: { type: 'string' },
    ageSeconds: { type: 'integer' },
    temporalWebUrl: { type: 'string' },
  },
} as const;
const Runs = { type: 'object', properties: { runs: { type: 'array', items: Run } } } as const;

type Query = { state?: RunStateFilter; limit: number };

export const runRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Querystring: Query }>(
      '/workflows',
      {
        schema: {
          tags: ['workflows'],
          summary: 'Runs of every cluster, newest first (state=needs-attention: what waits for an operator)',
          querystring: RunsQuery,
          response: { 200: Runs, 400: ErrorBody },
        },
      },
      async (req) => ({ runs: await listRuns(ctx, { state: req.query.state, limit: req.query.limit }) }),
    );

    app.get<{ Params: { name: string }; Querystring: Query }>(
      '/clusters/:name/runs',
      {
        schema: {
          tags: ['workflows'],
          summary: 'Runs of one cluster, newest first: operation, state, phase, parked step, age, Temporal Web link',
          params: ClusterNameParam,
          querystring: RunsQuery,
          response: { 200: Runs, 400: ErrorBody, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        return { runs: await listRuns(ctx, { cluster: spec.name, state: req.query.state, limit: req.query.limit }) };
      },
    );
  };
