// Starts the API process pieces: Temporal client (with the payload codec) + Fastify app.
import type { FastifyInstance } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { ClusterRegistry } from '../config/registry.js';
import { connectClient } from '../worker/connect.js';
import type { LoadedDataConverter } from '../worker/data-converter.js';
import type { TemporalSettings } from '../worker/settings.js';
import { buildApp } from './app.js';
import { ensureAllSchedules } from '../worker/ensure-schedules.js';
import { checkDrillSkips } from '../worker/schedules.js';
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
  // The skipped-drill alert (worker/schedules.ts checkDrillSkips): one schedule describe per cluster a minute.
  const seen = new Map<string, number>();
  const watchSkips = async () => {
    for (const spec of clusters.all().values())
      await checkDrillSkips(client, spec.name, seen, opts.log).catch((err: unknown) =>
        opts.log.warn({ cluster: spec.name, err: (err as Error).message }, 'drill schedule not checked for skips'),
      );
  };
  void watchSkips();
  const skipTimer = setInterval(() => void watchSkips(), 60_000);
  skipTimer.unref();
  return {
    app,
    url,
    async close() {
      clearInterval(skipTimer);
      await app.close();
      await client.connection.close();
    },
  };
}
