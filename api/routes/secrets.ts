// Secret rotation: start a rotation (or drift check), read its per-entry status (live query while it
// runs, the result when done), and manage the periodic drift-check schedule. Responses carry entry
// ids, versions and fingerprints only — never values (the workflow never has them).
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ErrorBody, badRequest, notFound } from '../errors.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { startRun, startedSchema } from '../start-run.js';
import { ClusterNameParam } from './clusters.js';
import { workflowWebUrl } from '../../worker/settings.js';
import { describeDriftCheckSchedule, ensureDriftCheckSchedule } from '../../worker/drift-schedule.js';
import {
  rotateSecretsWorkflowId,
  type RotateSecretsInput,
  type RotationReport,
} from '../../workflows/rotate-secrets.js';
import { progressQuery } from '../../workflows/messages.js';

const RequestId = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } as const;

const RotateBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    entries: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1 } },
    dryRun: { type: 'boolean' },
    generate: {
      anyOf: [
        { type: 'boolean' },
        { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1 } },
      ],
    },
    requestId: RequestId,
    rolloutTimeoutSeconds: { type: 'integer', minimum: 5, maximum: 3600 },
  },
} as const;

const Started = startedSchema({ rotationId: { type: 'string' } });

const EntryStatus = {
  type: 'object',
  additionalProperties: true,
  properties: { id: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } },
} as const;

const Status = {
  type: 'object',
  properties: {
    rotationId: { type: 'string' },
    workflowId: { type: 'string' },
    running: { type: 'boolean' },
    workflowStatus: { type: 'string' },
    state: { type: 'string' },
    dryRun: { type: 'boolean' },
    entries: { type: 'array', items: EntryStatus },
    restarts: { type: 'array', items: { type: 'object', additionalProperties: true } },
    progress: { type: 'object', additionalProperties: true },
    error: { type: 'string' },
    temporalWebUrl: { type: 'string' },
  },
} as const;

const ScheduleState = {
  type: 'object',
  additionalProperties: true,
  properties: {
    scheduleId: { type: 'string' },
    exists: { type: 'boolean' },
    paused: { type: 'boolean' },
    note: { type: 'string' },
    cron: { type: 'string' },
    action: { type: 'string' },
  },
} as const;

export const secretRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Params: { name: string }; Body: Omit<RotateSecretsInput, 'cluster' | 'requestedBy'> }>(
      '/clusters/:name/secrets/rotate',
      {
        schema: {
          tags: ['secrets'],
          summary: 'Rotate secrets 1Password -> OpenBAO -> Kubernetes (or drift-check with dryRun)',
          params: ClusterNameParam,
          body: RotateBody,
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const body = req.body ?? {};
        const known = new Set(spec.secrets.entries.map((e) => e.id));
        body.entries?.forEach((id, i) => {
          if (!known.has(id))
            throw badRequest(`body.entries[${i}] names no secret entry of cluster ${spec.name}: "${id}"`, {
              field: `body.entries[${i}]`,
            });
        });
        if (Array.isArray(body.generate)) {
          body.generate.forEach((id, i) => {
            const e = spec.secrets.entries.find((x) => x.id === id);
            const field = `body.generate[${i}]`;
            if (!e) throw badRequest(`${field} names no secret entry: "${id}"`, { field });
            if (!e.generate) throw badRequest(`${field}: entry "${id}" has no generate recipe`, { field });
            if (body.entries && !body.entries.includes(id))
              throw badRequest(`${field}: entry "${id}" is not among body.entries`, { field });
          });
        }
        if (body.dryRun && body.generate)
          throw badRequest('body.generate cannot be combined with dryRun (a drift check changes nothing)', {
            field: 'body.generate',
          });
        const requestId = body.requestId ?? randomUUID();
        const workflowId = rotateSecretsWorkflowId(spec.name, requestId);
        const requestedBy = identityOf(req);
        // A repeated POST with the same requestId must not rotate twice.
        const started = await startRun(ctx, {
          workflowType: 'rotateSecrets',
          workflowId,
          args: [{ cluster: spec.name, ...body, requestId, requestedBy }],
          requestedBy,
          statusUrl: `/clusters/${spec.name}/secrets/rotations/${requestId}`,
          reuse: 'reject-duplicate',
          what: `rotation ${requestId}`,
        });
        return reply.status(202).send({ rotationId: requestId, ...started });
      },
    );

    app.get<{ Params: { name: string; id: string } }>(
      '/clusters/:name/secrets/rotations/:id',
      {
        schema: {
          tags: ['secrets'],
          summary: 'Per-entry status of a rotation (live while running)',
          params: {
            type: 'object',
            properties: { name: ClusterNameParam.properties.name, id: RequestId },
            required: ['name', 'id'],
            additionalProperties: false,
          },
          response: { 200: Status, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const workflowId = rotateSecretsWorkflowId(spec.name, req.params.id);
        const handle = ctx.client.workflow.getHandle(workflowId);
        let desc;
        try {
          desc = await handle.describe();
        } catch (err) {
          if (err instanceof WorkflowNotFoundError)
            throw notFound(`no rotation ${req.params.id} for cluster ${spec.name}`, { workflowId });
          throw err;
        }
        const base = {
          rotationId: req.params.id,
          workflowId,
          workflowStatus: desc.status.name,
          temporalWebUrl: workflowWebUrl(ctx.settings, workflowId, desc.runId),
        };
        if (desc.status.name === 'RUNNING') {
          const [report, progress] = await Promise.all([
            handle.query<RotationReport>('rotationStatus'),
            handle.query(progressQuery),
          ]);
          return { ...base, running: true, ...report, progress };
        }
        if (desc.status.name === 'COMPLETED')
          return { ...base, running: false, ...((await handle.result()) as RotationReport) };
        let error = desc.status.name.toLowerCase();
        try {
          await handle.result();
        } catch (err) {
          error = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
        }
        return { ...base, running: false, state: 'failed', error };
      },
    );

    app.get<{ Params: { name: string } }>(
      '/clusters/:name/secrets/drift-check',
      {
        schema: {
          tags: ['secrets'],
          summary: 'The periodic drift-check schedule',
          params: ClusterNameParam,
          response: { 200: ScheduleState, 404: ErrorBody },
        },
      },
      async (req) => describeDriftCheckSchedule(ctx.client, clusterOr404(ctx, req.params.name).name),
    );

    app.put<{ Params: { name: string }; Body: { cron?: string; paused?: boolean } }>(
      '/clusters/:name/secrets/drift-check',
      {
        schema: {
          tags: ['secrets'],
          summary: 'Create or update the drift-check schedule (idempotent; defaults from the cluster config)',
          params: ClusterNameParam,
          body: {
            type: 'object',
            additionalProperties: false,
            properties: { cron: { type: 'string', minLength: 9, maxLength: 100 }, paused: { type: 'boolean' } },
          },
          response: { 200: ScheduleState, 400: ErrorBody, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        try {
          return await ensureDriftCheckSchedule(ctx.client, spec, {
            taskQueue: ctx.settings.taskQueue,
            ...(req.body ?? {}),
            by: identityOf(req),
          });
        } catch (err) {
          if (/invalid|parse|cron/i.test((err as Error).message))
            throw badRequest(`body.cron: ${(err as Error).message}`, { field: 'body.cron' });
          throw err;
        }
      },
    );
  };
