// Pod readiness that kwok cannot know, decided where a real kubelet would run the readiness probe,
// and written as the annotation the lab's kwok Stages follow (kwok-stages.ts):
// - OpenBAO pods: openbao-helm's readiness probe is `bao status`, which exits non-zero while the
//   server is sealed or uninitialised (charts/openbao/templates/server-statefulset.yaml). The lab
//   asks the OpenBAO double's /v1/sys/seal-status, as `bao status` does. A real OpenBAO pod that
//   restarts comes back sealed (the unseal keys live only in memory), so a new OpenBAO pod reseals
//   the double.
// - A stalled rollout: pods of that workload created after the fault stay NotReady.
// The same decision is made twice: in a mutating admission webhook when the pod is created (so a
// pod that must start NotReady never blinks Ready), and by a watch that flips running pods.
import type { KObj, LabApi } from '../lab-api.js';

export const READY_ANNOTATION = 'lab.pedro-ops.io/ready';

export interface ReadinessOptions {
  api: LabApi;
  /** `bao status`: is the OpenBAO double initialised and unsealed? */
  openbaoReady(): Promise<boolean>;
  /** A new OpenBAO pod started: it is sealed, as a restarted OpenBAO server is. */
  openbaoPodStarted(): void;
  stalled: Set<string>; // ns/Kind/name
}

/** The workload that owns a pod: Deployment via its ReplicaSet (name minus pod-template-hash), StatefulSet, DaemonSet. */
export function ownerWorkload(pod: KObj): string | undefined {
  const ref = pod.metadata.ownerReferences?.find((r) => r.controller);
  if (!ref) return undefined;
  const ns = pod.metadata.namespace;
  if (ref.kind === 'ReplicaSet') {
    const hash = pod.metadata.labels?.['pod-template-hash'];
    const dep = hash && ref.name.endsWith(`-${hash}`) ? ref.name.slice(0, -hash.length - 1) : ref.name;
    return `${ns}/Deployment/${dep}`;
  }
  return `${ns}/${ref.kind}/${ref.name}`;
}

export const isOpenBaoPod = (pod: KObj) =>
  pod.metadata.annotations?.[READY_ANNOTATION] !== undefined &&
  pod.metadata.labels?.['app.kubernetes.io/name'] === 'openbao';

export class ReadinessController {
  private watch?: { stop(): void };
  private timer?: NodeJS.Timeout;
  private readonly openbaoPods = new Map<string, KObj>(); // uid → pod
  private readonly stallSince = new Map<string, number>();
  private lastOpenbao?: boolean;
  /** Names of OpenBAO pods whose admission sealed the double: their ADDED event must not seal again. */
  private readonly sealedAtAdmission = new Set<string>();

  constructor(private readonly o: ReadinessOptions) {}

  start(): void {
    this.watch = this.o.api.watch('/api/v1/pods', (e) => {
      const pod = e.object;
      const uid = pod.metadata.uid!;
      if (e.type === 'DELETED') {
        this.openbaoPods.delete(uid);
        return;
      }
      if (isOpenBaoPod(pod)) {
        // Sealed at admission already (admit below); a pod that came in some other way is sealed here.
        const key = pod.metadata.name;
        const sealedAtAdmission = this.sealedAtAdmission.delete(key);
        if (!this.openbaoPods.has(uid) && e.type === 'ADDED' && this.lastOpenbao !== undefined && !sealedAtAdmission)
          this.o.openbaoPodStarted();
        this.openbaoPods.set(uid, pod);
      }
    });
    const tick = async () => {
      try {
        await this.reconcile();
      } catch {
        // apiserver restarting: next tick
      }
      this.timer = setTimeout(() => void tick(), 200);
      this.timer.unref();
    };
    void tick();
  }

  stop(): void {
    this.watch?.stop();
    if (this.timer) clearTimeout(this.timer);
  }

  stall(key: string): void {
    this.o.stalled.add(key);
    this.stallSince.set(key, Date.now());
  }

  /** What the pod's readiness annotation should be at admission; undefined = leave it. */
  async admit(pod: KObj): Promise<{ ready: 'true' | 'false'; stalled: boolean } | undefined> {
    const key = ownerWorkload(pod);
    if (key && this.o.stalled.has(key)) return { ready: 'false', stalled: true };
    if (isOpenBaoPod(pod)) {
      // A new OpenBAO server process starts sealed (see the top of this file). Seal the double here,
      // when the pod is created, not when a watch later sees it: otherwise the pod is admitted Ready
      // from the old process's state, and a restart could see it Ready before the double resealed
      // (the race that failed openbao-kv-kube-secrets.test.ts on a busy machine).
      if (this.lastOpenbao !== undefined) {
        this.o.openbaoPodStarted();
        this.sealedAtAdmission.add(pod.metadata.name); // by name: an admitted object may carry no namespace yet
        return { ready: 'false', stalled: false };
      }
      return { ready: (await this.o.openbaoReady()) ? 'true' : 'false', stalled: false };
    }
    return undefined;
  }

  private async set(pod: KObj, value: 'true' | 'false'): Promise<void> {
    if (pod.metadata.annotations?.[READY_ANNOTATION] === value) return;
    const path = `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`;
    const r = await this.o.api.request(
      'PATCH',
      path,
      { metadata: { annotations: { [READY_ANNOTATION]: value } } },
      'application/merge-patch+json',
    );
    if (r.status < 300) pod.metadata.annotations = { ...pod.metadata.annotations, [READY_ANNOTATION]: value };
  }

  private async reconcile(): Promise<void> {
    if (this.openbaoPods.size > 0) {
      const ready = await this.o.openbaoReady();
      this.lastOpenbao = ready;
      for (const pod of this.openbaoPods.values()) {
        // A pod held by a stalled-rollout fault stays NotReady whatever OpenBAO's state.
        if (pod.metadata.labels?.['lab.pedro-ops.io/stalled'] === 'true') continue;
        await this.set(pod, ready ? 'true' : 'false');
      }
    } else {
      this.lastOpenbao ??= await this.o.openbaoReady().catch(() => false);
    }
    // Cleared stalls: pods held NotReady become Ready again.
    if (this.o.stalled.size === 0 && this.stallSince.size > 0) {
      this.stallSince.clear();
      for (const pod of await this.o.api.list(
        `/api/v1/pods?labelSelector=${encodeURIComponent('lab.pedro-ops.io/stalled=true')}`,
      )) {
        await this.o.api.request(
          'PATCH',
          `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
          { metadata: { annotations: { [READY_ANNOTATION]: 'true' }, labels: { 'lab.pedro-ops.io/stalled': null } } },
          'application/merge-patch+json',
        );
      }
    }
  }
}
