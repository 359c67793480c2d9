// k3s's helm-controller and klipper-helm in miniature, against the real apiserver. What runs here
// copies, for the pinned k3s v1.31.4+k3s1 (helm-controller v0.16.5, klipper-helm v0.9.4):
// - helm-controller pkg/controllers/chart/chart.go: OnChange applies Job `helm-install-<name>`
//   (ServiceAccount `helm-<name>`, pod template annotation helmcharts.helm.cattle.io/configHash);
//   a changed Job is replaced (jobPatcher deletes and recreates it); a deleted Job is applied again;
//   status is {jobName, conditions JobCreated=True, Failed=False}: Failed=True only when the Job
//   cannot be generated. The remove handler (finalizer wrangler.cattle.io/on-helm-chart-remove)
//   runs `helm-delete-<name>` and removes the chart's resources once it succeeded.
// - klipper-helm `entry` (helm_update): no release → install; `pending-*` → set to failed (an
//   interrupted upgrade is retried as an upgrade); `deployed` → upgrade; `failed`/`unknown` →
//   FAILURE_POLICY reinstall uninstalls and installs again, anything else exits 1 with "waiting for
//   operator intervention". The release lives where Helm's secret driver keeps it: Secret
//   `sh.helm.release.v1.<name>.v<revision>` in the target namespace, labels owner=helm, status, version
//   (helm.sh/helm/v3 pkg/storage/driver/secrets.go).
// What helm itself does to the cluster (render and apply the chart's workloads) is simulated: each
// component's declared workloads are applied with the update strategy and probes its real chart sets.
import { gzipSync } from 'node:zlib';
import type { WorkloadRef } from '../../../../config/schema.js';
import { ApiError, pathOf, type KObj, type LabApi } from '../lab-api.js';
import { mountDataVolume } from './provisioner.js';

export const CHART_LABEL = 'helmcharts.helm.cattle.io/chart';
export const CONFIG_HASH = 'helmcharts.helm.cattle.io/configHash';
export const FINALIZER = 'wrangler.cattle.io/on-helm-chart-remove';
const KLIPPER_IMAGE = 'rancher/klipper-helm:v0.9.4-build20250113';
const JOB_SPEC_HASH = 'lab.pedro-ops.io/job-spec';

export interface HelmFaults {
  fail: Map<string, string>;
  stall: Set<string>;
}

/** What a chart's simulated install creates: its workloads, and a data volume when it uses storage. */
export interface ComponentWorkloads {
  namespace: string;
  workloads: WorkloadRef[];
  storage?: boolean;
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

const hashOf = (s: string) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
};

export class HelmChartController {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly handledJobs = new Set<string>();
  private watches: { stop(): void }[] = [];

  constructor(private readonly o: HelmOptions) {}

  start(): void {
    const { api } = this.o;
    this.watches.push(
      api.watch('/apis/helm.cattle.io/v1/helmcharts', (e) => {
        if (e.type !== 'DELETED') this.enqueue(e.object.metadata.namespace!, e.object.metadata.name);
      }),
      api.watch(`/apis/batch/v1/jobs?labelSelector=${encodeURIComponent(CHART_LABEL)}`, (e) => {
        const chart = e.object.metadata.labels?.[CHART_LABEL];
        if (!chart) return;
        if (e.type === 'DELETED') this.enqueue(e.object.metadata.namespace!, chart);
        else if (terminal(e.object) && !this.handledJobs.has(e.object.metadata.uid!)) {
          this.enqueue(e.object.metadata.namespace!, chart, () => this.jobDone(e.object, chart));
        }
      }),
    );
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    this.watches = [];
  }

  /** Per chart, one thing at a time (a controller's work queue). */
  private enqueue(ns: string, name: string, fn: () => Promise<void> = () => this.sync(ns, name)): void {
    const key = `${ns}/${name}`;
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(fn).catch((err: unknown) => {
      if (!(err instanceof ApiError && err.status === 409)) this.o.log?.(`helm ${key}: ${String(err)}`);
      // requeue after a conflict or an apiserver restart
      setTimeout(() => this.enqueue(ns, name), 200).unref();
    });
    this.queues.set(key, next);
  }

  private chartPath(ns: string, name?: string) {
    return pathOf('helm.cattle.io/v1', 'helmcharts', ns, name);
  }

  private async sync(ns: string, name: string): Promise<void> {
    const { api } = this.o;
    const chart = await api.get(this.chartPath(ns, name));
    if (!chart) return;
    if (chart.metadata.deletionTimestamp) return this.remove(chart);
    if (!chart.metadata.finalizers?.includes(FINALIZER)) {
      await api.must(
        'PATCH',
        this.chartPath(ns, name),
        [
          chart.metadata.finalizers
            ? { op: 'add', path: '/metadata/finalizers/-', value: FINALIZER }
            : { op: 'add', path: '/metadata/finalizers', value: [FINALIZER] },
        ],
        'application/json-patch+json',
      );
    }
    await api.createIfAbsent(pathOf('v1', 'serviceaccounts', ns), {
      metadata: { name: `helm-${name}`, namespace: ns },
    });
    const desired = this.installJob(chart, 'install');
    const jobPath = pathOf('batch/v1', 'jobs', ns, desired.metadata.name);
    const job = await api.get(jobPath);
    if (job && job.metadata.annotations?.[JOB_SPEC_HASH] !== desired.metadata.annotations![JOB_SPEC_HASH]) {
      // jobPatcher: a Job's pod template is immutable, so a changed one is deleted and created again.
      await api.delete(jobPath, 'Background');
      await this.waitGone(jobPath);
    }
    if (!job || job.metadata.annotations?.[JOB_SPEC_HASH] !== desired.metadata.annotations![JOB_SPEC_HASH]) {
      await this.run(chart, desired);
    }
    const status = {
      jobName: desired.metadata.name,
      conditions: [
        {
          type: 'JobCreated',
          status: 'True',
          reason: 'Job created',
          message: `Applying HelmChart using Job ${ns}/${desired.metadata.name}`,
        },
        { type: 'Failed', status: 'False' },
      ],
    };
    if (JSON.stringify(chart.status ?? {}) !== JSON.stringify(status)) {
      await api.must('PATCH', `${this.chartPath(ns, name)}/status`, { status }, 'application/merge-patch+json');
    }
  }

  private async waitGone(path: string): Promise<void> {
    for (let i = 0; i < 100 && (await this.o.api.get(path)); i++) await new Promise((r) => setTimeout(r, 50));
  }

  private targetNs(chart: KObj): string {
    return chart.spec?.targetNamespace || chart.metadata.namespace!;
  }

  private installJob(chart: KObj, op: 'install' | 'delete'): KObj {
    const { name, namespace: ns } = chart.metadata;
    const spec = chart.spec ?? {};
    const env = [
      ['NAME', name],
      ['VERSION', spec.version ?? ''],
      ['REPO', spec.repo ?? ''],
      ['CHART', spec.chart ?? ''],
      ['TARGET_NAMESPACE', this.targetNs(chart)],
      ['HELM_DRIVER', 'secret'],
      ['FAILURE_POLICY', spec.failurePolicy ?? 'reinstall'],
      ['PLAIN_HTTP', String(Boolean(spec.plainHTTP))],
      ['TIMEOUT', spec.timeout ?? ''],
    ].map(([k, v]) => ({ name: k, value: v }));
    // configHash: SHA256 over the values and content ConfigMaps' data (chart.go hashObjects).
    const configHash = `SHA256=${hashOf(`${spec.valuesContent ?? ''}${JSON.stringify(spec.set ?? {})}`).toUpperCase()}`;
    const labels = { [CHART_LABEL]: name };
    const specHash = hashOf(JSON.stringify([op, env, configHash, spec.backOffLimit]));
    return {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: `helm-${op}-${name}`,
        namespace: ns,
        labels,
        annotations: { [CONFIG_HASH]: configHash, [JOB_SPEC_HASH]: specHash },
        ownerReferences: [
          { apiVersion: 'helm.cattle.io/v1', kind: 'HelmChart', name, uid: chart.metadata.uid!, controller: true },
        ],
      },
      spec: {
        backoffLimit: spec.backOffLimit ?? 1000,
        template: {
          metadata: { labels, annotations: { [CONFIG_HASH]: configHash } },
          spec: {
            restartPolicy: 'OnFailure',
            serviceAccountName: `helm-${name}`,
            containers: [{ name: 'helm', image: KLIPPER_IMAGE, args: [op], env }],
          },
        },
      },
    };
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

  private async writeRelease(chart: KObj, revision: number, status: string, description: string): Promise<void> {
    const { api } = this.o;
    const ns = this.targetNs(chart);
    const name = chart.metadata.name;
    const secret = `sh.helm.release.v1.${name}.v${revision}`;
    const now = new Date().toISOString();
    const body = {
      name,
      namespace: ns,
      version: revision,
      info: { status, description, first_deployed: now, last_deployed: now },
      chart: { metadata: { name: chart.spec?.chart, version: chart.spec?.version } },
      config: chart.spec?.valuesContent ?? '',
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

  /** Decides what the Job's pod does (klipper-helm's helm_update), records the release, creates the Job. */
  private async run(chart: KObj, job: KObj): Promise<void> {
    const { api, faults } = this.o;
    const name = chart.metadata.name;
    let nsExists = Boolean(await api.get(pathOf('v1', 'namespaces', undefined, this.targetNs(chart))));
    if (!nsExists && chart.spec?.createNamespace) {
      // helm --create-namespace
      await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: this.targetNs(chart) } });
      nsExists = true;
    }
    let outcome: { result: 'succeed' | 'fail' | 'stall'; message?: string } = { result: 'succeed' };
    if (nsExists) {
      const [latest] = await this.releases(chart);
      let status = latest?.status;
      let op: 'install' | 'upgrade' = latest ? 'upgrade' : 'install';
      if (status && /^pending-(install|upgrade|rollback)$|^uninstalling$/.test(status)) {
        await this.setStatus(chart, latest, 'failed');
        status = status === 'pending-upgrade' ? 'deployed' : 'failed';
      }
      if (status && status !== 'deployed') {
        if ((chart.spec?.failurePolicy ?? 'reinstall') === 'reinstall') {
          await this.uninstall(chart);
          op = 'install';
        } else {
          outcome = {
            result: 'fail',
            message: `Release status is '${status}' and failure policy is '${chart.spec?.failurePolicy}', not 'reinstall'; waiting for operator intervention`,
          };
        }
      }
      if (outcome.result === 'succeed') {
        const revision = op === 'install' ? 1 : latest.revision + 1;
        // A fault for one chart version (`name@version`: "the new version fails") or for every version.
        const injected = faults.fail.get(`${name}@${String(chart.spec?.version ?? '')}`) ?? faults.fail.get(name);
        if (faults.stall.has(name)) {
          outcome = { result: 'stall' };
          await this.writeRelease(chart, revision, `pending-${op}`, `Lab: ${op} in progress`);
        } else if (injected !== undefined) {
          const message = `Error: ${op === 'install' ? 'INSTALLATION' : 'UPGRADE'} FAILED: ${injected}`;
          outcome = { result: 'fail', message };
          await this.writeRelease(chart, revision, 'failed', message);
        } else {
          await this.writeRelease(chart, revision, `pending-${op}`, `Lab: ${op} in progress`);
        }
      }
    } else {
      // helm cannot even store the release: its namespace is missing.
      outcome = {
        result: 'fail',
        message: `Error: INSTALLATION FAILED: create: failed to create: namespaces "${this.targetNs(chart)}" not found`,
      };
    }
    const meta = job.spec.template.metadata;
    meta.annotations = {
      ...meta.annotations,
      'lab.pedro-ops.io/outcome': outcome.result,
      'lab.pedro-ops.io/duration': `${this.o.jobDurationMs?.(name) ?? 300}ms`,
      ...(outcome.result === 'fail'
        ? {
            'lab.pedro-ops.io/message': outcome.message!,
            // the kubelet restarts the container until the Job controller counts backoffLimit restarts
            'lab.pedro-ops.io/restarts': String(job.spec.backoffLimit),
          }
        : {}),
    };
    await api.must('POST', pathOf('batch/v1', 'jobs', job.metadata.namespace), job);
  }

  private async jobDone(job: KObj, name: string): Promise<void> {
    const { api } = this.o;
    this.handledJobs.add(job.metadata.uid!);
    const chart = await api.get(this.chartPath(job.metadata.namespace!, name));
    if (!chart) return;
    const ok = terminal(job) === 'Complete';
    if (job.metadata.name.startsWith('helm-delete-')) {
      if (!ok) return;
      await this.uninstall(chart);
      await api.must(
        'PATCH',
        this.chartPath(chart.metadata.namespace!, name),
        { metadata: { finalizers: (chart.metadata.finalizers ?? []).filter((f) => f !== FINALIZER) } },
        'application/merge-patch+json',
      );
      return;
    }
    const [latest] = await this.releases(chart);
    if (!latest) return;
    if (!ok) {
      if (latest.status.startsWith('pending-')) await this.setStatus(chart, latest, 'failed');
      return;
    }
    if (latest.status.startsWith('pending-')) {
      await this.deployWorkloads(chart);
      for (const r of await this.releases(chart)) {
        if (r.revision < latest.revision && r.status === 'deployed') await this.setStatus(chart, r, 'superseded');
      }
      await this.setStatus(chart, latest, 'deployed');
    }
  }

  private async remove(chart: KObj): Promise<void> {
    if (!chart.metadata.finalizers?.includes(FINALIZER)) return;
    const { api } = this.o;
    const ns = chart.metadata.namespace!;
    const installPath = pathOf('batch/v1', 'jobs', ns, `helm-install-${chart.metadata.name}`);
    if (await api.get(installPath)) await api.delete(installPath, 'Background');
    const job = this.installJob(chart, 'delete');
    const meta = job.spec.template.metadata;
    meta.annotations = {
      ...meta.annotations,
      'lab.pedro-ops.io/outcome': 'succeed',
      'lab.pedro-ops.io/duration': '100ms',
    };
    // The Job's owner is being deleted: without an ownerReference it survives until it has run.
    delete job.metadata.ownerReferences;
    await api.createIfAbsent(pathOf('batch/v1', 'jobs', ns), job);
  }

  private workloadsOf(chart: KObj): { ns: string; ref: WorkloadRef }[] {
    const entry = this.o.componentWorkloads.get(chart.metadata.name);
    const tns = this.targetNs(chart);
    return (entry?.workloads ?? []).map((ref) => ({
      ns: ref.namespace ?? chart.spec?.targetNamespace ?? entry?.namespace ?? tns,
      ref,
    }));
  }

  async deployWorkloads(chart: KObj): Promise<void> {
    const { api } = this.o;
    const storage = this.o.componentWorkloads.get(chart.metadata.name)?.storage;
    let claimed = false;
    for (const { ns, ref } of this.workloadsOf(chart)) {
      await api.createIfAbsent('/api/v1/namespaces', { metadata: { name: ns } });
      if (ref.kind !== 'CronJob') {
        // Charts put a Service in front of their workloads; the real apiserver allocates its ClusterIP.
        await api.createIfAbsent(pathOf('v1', 'services', ns), serviceObject(chart, ns, ref));
      }
      const desired = workloadObject(chart, ns, ref);
      if (storage && !claimed && (ref.kind === 'Deployment' || ref.kind === 'StatefulSet')) {
        // A chart with persistence: its first workload mounts a Longhorn PVC (controllers/provisioner.ts).
        claimed = true;
        await mountDataVolume(api, desired, ns);
      }
      // Helm applies with a three-way merge, so fields it does not own (kubectl's restartedAt) stay;
      // server-side apply with helm's field manager keeps the same property.
      const plural = `${ref.kind.toLowerCase()}s`;
      await api.must(
        'PATCH',
        `${pathOf(desired.apiVersion!, plural, ns, ref.name)}?fieldManager=helm&force=true`,
        desired,
        'application/apply-patch+yaml',
      );
    }
  }

  private async uninstall(chart: KObj): Promise<void> {
    const { api } = this.o;
    for (const { ns, ref } of this.workloadsOf(chart)) {
      await api.delete(
        pathOf(ref.kind === 'CronJob' ? 'batch/v1' : 'apps/v1', `${ref.kind.toLowerCase()}s`, ns, ref.name),
      );
    }
    for (const r of await this.releases(chart))
      await api.delete(pathOf('v1', 'secrets', this.targetNs(chart), r.secret));
  }
}

/** OpenBAO's API port: openbao-helm values.yaml server.service.port and targetPort. */
export const OPENBAO_PORT = 8200;

/** Ports the real charts expose (powerdns: DNS on 53; openbao: 8200, openbao-helm values.yaml); else http. */
const CHART_PORTS: Record<string, { name: string; port: number; protocol: string }[]> = {
  powerdns: [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ],
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
  if (isOpenBao) {
    container.readinessProbe = {
      exec: { command: ['/bin/sh', '-ec', 'bao status -tls-skip-verify'] },
      failureThreshold: 2,
      initialDelaySeconds: 5,
      periodSeconds: 5,
      successThreshold: 1,
      timeoutSeconds: 3,
    };
  }
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
