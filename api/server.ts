// Starts the API process pieces: Temporal client (with the payload codec) + Fastify app.
import type { FastifyInstance } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { ClusterRegistry } from '../config/registry.js';
import { connectClient } from '../worker/connect.js';
import type { LoadedDataConverter } from '../worker/data-converter.js';
import type { TemporalSettings } from '../worker/settings.js';
import { buildApp } from './app.js';
import { ensureAllSchedules } from '../worker/ensure-schedules.js';
import { loadAuthConfig } from './auth.js';
import { dataDir, isDevMode } from '../worker/settings.js';

export interface ApiServerOptions {
  settings: TemporalSettings;
  log: PinoLogger;
  converter: LoadedDataConverter;
  host?: string;
  port?: number;
  clusters?: ClusterRegistry;
  signal?: AbortSignal;
  workerMetricsUrls?: string[];
}

export async function startApi(
  opts: ApiServerOptions,
): Promise<{ app: FastifyInstance; url: string; close(): Promise<void> }> {
  const client = await connectClient(opts.settings, opts.log, opts.converter.dataConverter, { signal: opts.signal });
  const clusters = opts.clusters ?? new ClusterRegistry();
  if (process.env.PEDRO_OPS_ENSURE_SCHEDULES !== 'false')
    await ensureAllSchedules(client, clusters, opts.settings.taskQueue, opts.log);
  const auth = loadAuthConfig({
    env: process.env,
    dataDir: dataDir(),
    devMode: isDevMode(),
    log: { warn: (m) => opts.log.warn(m) },
  });
  const app = await buildApp({
    auth,
    workerMetricsUrls:
      opts.workerMetricsUrls ??
      (process.env.PEDRO_OPS_WORKER_METRICS_URL ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    client,
    settings: opts.settings,
    clusters,
    logger: opts.log.child({ component: 'api' }),
    codec: opts.converter.codec,
    codecOrigins: (process.env.PEDRO_OPS_CODEC_ORIGINS ?? `${opts.settings.webUrl},http://localhost:8233`)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  });
  const host = opts.host ?? process.env.PEDRO_OPS_API_HOST ?? '127.0.0.1';
  const port = opts.port ?? Number(process.env.PEDRO_OPS_API_PORT ?? 3000);
  const url = await app.listen({ host, port });
  return {
    app,
    url,
    async close() {
      await app.close();
      await client.connection.close();
    },
  };
}
