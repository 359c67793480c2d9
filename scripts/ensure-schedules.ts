// `npm run schedules:ensure`: create or update every cluster's DR drill and drift-check schedules now.
import { validateClustersOrExit } from '../config/loader.js';
import { ClusterRegistry } from '../config/registry.js';
import { connectClient } from '../worker/connect.js';
import { loadDataConverter } from '../worker/data-converter.js';
import { ensureAllSchedules } from '../worker/ensure-schedules.js';
import { createLogger } from '../worker/logger.js';
import { temporalSettings } from '../worker/settings.js';

validateClustersOrExit();
const log = createLogger('schedules');
const settings = temporalSettings();
const { dataConverter } = await loadDataConverter(log);
const client = await connectClient(settings, log, dataConverter, { attempts: 5 });
const results = await ensureAllSchedules(client, new ClusterRegistry(), settings.taskQueue, log);
await client.connection.close();
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
process.exitCode = results.some((r) => r.error) ? 1 : 0;
