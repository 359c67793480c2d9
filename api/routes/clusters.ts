// Cluster definitions as the orchestrator serves them: summaries only (the spec holds references,
// never secret values, but operators only need the shape).
import type { FastifyPluginAsync } from 'fastify';
import { summarize } from '../../config/loader.js';
import { ErrorBody } from '../errors.js';
import { clusterOr404, type AppContext } from '../context.js';

export const ClusterNameParam = {
  type: 'object',
  properties: { name: { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' } },
  required: ['name'],
  additionalProperties: false,
} as const;

const Summary = { type: 'object', additionalProperties: true, properties: { name: { type: 'string' } } } as const;

export const clusterRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.get(
      '/clusters',
      {
        schema: {
          tags: ['clusters'],
          summary: 'List clusters',
          response: { 200: { type: 'object', properties: { clusters: { type: 'array', items: Summary } } } },
        },
      },
      async () => ({
        clusters: [...ctx.clusters.all().values()].map(summarize),
      }),
    );

    app.get<{ Params: { name: string } }>(
      '/clusters/:name',
      {
        schema: {
          tags: ['clusters'],
          summary: 'Cluster summary',
          params: ClusterNameParam,
          response: { 200: Summary, 404: ErrorBody },
        },
      },
      async (req) => summarize(clusterOr404(ctx, req.params.name)),
    );
  };
