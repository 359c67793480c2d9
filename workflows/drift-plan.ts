// Pure helpers of the drift workflows (no Temporal APIs, so unit tests import them directly): the
// report's identity (a hash of the findings: two checks that saw the same drift have the same id),
// counts per kind, and the repair plan — which existing step repairs which finding, in the order
// provisioning runs them.
import { DRIFT_KINDS, type DriftFinding, type DriftKind, type RepairStep } from './drift-types.js';
import type { ClusterSpec } from '../config/schema.js';

/** FNV-1a 64-bit over the findings' identity: stable across runs (workflow code has no node:crypto). */
export function findingsId(findings: DriftFinding[]): string {
  const keys = findings.map((f) => `${f.kind}\u0000${f.object}\u0000${f.want}\u0000${f.have}`).sort();
  let h = 0xcbf29ce484222325n;
  for (const ch of keys.join('\u0001')) {
    h ^= BigInt(ch.codePointAt(0)!);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, '0');
}

export function countByKind(findings: DriftFinding[]): Record<DriftKind, number> {
  const out = Object.fromEntries(DRIFT_KINDS.map((k) => [k, 0])) as Record<DriftKind, number>;
  for (const f of findings) out[f.kind] += 1;
  return out;
}

export interface RepairChange {
  /** Step id in the reconcile run, e.g. `prepare/worker-1`, `component/longhorn`. */
  id: string;
  repair: RepairStep;
  title: string;
  /** The findings this change repairs, as "kind object". */
  fixes: string[];
}

const order = (r: RepairStep, spec: ClusterSpec): number => {
  const nodeIdx = (n: string) => spec.nodes.findIndex((x) => x.name === n);
  const serverFirst = (n: string) => (spec.nodes.find((x) => x.name === n)?.role === 'server' ? 0 : 100);
  switch (r.step) {
    case 'prepare-node':
      return 1000 + nodeIdx(r.node);
    case 'k3s':
      // servers one at a time before agents, as provisioning does
      return 2000 + serverFirst(r.node) + nodeIdx(r.node);
    case 'node-metadata':
      return 3000 + nodeIdx(r.node);
    case 'component':
      return 4000 + spec.components.findIndex((c) => c.name === r.component);
    case 'vip':
      // right after k3s and before what reaches the API through the VIP
      return 2500;
    case 'split-dns':
      return 5000;
    case 'velero':
      return 5001;
    case 'secret-sync':
      return 6000 + spec.secrets.entries.findIndex((e) => e.id === r.entry);
    case 'manual':
      return 9000;
  }
};

const idOf = (r: RepairStep): string => {
  switch (r.step) {
    case 'prepare-node':
      return `prepare/${r.node}`;
    case 'k3s':
      return `k3s/${r.node}`;
    case 'node-metadata':
      return `node-metadata/${r.node}`;
    case 'component':
      return `component/${r.component}`;
    case 'secret-sync':
      return `secret/${r.entry}`;
    default:
      return r.step;
  }
};

const titleOf = (r: RepairStep): string => {
  switch (r.step) {
    case 'prepare-node':
      return `Prepare ${r.node} (rewrite its k3s files)`;
    case 'k3s':
      return `k3s on ${r.node} (install, start or restart)`;
    case 'node-metadata':
      return `Labels and taints of Node ${r.node}`;
    case 'component':
      return `Apply component ${r.component}`;
    case 'vip':
      return 'VIP provider (apply kube-vip, wait for the VIP)';
    case 'split-dns':
      return 'Split DNS (coredns-custom)';
    case 'velero':
      return 'Velero location and Schedule';
    case 'secret-sync':
      return `Sync secret entry ${r.entry}`;
    case 'manual':
      return 'Needs a person (not applied)';
  }
};

/**
 * One change per repair step, each listing what it fixes. A rewritten k3s file only takes effect at
 * k3s's next start, so prepare-node is always followed by the node's k3s step (it restarts on the
 * marker prepare leaves).
 */
export function repairPlan(findings: DriftFinding[], spec: ClusterSpec): RepairChange[] {
  const byId = new Map<string, RepairChange>();
  const add = (repair: RepairStep, fix?: string) => {
    const id = idOf(repair);
    const c = byId.get(id) ?? { id, repair, title: titleOf(repair), fixes: [] };
    if (fix) c.fixes.push(fix);
    byId.set(id, c);
  };
  for (const f of findings) {
    if (f.kind === 'unobservable') continue;
    add(f.repair, `${f.kind}: ${f.object}`);
    if (f.repair.step === 'prepare-node') add({ step: 'k3s', node: f.repair.node });
  }
  return [...byId.values()].sort((a, b) => order(a.repair, spec) - order(b.repair, spec));
}
