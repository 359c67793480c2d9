// The CLI's HTTP side: JSON requests with the bearer token, and an SSE reader that follows a
// workflow's transitions (resuming with Last-Event-ID if the connection drops).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../worker/settings.js';

export interface ApiOptions {
  url: string;
  token?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: { error?: string; message?: string; [k: string]: unknown },
  ) {
    super(`${status} ${body.error ?? ''}: ${body.message ?? JSON.stringify(body)}`.trim());
  }
}

/** Token: --token, PEDRO_OPS_API_TOKEN, or the dev operator token that `npm start` generated. */
export function defaultToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.PEDRO_OPS_API_TOKEN) return env.PEDRO_OPS_API_TOKEN;
  const dev = join(env.PEDRO_OPS_DATA_DIR ?? join(REPO_ROOT, '.data'), 'api-tokens.json');
  if (existsSync(dev)) return (JSON.parse(readFileSync(dev, 'utf8')) as { operator?: string }).operator;
  return undefined;
}

export async function api<T = Record<string, unknown>>(
  opts: ApiOptions,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(new URL(path, opts.url), {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    // not JSON
  }
  if (!res.ok)
    throw new ApiError(
      res.status,
      typeof parsed === 'object' && parsed ? (parsed as ApiError['body']) : { message: String(parsed) },
    );
  return parsed as T;
}

export interface SseMessage {
  id?: string;
  event: string;
  data: unknown;
}

/** Follows /workflows/:id/events until the `result` event; reconnects with Last-Event-ID on drops. */
export async function* followEvents(
  opts: ApiOptions,
  workflowId: string,
  signal?: AbortSignal,
): AsyncGenerator<SseMessage> {
  let lastId: string | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const res = await fetch(new URL(`/workflows/${encodeURIComponent(workflowId)}/events`, opts.url), {
        headers: {
          accept: 'text/event-stream',
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(lastId ? { 'last-event-id': lastId } : {}),
        },
        signal,
      });
      if (!res.ok || !res.body)
        throw new ApiError(res.status, (await res.json().catch(() => ({}))) as ApiError['body']);
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let sep: number;
        while ((sep = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          const msg: SseMessage = { event: 'message', data: undefined };
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const [k, ...rest] = line.split(':');
            const v = rest.join(':').replace(/^ /, '');
            if (k === 'id') msg.id = v;
            else if (k === 'event') msg.event = v;
            else if (k === 'data') msg.data = JSON.parse(v);
          }
          if (msg.data === undefined) continue;
          if (msg.id) lastId = msg.id;
          yield msg;
          if (msg.event === 'result') return;
        }
      }
    } catch (err) {
      if (err instanceof ApiError && err.status < 500) throw err;
      if (signal?.aborted) return;
    }
    await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 5000)));
  }
  throw new Error(`lost the event stream of ${workflowId}`);
}
