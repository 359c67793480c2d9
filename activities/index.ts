// Builds the activity object the worker registers. Each external system contributes its functions;
// workflows see only the type (proxyActivities<Activities>).
import type { ActivityDeps } from './deps.js';
import { veleroActivities } from './velero/index.js';
import { provisionActivities } from './k3s/provision-activities.js';
import { rotationActivities } from './rotation.js';

export function createActivities(deps: ActivityDeps) {
  return {
    ...veleroActivities(deps),
    ...provisionActivities(deps),
    ...rotationActivities(deps),
    /** Reads the cluster spec the workflow runs against (workflows get config through an activity so it is recorded once in history). */
    async loadClusterSpec(name: string) {
      const spec = deps.clusters.get(name);
      if (!spec) {
        const { nonRetryable, ErrorType } = await import('../workflows/failures.js');
        throw nonRetryable(ErrorType.NotFound, `unknown cluster "${name}"`);
      }
      return spec;
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
