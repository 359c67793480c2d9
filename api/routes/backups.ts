// Backup verification drills: start one (202 with the workflow id and a Temporal Web link) and read
// its outcome — live progress while it runs, the drill report when done.
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ErrorBody, badRequest, notFound } from '../errors.js';
import { startRun, startedSchema } from '../start-run.js';
import { clusterOr404, identityOf, type AppContext } from '../context.js';
import { ClusterNameParam } from './clusters.js';
import { workflowWebUrl } from '../../worker/settings.js';
import { drillScheduleId } from '../../worker/schedules.js';
import type { VerifyBackupInput } from '../../workflows/verify-backup.js';
import { progressQuery } from '../../workflows/messages.js';

export const RequestId = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' } as const;
export const NsName = { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' } as const;
export const verifyBackupWorkflowId = (cluster: string, requestId: string) => `verify-backup/${cluster}/${requestId}`;

const VerifyBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    backup: { type: 'string', minLength: 1, maxLength: 253 },
    latestFromSchedule: { anyOf: [{ type: 'boolean' }, NsName] },
    createNew: { type: 'boolean' },
    namespaces: { type: 'array', minItems: 1, uniqueItems: true, items: NsName },
    requestId: RequestId,
  },
} as const;

export const Started = startedSchema({ id: { type: 'string' } });

export const RunStatus = {
  type: 'object',
  additionalProperties: true,
  properties: {
    id: { type: 'string' },
    workflowId: { type: 'string' },
    workflowStatus: { type: 'string' },
    running: { type: 'boolean' },
    progress: { type: 'object', additionalProperties: true },
    report: { type: 'object', additionalProperties: true },
    error: {
      type: 'object',
      additionalProperties: true,
      properties: { type: { type: 'string' }, message: { type: 'string' } },
    },
    temporalWebUrl: { type: 'string' },
  },
} as const;

/** A run's state for GET endpoints: progress while running, the result when completed, the failure otherwise. */
export async function runStatus(ctx: AppContext, id: string, workflowId: string, what: string) {
  const handle = ctx.client.workflow.getHandle(workflowId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw notFound(`no ${what} ${id}`, { workflowId });
    throw err;
  }
  const base = {
    id,
    workflowId,
    workflowStatus: desc.status.name,
    temporalWebUrl: workflowWebUrl(ctx.settings, workflowId, desc.runId),
  };
  const progress = await handle.query(progressQuery).catch(() => undefined);
  if (desc.status.name === 'RUNNING') return { ...base, running: true, progress };
  if (desc.status.name === 'COMPLETED')
    return { ...base, running: false, progress, report: (await handle.result()) as object };
  let error: { type?: string; message: string } = { message: desc.status.name.toLowerCase() };
  try {
    await handle.result();
  } catch (err) {
    const cause = (err as { cause?: { type?: string; message?: string; name?: string } }).cause;
    error = { type: cause?.type ?? cause?.name, message: cause?.message ?? (err as Error).message };
  }
  return { ...base, running: false, progress, error };
}

export const backupRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Params: { name: string }; Body: Omit<VerifyBackupInput, 'cluster' | 'requestedBy'> }>(
      '/clusters/:name/backups/verify',
      {
        schema: {
          tags: ['backups'],
          summary: 'Verify a Velero backup by restoring it into scratch namespaces (a DR drill)',
          params: ClusterNameParam,
          body: VerifyBody,
          response: { 202: Started, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) => {
        const spec = clusterOr404(ctx, req.params.name);
        const body = req.body ?? {};
        const choices = (['backup', 'latestFromSchedule', 'createNew'] as const).filter(
          (k) => body[k] !== undefined && body[k] !== false,
        );
        if (choices.length > 1)
          throw badRequest(
            `body.${choices[1]} cannot be combined with body.${choices[0]}: choose one way to pick the backup`,
            { field: `body.${choices[1]}` },
          );
        const requestId = body.requestId ?? randomUUID();
        const workflowId = verifyBackupWorkflowId(spec.name, requestId);
        const requestedBy = identityOf(req);
        const started = await startRun(ctx, {
          workflowType: 'verifyBackup',
          workflowId,
          args: [{ cluster: spec.name, ...body, requestId, requestedBy }],
          requestedBy,
          statusUrl: `/clusters/${spec.name}/backups/verifications/${requestId}`,
          reuse: 'reject-duplicate',
          what: `verification ${requestId}`,
        });
        return reply.status(202).send({ id: requestId, ...started });
      },
    );

    app.get<{ Params: { name: string; id: string } }>(
      '/clusters/:name/backups/verifications/:id',
      {
        schema: {
          tags: ['backups'],
          summary: 'A verification drill: progress while running, the report (result, reasons, RTO, counts) when done',
          description:
            "id is the requestId, or a scheduled drill's workflow id (dr-drill/<cluster>-<time>, URL-encoded).",
          params: {
            type: 'object',
            properties: {
              name: ClusterNameParam.properties.name,
              id: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9][A-Za-z0-9/_.:-]*$' },
            },
            required: ['name', 'id'],
            additionalProperties: false,
          },
          response: { 200: RunStatus, 404: ErrorBody },
        },
      },
      async (req) => {
        const spec = clusterOr404(ctx, req.params.name);
        const { id } = req.params;
        let workflowId: string;
        if (id.startsWith(`${drillScheduleId(spec.name)}-`) || id.startsWith(`verify-backup/${spec.name}/`))
          workflowId = id;
        else if (new RegExp(RequestId.pattern).test(id)) workflowId = verifyBackupWorkflowId(spec.name, id);
        else throw notFound(`no verification ${id} for cluster ${spec.name}`);
        return runStatus(ctx, id, workflowId, `verification for cluster ${spec.name}:`);
      },
    );
  };
