// A cluster's Temporal Schedules (the DR drill `dr-drill/<cluster>` and any other `<kind>/<cluster>`):
// list, describe with next runs and the last results, pause/unpause with a note, trigger now,
// backfill a range, delete. `:scheduleId` is the kind ("dr-drill") or the full, URL-encoded id.
import type { FastifyPluginAsync } from 'fastify';
import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowNotFoundError,
  type ScheduleDescription,
  type ScheduleHandle,
} from '@temporalio/client';
import { ErrorBody, badRequest, conflict, notFound } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { ClusterNameParam } from './clusters.js';
import { workflowWebUrl } from '../../worker/settings.js';
import { drillScheduleId } from '../../worker/schedules.js';

const Params = {
  type: 'object',
  properties: {
    name: ClusterNameParam.properties.name,
    scheduleId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9-]*)?$', maxLength: 200 },
  },
  required: ['name', 'scheduleId'],
  additionalProperties: false,
} as const;
const NoteBody = {
  type: 'object',
  additionalProperties: false,
  required: ['note'],
  properties: { note: { type: 'string', minLength: 1, maxLength: 500 } },
} as const;
const BackfillBody = {
  type: 'object',
  additionalProperties: false,
  required: ['start', 'end'],
  properties: {
    start: { type: 'string', format: 'date-time' },
    end: { type: 'string', format: 'date-time' },
    overlap: {
      type: 'string',
      enum: ['skip', 'bufferOne', 'bufferAll'],
      description:
        'default bufferAll: every missed time in the range runs, one after another (skip would drop all but the first, since they are all due at once)',
    },
  },
} as const;
const Obj = { type: 'object', additionalProperties: true } as const;
const OVERLAP = {
  skip: ScheduleOverlapPolicy.SKIP,
  bufferOne: ScheduleOverlapPolicy.BUFFER_ONE,
  bufferAll: ScheduleOverlapPolicy.BUFFER_ALL,
} as const;

type P = { name: string; scheduleId: string };

function handleFor(ctx: AppContext, cluster: string, scheduleId: string): ScheduleHandle {
  const id = scheduleId.includes('/') ? scheduleId : `${scheduleId}/${cluster}`;
  // A schedule of another cluster is not reachable through this cluster's path.
  if (!id.endsWith(`/${cluster}`)) throw notFound(`no schedule ${scheduleId} for cluster ${cluster}`);
  return ctx.client.schedule.getHandle(id);
}

async function describeOr404(h: ScheduleHandle, cluster: string): Promise<ScheduleDescription> {
  try {
    return await h.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError)
      throw notFound(`no schedule ${h.scheduleId} for cluster ${cluster}`, { scheduleId: h.scheduleId });
    throw err;
  }
}

function summary(d: ScheduleDescription) {
  const a = d.action as { workflowType?: string; memo?: Record<string, unknown> };
  return {
    scheduleId: d.scheduleId,
    workflowType: a.workflowType,
    cron: typeof a.memo?.drillCron === 'string' ? a.memo.drillCron : undefined,
    paused: d.state.paused,
    note: d.state.note,
    overlap: d.policies.overlap,
    nextRuns: d.info.nextActionTimes.slice(0, 5).map((t) => t.toISOString()),
    running: d.info.runningActions.map((r) => r.workflow.workflowId),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
  };
}

export const scheduleRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Params: { name: string } }>(
      '/clusters/:name/schedules',
      {
        schema: {
          tags: ['schedules'],
          summary: "The cluster's schedules",
          params: ClusterNameParam,
          response: {
            200: { type: 'object', properties: { schedules: { type: 'array', items: Obj } } },
            404: ErrorBody,
          },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const ids = new Set<string>();
        for await (const s of ctx.client.schedule.list()) {
          if (s.scheduleId.endsWith(`/${spec.name}`) || s.memo?.cluster === spec.name) ids.add(s.scheduleId);
        }
        // Listing is eventually consistent; the drill schedule is looked up directly so a fresh one shows.
        ids.add(drillScheduleId(spec.name));
        const out = [];
        for (const id of [...ids].sort()) {
          const d = await ctx.client.schedule
            .getHandle(id)
            .describe()
            .catch((err: unknown) => {
              if (err instanceof ScheduleNotFoundError) return undefined;
              throw err;
            });
          if (d) out.push(summary(d));
        }
        return { schedules: out };
      },
    );

    app.get<{ Params: P }>(
      '/clusters/:name/schedules/:scheduleId',
      {
        schema: {
          tags: ['schedules'],
          summary: 'A schedule: state, next runs, running and recent runs with their results',
          params: Params,
          response: { 200: Obj, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const d = await describeOr404(handleFor(ctx, spec.name, req.params.scheduleId), spec.name);
        const recentRuns = await Promise.all(
          d.info.recentActions
            .slice(-10)
            .reverse()
            .map(async (a) => {
              const workflowId = a.action.workflow.workflowId;
              const run = {
                scheduledAt: a.scheduledAt.toISOString(),
                takenAt: a.takenAt.toISOString(),
                workflowId,
                temporalWebUrl: workflowWebUrl(ctx.settings, workflowId),
              };
              try {
                const w = await ctx.client.workflow.getHandle(workflowId).describe();
                return { ...run, status: w.status.name, result: w.memo?.report };
              } catch (err) {
                if (err instanceof WorkflowNotFoundError) return { ...run, status: 'UNKNOWN' };
                throw err;
              }
            }),
        );
        return { ...summary(d), recentRuns };
      },
    );

    for (const op of ['pause', 'unpause'] as const) {
      app.post<{ Params: P; Body: { note: string } }>(
        `/clusters/:name/schedules/:scheduleId/${op}`,
        {
          schema: {
            tags: ['schedules'],
            summary: `${op === 'pause' ? 'Pause' : 'Unpause'} a schedule with a note`,
            params: Params,
            body: NoteBody,
            response: { 200: Obj, 400: ErrorBody, 404: ErrorBody },
          },
        },
        async (req) => {
          const spec = clusterOr404(ctx, req.params.name);
          const h = handleFor(ctx, spec.name, req.params.scheduleId);
          await describeOr404(h, spec.name);
          const note = `${req.body.note} (by ${identityOf(req)})`;
          await (op === 'pause' ? h.pause(note) : h.unpause(note));
          return summary(await h.describe());
        },
      );
    }

    app.post<{ Params: P }>(
      '/clusters/:name/schedules/:scheduleId/trigger',
      {
        schema: {
          tags: ['schedules'],
          summary: 'Run the scheduled action now (409 while a run is still going: overlap skip)',
          params: Params,
          response: { 202: Obj, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const h = handleFor(ctx, spec.name, req.params.scheduleId);
        const d = await describeOr404(h, spec.name);
        const running = d.info.runningActions[0]?.workflow.workflowId;
        if (running) throw conflict(`schedule ${h.scheduleId} already has a run in progress`, { workflowId: running });
        // SKIP here too: the SDK's default for a trigger is ALLOW_ALL, which would stack runs in a race.
        await h.trigger(ScheduleOverlapPolicy.SKIP);
        return reply.status(202).send({ scheduleId: h.scheduleId, triggered: true });
      },
    );

    app.post<{ Params: P; Body: { start: string; end: string; overlap?: keyof typeof OVERLAP } }>(
      '/clusters/:name/schedules/:scheduleId/backfill',
      {
        schema: {
          tags: ['schedules'],
          summary: 'Run the action for every scheduled time in [start, end]',
          params: Params,
          body: BackfillBody,
          response: { 202: Obj, 400: ErrorBody, 404: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const start = new Date(req.body.start);
        const end = new Date(req.body.end);
        if (Number.isNaN(start.getTime())) throw badRequest('body.start is not a date-time', { field: 'body.start' });
        if (Number.isNaN(end.getTime())) throw badRequest('body.end is not a date-time', { field: 'body.end' });
        if (end <= start) throw badRequest('body.end must be after body.start', { field: 'body.end' });
        if (end.getTime() > Date.now())
          throw badRequest('body.end must not be in the future (backfill covers missed times)', { field: 'body.end' });
        const h = handleFor(ctx, spec.name, req.params.scheduleId);
        await describeOr404(h, spec.name);
        await h.backfill([{ start, end, overlap: OVERLAP[req.body.overlap ?? 'bufferAll'] }]);
        return reply.status(202).send({ scheduleId: h.scheduleId, start: start.toISOString(), end: end.toISOString() });
      },
    );

    app.delete<{ Params: P }>(
      '/clusters/:name/schedules/:scheduleId',
      {
        schema: {
          tags: ['schedules'],
          summary: 'Delete a schedule (running actions finish)',
          params: Params,
          response: { 200: Obj, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const h = handleFor(ctx, spec.name, req.params.scheduleId);
        await describeOr404(h, spec.name);
        await h.delete();
        return { scheduleId: h.scheduleId, deleted: true };
      },
    );
  };
