// The pure side of upgradeCluster (no I/O, deterministic: used by the workflow and by the API's dry
// run): which version paths k3s allows, the node order (servers one at a time, then agents in batches),
// and the chart order (dependencies first).
import type { ClusterSpec } from '../config/schema.js';
import { readyNodes } from './dag.js';

export const upgradeWorkflowId = (cluster: string) => `upgrade/${cluster}`;

/** v1.31.4+k3s1 → [1, 31, 4, 1]. */
export function parseVersion(v: string | undefined): number[] | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?$/.exec(v ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)] : undefined;
}

export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Why `from` → `to` is refused, or undefined when it is allowed. Kubernetes' version skew policy,
 * which k3s follows (docs.k3s.io/upgrades: "upgrade one minor version at a time"; downgrades are not
 * supported): no minor skipped, no downgrade.
 */
export function versionPathRefusal(from: string | undefined, to: string): string | undefined {
  const a = parseVersion(from);
  const b = parseVersion(to);
  if (!b) return `target ${to} is not a k3s version`;
  if (!a) return `current version ${from ?? 'unknown'} is not a k3s version`;
  const c = compareVersions(b, a);
  if (c < 0) return `${from} → ${to} is a downgrade`;
  if (b[0] !== a[0]) return `${from} → ${to} changes the major version`;
  if (b[1] > a[1] + 1) return `${from} → ${to} skips minor ${a[1] + 1}: upgrade one minor at a time`;
  return undefined;
}

export interface UpgradePlan {
  cluster: string;
  workflowId: string;
  targetVersion: string;
  snapshotName: string;
  /** Node batches in order: each server alone, then agents `concurrency` at a time. */
  batches: string[][];
  concurrency: number;
  /** Components in dependency order (a component after everything it depends on). */
  charts: string[];
  drainTimeoutSeconds: number;
  nodeReadyTimeoutSeconds: number;
}

export function chartOrder(spec: ClusterSpec): string[] {
  const nodes = spec.components.map((c) => ({ id: c.name, dependsOn: c.dependsOn ?? [] }));
  const done = new Set<string>();
  const out: string[] = [];
  for (;;) {
    const next = readyNodes(nodes, done, new Set());
    if (next.length === 0) return out;
    for (const id of next) {
      done.add(id);
      out.push(id);
    }
  }
}

export function buildUpgradePlan(spec: ClusterSpec): UpgradePlan {
  const concurrency = spec.upgrade?.concurrency ?? 1;
  const servers = spec.nodes.filter((n) => n.role === 'server').map((n) => [n.name]);
  const agents = spec.nodes.filter((n) => n.role === 'agent').map((n) => n.name);
  const batches = [...servers];
  for (let i = 0; i < agents.length; i += concurrency) batches.push(agents.slice(i, i + concurrency));
  return {
    cluster: spec.name,
    workflowId: upgradeWorkflowId(spec.name),
    targetVersion: spec.k3s.version,
    snapshotName: `pre-upgrade-${spec.k3s.version.replace(/[^A-Za-z0-9.-]/g, '-')}`,
    batches,
    concurrency,
    charts: chartOrder(spec),
    drainTimeoutSeconds: spec.upgrade?.drainTimeoutSeconds ?? 300,
    nodeReadyTimeoutSeconds: spec.upgrade?.nodeReadyTimeoutSeconds ?? 300,
  };
}
