// Shared setup for the Velero drill tests: a built lab, a cluster registry over a temp copy of its
// cluster file (optionally patched, e.g. with data probes), a kubeconfig where the orchestrator
// looks for it, and real activity deps.
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { ClusterRegistry } from '../../config/registry.js';
import type { ClusterSpec } from '../../config/schema.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import { kubeconfigPathFor, type KubePort } from '../../activities/kube/client.js';
import { startLab, type Lab } from '../lab/index.js';
import { memoryLogger } from '../helpers/temporal.js';

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

export async function startVeleroLab(patch?: (spec: ClusterSpec) => void): Promise<VeleroLab> {
  const lab = await startLab({ built: true, log: () => undefined });
  const dataDir = mkdtempSync(join(tmpdir(), 'pedro-ops-velero-'));
  try {
    const spec = structuredClone(lab.spec);
    patch?.(spec);
    const clustersDir = join(dataDir, 'clusters');
    mkdirSync(clustersDir, { recursive: true });
    writeFileSync(join(clustersDir, `${spec.name}.yaml`), stringify(spec, { lineWidth: 0 }));
    const clusters = new ClusterRegistry(clustersDir);
    const loaded = clusters.get(spec.name)!;
    // The built lab may not have fetched a kubeconfig to where the orchestrator keeps it: write one.
    const kcPath = kubeconfigPathFor(loaded, dataDir);
    if (!existsSync(kcPath)) {
      mkdirSync(dirname(kcPath), { recursive: true });
      copyFileSync(lab.kube.kubeconfigPath, kcPath);
      chmodSync(kcPath, 0o600);
    }
    const deps = defaultDeps({ dataDir, log: memoryLogger(), clusters });
    const kube = deps.kube(loaded);
    lab.resetCounters();
    return {
      lab,
      spec: loaded,
      deps,
      kube,
      dataDir,
      async scratchNamespaces() {
        return (await kube.list('v1', 'Namespace')).map((n) => n.metadata!.name!).filter((n) => n.startsWith('drill-'));
      },
      writes: (key) => lab.counters().kube.writes[key] ?? 0,
      async stop() {
        await lab.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await lab.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}
