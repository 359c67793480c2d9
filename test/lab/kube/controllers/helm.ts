// klipper-helm, the Job that k3s's helm-controller runs, in miniature against the real apiserver.
// helm-controller itself is the real one (v0.16.5, what k3s v1.31.4+k3s1 embeds; control-plane.ts
// runs it): it claims each HelmChart (shouldManage's Update), applies Job `helm-install-<name>` with
// its values Secret, ServiceAccount and binding, replaces a changed Job (jobPatcher), re-applies a
// deleted one, keeps the status and the finalizer, and runs `helm-delete-<name>` on removal.
// What the lab plays is only the Job's pod, decided when the pod is admitted (so kwok never ends it
// before it knows its outcome; kwok-stages.ts), from the env and args helm-controller gave it:
// - klipper-helm `entry` (helm_update): no release → install; `pending-*` → set to failed (an
//   interrupted upgrade is retried as an upgrade); `deployed` → upgrade; `failed`/`unknown` →
//   FAILURE_POLICY reinstall uninstalls and installs again, anything else exits 1 with "waiting for
//   operator intervention". The release lives where Helm's secret driver keeps it: Secret
//   `sh.helm.release.v1.<name>.v<revision>` in the target namespace, labels owner=helm, status, version
//   (helm.sh/helm/v3 pkg/storage/driver/secrets.go).
// What helm itself applies is the chart lock's recorded render of the real chart (npm run charts:lock,
// activities/components/chart-lock.ts): its Services, Deployments, StatefulSets, DaemonSets, CronJobs
// and PodDisruptionBudgets with their real names, labels, nodeSelectors, tolerations, affinity, update
// strategies and images. A chart the lock records as not rendering fails its install as Helm does
// (no release is stored: helm v3.16.4 pkg/action/install.go renders at :316, before it creates the
// release record at :401).
// Not played: hooks, CRDs, RBAC, ConfigMaps, Secrets and webhooks (the lab registers the CRDs it
// needs itself), and the render's own PVCs: a component that uses storage gets one data volume from
// the lab's provisioner instead (controllers/provisioner.ts). A component with no render in the lock
// (a test's own chart) falls back to its config `workloads`.
import { gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { decodeRelease, manifestObjects } from '../../../../activities/components/helmchart.js';
import type { LockedObject } from '../../../../activities/components/chart-lock.js';
import type { WorkloadRef } from '../../../../config/schema.js';
import { ApiError, pathOf, type KObj, type LabApi } from '../lab-api.js';
import { mountDataVolume } from './provisioner.js';

/** helm-controller pkg/controllers/chart/chart.go: the label on its Jobs and their pods. */
export const CHART_LABEL = 'helmcharts.helm.cattle.io/chart';
/** chart.go valuesSecret(): where the Job's values come from (mounted at /config). */
const VALUES_KEY = 'values-01_HelmChart.yaml';

export interface HelmFaults {
  fail: Map<string, string>;
  stall: Set<string>;
}

/** What a chart's install creates: the lock's render (else its config workloads), and a data volume when it uses storage. */
export interface ComponentWorkloads {
  namespace: string;
  workloads: WorkloadRef[];
  storage?: boolean;
  /** The chart lock's render of this component's chart: its objects, or why it does not render. */
  render?: { objects: LockedObject[] } | { error: string };
}

export interface HelmOptions {
  api: LabApi;
  faults: HelmFaults;
  componentWorkloads: Map<string, ComponentWorkloads>;
  /** How long a helm Job's pod runs (default 300 ms). */
  jobDurationMs?: (chart: string) => number;
  log?: (line: string) => void;
}

interface Release {
  revision: number;
  status: string;
  secret: string;
}

/**
 * The chart as the Job carries it (chart.go job(), args()): NAME, CHART_NAMESPACE, CHART (`<name>/<chart>`
 * with a repo, the OCI reference, or the chart), VERSION, TARGET_NAMESPACE, FAILURE_POLICY, and
 * `--create-namespace` in the args. Shaped as a HelmChart so the render helpers below read one thing.
 */
interface JobChart {
  op: 'install' | 'delete';
  obj: KObj;
  createNamespace: boolean;
  failurePolicy: string;
  chartNs: string;
}

const hashOf = (s: string) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
};

export class KlipperHelm {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly handledJobs = new Set<string>();
  private watches: { stop(): void }[] = [];

  constructor(private readonly o: HelmOptions) {}

  start(): void {
    this.watches.push(
      this.o.api.watch(`/apis/batch/v1/jobs?labelSelector=${encodeURIComponent(CHART_LABEL)}`, (e) => {
        const job = e.object;
        if (e.type === 'DELETED' || !terminal(job) || this.handledJobs.has(job.metadata.uid!)) return;
        const chart = this.jobChart(job.spec?.template?.spec, job.metadata.namespace!);
        if (chart) void this.serial(chart, () => this.jobDone(job, chart), true);
      }),
    );
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    this.watches = [];
  }

  /** Per chart, one thing at a time (a controller's work queue); `retry`: again after an error. */
  private serial<T>(chart: JobChart, fn: () => Promise<T>, retry = false): Promise<T> {
    const key = `${chart.chartNs}/${chart.obj.metadata.name}`;
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(fn);
    this.queues.set(
      key,
      next.then(
        () => {},
        (err: unknown) => {
          if (!(err instanceof ApiError && err.status === 409)) this.o.log?.(`klipper-helm ${key}: ${String(err)}`);
          // after a conflict or an apiserver restart
          if (retry) setTimeout(() => void this.serial(chart, fn, true), 200).unref();
        },
      ),
    );
    return next;
  }

  private jobChart(podSpec: unknown, ns: string): JobChart | undefined {
    type Container = { name: string; args?: string[]; env?: { name: string; value?: string }[] };
    const container = (podSpec as { containers?: Container[] } | undefined)?.containers?.find((c) => c.name === 'helm');
    if (!container) return undefined;
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
    if (!env.NAME) return undefined;
    const args = container.args ?? [];
    const chartNs = env.CHART_NAMESPACE || ns;
    return {
      op: args[0] === 'delete' ? 'delete' : 'install',
      createNamespace: args.includes('--create-namespace'),
      failurePolicy: env.FAILURE_POLICY || 'reinstall',
      chartNs,
      obj: {
        metadata: { name: env.NAME, namespace: chartNs },
        spec: { chart: env.CHART, version: env.VERSION, targetNamespace: env.TARGET_NAMESPACE || chartNs },
      },
    };
  }

  /**
   * Admission of a pod of a helm-controller Job: runs klipper-helm's decision and returns the
   * annotations that tell kwok how the pod ends (kwok-stages.ts).
   */
  async admit(pod: KObj): Promise<Record<string, string> | undefined> {
    if (!pod.metadata.labels?.[CHART_LABEL]) return undefined;
    const owner = pod.metadata.ownerReferences?.find((r) => r.kind === 'Job');
    const chart = this.jobChart(pod.spec, pod.metadata.namespace ?? '');
    if (!owner || !chart) return undefined;
    const name = chart.obj.metadata.name;
    const duration = `${this.o.jobDurationMs?.(name) ?? 300}ms`;
    if (chart.op === 'delete') return { 'lab.pedro-ops.io/outcome': 'succeed', 'lab.pedro-ops.io/duration': '100ms' };
    const outcome = await this.serial(chart, () => this.helmUpdate(chart));
    const job = await this.o.api.get(pathOf('batch/v1', 'jobs', chart.chartNs, owner.name));
    return {
      'lab.pedro-ops.io/outcome': outcome.result,
      'lab.pedro-ops.io/duration': duration,
      ...(outcome.result === 'fail'
        ? {
            'lab.pedro-ops.io/message': outcome.message!,
            // the kubelet restarts the container until the Job controller counts backoffLimit restarts
            'lab.pedro-ops.io/restarts': String(job?.spec?.backoffLimit ?? 6),
          }
        : {}),
    };
  }

  private targetNs(chart: KObj): string {
    return chart.spec?.targetNamespace || chart.metadata.namespace!;
  }

  /** The values the Job mounts: Secret chart-values-<name> (chart.go valuesSecret). */
  private async values(chart: JobChart): Promise<string> {
    const s = await this.o.api.get(pathOf('v1', 'secrets', chart.chartNs, `chart-values-${chart.obj.metadata.name}`));
    const v = s?.data?.[VALUES_KEY] as string | undefined;
    return v ? Buffer.from(v, 'base64').toString('utf8') : '';
  }

  private async releases(chart: KObj): Promise<Release[]> {
    const items = await this.o.api.list(
      `${pathOf('v1', 'secrets', this.targetNs(chart))}?labelSelector=${encodeURIComponent(`owner=helm,name=${chart.metadata.name}`)}`,
    );
    return items
      .map((s) => ({
        revision: Number(s.metadata.labels?.version ?? 0),
        status: s.metadata.labels?.status ?? 'unknown',
        secret: s.metadata.name,
      }))
      .sort((a, b) => b.revision - a.revision);
  }

  private async writeRelease(
    chart: JobChart,
    revision: number,
    status: string,
    description: string,
    manifest = '',
  ): Promise<void> {
    const { api } = this.o;
    const ns = this.targetNs(chart.obj);
    const name = chart.obj.metadata.name;
    const secret = `sh.helm.release.v1.${name}.v${revision}`;
    const now = new Date().toISOString();
    const body = {
      name,
      namespace: ns,
      version: revision,
      info: { status, description, first_deployed: now, last_deployed: now },
      chart: { metadata: { name: chartNameOf(chart.obj), version: chart.obj.spec?.version } },
      config: await this.values(chart),
      manifest,
    };
    const release = gzipSync(JSON.stringify(body)).toString('base64');
    const obj = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'helm.sh/release.v1',
      metadata: {
        name: secret,
        namespace: ns,
        labels: { owner: 'helm', name, status, version: String(revision), modifiedAt: String(Date.now()) },
      },
      data: { release: Buffer.from(release).toString('base64') },
    };
    const path = pathOf('v1', 'secrets', ns, secret);
    if (await api.get(path)) await api.must('PUT', path, obj);
    else await api.must('POST', pathOf('v1', 'secrets', ns), obj);
  }

  private async setStatus(chart: KObj, rel: Release, status: string): Promise<void> {
    await this.o.api.mergePatch(pathOf('v1', 'secrets', this.targetNs(chart), rel.secret), {
      metadata: { labels: { status } },
    });
  }

  /** klipper-helm's helm_update: decides what the pod does and records the release it starts. */
  private async helmUpdate(chart: JobChart): Promise<{ result: 'succeed' | 'fail' | 'stall'; message?: string }> {
    const { api, faults } = this.o;
    const obj = chart.obj;
    const name = obj.metadata.name;
    let nsExists = Boolean(await api.get(pathOf('v1', 'namespaces', undefined, this.targetNs(obj))));
    if (!nsExists && chart.createNamespace) {
      // helm --create-namespace
      await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: this.targetNs(obj) } });
      nsExists = true;
    }
    if (!nsExists) {
      // helm cannot even store the release: its namespace is missing.
      return {
        result: 'fail',
        message: `Error: INSTALLATION FAILED: create: failed to create: namespaces "${this.targetNs(obj)}" not found`,
      };
    }
    const [latest] = await this.releases(obj);
    let status = latest?.status;
    let op: 'install' | 'upgrade' = latest ? 'upgrade' : 'install';
    if (status && /^pending-(install|upgrade|rollback)$|^uninstalling$/.test(status)) {
      await this.setStatus(obj, latest, 'failed');
      status = status === 'pending-upgrade' ? 'deployed' : 'failed';
    }
    if (status && status !== 'deployed') {
      if (chart.failurePolicy !== 'reinstall') {
        return {
          result: 'fail',
          message: `Release status is '${status}' and failure policy is '${chart.failurePolicy}', not 'reinstall'; waiting for operator intervention`,
        };
      }
      await this.uninstall(obj);
      op = 'install';
    }
    const render = this.o.componentWorkloads.get(name)?.render;
    if (render && 'error' in render) {
      // helm install/upgrade renders before it stores a release: nothing is recorded.
      return {
        result: 'fail',
        message: `Error: ${op === 'install' ? 'INSTALLATION' : 'UPGRADE'} FAILED: ${render.error}`,
      };
    }
    const revision = op === 'install' ? 1 : latest.revision + 1;
    // A fault for one chart version (`name@version`: "the new version fails") or for every version.
    const injected = faults.fail.get(`${name}@${String(obj.spec?.version ?? '')}`) ?? faults.fail.get(name);
    if (faults.stall.has(name)) {
      await this.writeRelease(chart, revision, `pending-${op}`, `Lab: ${op} in progress`);
      return { result: 'stall' };
    }
    if (injected !== undefined) {
      const message = `Error: ${op === 'install' ? 'INSTALLATION' : 'UPGRADE'} FAILED: ${injected}`;
      await this.writeRelease(chart, revision, 'failed', message);
      return { result: 'fail', message };
    }
    await this.writeRelease(chart, revision, `pending-${op}`, `Lab: ${op} in progress`);
    return { result: 'succeed' };
  }

  private async jobDone(job: KObj, chart: JobChart): Promise<void> {
    if (this.handledJobs.has(job.metadata.uid!)) return;
    const ok = terminal(job) === 'Complete';
    const obj = chart.obj;
    if (chart.op === 'delete') {
      // helm uninstall; helm-controller then sees the Job succeeded and removes its finalizer.
      if (ok) await this.uninstall(obj);
    } else {
      const [latest] = await this.releases(obj);
      if (latest && !ok && latest.status.startsWith('pending-')) await this.setStatus(obj, latest, 'failed');
      if (latest && ok && latest.status.startsWith('pending-')) {
        obj.spec = { ...obj.spec, valuesContent: await this.values(chart) };
        const applied = await this.deployWorkloads(obj);
        for (const r of await this.releases(obj)) {
          if (r.revision < latest.revision && r.status === 'deployed') await this.setStatus(obj, r, 'superseded');
        }
        // Release.Manifest: the rendered templates, `---` between them, each under its `# Source:`
        // comment (helm.sh/helm/v3 pkg/action/action.go renderResources).
        const manifest = applied
          .map((o) => `---\n# Source: ${chartNameOf(obj)}/templates/${o.kind!.toLowerCase()}.yaml\n${stringify(o)}`)
          .join('');
        const done = latest.status === 'pending-install' ? 'Install complete' : 'Upgrade complete';
        await this.writeRelease(chart, latest.revision, 'deployed', done, manifest);
      }
    }
    this.handledJobs.add(job.metadata.uid!);
  }

  private workloadsOf(chart: KObj): { ns: string; ref: WorkloadRef }[] {
    const entry = this.o.componentWorkloads.get(chart.metadata.name);
    const tns = this.targetNs(chart);
    return (entry?.workloads ?? []).map((ref) => ({
      ns: ref.namespace ?? chart.spec?.targetNamespace ?? entry?.namespace ?? tns,
      ref,
    }));
  }

  /** Applies the chart's objects; returns them, as Helm records them in the release's manifest. */
  async deployWorkloads(chart: KObj): Promise<KObj[]> {
    const render = this.o.componentWorkloads.get(chart.metadata.name)?.render;
    if (render && 'objects' in render) return this.deployRender(chart, render.objects);
    const { api } = this.o;
    const storage = this.o.componentWorkloads.get(chart.metadata.name)?.storage;
    let claimed = false;
    const applied: KObj[] = [];
    for (const { ns, ref } of this.workloadsOf(chart)) {
      await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: ns } });
      if (ref.kind !== 'CronJob') {
        // Charts put a Service in front of their workloads; the real apiserver allocates its ClusterIP.
        const svc = serviceObject(chart, ns, ref);
        await api.createIfAbsent(pathOf('v1', 'services', ns), svc);
        applied.push(svc);
      }
      const desired = workloadObject(chart, ns, ref);
      if (storage && !claimed && (ref.kind === 'Deployment' || ref.kind === 'StatefulSet')) {
        // A chart with persistence: its first workload mounts a Longhorn PVC (controllers/provisioner.ts).
        claimed = true;
        const claim = await mountDataVolume(api, desired, ns);
        if (claim) applied.push(claim);
      }
      applied.push(await this.apply(desired));
    }
    return applied;
  }

  /**
   * Helm applies with a three-way merge, so fields it does not own (kubectl's restartedAt) stay;
   * server-side apply with helm's field manager keeps the same property.
   */
  private async apply(desired: KObj): Promise<KObj> {
    const { name, namespace } = desired.metadata;
    const plural = `${desired.kind!.toLowerCase()}s`;
    await this.o.api.must(
      'PATCH',
      `${pathOf(desired.apiVersion!, plural, namespace, name)}?fieldManager=helm&force=true`,
      desired,
      'application/apply-patch+yaml',
    );
    return desired;
  }

  /** Applies the lock's render (what the lab plays of it: see the top of this file). */
  private async deployRender(chart: KObj, objects: LockedObject[]): Promise<KObj[]> {
    const { api } = this.o;
    const entry = this.o.componentWorkloads.get(chart.metadata.name);
    const storage = entry?.storage;
    const tns = this.targetNs(chart);
    // The lab's data volume (its storage double, not the render's claims) goes to the first workload the
    // config names that the chart renders, else to its first StatefulSet, else to its first Deployment.
    const live = objects.filter((o) => !o.hook);
    const holds = (o: LockedObject) => o.kind === 'StatefulSet' || o.kind === 'Deployment';
    const dataHolder = (
      entry?.workloads.map((w) => live.find((o) => holds(o) && o.kind === w.kind && o.name === w.name)).find(Boolean) ??
      live.find((o) => o.kind === 'StatefulSet') ??
      live.find((o) => o.kind === 'Deployment')
    )?.name;
    const applied: KObj[] = [];
    for (const lo of live) {
      const desired = renderedObject(chart, lo, tns);
      if (!desired) continue;
      const ns = desired.metadata.namespace!;
      await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: ns } });
      if (storage && lo.name === dataHolder && holds(lo)) {
        const claim = await mountDataVolume(api, desired, ns);
        if (claim) applied.push(claim);
      }
      applied.push(await this.apply(desired));
    }
    return applied;
  }

  /** helm uninstall: every object of the release's manifests deleted, then its records. */
  private async uninstall(chart: KObj): Promise<void> {
    const { api } = this.o;
    const ns = this.targetNs(chart);
    const secrets = await api.list(
      `${pathOf('v1', 'secrets', ns)}?labelSelector=${encodeURIComponent(`owner=helm,name=${chart.metadata.name}`)}`,
    );
    for (const s of secrets) {
      for (const o of manifestOf(s)) {
        const group = API_OF[o.kind];
        if (group) await api.delete(pathOf(group, `${o.kind.toLowerCase()}s`, o.namespace ?? ns, o.name));
      }
    }
    for (const s of secrets) await api.delete(pathOf('v1', 'secrets', ns, s.metadata.name));
  }
}

/** openbao-helm values.yaml server.readinessProbe, as server-statefulset.yaml renders it. */
const OPENBAO_READINESS_PROBE = {
  exec: { command: ['/bin/sh', '-ec', 'bao status -tls-skip-verify'] },
  failureThreshold: 2,
  initialDelaySeconds: 5,
  periodSeconds: 5,
  successThreshold: 1,
  timeoutSeconds: 3,
};

/** OpenBAO's API port: openbao-helm values.yaml server.service.port and targetPort. */
export const OPENBAO_PORT = 8200;

/** For a chart with no render in the lock: openbao's port (openbao-helm values.yaml), else http. */
const CHART_PORTS: Record<string, { name: string; port: number; protocol: string }[]> = {
  openbao: [{ name: 'http', port: OPENBAO_PORT, protocol: 'TCP' }],
};

function serviceObject(chart: KObj, ns: string, ref: WorkloadRef): KObj {
  const chartName = (chart.spec?.chart ?? chart.metadata.name).split('/').pop()!;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: ref.name,
      namespace: ns,
      labels: { 'app.kubernetes.io/managed-by': 'Helm', 'app.kubernetes.io/instance': chart.metadata.name },
    },
    spec: {
      // openbao-helm server-service.yaml: publishNotReadyAddresses (values.yaml default true), so a sealed,
      // NotReady pod is still an endpoint and can be unsealed through the Service.
      ...(chartName === 'openbao' ? { publishNotReadyAddresses: true } : {}),
      selector: { 'app.kubernetes.io/name': ref.name, 'app.kubernetes.io/instance': chart.metadata.name },
      ports: (CHART_PORTS[chartName] ?? [{ name: 'http', port: 80, protocol: 'TCP' }]).map((p) => ({
        ...p,
        targetPort: p.port,
      })),
    },
  };
}

/** The kinds the lab's charts render, by apiVersion. */
const API_OF: Record<string, string> = {
  Service: 'v1',
  PersistentVolumeClaim: 'v1',
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  CronJob: 'batch/v1',
  PodDisruptionBudget: 'policy/v1',
};

/**
 * One object of the lock's render as the lab applies it: what the render recorded (names, labels,
 * selectors, scheduling, strategy, images, ports), Helm's ownership labels and annotations, and a pod
 * template checksum of the values (charts roll their pods on a config change with one).
 */
export function renderedObject(chart: KObj, lo: LockedObject, releaseNs: string): KObj | undefined {
  const api = API_OF[lo.kind];
  if (!api || lo.kind === 'PersistentVolumeClaim') return undefined;
  const release = chart.metadata.name;
  const ns = lo.namespace ?? releaseNs;
  const chartName = chartNameOf(chart);
  // the server (openbao-helm server-statefulset.yaml), not the agent injector the chart also runs
  const isOpenBao = chartName === 'openbao' && lo.kind === 'StatefulSet';
  const metadata = {
    name: lo.name,
    namespace: ns,
    // what charts' label helpers put on every object; the version is the HelmChart's (the lock has one
    // render per chart: a test pinning another version gets that render, labelled with its version)
    labels: {
      ...(lo.podLabels ?? lo.selector ?? {}),
      'app.kubernetes.io/managed-by': 'Helm',
      'helm.sh/chart': `${chartName}-${String(chart.spec?.version ?? '')}`,
    },
    annotations: { 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': releaseNs },
  };
  if (lo.kind === 'Service')
    return {
      apiVersion: api,
      kind: 'Service',
      metadata,
      spec: {
        type: lo.type,
        ...(lo.clusterIP === 'None' ? { clusterIP: 'None' } : {}),
        ...(lo.selector ? { selector: lo.selector } : {}),
        ...(lo.publishNotReadyAddresses !== undefined ? { publishNotReadyAddresses: lo.publishNotReadyAddresses } : {}),
        ports: (lo.ports ?? []).map((p) => ({
          port: p.port,
          ...(p.name ? { name: p.name } : {}),
          ...(p.protocol ? { protocol: p.protocol } : {}),
          ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
          ...(p.nodePort !== undefined && (lo.type === 'NodePort' || lo.type === 'LoadBalancer')
            ? { nodePort: p.nodePort }
            : {}),
        })),
      },
    };
  if (lo.kind === 'PodDisruptionBudget')
    return {
      apiVersion: api,
      kind: lo.kind,
      metadata,
      spec: {
        ...(lo.minAvailable !== undefined ? { minAvailable: lo.minAvailable } : {}),
        ...(lo.maxUnavailable !== undefined ? { maxUnavailable: lo.maxUnavailable } : {}),
        selector: { matchLabels: lo.selector ?? {} },
      },
    };
  const selector = lo.selector ?? lo.podLabels ?? { 'app.kubernetes.io/instance': release };
  const container = (c: NonNullable<LockedObject['containers']>[number]) => ({
    name: c.name,
    image: c.image,
    ...(c.ports ? { ports: c.ports } : {}),
    // openbao-helm server-statefulset.yaml: `bao status -tls-skip-verify`, failing while sealed: the
    // lab's readiness controller holds its pods NotReady until OpenBAO is unsealed.
    ...(isOpenBao && c.readinessProbe ? { readinessProbe: OPENBAO_READINESS_PROBE } : {}),
  });
  const sealedGate = isOpenBao && lo.containers?.some((c) => c.readinessProbe);
  const template = {
    metadata: {
      labels: { ...selector, ...(lo.podLabels ?? {}) },
      annotations: {
        'checksum/config': hashOf(JSON.stringify([chart.spec?.valuesContent, chart.spec?.set, chart.spec?.version])),
        ...(sealedGate ? { 'lab.pedro-ops.io/ready': 'false' } : {}),
      },
    },
    spec: {
      ...(lo.nodeSelector ? { nodeSelector: lo.nodeSelector } : {}),
      ...(lo.tolerations ? { tolerations: lo.tolerations } : {}),
      ...(lo.affinity ? { affinity: lo.affinity } : {}),
      ...(lo.initContainers ? { initContainers: lo.initContainers.map(container) } : {}),
      containers: (lo.containers ?? []).map(container),
    },
  };
  const strategy = lo.updateStrategy ? { type: lo.updateStrategy } : undefined;
  const pods = { selector: { matchLabels: selector }, template };
  const specs: Record<string, Record<string, unknown>> = {
    Deployment: { replicas: lo.replicas ?? 1, ...pods, ...(strategy ? { strategy } : {}) },
    StatefulSet: {
      replicas: lo.replicas ?? 1,
      serviceName: lo.serviceName ?? lo.name,
      ...pods,
      ...(lo.podManagementPolicy ? { podManagementPolicy: lo.podManagementPolicy } : {}),
      ...(strategy ? { updateStrategy: strategy } : {}),
    },
    DaemonSet: { ...pods, ...(strategy ? { updateStrategy: strategy } : {}) },
    CronJob: {
      schedule: lo.schedule ?? '0 0 * * *',
      jobTemplate: { spec: { template: { ...template, spec: { ...template.spec, restartPolicy: 'OnFailure' } } } },
    },
  };
  const spec = specs[lo.kind];
  return spec ? { apiVersion: api, kind: lo.kind, metadata, spec } : undefined;
}

/** The objects of a release Secret's manifest, read as the orchestrator reads a release. */
const manifestOf = (secret: KObj) =>
  manifestObjects(
    decodeRelease(secret.data?.release as string | undefined)?.manifest ?? '',
    secret.metadata.namespace!,
  );

/** The chart's own name (Chart.yaml), not the repo path or OCI reference it was pulled by. */
const chartNameOf = (chart: KObj): string =>
  String(chart.spec?.chart ?? chart.metadata.name)
    .split('/')
    .pop()!;

function terminal(job: KObj | undefined): 'Complete' | 'Failed' | undefined {
  const c = job?.status?.conditions?.find(
    (x: { type: string; status: string }) => (x.type === 'Complete' || x.type === 'Failed') && x.status === 'True',
  );
  return c?.type;
}

/**
 * The workload a chart renders: Helm's standard labels, one container, a config checksum, and what
 * the real chart sets that the orchestrator depends on. openbao-helm
 * (charts/openbao/templates/server-statefulset.yaml, values.yaml): `updateStrategy: OnDelete` and a
 * readiness probe `bao status -tls-skip-verify`, which fails while OpenBAO is sealed or uninitialised:
 * its pods start NotReady (the lab's readiness controller flips them when OpenBAO is unsealed).
 */
export function workloadObject(chart: KObj, ns: string, ref: WorkloadRef): KObj {
  const release = chart.metadata.name;
  // The chart's own name (Chart.yaml), not the OCI reference or repo path it was pulled by.
  const chartName = (chart.spec?.chart ?? release).split('/').pop()!;
  const isOpenBao = chartName === 'openbao';
  const labels = { 'app.kubernetes.io/name': ref.name, 'app.kubernetes.io/instance': release };
  const meta = {
    name: ref.name,
    namespace: ns,
    labels: {
      ...labels,
      'app.kubernetes.io/managed-by': 'Helm',
      'helm.sh/chart': `${chartName}-${chart.spec?.version ?? '0.0.0'}`,
    },
    annotations: { 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': ns },
  };
  const container: Record<string, unknown> = {
    name: ref.name,
    image: `${chartName}:${chart.spec?.version ?? 'latest'}`,
  };
  if (isOpenBao) container.readinessProbe = OPENBAO_READINESS_PROBE;
  const template = {
    metadata: {
      labels: { ...labels },
      annotations: {
        'checksum/config': hashOf(JSON.stringify([chart.spec?.valuesContent, chart.spec?.set, chart.spec?.version])),
        ...(isOpenBao ? { 'lab.pedro-ops.io/ready': 'false' } : {}),
      },
    },
    spec: { containers: [container] },
  };
  const selector = { matchLabels: labels };
  switch (ref.kind) {
    case 'Deployment':
      return {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: meta,
        spec: { replicas: ref.replicas ?? 1, selector, template },
      };
    case 'StatefulSet':
      return {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: meta,
        spec: {
          replicas: ref.replicas ?? 1,
          serviceName: ref.name,
          selector,
          template,
          podManagementPolicy: 'Parallel',
          ...(isOpenBao ? { updateStrategy: { type: 'OnDelete' } } : {}),
        },
      };
    case 'DaemonSet':
      return { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: meta, spec: { selector, template } };
    case 'CronJob':
      return {
        apiVersion: 'batch/v1',
        kind: 'CronJob',
        metadata: meta,
        spec: {
          schedule: '0 2 * * *',
          jobTemplate: { spec: { template: { ...template, spec: { ...template.spec, restartPolicy: 'OnFailure' } } } },
        },
      };
  }
}
