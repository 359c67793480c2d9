// The provisioning plan as data: every step, its phase and what it waits for. Pure and
// deterministic, so the workflow runs it and the API's dryRun shows exactly the same DAG.
import type { ClusterSpec } from '../config/schema.js';
import { criticalPath, dependentsOf, layers, type DagNode } from './dag.js';

export type StepKind =
  | 'preflight'
  | 'prepare'
  | 'k3s-server'
  | 'k3s-agent'
  | 'vip'
  | 'kubeconfig'
  | 'nodes-ready'
  | 'component'
  | 'openbao'
  | 'dns'
  | 'tailscale'
  | 'velero'
  | 'secret-sync';

export interface PlanStep extends DagNode {
  phase: string;
  title: string;
  kind: StepKind;
  /** Node or component the step acts on. */
  target?: string;
  /** Seconds the step may take (components: their timeout), used for the critical path estimate. */
  budgetSeconds: number;
}

export interface ProvisionPlan {
  cluster: string;
  workflowId: string;
  steps: PlanStep[];
  /** Steps after the nodes are Ready, run as a DAG with `parallelism` at a time. */
  platform: string[];
  parallelism: number;
  layers: string[][];
  criticalPathSeconds: number;
}

export const provisionWorkflowId = (cluster: string) => `provision/${cluster}`;
export const componentStep = (name: string) => `component/${name}`;

export interface PlanOptions {
  /**
   * The VIP step (default on): agents join and the kubeconfig switches to the VIP only once it
   * answers. Off only when replaying runs recorded before the step existed (patch 'vip-provider').
   */
  vip?: boolean;
  /**
   * Split DNS after the component that serves a cluster-Service upstream (default on): the step reads
   * that Service's ClusterIP. Off only when replaying runs recorded before (patch 'dns-after-its-service').
   */
  dnsAfterService?: boolean;
}

/** A split-DNS upstream given as a cluster Service name: `<svc>.<ns>.svc[.cluster.local]`. */
export function serviceName(upstream: string): { name: string; namespace: string } | undefined {
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$/.exec(upstream);
  return m ? { name: m[1], namespace: m[2] } : undefined;
}

/**
 * The components whose install creates the Services split DNS forwards to: those installed into the
 * Service's namespace (a chart's Service lives in its release namespace), the one named like the
 * Service first when several share it.
 */
export function dnsUpstreamComponents(spec: ClusterSpec): string[] {
  const out = new Set<string>();
  for (const upstream of Object.values(spec.dns.splitDns)) {
    const svc = serviceName(upstream);
    if (!svc) continue;
    const inNs = spec.components.filter((c) => c.namespace === svc.namespace);
    const named = inNs.filter((c) => c.name === svc.name);
    for (const c of named.length > 0 ? named : inNs) out.add(c.name);
  }
  return [...out];
}

/** What the VIP step deploys and waits for, for its title and the report. */
export function vipTitle(spec: ClusterSpec): string {
  const p = spec.vipProvider;
  const who = p ? `${p.kind} ${p.version} (ARP on ${p.interface})` : 'the external provider';
  return `VIP ${spec.vip}: ${p ? 'deploy ' : ''}${who}, wait for /readyz`;
}

export function buildProvisionPlan(spec: ClusterSpec, opts: PlanOptions = {}): ProvisionPlan {
  const withVip = opts.vip ?? true;
  // A step may depend on one added after it: layers() and runDag order by dependsOn, not by insertion.
  const steps: PlanStep[] = [];
  const add = (s: PlanStep) => steps.push(s);
  add({
    id: 'preflight',
    phase: 'preflight',
    title: `Preflight checks on ${spec.nodes.length} nodes`,
    kind: 'preflight',
    dependsOn: [],
    budgetSeconds: 30,
  });
  for (const n of spec.nodes) {
    add({
      id: `prepare/${n.name}`,
      phase: 'prepare',
      title: `Prepare ${n.name}`,
      kind: 'prepare',
      target: n.name,
      dependsOn: ['preflight'],
      budgetSeconds: 120,
    });
  }
  const servers = spec.nodes.filter((n) => n.role === 'server');
  const agents = spec.nodes.filter((n) => n.role === 'agent');
  servers.forEach((n, i) => {
    // Further servers join one at a time: etcd membership changes must not overlap.
    const deps = [`prepare/${n.name}`, ...(i > 0 ? [`k3s/${servers[i - 1].name}`] : [])];
    add({
      id: `k3s/${n.name}`,
      phase: 'k3s-servers',
      title: i === 0 ? `Install k3s server ${n.name} (--cluster-init)` : `Join k3s server ${n.name}`,
      kind: 'k3s-server',
      target: n.name,
      dependsOn: deps,
      budgetSeconds: 300,
    });
  });
  const first = servers[0].name;
  // k3s creates no VIP: it is deployed after the first server, and whatever uses it waits for it.
  if (withVip)
    add({
      id: 'vip',
      phase: 'vip',
      title: vipTitle(spec),
      kind: 'vip',
      dependsOn: [`k3s/${first}`],
      budgetSeconds: spec.vipProvider?.readyTimeoutSeconds ?? 180,
    });
  const viaVip = withVip ? 'vip' : `k3s/${first}`;
  for (const n of agents) {
    add({
      id: `k3s/${n.name}`,
      phase: 'k3s-workers',
      title: `Join worker ${n.name}`,
      kind: 'k3s-agent',
      target: n.name,
      dependsOn: [`prepare/${n.name}`, viaVip],
      budgetSeconds: 300,
    });
  }
  add({
    id: 'kubeconfig',
    phase: 'k3s-workers',
    title: 'Fetch kubeconfig (rewritten to the VIP)',
    kind: 'kubeconfig',
    dependsOn: [viaVip],
    budgetSeconds: 30,
  });
  add({
    id: 'nodes-ready',
    phase: 'k3s-workers',
    title: 'Wait for every node Ready',
    kind: 'nodes-ready',
    dependsOn: ['kubeconfig', ...spec.nodes.map((n) => `k3s/${n.name}`)],
    budgetSeconds: 300,
  });

  const platform: string[] = [];
  const addPlatform = (s: PlanStep) => {
    add(s);
    platform.push(s.id);
  };
  addPlatform({
    id: 'dns',
    phase: 'platform',
    title: `Split DNS for ${Object.keys(spec.dns.splitDns).join(', ')}`,
    kind: 'dns',
    dependsOn: [
      'nodes-ready',
      ...(opts.dnsAfterService === false ? [] : dnsUpstreamComponents(spec).map(componentStep)),
    ],
    budgetSeconds: 30,
  });
  addPlatform({
    id: 'tailscale-oauth',
    phase: 'platform',
    title: 'Tailscale operator OAuth Secret from 1Password',
    kind: 'tailscale',
    dependsOn: ['nodes-ready'],
    budgetSeconds: 30,
  });
  for (const c of spec.components) {
    const deps = [
      'nodes-ready',
      ...c.dependsOn.map(componentStep),
      ...(c.name === spec.tailscale.component ? ['tailscale-oauth'] : []),
    ];
    addPlatform({
      id: componentStep(c.name),
      phase: 'platform',
      title: `Install ${c.name} ${c.version}`,
      kind: 'component',
      target: c.name,
      dependsOn: deps,
      budgetSeconds: c.timeoutSeconds,
    });
  }
  const baoComponent =
    spec.components.find((c) => c.namespace === spec.openbao.namespace) ??
    spec.components.find((c) => c.name === 'openbao');
  addPlatform({
    id: 'openbao-bootstrap',
    phase: 'platform',
    title: 'OpenBAO init/unseal, keys to 1Password, KV v2',
    kind: 'openbao',
    dependsOn: baoComponent ? [componentStep(baoComponent.name)] : ['nodes-ready'],
    budgetSeconds: 60,
  });
  const veleroComponent = spec.components.find((c) => c.namespace === spec.backups.veleroNamespace);
  addPlatform({
    id: 'velero',
    phase: 'platform',
    title: 'Velero storage location check and backup Schedule',
    kind: 'velero',
    dependsOn: veleroComponent ? [componentStep(veleroComponent.name)] : ['nodes-ready'],
    budgetSeconds: 60,
  });
  // The sync restarts each Secret's consumers, so the components that own them must be installed first.
  const consumerComponents = new Set<string>();
  for (const e of spec.secrets.entries) {
    for (const w of e.consumers) {
      const owner = spec.components.find((c) =>
        c.workloads.some(
          (x) =>
            x.kind === w.kind && x.name === w.name && (x.namespace ?? c.namespace) === (w.namespace ?? c.namespace),
        ),
      );
      if (owner) consumerComponents.add(componentStep(owner.name));
    }
  }
  addPlatform({
    id: 'secret-sync',
    phase: 'platform',
    title: 'Initial secret sync 1Password -> OpenBAO -> Kubernetes',
    kind: 'secret-sync',
    dependsOn: ['openbao-bootstrap', ...consumerComponents],
    budgetSeconds: 120,
  });

  return {
    cluster: spec.name,
    workflowId: provisionWorkflowId(spec.name),
    steps,
    platform,
    parallelism: spec.parallelism,
    layers: layers(steps),
    criticalPathSeconds: criticalPath(steps, (id) => steps.find((s) => s.id === id)?.budgetSeconds ?? 0),
  };
}

/**
 * Why skip is refused for a step (undefined: allowed). Preflight may always be skipped by an operator,
 * and so may the VIP wait: an operator may know the VIP answers where the nodes are although not from
 * the orchestrator's network (then agents join it and the kubeconfig points at it unverified).
 */
export function skipRefusal(plan: ProvisionPlan, id: string): string | undefined {
  if (id === 'preflight' || id === 'vip') return undefined;
  const deps = dependentsOf(plan.steps, id);
  if (deps.length === 0) return undefined;
  const shown = deps.slice(0, 5).join(', ');
  return `${shown}${deps.length > 5 ? ` and ${deps.length - 5} more` : ''} depend${deps.length === 1 ? 's' : ''} on it`;
}
