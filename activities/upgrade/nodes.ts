// Node side of a rolling upgrade, against the Kubernetes API: cordon and uncordon (owned by one run,
// so compensation never undoes an operator's own cordon), drain through the Eviction API, and the
// health gate after an install. Drain copies kubectl drain (k8s.io/kubectl pkg/drain/drain.go and
// filters.go at v0.31): DaemonSet-managed pods and mirror (static) pods are skipped, everything else is
// evicted with policy/v1 Eviction; a 429 means a PodDisruptionBudget refuses it now, so the eviction is
// retried until the drain's deadline (kubectl retries every 5 s until --timeout), then a typed failure
// names the budget.
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { removeAnnotation, type KubeObject, type KubePort } from '../kube/client.js';
import { rolloutStatus } from '../kube/rollout.js';
import { beat, sleep, waitDeadline } from '../heartbeat.js';
import { nodeOrFail } from '../ssh/session.js';

/** Who cordoned a node: `<workflowId>@<runId>` of the upgrade run. Only that run uncordons it. */
export const CORDONED_BY = 'pedro-ops.dev/cordoned-by';
const MIRROR = 'kubernetes.io/config.mirror';

type Meta = {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { kind: string; name: string; controller?: boolean }[];
  deletionTimestamp?: string;
};
type Pod = KubeObject & { metadata: Meta; status?: { phase?: string } };
type Cond = { type: string; status: string; reason?: string; message?: string };
export type NodeObj = KubeObject & {
  metadata: Meta;
  spec?: { unschedulable?: boolean };
  status?: { conditions?: Cond[]; nodeInfo?: { kubeletVersion?: string } };
};
type Selector = {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
};
type Pdb = KubeObject & {
  metadata: Meta;
  spec?: { selector?: Selector; minAvailable?: number | string; maxUnavailable?: number | string };
  status?: { disruptionsAllowed?: number; currentHealthy?: number; desiredHealthy?: number; expectedPods?: number };
};

export interface WorkloadOnNode {
  kind: 'Deployment' | 'StatefulSet';
  namespace: string;
  name: string;
}

export const readyCondition = (n: NodeObj | undefined) => n?.status?.conditions?.find((c) => c.type === 'Ready');
export const isReady = (n: NodeObj | undefined) => readyCondition(n)?.status === 'True';

/** apimachinery LabelSelector semantics (an empty selector matches everything; policy/v1 PDBs). */
export function selects(sel: Selector | undefined, labels: Record<string, string> = {}): boolean {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = k(e.key);
    const ok =
      e.operator === 'In'
        ? has && (e.values ?? []).includes(labels[e.key])
        : e.operator === 'NotIn'
          ? !has || !(e.values ?? []).includes(labels[e.key])
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
  function k(key: string) {
    return Object.prototype.hasOwnProperty.call(labels, key);
  }
}

/** kubectl drain's filters: DaemonSet pods stay (the controller would recreate them), mirror pods cannot be evicted. */
export function drainFilter(p: Pod): 'evict' | 'daemonset' | 'mirror' | 'terminating' {
  if (p.metadata.annotations?.[MIRROR] !== undefined) return 'mirror';
  if (p.metadata.ownerReferences?.some((o) => o.controller !== false && o.kind === 'DaemonSet')) return 'daemonset';
  if (p.metadata.deletionTimestamp) return 'terminating';
  return 'evict';
}

/** The workload a pod belongs to (ReplicaSet → its Deployment), for the wait after the node is back. */
async function workloadOf(kube: KubePort, p: Pod): Promise<WorkloadOnNode | undefined> {
  const owner = p.metadata.ownerReferences?.find((o) => o.controller !== false);
  const ns = p.metadata.namespace!;
  if (!owner) return undefined;
  if (owner.kind === 'StatefulSet') return { kind: 'StatefulSet', namespace: ns, name: owner.name };
  if (owner.kind !== 'ReplicaSet') return undefined;
  const rs = await kube.read<Pod>('apps/v1', 'ReplicaSet', owner.name, ns);
  const dep = rs?.metadata.ownerReferences?.find((o) => o.kind === 'Deployment');
  return dep ? { kind: 'Deployment', namespace: ns, name: dep.name } : undefined;
}

const podRef = (p: Pod) => `${p.metadata.namespace}/${p.metadata.name}`;
const pdbRef = (b: Pdb) => `${b.metadata.namespace}/${b.metadata.name}`;

async function pdbsOf(kube: KubePort, pods: Pod[]): Promise<Map<string, Pdb[]>> {
  const out = new Map<string, Pdb[]>();
  for (const ns of new Set(pods.map((p) => p.metadata.namespace!))) {
    const all = await kube.list<Pdb>('policy/v1', 'PodDisruptionBudget', ns);
    for (const p of pods.filter((x) => x.metadata.namespace === ns))
      out.set(
        podRef(p),
        all.filter((b) => selects(b.spec?.selector, p.metadata.labels)),
      );
  }
  return out;
}

export interface NodeDisruption {
  node: string;
  evict: { pod: string; workload?: string; pdbs: string[] }[];
  skipped: { daemonset: number; mirror: number };
}

/** What draining `node` would evict now, and under which budgets (kubectl drain --dry-run's view). */
export async function disruptionOf(kube: KubePort, node: string): Promise<NodeDisruption> {
  const pods = await kube.podsOnNode<Pod>(node);
  const evict = pods.filter((p) => drainFilter(p) === 'evict');
  const budgets = await pdbsOf(kube, evict);
  const out: NodeDisruption = { node, evict: [], skipped: { daemonset: 0, mirror: 0 } };
  for (const p of pods) {
    const f = drainFilter(p);
    if (f === 'daemonset') out.skipped.daemonset++;
    if (f === 'mirror') out.skipped.mirror++;
  }
  for (const p of evict) {
    const w = await workloadOf(kube, p);
    out.evict.push({
      pod: podRef(p),
      workload: w ? `${w.kind} ${w.namespace}/${w.name}` : undefined,
      pdbs: (budgets.get(podRef(p)) ?? []).map(pdbRef),
    });
  }
  return out;
}

/**
 * Longhorn's instance-manager budgets are released by the cordon itself: longhorn-manager v1.7.2
 * controller/instance_manager_controller.go syncInstanceManagerPDB (786-872) keeps a `minAvailable: 1`
 * PDB per instance manager (selector `longhorn.io/component: instance-manager`, `longhorn.io/node`)
 * while its Kubernetes node is schedulable, and deletes it once the node is cordoned and
 * canDeleteInstanceManagerPDB allows (no engine left on the node; with the default node-drain-policy
 * block-if-contains-last-replica, a healthy replica of each of its volumes elsewhere). Their 0
 * allowed disruptions before the cordon are by design; the drain's evictions wait (429) until the PDB goes.
 */
export const releasedOnCordon = (b: Pdb): boolean =>
  b.spec?.selector?.matchLabels?.['longhorn.io/component'] === 'instance-manager';

/** Budgets a drain of any single node would wait on forever: they allow no disruption at all now. */
export async function blockingBudgets(
  kube: KubePort,
  disruptions: NodeDisruption[],
): Promise<{ pdb: string; detail: string; nodes: string[] }[]> {
  const used = new Map<string, string[]>();
  for (const d of disruptions)
    for (const e of d.evict) for (const b of e.pdbs) used.set(b, [...new Set([...(used.get(b) ?? []), d.node])]);
  const out: { pdb: string; detail: string; nodes: string[] }[] = [];
  for (const [ref, nodes] of used) {
    const [ns, name] = ref.split('/');
    const b = await kube.read<Pdb>('policy/v1', 'PodDisruptionBudget', name, ns);
    const s = b?.status;
    if (!b || (s?.disruptionsAllowed ?? 0) > 0 || releasedOnCordon(b)) continue;
    const rule =
      b.spec?.minAvailable !== undefined
        ? `minAvailable ${b.spec.minAvailable}`
        : `maxUnavailable ${b.spec?.maxUnavailable}`;
    out.push({
      pdb: ref,
      nodes,
      detail: `${rule}: ${s?.currentHealthy ?? 0} healthy of ${s?.expectedPods ?? 0} expected pods, ${s?.desiredHealthy ?? 0} required, 0 disruptions allowed`,
    });
  }
  return out;
}

async function nodeOf(kube: KubePort, name: string): Promise<NodeObj> {
  const n = await kube.read<NodeObj>('v1', 'Node', name);
  if (!n) throw nonRetryable(ErrorType.NotFound, `Node ${name} is not registered in the cluster`);
  return n;
}

export function upgradeNodeActivities(deps: ActivityDeps) {
  const kubeOf = (cluster: string): { spec: ClusterSpec; kube: KubePort } => {
    const spec = clusterOrFail(deps, cluster);
    return { spec, kube: deps.kube(spec) };
  };
  return {
    /** Every configured node as the API sees it: version, Ready, cordoned (and by whom). */
    async observeUpgradeNodes(input: { cluster: string }) {
      const { spec, kube } = kubeOf(input.cluster);
      const out = [];
      for (const n of spec.nodes) {
        const obj = await kube.read<NodeObj>('v1', 'Node', n.name);
        const rc = readyCondition(obj);
        out.push({
          name: n.name,
          role: n.role,
          registered: Boolean(obj),
          version: obj?.status?.nodeInfo?.kubeletVersion,
          ready: isReady(obj),
          readyDetail: rc ? `${rc.status}${rc.reason ? ` ${rc.reason}` : ''}` : 'no Ready condition',
          unschedulable: Boolean(obj?.spec?.unschedulable),
          cordonedBy: obj?.metadata.annotations?.[CORDONED_BY],
        });
      }
      return out;
    },

    /** Per node: what its drain would evict, and the budgets that would block any drain. */
    async upgradeDisruption(input: { cluster: string }) {
      const { spec, kube } = kubeOf(input.cluster);
      const nodes: NodeDisruption[] = [];
      for (const n of spec.nodes) nodes.push(await disruptionOf(kube, n.name));
      return { nodes, blocking: await blockingBudgets(kube, nodes) };
    },

    /**
     * Marks the node unschedulable and records `owner` on it. Idempotent: a second call by the same
     * owner changes nothing; a node someone else cordoned is left as it is and not claimed.
     */
    async cordonNode(input: { cluster: string; node: string; owner: string }) {
      const { spec, kube } = kubeOf(input.cluster);
      nodeOrFail(spec, input.node);
      const n = await nodeOf(kube, input.node);
      const by = n.metadata.annotations?.[CORDONED_BY];
      if (n.spec?.unschedulable && by !== input.owner) return { node: input.node, cordoned: false, preexisting: true };
      if (n.spec?.unschedulable && by === input.owner) return { node: input.node, cordoned: true, preexisting: false };
      await kube.patch(
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name: input.node, annotations: { [CORDONED_BY]: input.owner } },
          spec: { unschedulable: true },
        },
        'merge',
      );
      return { node: input.node, cordoned: true, preexisting: false };
    },

    /** Undoes cordonNode of the same owner; anything else (an operator's cordon, no cordon) is left alone. */
    async uncordonNode(input: { cluster: string; node: string; owner: string }) {
      const { kube } = kubeOf(input.cluster);
      const n = await kube.read<NodeObj>('v1', 'Node', input.node);
      if (!n || n.metadata.annotations?.[CORDONED_BY] !== input.owner) return { node: input.node, uncordoned: false };
      await kube.patch(
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name: input.node, annotations: removeAnnotation(CORDONED_BY) },
          spec: { unschedulable: null },
        },
        'merge',
      );
      return { node: input.node, uncordoned: true };
    },

    /**
     * Evicts every pod kubectl drain would, waiting for each to be gone. Budgets that refuse (429) are
     * retried every 2 s until `timeoutSeconds` (kept across a retry through the heartbeat), then a
     * DrainBlocked failure names them. Returns the workloads the node ran, for the health gate.
     */
    async drainNode(input: { cluster: string; node: string; timeoutSeconds: number }) {
      const { kube } = kubeOf(input.cluster);
      const t0 = Date.now();
      const waiting = `drain ${input.node}`;
      const deadline = waitDeadline(input.timeoutSeconds, waiting);
      const evicted = new Set<string>();
      const workloads = new Map<string, WorkloadOnNode>();
      let skipped: { daemonset: number; mirror: number };
      for (let round = 0; ; round++) {
        const pods = await kube.podsOnNode<Pod>(input.node);
        skipped = {
          daemonset: pods.filter((p) => drainFilter(p) === 'daemonset').length,
          mirror: pods.filter((p) => drainFilter(p) === 'mirror').length,
        };
        const left = pods.filter((p) => drainFilter(p) !== 'daemonset' && drainFilter(p) !== 'mirror');
        if (left.length === 0)
          return {
            node: input.node,
            evicted: [...evicted],
            workloads: [...workloads.values()],
            skipped,
            durationMs: Date.now() - t0,
          };
        const blocked: { pod: string; message: string }[] = [];
        for (const p of left.filter((x) => drainFilter(x) === 'evict')) {
          const w = await workloadOf(kube, p);
          if (w) workloads.set(`${w.kind}/${w.namespace}/${w.name}`, w);
          const r = await kube.evict(p.metadata.name, p.metadata.namespace!);
          if (r.result === 'blocked') blocked.push({ pod: podRef(p), message: r.message ?? '' });
          else evicted.add(podRef(p));
        }
        const status = {
          node: input.node,
          step: blocked.length ? 'evictions refused by a PodDisruptionBudget' : 'waiting for evicted pods to go',
          waiting,
          deadline,
          round,
          left: left.length,
          blocked: blocked.map((b) => b.pod),
        };
        beat(status);
        if (Date.now() > deadline) {
          const stuck = blocked.length ? blocked : left.map((p) => ({ pod: podRef(p), message: 'still terminating' }));
          const budgets = await pdbsOf(
            kube,
            left.filter((p) => stuck.some((s) => s.pod === podRef(p))),
          );
          const names = [...new Set([...budgets.values()].flat().map(pdbRef))];
          throw nonRetryable(
            ErrorType.DrainBlocked,
            `drain of ${input.node} blocked after ${input.timeoutSeconds}s${names.length ? ` by PodDisruptionBudget ${names.join(', ')}` : ''}: ${stuck
              .map((s) => `${s.pod}${s.message ? ` (${s.message})` : ''}`)
              .join('; ')}`,
            { node: input.node, pdbs: names, pods: stuck.map((s) => s.pod) },
          );
        }
        await sleep(blocked.length ? 2000 : 250);
      }
    },

    /**
     * The health gate: the Node Ready with kubeletVersion `version`, then every workload that ran on it
     * available again. At the deadline a NodeNotReady failure says which part was missing.
     */
    async waitNodeUpgraded(input: {
      cluster: string;
      node: string;
      version: string;
      timeoutSeconds: number;
      workloads?: WorkloadOnNode[];
    }) {
      const { kube } = kubeOf(input.cluster);
      const t0 = Date.now();
      const waiting = `node ${input.node} on ${input.version}`;
      const deadline = waitDeadline(input.timeoutSeconds, waiting);
      for (let polls = 0; ; polls++) {
        const n = await kube.read<NodeObj>('v1', 'Node', input.node);
        const v = n?.status?.nodeInfo?.kubeletVersion;
        const rc = readyCondition(n);
        let missing: string | undefined;
        if (!n) missing = 'the Node is not registered';
        else if (v !== input.version) missing = `kubeletVersion is ${v ?? 'unknown'}`;
        else if (!isReady(n))
          missing = `Ready is ${rc?.status ?? 'missing'}${rc?.reason ? ` (${rc.reason}${rc.message ? `: ${rc.message}` : ''})` : ''}`;
        else {
          const pending: string[] = [];
          for (const w of input.workloads ?? []) {
            const o = await kube.read('apps/v1', w.kind, w.name, w.namespace);
            if (!o) continue; // deleted meanwhile: nothing to wait for
            const st = rolloutStatus(w.kind, o);
            if (!st.done) pending.push(`${w.kind} ${w.namespace}/${w.name}: ${st.message}`);
          }
          if (pending.length === 0) return { node: input.node, version: input.version, waitedMs: Date.now() - t0 };
          missing = `workloads not available: ${pending.join('; ')}`;
        }
        beat({ node: input.node, step: missing, waiting, deadline, polls });
        if (Date.now() > deadline)
          throw nonRetryable(
            ErrorType.NodeNotReady,
            `${input.node} not healthy on ${input.version} after ${input.timeoutSeconds}s: ${missing}`,
            { node: input.node },
          );
        await sleep(500);
      }
    },
  };
}
