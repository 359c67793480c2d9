// Shared setup for the Velero drill tests: a built lab, a cluster registry over a temp copy of its
// cluster file (optionally patched, e.g. with data probes), a kubeconfig where the orchestrator
// looks for it, and real activity deps.
import { Context } from '@temporalio/activity';
import { createActivities } from '../../activities/index.js';
import type { ClusterSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../../activities/deps.js';
import type { KubePort } from '../../activities/kube/client.js';
import type { Lab } from '../lab/index.js';
import { withBuiltLab } from '../helpers/lab-deps.js';

export interface VeleroLab {
  lab: Lab;
  spec: ClusterSpec;
  deps: ActivityDeps;
  kube: KubePort;
  dataDir: string;
  /** Namespaces whose name starts with drill- (scratch namespaces of any drill). */
  scratchNamespaces(): Promise<string[]>;
  /** Kubernetes API writes of the given kind ("create:Restore") since the lab's last counter reset. */
  writes(key: string): number;
  stop(): Promise<void>;
}

export function startVeleroLab(patch?: (spec: ClusterSpec) => void): Promise<VeleroLab> {
  return withBuiltLab({ prefix: 'pedro-ops-velero', patch }, (lab, { spec, deps, kube, dataDir }, stop) => {
    lab.resetCounters();
    return {
      lab,
      spec,
      deps,
      kube,
      dataDir,
      async scratchNamespaces() {
        return (await kube.list('v1', 'Namespace')).map((n) => n.metadata!.name!).filter((n) => n.startsWith('drill-'));
      },
      writes: (key: string) => lab.counters().kube.writes[key] ?? 0,
      stop,
    };
  });
}

/**
 * Activity overrides that make a drill wait at its first step while `held()` is true (heartbeating),
 * so "a drill is running" lasts exactly as long as a schedule test needs.
 */
export function holdAtStorageLocation(deps: ActivityDeps, held: () => boolean) {
  const real = createActivities(deps);
  return {
    async veleroStorageLocation(input: { cluster: string }) {
      while (held()) {
        Context.current().heartbeat('held');
        await Context.current().sleep(100);
      }
      return real.veleroStorageLocation(input);
    },
  };
}
