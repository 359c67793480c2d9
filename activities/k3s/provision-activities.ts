// Every activity the provisionCluster workflow calls, registered with one line in activities/index.ts.
import type { ActivityDeps } from '../deps.js';
import { preflightActivities } from '../ssh/preflight.js';
import { prepareActivities } from '../ssh/prepare.js';
import { k3sActivities } from './install.js';
import { kubeconfigActivities } from './kubeconfig.js';
import { vipActivities } from './vip.js';
import { componentActivities } from '../components/helmchart.js';
import { platformActivities } from '../components/platform.js';
import { openbaoBootstrapActivities } from '../openbao/bootstrap.js';
import { dnsActivities } from '../dns/split-dns.js';

export function provisionActivities(deps: ActivityDeps) {
  return {
    ...preflightActivities(deps),
    ...prepareActivities(deps),
    ...k3sActivities(deps),
    ...kubeconfigActivities(deps),
    ...vipActivities(deps),
    ...componentActivities(deps),
    ...platformActivities(deps),
    ...openbaoBootstrapActivities(deps),
    ...dnsActivities(deps),
  };
}
