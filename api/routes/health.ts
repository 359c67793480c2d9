// Liveness and readiness. /readyz is 200 only when Temporal answers and a worker polls our task
// queue, so a load balancer or `npm start` knows the orchestrator can actually run workflows.
import type { FastifyPluginAsync } from 'fastify';
// Default import: @temporalio/proto is CommonJS and Node's ESM loader cannot see its named exports.
import proto from '@temporalio/proto';

const { TaskQueueKind, TaskQueueType } = proto.temporal.api.enums.v1;
import type { AppContext } from '../context.js';

const Ready = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    reason: { type: 'string' },
    pollers: { type: 'integer' },
    taskQueue: { type: 'string' },
  },
  required: ['status'],
} as const;

export const healthRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.get(
      '/healthz',
      {
        schema: {
          tags: ['health'],
          summary: 'Process liveness',
          response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
        },
      },
      async () => ({ status: 'ok' }),
    );

    app.get(
      '/readyz',
      {
        schema: {
          tags: ['health'],
          summary: 'Temporal reachable and a worker polling',
          response: { 200: Ready, 503: Ready },
        },
      },
      async (_req, reply) => {
        try {
          // A deadline: the client retries unavailable servers, and a probe must answer quickly.
          const res = await ctx.client.connection.withDeadline(Date.now() + 3000, () =>
            ctx.client.workflowService.describeTaskQueue({
              namespace: ctx.settings.namespace,
              taskQueue: { name: ctx.settings.taskQueue, kind: TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
              taskQueueType: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            }),
          );
          const pollers = res.pollers?.length ?? 0;
          if (pollers === 0)
            return reply.status(503).send({
              status: 'not-ready',
              reason: `no worker polls task queue ${ctx.settings.taskQueue}`,
              pollers,
              taskQueue: ctx.settings.taskQueue,
            });
          return { status: 'ready', pollers, taskQueue: ctx.settings.taskQueue };
        } catch (err) {
          return reply.status(503).send({
            status: 'not-ready',
            reason: `Temporal at ${ctx.settings.address} unreachable: ${(err as Error).message.split('\n')[0]}`,
          });
        }
      },
    );
  };
