import { validateClustersOrExit } from '../config/loader.js';
// `npm run worker`: a standalone worker process (production: one or more of these per task queue).
import { createLogger } from './logger.js';
import { startWorker } from './run.js';
import { temporalSettings } from './settings.js';
import { loadDataConverter } from './data-converter.js';
import { installRuntime } from './runtime.js';

const log = createLogger('worker');
validateClustersOrExit();
const settings = temporalSettings();
const abort = new AbortController();

try {
  installRuntime({ metricsAddress: process.env.PEDRO_OPS_WORKER_METRICS_ADDRESS ?? '127.0.0.1:9464' });
  const { dataConverter } = await loadDataConverter(log);
  const running = await startWorker({ settings, log, dataConverter, signal: abort.signal });
  const stop = (sig: string) => {
    log.info({ signal: sig }, 'draining worker');
    void running.shutdown();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  await running.done;
  log.info('worker stopped');
} catch (err) {
  log.error({ err: (err as Error).message }, 'worker failed');
  process.exitCode = 1;
}
