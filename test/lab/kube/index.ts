// The lab's Kubernetes: a real control plane (control-plane.ts, with k3s's real helm-controller) plus
// the controllers that have no real counterpart here, running against it as ordinary API clients:
// the k3s supervisor (joins), klipper-helm's Job pods, Velero, and pod readiness (OpenBAO's probe,
// stalled rollouts).
import { join } from 'node:path';
import type { ClusterSpec } from '../../../config/schema.js';
import { desiredHelmChart, HELM_NAMESPACE } from '../../../activities/components/helmchart.js';
import { EGRESS_SOCKET, startControlPlane, type ControlPlane } from './control-plane.js';
import { startTunnel } from './tunnel.js';
import { componentWorkloads as labComponentWorkloads } from '../cluster-spec.js';
import {
  KlipperHelm,
  CHART_LABEL,
  OPENBAO_PORT,
  type ComponentWorkloads,
  type HelmFaults,
} from './controllers/helm.js';
import { isOpenBaoPod, ReadinessController } from './controllers/readiness.js';
import { ProvisionerController } from './controllers/provisioner.js';
import { LonghornInstanceManagers } from './controllers/longhorn-im.js';
import { newVeleroFaults, VeleroServer, VELERO } from './controllers/velero.js';
import { pathOf, type KObj } from './lab-api.js';
import {
  startSupervisor,
  WEBHOOK_HELM_JOB_PODS_PATH,
  WEBHOOK_PODS_PATH,
  WEBHOOK_VALIDATE_PATH,
  type Supervisor,
} from './supervisor.js';
import { readFileSync } from 'node:fs';
import type { ObjectStore } from './object-store.js';

export interface KubeLabOptions {
  host: string;
  dir: string;
  /** The lab's VIP: in the serving cert like a k3s tls-san, so clients verify through it. */
  vip?: string;
  /** The OpenBAO double's URL: its seal state decides OpenBAO pods' readiness. */
  openbaoUrl?: string;
  /** A new OpenBAO pod starts sealed. */
  onOpenBaoPodStart?: () => void;
  /** How long a HelmChart install Job runs, by chart name (default 300 ms). */
  jobDelayMs?: number | ((chart: string) => number);
  /** Each Velero phase step (default 150 ms). */
  veleroStepMs?: number;
  log?: (line: string) => void;
}

export interface KubeLab {
  /** The apiserver (the "VIP" in the lab's cluster spec). */
  url: string;
  caPem: string;
  /** Admin token (system:masters): what k3s.yaml holds. */
  token: string;
  /** The k3s supervisor the stand-in joins through. */
  supervisorUrl: string;
  /** The lab's S3 object store (plain HTTP), for a BSL's publicUrl. */
  objectStoreUrl: string;
  /** Its S3 API (k3s's etcd-s3 snapshots): allow keys for a bucket, list what is stored. */
  objectStore: ObjectStore;
  controlPlane: ControlPlane;
  /** Control plane start to ready (apiserver /readyz, CRDs Established, controllers started). */
  startMs: number;
  setComponentWorkloads(map: Record<string, ComponentWorkloads>): void;
  /** Components installed, Velero configured with two completed backups (after k3s joined). */
  seedBuilt(spec: ClusterSpec): Promise<void>;
  /** Every declared workload available (OpenBAO's once it is unsealed). */
  waitWorkloadsReady(spec: ClusterSpec, timeoutMs?: number): Promise<void>;
  counters(): { writes: Record<string, number>; restarts: Record<string, number> };
  faults: {
    failHelmChart(name: string, message?: string): void;
    /** Only installs/upgrades of this chart version fail (a rollback to another version succeeds). */
    failHelmChartVersion(name: string, version: string, message?: string): void;
    stallHelmChart(name: string): void;
    /** A PodDisruptionBudget allowing no disruption of these pods: every eviction of them is refused (429). */
    blockDrain(namespace: string, matchLabels: Record<string, string>): Promise<void>;
    /** The node never turns Ready while it runs this k3s version (undefined: off). */
    nodeNotReadyOn(node: string, version: string | undefined): Promise<void>;
    stallRollout(ns: string, kind: string, name: string): void;
    backupPartiallyFailed(name?: string): void;
    restoreFailed(name?: string, reason?: string): void;
    /** Every restored item takes `ms` (a restore still InProgress when a drill's cleanup starts). */
    restoreSlow(ms: number): void;
    /** Restoring this item ("Kind/name") fails with the message, recorded in the restore's results. */
    restoreItemError(item: string, message: string): void;
    /** A restore of this backup (without a name: the next restore) restores no volume data. */
    restoreWithoutVolumeData(backup?: string): void;
    bslUnavailable(name: string): Promise<void>;
    /** A validating webhook refuses writes of this resource (plural, e.g. "secrets") with the message. */
    rejectWrites(resource: string, message: string): Promise<void>;
    apiserverDown(): Promise<void>;
    apiserverUp(): Promise<void>;
    clear(): Promise<void>;
  };
  get(apiVersion: string, plural: string, ns: string | undefined, name: string): Promise<KObj | undefined>;
  stop(): Promise<void>;
}
/** Older name, kept for the lab's callers. */
export type KubeDouble = KubeLab;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startKubeLab(opts: KubeLabOptions): Promise<KubeLab> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const cp = await startControlPlane({ host: opts.host, dir: opts.dir, sans: opts.vip ? [opts.vip] : [], log });
  const api = cp.api;
  const stops: (() => Promise<void> | void)[] = [() => cp.stop()];
  try {
    const helmFaults: HelmFaults = { fail: new Map(), stall: new Set() };
    const velero = newVeleroFaults();
    const stalled = new Set<string>();
    const rejects = new Map<string, string>();
    const componentWorkloads = new Map<string, ComponentWorkloads>();
    const openbaoReady = async () => {
      if (!opts.openbaoUrl) return true;
      try {
        const r = await fetch(`${opts.openbaoUrl}/v1/sys/seal-status`);
        const b = (await r.json()) as { initialized?: boolean; sealed?: boolean };
        return Boolean(b.initialized && !b.sealed);
      } catch {
        return false;
      }
    };
    const readiness = new ReadinessController({
      api,
      openbaoReady,
      openbaoPodStarted: () => opts.onOpenBaoPodStart?.(),
      stalled,
    });
    const jobDelay = opts.jobDelayMs ?? 300;
    const helm = new KlipperHelm({
      api,
      faults: helmFaults,
      componentWorkloads,
      jobDurationMs: (chart) => (typeof jobDelay === 'function' ? jobDelay(chart) : jobDelay),
      log,
    });
    const certDir = opts.dir;
    const supervisor: Supervisor = await startSupervisor({
      host: opts.host,
      api,
      token: cp.token,
      caPem: cp.caPem,
      certPem: readFileSync(join(certDir, 'server.crt'), 'utf8'),
      keyPem: readFileSync(join(certDir, 'server.key'), 'utf8'),
      admitPod: (pod) => readiness.admit(pod),
      admitHelmJobPod: (pod) => helm.admit(pod),
      validate: (rq) => rejects.get(rq.resource.resource),
      datastore: cp,
    });
    const drainBlocks = new Set<string>();
    stops.push(() => supervisor.stop());
    // The apiserver's cluster egress (services/proxy): an OpenBAO server pod's port 8200 is the double,
    // which is reachable from the cluster side only this way, as a pod IP is.
    const bao = opts.openbaoUrl ? new URL(opts.openbaoUrl) : undefined;
    const tunnel = await startTunnel({
      socketPath: join(opts.dir, EGRESS_SOCKET),
      api,
      backend: (pod, port) =>
        bao && port === OPENBAO_PORT && isOpenBaoPod(pod) ? { host: bao.hostname, port: Number(bao.port) } : undefined,
    });
    stops.push(() => tunnel.stop());
    const caBundle = Buffer.from(cp.caPem).toString('base64');
    await api.must('POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
      metadata: { name: 'lab-pod-readiness' },
      webhooks: [
        {
          name: 'pods.lab.pedro-ops.io',
          clientConfig: { url: `${supervisor.url}${WEBHOOK_PODS_PATH}`, caBundle },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          objectSelector: { matchExpressions: [{ key: CHART_LABEL, operator: 'DoesNotExist' }] },
          failurePolicy: 'Ignore',
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          timeoutSeconds: 5,
        },
        {
          // A helm Job's pod is not created until klipper-helm's outcome is decided (a refused create
          // is retried by the Job controller), so a failure is never admitted as a success.
          name: 'helm-job-pods.lab.pedro-ops.io',
          clientConfig: { url: `${supervisor.url}${WEBHOOK_HELM_JOB_PODS_PATH}`, caBundle },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          objectSelector: { matchExpressions: [{ key: CHART_LABEL, operator: 'Exists' }] },
          failurePolicy: 'Fail',
          sideEffects: 'NoneOnDryRun',
          admissionReviewVersions: ['v1'],
          timeoutSeconds: 30,
        },
      ],
    });
    const veleroServer = new VeleroServer(
      api,
      velero,
      (b, base, key) => supervisor.serveDownload(b, base, key),
      opts.veleroStepMs ?? 150,
      log,
    );
    const provisioner = new ProvisionerController(api, log);
    await provisioner.start();
    stops.push(() => provisioner.stop());
    const instanceManagers = new LonghornInstanceManagers(api, log);
    instanceManagers.start();
    stops.push(() => instanceManagers.stop());
    helm.start();
    veleroServer.start();
    readiness.start();
    stops.push(
      () => helm.stop(),
      () => veleroServer.stop(),
      () => readiness.stop(),
    );

    const syncValidatingWebhook = async () => {
      const path = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/lab-reject-writes';
      await api.delete(path);
      if (rejects.size === 0) return;
      await api.must('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
        metadata: { name: 'lab-reject-writes' },
        webhooks: [
          {
            name: 'reject.lab.pedro-ops.io',
            clientConfig: { url: `${supervisor.url}${WEBHOOK_VALIDATE_PATH}`, caBundle },
            rules: [
              {
                apiGroups: ['*'],
                apiVersions: ['*'],
                operations: ['CREATE', 'UPDATE'],
                resources: [...rejects.keys()],
              },
            ],
            failurePolicy: 'Fail',
            sideEffects: 'None',
            admissionReviewVersions: ['v1'],
            timeoutSeconds: 5,
          },
        ],
      });
      // The apiserver picks webhook configurations up from its informer: wait until it rejects.
      await sleep(500);
    };

    return {
      url: cp.url,
      caPem: cp.caPem,
      token: cp.token,
      supervisorUrl: supervisor.url,
      objectStoreUrl: supervisor.objectStoreUrl,
      objectStore: supervisor.objectStore,
      controlPlane: cp,
      startMs: Date.now() - t0,
      setComponentWorkloads(map) {
        for (const [name, v] of Object.entries(map)) componentWorkloads.set(name, v);
      },
      seedBuilt: (spec) => seedBuilt(api, veleroServer, spec, componentWorkloads),
      waitWorkloadsReady: (spec, timeoutMs = 60_000) => waitWorkloadsReady(api, spec, timeoutMs),
      counters: () => cp.counters(),
      faults: {
        failHelmChart: (name, message = `lab: injected failure installing ${name}`) =>
          void helmFaults.fail.set(name, message),
        failHelmChartVersion: (name, version, message = `lab: injected failure installing ${name} ${version}`) =>
          void helmFaults.fail.set(`${name}@${version}`, message),
        stallHelmChart: (name) => void helmFaults.stall.add(name),
        // policy/v1: maxUnavailable 0 leaves disruptionsAllowed 0, so the Eviction API answers 429
        // (the real disruption controller computes it; k8s pkg/registry/core/pod/storage/eviction.go).
        blockDrain: async (namespace, matchLabels) => {
          await api.createIfAbsent(`/apis/policy/v1/namespaces/${namespace}/poddisruptionbudgets`, {
            metadata: { name: 'lab-block-drain', labels: { 'lab.pedro-ops.io/fault': 'block-drain' } },
            spec: { maxUnavailable: 0, selector: { matchLabels } },
          });
          drainBlocks.add(namespace);
        },
        nodeNotReadyOn: (node, version) => supervisor.notReadyOn(node, version),
        stallRollout: (ns, kind, name) => readiness.stall(`${ns}/${kind}/${name}`),
        backupPartiallyFailed: (name) => {
          if (name) velero.backupPartiallyFailed.names.add(name);
          else velero.backupPartiallyFailed.next = true;
        },
        restoreFailed: (name, reason = 'lab: injected restore failure') => {
          if (name) velero.restoreFailed.names.set(name, reason);
          else velero.restoreFailed.next = reason;
        },
        restoreSlow: (ms) => void (velero.restoreItemMs = ms),
        restoreItemError: (item, message) => void velero.restoreItemError.set(item, message),
        restoreWithoutVolumeData: (backup) => {
          if (backup) velero.volumes.lostPodVolumeBackups.add(backup);
          else velero.volumes.nextRestoreLosesPodVolumeBackups = true;
        },
        bslUnavailable: async (name) => {
          velero.bslUnavailable.add(name);
          await veleroServer.revalidateAll();
        },
        rejectWrites: async (resource, message) => {
          rejects.set(resource, message);
          await syncValidatingWebhook();
        },
        apiserverDown: () => cp.stopApiserver(),
        apiserverUp: () => cp.startApiserver(),
        clear: async () => {
          const hadRejects = rejects.size > 0;
          helmFaults.fail.clear();
          const stalledCharts = [...helmFaults.stall];
          helmFaults.stall.clear();
          for (const ns of drainBlocks)
            await api.delete(`/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/lab-block-drain`);
          drainBlocks.clear();
          await supervisor.clearFaults();
          stalled.clear();
          rejects.clear();
          Object.assign(velero, newVeleroFaults());
          await cp.startApiserver();
          if (hadRejects) await syncValidatingWebhook();
          await veleroServer.revalidateAll();
          // A stalled helm Job's pod finishes once the fault is gone.
          for (const chart of stalledCharts) {
            for (const pod of await api.list(
              `/api/v1/pods?labelSelector=${encodeURIComponent(`${CHART_LABEL}=${chart}`)}`,
            )) {
              await api.request(
                'PATCH',
                `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
                { metadata: { annotations: { 'lab.pedro-ops.io/outcome': 'succeed' } } },
                'application/merge-patch+json',
              );
            }
          }
        },
      },
      get: (apiVersion, plural, ns, name) => api.get(pathOf(apiVersion, plural, ns, name)),
      async stop() {
        for (const s of stops.reverse()) await s();
      },
    };
  } catch (err) {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
    throw err;
  }
}

/** The built cluster: every component installed by k3s's helm-controller, OpenBAO's secrets'
 * namespaces, Velero's location and schedule with two completed backups. */
async function seedBuilt(
  api: ControlPlane['api'],
  velero: VeleroServer,
  spec: ClusterSpec,
  componentWorkloads: Map<string, ComponentWorkloads>,
): Promise<void> {
  const renders = labComponentWorkloads(spec);
  for (const c of spec.components) {
    componentWorkloads.set(c.name, renders[c.name]);
    await api.createIfAbsent(pathOf('helm.cattle.io/v1', 'helmcharts', HELM_NAMESPACE), desiredHelmChart(spec, c));
  }
  // Wait like `installComponent` does: Job Complete, workloads available.
  const deadline = Date.now() + 60_000;
  for (const c of spec.components) {
    for (;;) {
      const job = await api.get(pathOf('batch/v1', 'jobs', HELM_NAMESPACE, `helm-install-${c.name}`));
      if (
        job?.status?.conditions?.some(
          (x: { type: string; status: string }) => x.type === 'Complete' && x.status === 'True',
        )
      )
        break;
      if (Date.now() > deadline) throw new Error(`built lab: helm-install-${c.name} did not complete`);
      await sleep(100);
    }
  }
  for (const e of spec.secrets.entries) {
    if (e.kubernetes) await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: e.kubernetes.namespace } });
  }
  const b = spec.backups;
  // The seeded backups were taken of a running cluster: the node-agent copies only running pods' volumes.
  await podsRunning(api, b.schedule.includedNamespaces, deadline);
  const vns = b.veleroNamespace;
  await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: vns } });
  await api.createIfAbsent(pathOf(VELERO, 'backupstoragelocations', vns), {
    apiVersion: VELERO,
    kind: 'BackupStorageLocation',
    metadata: { name: b.storageLocation },
    spec: {
      provider: 'aws',
      default: true,
      objectStorage: { bucket: b.bucket },
      config: {
        region: 'us-east-1',
        s3ForcePathStyle: 'true',
        s3Url: b.s3Url,
        ...(b.publicUrl ? { publicUrl: b.publicUrl } : {}),
      },
    },
  });
  await velero.validateLocation(vns, b.storageLocation);
  const s = b.schedule;
  const template = {
    includedNamespaces: s.includedNamespaces,
    storageLocation: b.storageLocation,
    ttl: `${s.ttlHours}h0m0s`,
    ...(b.volumes ? { defaultVolumesToFsBackup: b.volumes.fsBackup } : {}),
  };
  const day = 86_400_000;
  const at = [2, 1].map((ago) => new Date(Date.now() - ago * day));
  // An existing schedule (status set): the server does not treat it as new and back up at once.
  await api.createIfAbsent(pathOf(VELERO, 'schedules', vns), {
    apiVersion: VELERO,
    kind: 'Schedule',
    metadata: { name: s.name },
    spec: { schedule: s.cron, template },
    status: { phase: 'Enabled', lastBackup: at[1].toISOString().replace(/\.\d{3}Z$/, 'Z') },
  });
  for (const when of at) {
    const name = `${s.name}-${when.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    await velero.seedCompleted(
      vns,
      name,
      template,
      { 'velero.io/schedule-name': s.name, 'velero.io/storage-location': b.storageLocation },
      when,
    );
  }
}

/** Every pod of the namespaces past Pending (a Longhorn claim bound, the pod started). */
async function podsRunning(api: ControlPlane['api'], namespaces: string[], deadline: number): Promise<void> {
  for (const ns of namespaces) {
    for (;;) {
      const pods = await api.list(pathOf('v1', 'pods', ns));
      let want = 0;
      for (const plural of ['deployments', 'statefulsets'])
        for (const w of await api.list(pathOf('apps/v1', plural, ns))) want += w.spec?.replicas ?? 1;
      const started = pods.filter((p) => p.status?.phase && p.status.phase !== 'Pending');
      if (started.length >= want && started.length === pods.length) break;
      if (Date.now() > deadline) throw new Error(`built lab: pods of ${ns} still Pending`);
      await sleep(100);
    }
  }
}

/** Available as the lab sees it: ready replicas for Deployments and StatefulSets, ready pods per
 * scheduled node for DaemonSets; CronJobs have nothing to wait for. */
async function waitWorkloadsReady(api: ControlPlane['api'], spec: ClusterSpec, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const c of spec.components) {
    for (const w of c.workloads ?? []) {
      if (w.kind === 'CronJob') continue;
      const ns = w.namespace ?? c.namespace;
      const path = pathOf('apps/v1', `${w.kind.toLowerCase()}s`, ns, w.name);
      for (;;) {
        const o = await api.get(path);
        const st = o?.status ?? {};
        const ok =
          w.kind === 'DaemonSet'
            ? st.desiredNumberScheduled > 0 && st.numberReady >= st.desiredNumberScheduled
            : (st.readyReplicas ?? 0) >= (o?.spec?.replicas ?? 1);
        if (ok) break;
        if (Date.now() > deadline)
          throw new Error(`built lab: ${w.kind} ${ns}/${w.name} not ready: ${JSON.stringify(st)}`);
        await sleep(100);
      }
    }
  }
}
