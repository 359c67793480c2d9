// The orchestrator side of a lab test: a data dir, a registry over a copy of the lab's cluster file
// (optionally patched), the kubeconfig where activities look for it, and real activity deps with a
// memory logger. Shared by the workflow harnesses (rotation, velero, …).
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { ClusterRegistry } from '../../config/registry.js';
import type { ClusterSpec } from '../../config/schema.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import { kubeconfigPathFor, type KubePort } from '../../activities/kube/client.js';
import type { Lab } from '../lab/index.js';
import { memoryLogger } from './temporal.js';

export interface LabOrchestrator {
  dataDir: string;
  clusters: ClusterRegistry;
  /** The cluster spec as the orchestrator loads it (defaults applied). */
  spec: ClusterSpec;
  deps: ActivityDeps;
  log: ReturnType<typeof memoryLogger>;
  kube: KubePort;
}

export function orchestratorForLab(lab: Lab, opts: { prefix: string; patch?: (spec: ClusterSpec) => void }): LabOrchestrator {
  const dataDir = mkdtempSync(join(tmpdir(), `${opts.prefix}-`));
  const raw = structuredClone(lab.spec);
  opts.patch?.(raw);
  const clustersDir = join(dataDir, 'clusters');
  mkdirSync(clustersDir, { recursive: true });
  writeFileSync(join(clustersDir, `${raw.name}.yaml`), stringify(raw, { lineWidth: 0 }));
  const clusters = new ClusterRegistry(clustersDir);
  const spec = clusters.get(raw.name)!;
  // A built lab has not fetched a kubeconfig to where the orchestrator keeps it: put the lab's there.
  const kcPath = kubeconfigPathFor(spec, dataDir);
  if (!existsSync(kcPath)) {
    mkdirSync(dirname(kcPath), { recursive: true });
    copyFileSync(lab.kube.kubeconfigPath, kcPath);
    chmodSync(kcPath, 0o600);
  }
  const log = memoryLogger();
  const deps = defaultDeps({ dataDir, log, clusters });
  return { dataDir, clusters, spec, deps, log, kube: deps.kube(spec) };
}
