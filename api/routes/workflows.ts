// Generic workflow views for any run this service starts: status + progress, and a Server-Sent
// Events stream of every step transition in order, ending with the result. Reconnecting with
// Last-Event-ID resumes after that transition without gaps (the workflow keeps the transition log;
// the stream only reads it), so no client has to poll.
import type { FastifyPluginAsync } from 'fastify';
import { WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { eventsQuery, progressQuery, type ProgressEvent } from '../../workflows/messages.js';
import { workflowWebUrl } from '../../worker/settings.js';
import { ErrorBody, notFound } from '../errors.js';
import { identityOf, type AppContext } from '../context.js';
import { ResolveBody, Resolved, StepName, resolveStep } from '../runs.js';
import type { ResolveAction } from '../../workflows/messages.js';

const IdParam = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 400, pattern: '^[A-Za-z0-9][A-Za-z0-9/_.:-]*$' } },
  required: ['id'],
  additionalProperties: false,
} as const;

const StepParams = {
  type: 'object',
  properties: { id: IdParam.properties.id, step: StepName },
  required: ['id', 'step'],
  additionalProperties: false,
} as const;

const POLL_MS = 250;
const KEEPALIVE_MS = 15_000;

async function describeOr404(handle: WorkflowHandle) {
  try {
    return await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw notFound(`no workflow "${handle.workflowId}"`, { workflowId: handle.workflowId });
    throw err;
  }
}

/** Result or failure of a closed run, safe to show (values are references/fingerprints by design). */
async function outcome(handle: WorkflowHandle): Promise<{ status: string; result?: unknown; error?: string }> {
  try {
    return { status: 'COMPLETED', result: await handle.result() };
  } catch (err) {
    const e = err as Error & { cause?: Error };
    return { status: (await handle.describe()).status.name, error: e.cause?.message ?? e.message };
  }
}

export const workflowRoutes =
  (ctx: AppContext): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Params: { id: string } }>(
      '/workflows/:id',
      {
        schema: {
          tags: ['workflows'],
          summary: 'Status and progress of a workflow run (id URL-encoded, e.g. provision%2Fpedro-ops)',
          params: IdParam,
          response: { 200: { type: 'object', additionalProperties: true }, 404: ErrorBody },
        },
      },
      async (req) => {
        const handle = ctx.client.workflow.getHandle(req.params.id);
        const d = await describeOr404(handle);
        const progress = await handle.query(progressQuery).catch(() => undefined);
        // A closed run also shows how it ended (its result or failure: references and fingerprints only, by design).
        const ended = d.status.name === 'RUNNING' ? {} : await outcome(handle);
        return {
          ...ended,
          workflowId: d.workflowId,
          runId: d.runId,
          type: d.type,
          status: d.status.name,
          startTime: d.startTime.toISOString(),
          closeTime: d.closeTime?.toISOString(),
          temporalWebUrl: workflowWebUrl(ctx.settings, d.workflowId, d.runId),
          progress,
        };
      },
    );

    app.post<{ Params: { id: string; step: string }; Body: { action: ResolveAction; note?: string } }>(
      '/workflows/:id/steps/:step',
      {
        schema: {
          tags: ['workflows'],
          summary:
            'Resolve a parked step of any run (provision, rotation, drift check, drill, DR restore): retry, skip (where safe) or abort',
          params: StepParams,
          body: ResolveBody,
          response: { 200: Resolved, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req) =>
        resolveStep(
          ctx,
          {
            workflowId: req.params.id,
            step: req.params.step,
            action: req.body.action,
            note: req.body.note,
            by: identityOf(req),
          },
          req.log,
        ),
    );

    app.get<{ Params: { id: string }; Querystring: { after?: number } }>(
      '/workflows/:id/events',
      {
        schema: {
          tags: ['workflows'],
          summary: 'Server-Sent Events: every step transition in order, then `result`; resume with Last-Event-ID',
          params: IdParam,
          querystring: {
            type: 'object',
            properties: { after: { type: 'integer', minimum: 0 } },
            additionalProperties: false,
          },
          response: { 200: { type: 'string', description: 'text/event-stream' }, 404: ErrorBody },
        },
      },
      async (req, reply) => {
        const handle = ctx.client.workflow.getHandle(req.params.id);
        await describeOr404(handle);
        const header = req.headers['last-event-id'];
        let after = Number(Array.isArray(header) ? header[0] : (header ?? req.query.after ?? 0));
        if (!Number.isFinite(after) || after < 0) after = 0;

        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-store',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        let open = true;
        req.raw.on('close', () => {
          open = false;
        });
        const send = (e: ProgressEvent) => raw.write(`id: ${e.seq}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`);
        let lastWrite = Date.now();
        try {
          while (open) {
            const d = await handle.describe();
            const events = await handle.query(eventsQuery, after).catch(() => [] as ProgressEvent[]);
            for (const e of events) {
              send(e);
              after = e.seq;
              lastWrite = Date.now();
            }
            if (d.status.name !== 'RUNNING') {
              const o = await outcome(handle);
              raw.write(
                `event: result\ndata: ${JSON.stringify({ workflowId: d.workflowId, runId: d.runId, ...o })}\n\n`,
              );
              break;
            }
            if (Date.now() - lastWrite > KEEPALIVE_MS) {
              raw.write(': keepalive\n\n');
              lastWrite = Date.now();
            }
            await new Promise((r) => setTimeout(r, POLL_MS));
          }
        } catch (err) {
          if (open) raw.write(`event: error\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`);
        } finally {
          raw.end();
        }
      },
    );
  };
