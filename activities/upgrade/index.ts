// Every activity the upgradeCluster workflow calls, registered with one line in activities/index.ts.
import type { ActivityDeps } from '../deps.js';
import { upgradeNodeActivities } from './nodes.js';
import { upgradeK3sActivities } from './k3s.js';
import { chartUpgradeActivities } from './charts.js';

export function upgradeActivities(deps: ActivityDeps) {
  return {
    ...upgradeNodeActivities(deps),
    ...upgradeK3sActivities(deps),
    ...chartUpgradeActivities(deps),
  };
}
