// Builds the activity object the worker registers. Each external system contributes its functions;
// workflows see only the type (proxyActivities<Activities>).
import type { ActivityDeps } from './deps.js';
import { veleroActivities } from './velero/index.js';
import { provisionActivities } from './k3s/provision-activities.js';
import { rotationActivities } from './rotation.js';
import { etcdSnapshotActivities } from './k3s/etcd-snapshots.js';
import { controlPlaneRestoreActivities } from './k3s/control-plane-restore.js';
import { driftActivities } from './drift/index.js';
import { upgradeActivities } from './upgrade/index.js';
import { keepAlive } from './heartbeat.js';
import { ACTIVITY_KINDS } from '../workflows/activity-options.js';

export function createActivities(deps: ActivityDeps) {
  return keepSteadyAlive({
    ...veleroActivities(deps),
    ...provisionActivities(deps),
    ...rotationActivities(deps),
    ...etcdSnapshotActivities(deps),
    ...controlPlaneRestoreActivities(deps),
    ...driftActivities(deps),
    ...upgradeActivities(deps),
    /** Reads the cluster spec the workflow runs against (workflows get config through an activity so it is recorded once in history). */
    async loadClusterSpec(name: string) {
      const spec = deps.clusters.get(name);
      if (!spec) {
        const { nonRetryable, ErrorType } = await import('../workflows/failures.js');
        throw nonRetryable(ErrorType.NotFound, `unknown cluster "${name}"`);
      }
      return spec;
    },
  });
}

/**
 * "steady" activities (workflows/activity-options.ts: several calls to one system, no poll loop of
 * their own) carry a heartbeat timeout of seconds, so they beat every few seconds for as long as they
 * run; waits beat in their poll loops, where a hung call also stops the beat.
 */
function keepSteadyAlive<T extends Record<string, (...args: never[]) => Promise<unknown>>>(acts: T): T {
  const out: Record<string, unknown> = { ...acts };
  for (const [name, fn] of Object.entries(acts)) {
    if ((ACTIVITY_KINDS as Record<string, string>)[name] === 'steady')
      out[name] = (...args: never[]) => keepAlive(() => fn(...args));
  }
  return out as T;
}

export type Activities = ReturnType<typeof createActivities>;
