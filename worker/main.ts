import { validateClustersOrExit } from '../config/loader.js';
// `npm run worker`: a standalone worker process (production: one or more of these per task queue).
import { createLogger } from './logger.js';
import { startWorker } from './run.js';
import { temporalSettings } from './settings.js';
import { loadDataConverter } from './data-converter.js';

const log = createLogger('worker');
validateClustersOrExit();
const settings = temporalSettings();
const abort = new AbortController();

try {
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
