// k3s's helm-controller in miniature: every HelmChart write (re)runs Job `helm-install-<name>`;
// when the Job completes, the chart's workloads appear in the target namespace and roll out.
import type { WorkloadRef } from '../../../../config/schema.js';
import { shortHash, type KObj } from '../util.js';
import {
  apply,
  condition,
  defer,
  ensureNamespace,
  ownerRef,
  rtOf,
  setStatus,
  type Ctx,
  type JobOutcome,
} from './ctx.js';
import { HELM_CHART_LABEL } from './jobs.js';

const KLIPPER_IMAGE = 'rancher/klipper-helm:v0.9.4-build20250113';

export class HelmController {
  constructor(private readonly ctx: Ctx) {
    ctx.store.on((e) => {
      if (e.rt.kind === 'HelmChart' && e.source === 'api') {
        if (e.type === 'DELETED') defer(ctx, () => this.uninstall(e.obj));
        else defer(ctx, () => this.install(e.obj));
      }
      const chart = e.obj.metadata.labels?.[HELM_CHART_LABEL];
      if (e.rt.kind === 'Job' && chart && e.type === 'MODIFIED') {
        const was = terminal(e.old);
        const now = terminal(e.obj);
        if (!was && now) defer(ctx, () => this.jobDone(e.obj, chart, now));
      }
    });
    ctx.jobOutcomes.push((job) => this.outcome(job));
  }

  private chartRt() {
    return rtOf(this.ctx, 'helm.cattle.io/v1', 'HelmChart');
  }

  private install(chart: KObj): void {
    const { name, namespace: ns } = chart.metadata;
    const cur = this.ctx.store.get(this.chartRt(), ns, name);
    if (!cur || cur.metadata.uid !== chart.metadata.uid) return;
    const jobRt = rtOf(this.ctx, 'batch/v1', 'Job');
    const jobName = `helm-install-${name}`;
    if (this.ctx.store.get(jobRt, ns, jobName)) this.ctx.store.delete(jobRt, ns, jobName, 'controller');
    const spec = cur.spec ?? {};
    const labels = { [HELM_CHART_LABEL]: name };
    const env = [
      ['NAME', name],
      ['VERSION', spec.version ?? ''],
      ['REPO', spec.repo ?? ''],
      ['CHART', spec.chart ?? ''],
      ['TARGET_NAMESPACE', spec.targetNamespace ?? ns],
      ['HELM_DRIVER', 'secret'],
      ['FAILURE_POLICY', spec.failurePolicy ?? 'reinstall'],
    ].map(([k, v]) => ({ name: k, value: v }));
    this.ctx.store.create(
      jobRt,
      ns,
      {
        metadata: {
          name: jobName,
          labels,
          annotations: { 'helmcharts.helm.cattle.io/configHash': `SHA256=${shortHash(spec, 64).toUpperCase()}` },
          ownerReferences: [ownerRef(cur)],
        },
        spec: {
          backoffLimit: spec.backOffLimit ?? 1000,
          template: {
            metadata: {
              labels,
              annotations: { 'helmcharts.helm.cattle.io/configHash': `SHA256=${shortHash(spec, 64).toUpperCase()}` },
            },
            spec: {
              restartPolicy: 'OnFailure',
              serviceAccountName: `helm-${name}`,
              containers: [{ name: 'helm', image: KLIPPER_IMAGE, args: ['install'], env }],
            },
          },
        },
      },
      'controller',
    );
    setStatus(this.ctx, this.chartRt(), ns, name, (c) => ({
      jobName,
      conditions: [
        condition('JobCreated', 'True', 'Job created', `Applying HelmChart using Job ${ns}/${jobName}`),
        ...(c.status?.conditions ?? [])
          .filter((x: KObj) => x.type === 'Failed')
          .map(() => condition('Failed', 'False')),
      ],
    }));
  }

  private targetNamespace(chart: KObj): string {
    return chart.spec?.targetNamespace || chart.metadata.namespace!;
  }

  /** Decides how the install Job ends: faults first, then a missing target namespace (as helm would). */
  private outcome(job: KObj): JobOutcome | undefined {
    const name = job.metadata.labels?.[HELM_CHART_LABEL];
    if (!name) return undefined;
    if (this.ctx.faults.stallHelmChart.has(name)) return { result: 'stall' };
    const msg = this.ctx.faults.failHelmChart.get(name);
    if (msg !== undefined) return { result: 'fail', message: msg, log: `Error: INSTALLATION FAILED: ${msg}\n` };
    const chart = this.ctx.store.get(this.chartRt(), job.metadata.namespace, name);
    if (!chart) return { result: 'fail', message: `HelmChart ${name} not found` };
    const tns = this.targetNamespace(chart);
    const nsExists = this.ctx.store.get(rtOf(this.ctx, 'v1', 'Namespace'), undefined, tns);
    if (!nsExists && !chart.spec?.createNamespace) {
      const m = `Error: INSTALLATION FAILED: create: failed to create: namespaces "${tns}" not found`;
      return { result: 'fail', message: m, log: `${m}\n` };
    }
    return { result: 'succeed' };
  }

  private jobDone(job: KObj, name: string, result: 'Complete' | 'Failed'): void {
    const ns = job.metadata.namespace!;
    const chart = this.ctx.store.get(this.chartRt(), ns, name);
    if (!chart) return;
    if (result === 'Failed') {
      const failed = job.status?.conditions?.find((c: KObj) => c.type === 'Failed');
      setStatus(this.ctx, this.chartRt(), ns, name, (c) => ({
        ...c.status,
        conditions: [
          ...(c.status?.conditions ?? []).filter((x: KObj) => x.type !== 'Failed'),
          condition('Failed', 'True', 'Error', failed?.message ?? 'Job failed'),
        ],
      }));
      return;
    }
    this.ctx.logs.set(
      `${ns}/${job.metadata.name}`,
      `Installing ${chart.spec?.chart} ${chart.spec?.version}\nSTATUS: deployed\n`,
    );
    this.deployWorkloads(chart);
  }

  private workloadsOf(chart: KObj): { ns: string; ref: WorkloadRef }[] {
    const entry = this.ctx.componentWorkloads.get(chart.metadata.name);
    const tns = this.targetNamespace(chart);
    return (entry?.workloads ?? []).map((ref) => ({
      ns: ref.namespace ?? chart.spec?.targetNamespace ?? entry?.namespace ?? tns,
      ref,
    }));
  }

  /** Creates or upgrades the chart's workloads; returns them as stored. */
  deployWorkloads(chart: KObj): KObj[] {
    if (chart.spec?.createNamespace) ensureNamespace(this.ctx, this.targetNamespace(chart));
    return this.workloadsOf(chart).map(({ ns, ref }) => {
      ensureNamespace(this.ctx, ns);
      const desired = workloadObject(chart, ns, ref);
      const rt = rtOf(this.ctx, desired.apiVersion!, desired.kind!);
      const cur = this.ctx.store.get(rt, ns, ref.name);
      if (cur) {
        // helm's 3-way merge keeps annotations it does not own (kubectl's restartedAt).
        const t = ref.kind === 'CronJob' ? desired.spec.jobTemplate.spec.template : desired.spec.template;
        const ct = ref.kind === 'CronJob' ? cur.spec?.jobTemplate?.spec?.template : cur.spec?.template;
        t.metadata.annotations = { ...ct?.metadata?.annotations, ...t.metadata.annotations };
      }
      return apply(this.ctx, desired);
    });
  }

  private uninstall(chart: KObj): void {
    for (const { ns, ref } of this.workloadsOf(chart)) {
      const rt = rtOf(this.ctx, ref.kind === 'CronJob' ? 'batch/v1' : 'apps/v1', ref.kind);
      if (this.ctx.store.get(rt, ns, ref.name)) this.ctx.store.delete(rt, ns, ref.name, 'controller');
    }
  }
}

function terminal(job: KObj | undefined): 'Complete' | 'Failed' | undefined {
  const c = job?.status?.conditions?.find(
    (x: KObj) => (x.type === 'Complete' || x.type === 'Failed') && x.status === 'True',
  );
  return c?.type;
}

/** The workload a chart would render: Helm's standard labels, one container, a config checksum. */
export function workloadObject(chart: KObj, ns: string, ref: WorkloadRef): KObj {
  const release = chart.metadata.name;
  const labels = { 'app.kubernetes.io/name': ref.name, 'app.kubernetes.io/instance': release };
  const meta = {
    name: ref.name,
    namespace: ns,
    labels: {
      ...labels,
      'app.kubernetes.io/managed-by': 'Helm',
      'helm.sh/chart': `${chart.spec?.chart ?? release}-${chart.spec?.version ?? '0.0.0'}`,
    },
    annotations: { 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': ns },
  };
  const template = {
    metadata: {
      labels: { ...labels },
      annotations: {
        'checksum/config': shortHash([chart.spec?.valuesContent, chart.spec?.set, chart.spec?.version], 64),
      },
    },
    spec: {
      containers: [{ name: ref.name, image: `${chart.spec?.chart ?? ref.name}:${chart.spec?.version ?? 'latest'}` }],
    },
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
        spec: { replicas: ref.replicas ?? 1, serviceName: ref.name, selector, template },
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
