// The "already built" cluster: what pedro-ops looks like after a successful provision, written
// synchronously so `npm run lab -- --built` and tests start from a finished state.
import { stringify } from 'yaml';
import type { ClusterSpec } from '../../../config/schema.js';
import { condition, ensureNamespace, rtOf, setStatus, type Ctx } from './controllers/ctx.js';
import type { HelmController } from './controllers/helm.js';
import { HELM_CHART_LABEL } from './controllers/jobs.js';
import { VELERO, type VeleroController } from './controllers/velero.js';
import type { WorkloadController } from './controllers/workloads.js';
import type { K3sRegistry } from './k3s.js';
import { timestamp } from './util.js';

export interface SeedParts {
  ctx: Ctx;
  k3s: K3sRegistry;
  helm: HelmController;
  workloads: WorkloadController;
  velero: VeleroController;
}

/** The HelmChart spec the seed writes for a component (kube-system, one per component). */
export function helmChartSpec(c: ClusterSpec['components'][number]) {
  return {
    chart: c.chart,
    ...(c.repo ? { repo: c.repo } : {}),
    version: c.version,
    targetNamespace: c.namespace,
    createNamespace: true,
    ...(c.values ? { valuesContent: stringify(c.values) } : {}),
    timeout: `${c.timeoutSeconds}s`,
    backOffLimit: 3,
  };
}

export function seedBuilt(p: SeedParts, spec: ClusterSpec): void {
  const { ctx, k3s, helm, workloads, velero } = p;
  const { store } = ctx;
  k3s.adoptVersion(spec.k3s.version);
  spec.nodes.forEach((n, i) =>
    k3s.register(
      n.name,
      spec.k3s.version,
      n.nodeIp ?? n.address,
      n.role === 'server',
      n.role === 'server' && i === 0,
      true,
    ),
  );
  k3s.bootstrap();

  const chartRt = rtOf(ctx, 'helm.cattle.io/v1', 'HelmChart');
  const jobRt = rtOf(ctx, 'batch/v1', 'Job');
  for (const c of spec.components) {
    ctx.componentWorkloads.set(c.name, { namespace: c.namespace, workloads: c.workloads ?? [] });
    ensureNamespace(ctx, c.namespace);
    const chart =
      store.get(chartRt, 'kube-system', c.name) ??
      store.create(chartRt, 'kube-system', { metadata: { name: c.name }, spec: helmChartSpec(c) }, 'controller');
    const jobName = `helm-install-${c.name}`;
    setStatus(ctx, chartRt, 'kube-system', c.name, () => ({
      jobName,
      conditions: [
        condition('JobCreated', 'True', 'Job created', `Applying HelmChart using Job kube-system/${jobName}`),
      ],
    }));
    if (!store.get(jobRt, 'kube-system', jobName)) {
      store.create(
        jobRt,
        'kube-system',
        {
          metadata: { name: jobName, labels: { [HELM_CHART_LABEL]: c.name } },
          spec: {
            backoffLimit: 3,
            template: {
              metadata: { labels: { [HELM_CHART_LABEL]: c.name } },
              spec: {
                restartPolicy: 'OnFailure',
                containers: [{ name: 'helm', image: 'rancher/klipper-helm:v0.9.4-build20250113', args: ['install'] }],
              },
            },
          },
        },
        'controller',
      );
      const now = timestamp();
      setStatus(ctx, jobRt, 'kube-system', jobName, () => ({
        startTime: now,
        completionTime: now,
        succeeded: 1,
        ready: 0,
        terminating: 0,
        uncountedTerminatedPods: {},
        conditions: [
          condition('SuccessCriteriaMet', 'True', 'CompletionsReached'),
          condition('Complete', 'True', 'CompletionsReached'),
        ],
      }));
    }
    for (const w of helm.deployWorkloads(chart)) {
      if (w.kind !== 'CronJob') workloads.markReady(rtOf(ctx, w.apiVersion!, w.kind!), w);
    }
  }

  for (const e of spec.secrets.entries) {
    if (!e.kubernetes) continue;
    ensureNamespace(ctx, e.kubernetes.namespace);
    const secretRt = rtOf(ctx, 'v1', 'Secret');
    if (!store.get(secretRt, e.kubernetes.namespace, e.kubernetes.name)) {
      store.create(
        secretRt,
        e.kubernetes.namespace,
        { metadata: { name: e.kubernetes.name }, type: 'Opaque', data: {} },
        'controller',
      );
    }
  }

  const b = spec.backups;
  const vns = b.veleroNamespace;
  ensureNamespace(ctx, vns);
  const bslRt = rtOf(ctx, VELERO, 'BackupStorageLocation');
  if (!store.get(bslRt, vns, b.storageLocation)) {
    store.create(
      bslRt,
      vns,
      {
        metadata: { name: b.storageLocation },
        spec: {
          provider: 'aws',
          default: true,
          objectStorage: { bucket: b.bucket },
          config: { region: 'us-east-1', s3ForcePathStyle: 'true', s3Url: b.s3Url },
        },
      },
      'controller',
    );
  }
  velero.validateLocation(vns, b.storageLocation);

  const s = b.schedule;
  const template = {
    includedNamespaces: s.includedNamespaces,
    storageLocation: b.storageLocation,
    ttl: `${s.ttlHours}h0m0s`,
  };
  const schedRt = rtOf(ctx, VELERO, 'Schedule');
  if (!store.get(schedRt, vns, s.name))
    store.create(schedRt, vns, { metadata: { name: s.name }, spec: { schedule: s.cron, template } }, 'controller');
  const day = 86_400_000;
  let last = '';
  for (const ago of [2, 1]) {
    const at = new Date(Date.now() - ago * day);
    const name = `${s.name}-${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    velero.seedCompleted(
      vns,
      name,
      template,
      { 'velero.io/schedule-name': s.name, 'velero.io/storage-location': b.storageLocation },
      at,
    );
    last = timestamp(at);
  }
  setStatus(ctx, schedRt, vns, s.name, () => ({ phase: 'Enabled', lastBackup: last }));
}
