// Startup (and `npm run schedules:ensure`): every served cluster gets its DR drill schedule and its
// drift-check schedule, created or updated idempotently from the config. A cluster whose schedules
// cannot be written is logged and skipped; it never blocks the API from starting.
import type { Client } from '@temporalio/client';
import type { ClusterRegistry } from '../config/registry.js';
import type { Logger } from '../activities/deps.js';
import { ensureDrillSchedule } from './schedules.js';
import { ensureDriftCheckSchedule } from './drift-schedule.js';

export async function ensureAllSchedules(
  client: Client,
  clusters: ClusterRegistry,
  taskQueue: string,
  log: Logger,
): Promise<{ cluster: string; drill?: string; drift?: string; error?: string }[]> {
  const out: { cluster: string; drill?: string; drift?: string; error?: string }[] = [];
  for (const spec of clusters.all().values()) {
    try {
      const drill = await ensureDrillSchedule(client, spec, taskQueue);
      const drift = await ensureDriftCheckSchedule(client, spec, { taskQueue });
      out.push({
        cluster: spec.name,
        drill: `${drill.scheduleId} ${drill.action}${drill.paused ? ' (paused)' : ''}`,
        drift: `${drift.scheduleId} ${drift.action}${drift.paused ? ' (paused)' : ''}`,
      });
    } catch (err) {
      out.push({ cluster: spec.name, error: (err as Error).message });
    }
  }
  for (const r of out) {
    if (r.error) log.warn({ cluster: r.cluster, err: r.error }, 'schedules not ensured');
    else log.info(r, 'schedules ensured');
  }
  return out;
}
