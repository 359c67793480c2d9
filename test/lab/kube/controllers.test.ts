// Simulated controllers: HelmChart install Jobs and workloads, faults, rollouts, probe Jobs.
import { PatchStrategy, setHeaderOptions, type V1Job } from '@kubernetes/client-node';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeDouble, type KubeDouble } from './index.js';
import { clients, deploymentDone, raw, registerServer, statusOf, until } from './test-client.js';

const crdDir = fileURLToPath(new URL('../crds/', import.meta.url));
let kd: KubeDouble;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  kd = await startKubeDouble({
    host: '127.0.0.1',
    token: 't0ken',
    crdDir,
    readyDelayMs: 50,
    rolloutStepMs: 30,
    jobDelayMs: (n) => (n === 'slow' ? 2000 : 100),
  });
  c = clients(kd);
  await registerServer(kd, 'control-plane');
  const agentToken = (await registerServer(kd, 'control-plane')).json().agentToken;
  await raw(kd, 'POST', '/lab/k3s/agent', {
    token: kd.token,
    body: { node: 'worker-1', version: 'v1.31.4+k3s1', serverUrl: kd.url, token: agentToken, nodeIp: '127.0.0.3' },
  });
  await until(
    'nodes Ready',
    async () =>
      (await c.core.listNode()).items.filter((n) =>
        n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
      ).length === 2,
  );
  kd.setComponentWorkloads({
    'cert-manager': {
      namespace: 'cert-manager',
      workloads: [
        { kind: 'Deployment', name: 'cert-manager', replicas: 2 },
        { kind: 'Deployment', name: 'cert-manager-webhook' },
      ],
    },
    longhorn: {
      namespace: 'longhorn-system',
      workloads: [
        { kind: 'DaemonSet', name: 'longhorn-manager' },
        { kind: 'StatefulSet', name: 'longhorn-db', replicas: 2 },
      ],
    },
    'eleduck-jobs': { namespace: 'eleduck-analytics', workloads: [{ kind: 'CronJob', name: 'sqlmesh' }] },
  });
});
afterAll(async () => {
  await kd?.stop();
});

const helmChart = (name: string, targetNamespace: string, extra: object = {}) => ({
  apiVersion: 'helm.cattle.io/v1',
  kind: 'HelmChart',
  metadata: { name, namespace: 'kube-system' },
  spec: {
    chart: name,
    repo: 'https://charts.example.test',
    version: '1.0.0',
    targetNamespace,
    createNamespace: true,
    valuesContent: 'a: 1\n',
    ...extra,
  },
});
const getChart = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: 'helm.cattle.io',
    version: 'v1',
    namespace: 'kube-system',
    plural: 'helmcharts',
    name,
  })) as any;
const jobCondition = (j: V1Job, type: string) =>
  j.status?.conditions?.find((x) => x.type === type && x.status === 'True');

describe('HelmChart controller', () => {
  it('runs helm-install-<name>, then creates the workloads, which become ready', async () => {
    const created = (await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('cert-manager', 'cert-manager'),
    })) as any;
    // CRD defaults apply, as on a real apiserver.
    expect(created.spec.failurePolicy).toBe('reinstall');
    const chart = await until('jobName', async () => {
      const ch = await getChart('cert-manager');
      return ch.status?.jobName && ch;
    });
    expect(chart.status.jobName).toBe('helm-install-cert-manager');
    expect(chart.status.conditions).toContainEqual(expect.objectContaining({ type: 'JobCreated', status: 'True' }));
    const job = await until('install job Complete', async () => {
      const j = await c.batch.readNamespacedJob({ name: 'helm-install-cert-manager', namespace: 'kube-system' });
      return jobCondition(j, 'Complete') && j;
    });
    expect(job.status?.succeeded).toBe(1);
    const d = await until('cert-manager ready', async () => {
      const x = await c.apps
        .readNamespacedDeployment({ name: 'cert-manager', namespace: 'cert-manager' })
        .catch(() => undefined);
      return x && deploymentDone(x) && x;
    });
    expect(d.status?.readyReplicas).toBe(2);
    expect(d.metadata?.labels?.['app.kubernetes.io/instance']).toBe('cert-manager');
    const pods = await c.core.listNamespacedPod({
      namespace: 'cert-manager',
      labelSelector: 'app.kubernetes.io/name=cert-manager',
    });
    expect(pods.items).toHaveLength(2);
    expect(kd.counters().writes['create:HelmChart']).toBe(1);
  });

  it('creates DaemonSets sized to the Ready nodes, StatefulSets with revisions, and CronJobs', async () => {
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('longhorn', 'longhorn-system'),
    });
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('eleduck-jobs', 'eleduck-analytics'),
    });
    const ds = await until('daemonset ready', async () => {
      const x = await c.apps
        .readNamespacedDaemonSet({ name: 'longhorn-manager', namespace: 'longhorn-system' })
        .catch(() => undefined);
      const s = x?.status;
      return (
        s &&
        s.desiredNumberScheduled === 2 &&
        (s.updatedNumberScheduled ?? 0) >= 2 &&
        (s.numberAvailable ?? 0) >= 2 &&
        x
      );
    });
    expect(ds.status?.observedGeneration).toBe(1);
    const sts = await until('statefulset ready', async () => {
      const x = await c.apps
        .readNamespacedStatefulSet({ name: 'longhorn-db', namespace: 'longhorn-system' })
        .catch(() => undefined);
      return x && (x.status?.readyReplicas ?? 0) >= 2 && x.status?.currentRevision === x.status?.updateRevision && x;
    });
    expect(sts.status?.currentRevision).toMatch(/^longhorn-db-/);
    const cj = await until('cronjob', async () =>
      c.batch.readNamespacedCronJob({ name: 'sqlmesh', namespace: 'eleduck-analytics' }).catch(() => undefined),
    );
    expect(cj.spec?.jobTemplate.spec?.template.spec?.restartPolicy).toBe('OnFailure');
  });

  it('shows an injected failure on the Job and the HelmChart, and reruns after the fault clears', async () => {
    kd.faults.failHelmChart('grafana', 'chart grafana-8.8.2 not found in repository');
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('grafana', 'monitoring'),
    });
    const job = await until('job Failed', async () => {
      const j = await c.batch
        .readNamespacedJob({ name: 'helm-install-grafana', namespace: 'kube-system' })
        .catch(() => undefined);
      return j && jobCondition(j, 'Failed') && j;
    });
    expect(jobCondition(job, 'Failed')?.message).toBe('chart grafana-8.8.2 not found in repository');
    const chart = await until('chart Failed', async () => {
      const ch = await getChart('grafana');
      return ch.status?.conditions?.some((x: any) => x.type === 'Failed' && x.status === 'True') && ch;
    });
    expect(chart.status.conditions.find((x: any) => x.type === 'Failed').message).toBe(
      'chart grafana-8.8.2 not found in repository',
    );
    const podLog = await c.core.listNamespacedPod({
      namespace: 'kube-system',
      labelSelector: 'helmcharts.helm.cattle.io/chart=grafana',
    });
    const log = await c.core.readNamespacedPodLog({ name: podLog.items[0].metadata!.name!, namespace: 'kube-system' });
    expect(log).toContain('INSTALLATION FAILED');

    kd.faults.clear();
    await c.custom.patchNamespacedCustomObject(
      {
        group: 'helm.cattle.io',
        version: 'v1',
        namespace: 'kube-system',
        plural: 'helmcharts',
        name: 'grafana',
        body: { metadata: { annotations: { 'lab/retry': '1' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until('rerun Complete', async () => {
      const j = await c.batch
        .readNamespacedJob({ name: 'helm-install-grafana', namespace: 'kube-system' })
        .catch(() => undefined);
      return j && jobCondition(j, 'Complete');
    });
    const after = await until('Failed cleared', async () => {
      const ch = await getChart('grafana');
      return !ch.status?.conditions?.some((x: any) => x.type === 'Failed' && x.status === 'True') && ch;
    });
    expect(after.status.jobName).toBe('helm-install-grafana');
  });

  it('fails the install when the target namespace is missing and createNamespace is false', async () => {
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('orphan', 'no-such-ns', { createNamespace: false }),
    });
    const job = await until('job Failed', async () => {
      const j = await c.batch
        .readNamespacedJob({ name: 'helm-install-orphan', namespace: 'kube-system' })
        .catch(() => undefined);
      return j && jobCondition(j, 'Failed') && j;
    });
    expect(jobCondition(job, 'Failed')?.message).toContain('namespaces "no-such-ns" not found');
  });

  it('leaves a stalled install Job running', async () => {
    kd.faults.stallHelmChart('zot');
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: helmChart('zot', 'zot-system'),
    });
    await until(
      'job active',
      async () =>
        (await c.batch.readNamespacedJob({ name: 'helm-install-zot', namespace: 'kube-system' }).catch(() => undefined))
          ?.status?.active === 1,
    );
    await new Promise((r) => setTimeout(r, 400));
    const j = await c.batch.readNamespacedJob({ name: 'helm-install-zot', namespace: 'kube-system' });
    expect(j.status?.conditions ?? []).toEqual([]);
    kd.faults.clear();
  });
});

describe('rollouts and Jobs', () => {
  it('stalls a Deployment rollout with ProgressDeadlineExceeded and resumes after clear', async () => {
    kd.faults.stallRollout('cert-manager', 'Deployment', 'cert-manager-webhook');
    const d = await c.apps.patchNamespacedDeployment(
      {
        name: 'cert-manager-webhook',
        namespace: 'cert-manager',
        body: { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': 'r1' } } } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    const stuck = await until('deadline exceeded', async () => {
      const x = await c.apps.readNamespacedDeployment({ name: 'cert-manager-webhook', namespace: 'cert-manager' });
      return (
        x.status?.conditions?.some(
          (k) => k.type === 'Progressing' && k.status === 'False' && k.reason === 'ProgressDeadlineExceeded',
        ) && x
      );
    });
    expect(deploymentDone(stuck)).toBe(false);
    expect(stuck.status?.observedGeneration).toBe(d.metadata?.generation);
    kd.faults.clear();
    await until('rollout resumes', async () =>
      deploymentDone(
        await c.apps.readNamespacedDeployment({ name: 'cert-manager-webhook', namespace: 'cert-manager' }),
      ),
    );
    expect(kd.counters().restarts['cert-manager/Deployment/cert-manager-webhook']).toBe(1);
  });

  it('walks StatefulSet revisions and DaemonSet updates to done after a restart', async () => {
    const restart = {
      spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': 'r2' } } } },
    };
    const sp = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
    const sts = await c.apps.patchNamespacedStatefulSet(
      { name: 'longhorn-db', namespace: 'longhorn-system', body: restart },
      sp,
    );
    await c.apps.patchNamespacedDaemonSet(
      { name: 'longhorn-manager', namespace: 'longhorn-system', body: restart },
      sp,
    );
    let sawSplit = false;
    await until(
      'statefulset rolled',
      async () => {
        const x = await c.apps.readNamespacedStatefulSet({ name: 'longhorn-db', namespace: 'longhorn-system' });
        const s = x.status!;
        if (s.observedGeneration === sts.metadata?.generation && s.updateRevision !== s.currentRevision)
          sawSplit = true;
        return (
          s.observedGeneration === sts.metadata?.generation &&
          (s.readyReplicas ?? 0) >= 2 &&
          s.updateRevision === s.currentRevision &&
          (s.updatedReplicas ?? 0) === 2
        );
      },
      10_000,
      5,
    );
    expect(sawSplit).toBe(true);
    await until('daemonset rolled', async () => {
      const s = (await c.apps.readNamespacedDaemonSet({ name: 'longhorn-manager', namespace: 'longhorn-system' }))
        .status!;
      return (
        s.observedGeneration === 2 &&
        (s.updatedNumberScheduled ?? 0) >= s.desiredNumberScheduled &&
        (s.numberAvailable ?? 0) >= s.desiredNumberScheduled
      );
    });
    const pods = await c.core.listNamespacedPod({
      namespace: 'longhorn-system',
      labelSelector: 'app.kubernetes.io/name=longhorn-db',
    });
    expect(pods.items.map((p) => p.metadata?.name).sort()).toEqual(['longhorn-db-0', 'longhorn-db-1']);
    expect(kd.counters().restarts).toMatchObject({
      'longhorn-system/StatefulSet/longhorn-db': 1,
      'longhorn-system/DaemonSet/longhorn-manager': 1,
    });
  });

  it('completes probe Jobs, fails marked ones, and validates the pod template', async () => {
    const job = (name: string, annotations?: Record<string, string>): V1Job => ({
      metadata: { name },
      spec: {
        backoffLimit: 0,
        template: {
          metadata: { annotations },
          spec: { restartPolicy: 'Never', containers: [{ name: 'probe', image: 'busybox', command: ['true'] }] },
        },
      },
    });
    await c.batch.createNamespacedJob({ namespace: 'default', body: job('probe-ok') });
    await c.batch.createNamespacedJob({
      namespace: 'default',
      body: job('probe-bad', { 'lab.pedro-ops/fail': 'true' }),
    });
    const ok = await until('ok', async () => {
      const j = await c.batch.readNamespacedJob({ name: 'probe-ok', namespace: 'default' });
      return jobCondition(j, 'Complete') && j;
    });
    expect(ok.status?.succeeded).toBe(1);
    expect(ok.spec?.selector?.matchLabels?.['batch.kubernetes.io/controller-uid']).toBe(ok.metadata?.uid);
    const bad = await until('bad', async () => {
      const j = await c.batch.readNamespacedJob({ name: 'probe-bad', namespace: 'default' });
      return jobCondition(j, 'Failed') && j;
    });
    expect(bad.status?.failed).toBe(1);
    const pods = await c.core.listNamespacedPod({ namespace: 'default', labelSelector: 'job-name=probe-bad' });
    expect(pods.items[0].status?.phase).toBe('Failed');
    const invalid = await c.batch
      .createNamespacedJob({
        namespace: 'default',
        body: {
          metadata: { name: 'always' },
          spec: { template: { spec: { containers: [{ name: 'x', image: 'busybox' }] } } },
        },
      })
      .catch((e) => e);
    expect(invalid.code).toBe(422);
    expect(statusOf(invalid).details.causes[0]).toMatchObject({
      field: 'spec.template.spec.restartPolicy',
      reason: 'FieldValueNotSupported',
    });
    const pod = await c.core
      .createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'p' }, spec: { containers: [{ name: 'x', image: 'y' }] } },
      })
      .catch((e) => e);
    expect(pod.code).toBe(405);
  });
});
