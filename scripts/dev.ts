// `npm start`: the embedded default. Temporal dev server (SQLite under .data/, gRPC 127.0.0.1:7233,
// Web UI 127.0.0.1:8233, our search attributes, codec endpoint wired), then the worker and the API
// (127.0.0.1:3000). With TEMPORAL_ADDRESS set it connects there and starts no embedded server.
// SIGINT/SIGTERM: API closes, worker drains, dev server stops — no orphan process.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { validateClustersOrExit } from '../config/loader.js';
import { startApi } from '../api/server.js';
import { createLogger } from '../worker/logger.js';
import { loadDataConverter } from '../worker/data-converter.js';
import { startWorker } from '../worker/run.js';
import { dataDir, temporalSettings } from '../worker/settings.js';
import { resolveTemporalCli, startDevServer, type DevServer } from './temporal-server.js';
import { installRuntime } from '../worker/runtime.js';

const log = createLogger('pedro-ops');
const started = Date.now();
const settings = temporalSettings();
const apiPort = Number(process.env.PEDRO_OPS_API_PORT ?? 3000);
const apiHost = process.env.PEDRO_OPS_API_HOST ?? '127.0.0.1';
const abort = new AbortController();
const stops: (() => Promise<void>)[] = [];
let stopping = false;

async function shutdown(reason: string, code = 0) {
  if (stopping) return;
  stopping = true;
  abort.abort();
  log.info({ reason }, 'shutting down');
  for (const stop of stops.reverse()) {
    try {
      await stop();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'error during shutdown');
    }
  }
  log.info('stopped');
  process.exit(code);
}
process.once('SIGINT', () => void shutdown('SIGINT'));
process.once('SIGTERM', () => void shutdown('SIGTERM'));

log.info({ clusters: [...validateClustersOrExit().keys()] }, 'cluster definitions valid');

try {
  const dir = dataDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!settings.external) {
    const uiPort = Number(process.env.TEMPORAL_UI_PORT ?? 8233);
    const [host, port] = settings.address.split(':');
    let server: DevServer;
    let cli: string | undefined;
    try {
      cli = resolveTemporalCli();
    } catch {
      log.warn('no temporal CLI from the toolchain; trying the Temporal SDK download (needs internet)');
    }
    if (cli) {
      server = await startDevServer({
        cli,
        ip: host,
        port: Number(port),
        uiPort,
        dbFile: join(dir, 'temporal.db'),
        codecEndpoint: `http://${apiHost}:${apiPort}/codec`,
        logFile: join(dir, 'temporal-server.log'),
      });
      stops.push(() => server.stop());
      log.info({ pid: server.pid, address: server.address, ui: server.uiUrl }, 'temporal dev server ready');
    } else {
      const { TestWorkflowEnvironment } = await import('@temporalio/testing');
      const env = await TestWorkflowEnvironment.createLocal({
        server: { ip: host, port: Number(port), ui: true, uiPort, dbFilename: join(dir, 'temporal.db') },
      });
      stops.push(() => env.teardown());
    }
  }
  const runtime = installRuntime({ metricsAddress: process.env.PEDRO_OPS_WORKER_METRICS_ADDRESS ?? '127.0.0.1:9464' });
  const converter = await loadDataConverter(log);
  const worker = await startWorker({ settings, log, dataConverter: converter.dataConverter, signal: abort.signal });
  stops.push(() => worker.shutdown());
  worker.done.catch((err) => void shutdown(`worker crashed: ${(err as Error).message}`, 1));
  const api = await startApi({
    settings,
    log,
    converter,
    host: apiHost,
    port: apiPort,
    signal: abort.signal,
    workerMetricsUrls: runtime.metricsUrl ? [runtime.metricsUrl] : [],
  });
  stops.push(() => api.close());
  const web = settings.external ? settings.webUrl : `http://127.0.0.1:${process.env.TEMPORAL_UI_PORT ?? 8233}`;
  process.stdout.write(
    `\npedro-ops orchestrator ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n` +
      `  API           ${api.url}  (docs ${api.url}/docs, readiness ${api.url}/readyz)\n` +
      `  Temporal Web  ${web}\n` +
      `  Temporal gRPC ${settings.address}${settings.external ? ' (external)' : ` (embedded dev server, SQLite ${join(dataDir(), 'temporal.db')})`}\n` +
      `Ctrl-C stops everything.\n\n`,
  );
} catch (err) {
  log.error({ err: (err as Error).message }, 'start failed');
  await shutdown('start failed', 1);
}
