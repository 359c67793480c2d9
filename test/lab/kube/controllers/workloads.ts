// Deployment / StatefulSet / DaemonSet controllers: each pod-template change is a rollout that walks
// status one pod per rolloutStepMs until it satisfies `kubectl rollout status`; pods mirror it.
import { podTemplateOf } from '../builtins.js';
import type { ResourceType } from '../resources.js';
import { shortHash, timestamp, type KObj } from '../util.js';
import { condition, defer, ownerRef, rtOf, setStatus, type Ctx } from './ctx.js';

const KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'];
const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

/** Per workload uid: pods on the current template (`updated`) and on older ones (`old`). */
interface Rollout {
  hash: string;
  currentHash: string;
  updated: number;
  old: number;
}

export class WorkloadController {
  private readonly state = new Map<string, Rollout>();
  private readonly pending = new Map<string, NodeJS.Timeout | undefined>();

  constructor(private readonly ctx: Ctx) {
    ctx.store.on((e) => {
      const kind = e.rt.kind;
      if (e.type !== 'DELETED' && (KINDS.includes(kind) || kind === 'CronJob')) this.countRestart(kind, e.obj, e.old);
      if (e.type === 'DELETED' && KINDS.includes(kind)) {
        this.state.delete(e.obj.metadata.uid!);
        return;
      }
      const specChanged = e.type === 'ADDED' || JSON.stringify(e.old?.spec) !== JSON.stringify(e.obj.spec);
      if (KINDS.includes(kind) && (e.source === 'api' || specChanged)) this.queue(e.rt, e.obj);
      // DaemonSets follow the set of Ready nodes.
      if (kind === 'Node') defer(ctx, () => this.requeueAll('DaemonSet'));
    });
    ctx.onClear.push(() => {
      for (const k of KINDS) this.requeueAll(k);
    });
  }

  private countRestart(kind: string, obj: KObj, old?: KObj): void {
    if (!old) return;
    const a = podTemplateOf(kind, old)?.metadata?.annotations?.[RESTARTED_AT];
    const b = podTemplateOf(kind, obj)?.metadata?.annotations?.[RESTARTED_AT];
    if (b !== undefined && a !== b) {
      const k = `${obj.metadata.namespace}/${kind}/${obj.metadata.name}`;
      this.ctx.restarts[k] = (this.ctx.restarts[k] ?? 0) + 1;
    }
  }

  private requeueAll(kind: string): void {
    const rt = rtOf(this.ctx, 'apps/v1', kind);
    for (const o of this.ctx.store.list(rt)) this.queue(rt, o);
  }

  queue(rt: ResourceType, obj: KObj): void {
    const key = `${rt.kind}/${obj.metadata.namespace}/${obj.metadata.name}`;
    if (this.pending.has(key)) return;
    this.pending.set(
      key,
      this.ctx.timers.after(this.ctx.delays.rolloutStepMs, () => {
        this.pending.delete(key);
        const cur = this.ctx.store.get(rt, obj.metadata.namespace, obj.metadata.name);
        if (cur && this.step(rt, cur)) this.queue(rt, cur);
      }),
    );
  }

  /** Desired pod count: spec.replicas, or the Ready nodes for a DaemonSet. */
  private desired(kind: string, obj: KObj): number {
    if (kind !== 'DaemonSet') return obj.spec?.replicas ?? 1;
    return this.readyNodes().length;
  }

  private readyNodes(): string[] {
    return this.ctx.store
      .list(rtOf(this.ctx, 'v1', 'Node'))
      .filter((n) => n.status?.conditions?.some((c: KObj) => c.type === 'Ready' && c.status === 'True'))
      .map((n) => n.metadata.name);
  }

  /** Immediately at the end state (seeded clusters, restored objects need not wait). */
  markReady(rt: ResourceType, obj: KObj): void {
    const hash = shortHash(obj.spec?.template);
    const n = this.desired(rt.kind, obj);
    this.state.set(obj.metadata.uid!, { hash, currentHash: hash, updated: n, old: 0 });
    this.writeStatus(rt, obj, this.state.get(obj.metadata.uid!)!, n, false);
  }

  /** One rollout step; returns true while more steps are needed. */
  private step(rt: ResourceType, obj: KObj): boolean {
    const kind = rt.kind;
    const n = this.desired(kind, obj);
    const hash = shortHash(obj.spec?.template);
    let st = this.state.get(obj.metadata.uid!);
    if (!st) st = { hash, currentHash: hash, updated: 0, old: 0 };
    if (st.hash !== hash) st = { hash, currentHash: st.currentHash, updated: 0, old: st.updated + st.old };
    this.state.set(obj.metadata.uid!, st);
    const stalled = this.ctx.faults.stallRollout.has(`${obj.metadata.namespace}/${kind}/${obj.metadata.name}`);
    const done = st.updated === n && st.old === 0;
    if (!done && !stalled) {
      if (st.updated < n) {
        st.updated++;
        // StatefulSets and DaemonSets replace pods in place; Deployments surge first.
        if (kind !== 'Deployment' && st.old > 0) st.old--;
      } else if (st.updated > n) st.updated--;
      else if (st.old > 0) st.old--;
      if (kind === 'Deployment' && st.updated + st.old > n + 1) st.old = Math.max(0, n + 1 - st.updated);
    }
    const finished = st.updated === n && st.old === 0;
    if (finished) st.currentHash = st.hash;
    this.writeStatus(rt, obj, st, n, stalled && !finished);
    return !finished && !stalled;
  }

  private writeStatus(rt: ResourceType, obj: KObj, st: Rollout, n: number, stalled: boolean): void {
    const total = st.updated + st.old;
    const gen = obj.metadata.generation;
    const name = obj.metadata.name;
    const done = st.updated === n && st.old === 0;
    let status: object;
    if (rt.kind === 'Deployment') {
      const progressing = stalled
        ? condition(
            'Progressing',
            'False',
            'ProgressDeadlineExceeded',
            `ReplicaSet "${name}-${st.hash}" has timed out progressing.`,
          )
        : condition(
            'Progressing',
            'True',
            done ? 'NewReplicaSetAvailable' : 'ReplicaSetUpdated',
            done
              ? `ReplicaSet "${name}-${st.hash}" has successfully progressed.`
              : `ReplicaSet "${name}-${st.hash}" is progressing.`,
          );
      status = {
        observedGeneration: gen,
        replicas: total,
        updatedReplicas: st.updated,
        readyReplicas: total,
        availableReplicas: total,
        ...(total < n ? { unavailableReplicas: n - total } : {}),
        conditions: [
          condition(
            'Available',
            total >= n || n === 0 ? 'True' : 'False',
            total >= n ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
          ),
          progressing,
        ],
      };
    } else if (rt.kind === 'StatefulSet') {
      status = {
        observedGeneration: gen,
        replicas: total,
        readyReplicas: total,
        availableReplicas: total,
        currentReplicas: done ? n : st.old,
        updatedReplicas: st.updated,
        currentRevision: `${name}-${st.currentHash}`,
        updateRevision: `${name}-${st.hash}`,
        collisionCount: 0,
      };
    } else {
      status = {
        observedGeneration: gen,
        desiredNumberScheduled: n,
        currentNumberScheduled: Math.min(total, n),
        numberMisscheduled: 0,
        numberReady: total,
        numberAvailable: total,
        updatedNumberScheduled: st.updated,
        ...(total < n ? { numberUnavailable: n - total } : {}),
      };
    }
    const written = setStatus(this.ctx, rt, obj.metadata.namespace, name, () => status);
    if (written) this.syncPods(rt, written, st);
  }

  /** Pods carry the template's labels; their names follow each controller's naming scheme. */
  private syncPods(rt: ResourceType, obj: KObj, st: Rollout): void {
    const podRt = rtOf(this.ctx, 'v1', 'Pod');
    const ns = obj.metadata.namespace!;
    const name = obj.metadata.name;
    const nodes = this.readyNodes();
    const want = new Map<string, { hash: string; node?: string }>();
    const add = (count: number, hash: string, offset: number) => {
      for (let i = 0; i < count; i++) {
        const idx = offset + i;
        const node = nodes.length ? nodes[idx % nodes.length] : undefined;
        const podName =
          rt.kind === 'StatefulSet'
            ? `${name}-${idx}`
            : rt.kind === 'DaemonSet'
              ? `${name}-${shortHash([obj.metadata.uid, node, hash], 5)}`
              : `${name}-${hash}-${shortHash([obj.metadata.uid, hash, idx], 5)}`;
        want.set(podName, { hash, node });
      }
    };
    add(st.updated, st.hash, 0);
    add(st.old, st.currentHash === st.hash ? `${st.hash}o` : st.currentHash, st.updated);
    const template = obj.spec?.template ?? {};
    for (const pod of this.ctx.store.list(podRt, ns)) {
      if (pod.metadata.ownerReferences?.some((r) => r.uid === obj.metadata.uid) && !want.has(pod.metadata.name)) {
        this.ctx.store.delete(podRt, ns, pod.metadata.name, 'controller');
      }
    }
    for (const [podName, { hash, node }] of want) {
      if (this.ctx.store.get(podRt, ns, podName)) continue;
      const hashLabel =
        rt.kind === 'Deployment' ? { 'pod-template-hash': hash } : { 'controller-revision-hash': `${name}-${hash}` };
      this.ctx.store.create(
        podRt,
        ns,
        {
          metadata: {
            name: podName,
            labels: { ...template.metadata?.labels, ...hashLabel },
            annotations: template.metadata?.annotations,
            ownerReferences: [ownerRef(obj)],
          },
          spec: { ...template.spec, ...(node ? { nodeName: node } : {}) },
          status: runningPodStatus(template.spec?.containers ?? []),
        },
        'controller',
      );
    }
  }
}

export function runningPodStatus(containers: KObj[], phase = 'Running') {
  const ready = phase === 'Running' ? 'True' : 'False';
  return {
    phase,
    podIP: `10.42.0.${Math.floor(Math.random() * 250) + 2}`,
    startTime: timestamp(),
    conditions: [
      condition('PodScheduled', 'True'),
      condition('Initialized', 'True'),
      condition('ContainersReady', ready),
      condition('Ready', ready),
    ],
    containerStatuses: containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: '',
      ready: phase === 'Running',
      restartCount: 0,
      started: phase === 'Running',
      state:
        phase === 'Running'
          ? { running: { startedAt: timestamp() } }
          : {
              terminated: {
                exitCode: phase === 'Succeeded' ? 0 : 1,
                reason: phase === 'Succeeded' ? 'Completed' : 'Error',
              },
            },
    })),
  };
}
