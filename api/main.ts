import { validateClustersOrExit } from '../config/loader.js';
// `npm run api`: the API process alone (production runs it beside one or more workers).
import { createLogger } from '../worker/logger.js';
import { loadDataConverter } from '../worker/data-converter.js';
import { temporalSettings } from '../worker/settings.js';
import { startApi } from './server.js';

const log = createLogger('api');
validateClustersOrExit();
try {
  const converter = await loadDataConverter(log);
  const api = await startApi({ settings: temporalSettings(), log, converter });
  log.info({ url: api.url }, 'API listening');
  const stop = async () => {
    await api.close();
    log.info('API stopped');
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
} catch (err) {
  log.error({ err: (err as Error).message }, 'API failed to start');
  process.exitCode = 1;
}
