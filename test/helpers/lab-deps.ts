// The orchestrator side of a lab test: a data dir, a registry over a copy of the lab's cluster file
// (optionally patched), the kubeconfig where activities look for it, and real activity deps with a
// memory logger. Shared by the workflow harnesses (rotation, velero, …).
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { ClusterRegistry } from '../../config/registry.js';
import type { ClusterSpec } from '../../config/schema.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import { kubeconfigPathFor, type KubePort } from '../../activities/kube/client.js';
import { startLab, type Lab } from '../lab/index.js';
import type { VaultClient } from '../../activities/openbao/client.js';
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

export function orchestratorForLab(
  lab: Lab,
  opts: { prefix: string; patch?: (spec: ClusterSpec) => void },
): LabOrchestrator {
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

/**
 * A built lab plus its orchestrator side, handed to `build`; if `build` throws, both are cleaned up.
 * The returned stop() removes the lab and the data dir.
 */
export async function withBuiltLab<T>(
  opts: { prefix: string; patch?: (spec: ClusterSpec) => void },
  build: (lab: Lab, o: LabOrchestrator, stop: () => Promise<void>) => T | Promise<T>,
): Promise<T> {
  const lab = await startLab({ built: true, log: () => undefined });
  let o: LabOrchestrator | undefined;
  const stop = async () => {
    await lab.stop();
    if (o) rmSync(o.dataDir, { recursive: true, force: true });
  };
  try {
    o = orchestratorForLab(lab, opts);
    return await build(lab, o, stop);
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Activity deps whose OpenBAO client runs `before(path)` ahead of every write (tests simulate racing writers or crashes). */
export function interceptVaultWrites(
  deps: ActivityDeps,
  before: (write: VaultClient['write'], path: string) => Promise<void> | void,
): ActivityDeps {
  return {
    ...deps,
    openbao: async (spec, token) => {
      const client = await deps.openbao(spec, token);
      const write = client.write.bind(client);
      client.write = (async (path: string, data: unknown, o?: unknown) => {
        await before(write, path);
        return write(path, data, o as never);
      }) as VaultClient['write'];
      return client;
    },
  };
}
