// Longhorn's instance managers and their PodDisruptionBudgets, in miniature against the real apiserver.
// Copied from longhorn-manager v1.7.2 (the manager of chart longhorn 1.7.2):
// - one instance-manager pod per node, named `instance-manager-<sha512(node+image+dataEngine)[:32]>`
//   (types/types.go GetInstanceManagerName) in longhorn-system, pinned by nodeName, labelled
//   GetInstanceManagerLabels (types/types.go:464-480);
// - controller/instance_manager_controller.go syncInstanceManagerPDB (786-872): while the pod runs and
//   its Kubernetes node is schedulable, a PDB of the same name with `minAvailable: 1` selecting those
//   labels (generateInstanceManagerPDBManifest, 1111-1124), so 0 disruptions are allowed and an
//   eviction gets 429; once the node is cordoned (`spec.unschedulable`, datastore/kubernetes.go
//   IsKubeNodeUnschedulable) and canDeleteInstanceManagerPDB allows, the PDB is deleted, on the node's
//   update event (imc.go:154-158). The lab has no Longhorn volumes, so no engine or last healthy replica
//   ever holds it (canDeleteInstanceManagerPDB, 973-1063);
// - an evicted instance manager is not started again while its node is cordoned (imc.go:577-581), and
//   is once the node is schedulable again, with its PDB.
// It runs once the longhorn chart is installed (its DaemonSet longhorn-manager exists).
import { createHash } from 'node:crypto';
import { ApiError, pathOf, type KObj, type LabApi } from '../lab-api.js';

const NS = 'longhorn-system';
const IMAGE = 'longhornio/longhorn-instance-manager:v1.7.2';

/** types/types.go GetInstanceManagerName: "instance-manager-" + sha512(node+image+dataEngine)[:32]. */
export const instanceManagerName = (node: string) =>
  `instance-manager-${createHash('sha512').update(`${node}${IMAGE}v1`).digest('hex').slice(0, 32)}`;

/** types/types.go GetInstanceManagerLabels (aio, data engine v1); instance-manager-image is imi-<8 hex>. */
export function instanceManagerLabels(node: string): Record<string, string> {
  const imi = createHash('sha512').update(IMAGE.replace(/[:/]/g, '-')).digest('hex').slice(0, 8);
  return {
    'longhorn.io/managed-by': 'longhorn-manager',
    'longhorn.io/component': 'instance-manager',
    'longhorn.io/instance-manager-type': 'aio',
    'longhorn.io/node': node,
    'longhorn.io/instance-manager-image': `imi-${imi}`,
    'longhorn.io/data-engine': 'v1',
  };
}

export class LonghornInstanceManagers {
  private watches: { stop(): void }[] = [];
  private installed = false;
  private readonly cordoned = new Map<string, boolean | undefined>();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly api: LabApi,
    private readonly log: (line: string) => void = () => {},
  ) {}

  start(): void {
    const sync = () => {
      this.queue = this.queue
        .then(() => this.sync())
        .catch((err: unknown) => {
          if (!(err instanceof ApiError && err.status === 409)) this.log(`longhorn instance managers: ${String(err)}`);
        });
    };
    this.watches.push(
      this.api.watch(`/apis/apps/v1/namespaces/${NS}/daemonsets`, (e) => {
        if (e.object.metadata.name === 'longhorn-manager') {
          this.installed = e.type !== 'DELETED';
          sync();
        }
      }),
      this.api.watch('/api/v1/nodes', (e) => {
        // a cordon or uncordon (or a node come or gone), not every status heartbeat
        const cordoned = e.type === 'DELETED' ? undefined : Boolean(e.object.spec?.unschedulable);
        if (this.cordoned.get(e.object.metadata.name) === cordoned) return;
        this.cordoned.set(e.object.metadata.name, cordoned);
        sync();
      }),
      this.api.watch(
        `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent('longhorn.io/component=instance-manager')}`,
        (e) => {
          if (e.type === 'DELETED') sync();
        },
      ),
    );
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    this.watches = [];
  }

  private async sync(): Promise<void> {
    if (!this.installed) return;
    for (const node of await this.api.list('/api/v1/nodes')) {
      const name = instanceManagerName(node.metadata.name);
      const labels = instanceManagerLabels(node.metadata.name);
      const cordoned = Boolean(node.spec?.unschedulable);
      const podPath = pathOf('v1', 'pods', NS, name);
      const pdbPath = pathOf('policy/v1', 'poddisruptionbudgets', NS, name);
      const pod = await this.api.get(podPath);
      if (pod?.metadata.deletionTimestamp) continue;
      let running = Boolean(pod);
      if (!pod && !cordoned) {
        running = true;
        await this.api.createIfAbsent(pathOf('v1', 'pods', NS), {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: NS, labels },
          spec: {
            nodeName: node.metadata.name,
            containers: [{ name: 'instance-manager', image: IMAGE }],
          },
        } satisfies KObj);
      }
      const pdb = await this.api.get(pdbPath);
      if (cordoned && pdb) await this.api.delete(pdbPath);
      if (!cordoned && running && !pdb)
        await this.api.createIfAbsent(pathOf('policy/v1', 'poddisruptionbudgets', NS), {
          apiVersion: 'policy/v1',
          kind: 'PodDisruptionBudget',
          metadata: { name, namespace: NS },
          spec: { minAvailable: 1, selector: { matchLabels: labels } },
        });
    }
  }
}
