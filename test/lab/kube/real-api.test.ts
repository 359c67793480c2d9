// The lab's Kubernetes is the real one: what a real kube-apiserver 1.31 with its controllers and
// kwok kubelets answers, and the lab controllers (k3s joins, HelmChart, readiness) on top of it.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeLab, type KubeLab } from './index.js';
import { clients, deploymentDone, raw, registerServer, statusOf, until } from './test-client.js';

let kd: KubeLab;
let c: ReturnType<typeof clients>;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'real-api-'));
  const t0 = Date.now();
  kd = await startKubeLab({ host: `127.${randomInt(1, 255)}.${randomInt(0, 256)}.1`, dir, jobDelayMs: 200 });
  process.stderr.write(`[real-api] control plane ready in ${Date.now() - t0} ms\n`);
  c = clients(kd);
  // Two nodes join as k3s would; kwok is their kubelet.
  const agentToken = (await registerServer(kd, 'pedro-cp')).json().agentToken as string;
  const agent = await raw({ url: kd.supervisorUrl, caPem: kd.caPem }, 'POST', '/lab/k3s/agent', {
    token: kd.token,
    body: { node: 'pedro-w1', version: 'v1.31.4+k3s1', serverUrl: kd.url, token: agentToken, nodeIp: '127.0.0.3' },
  });
  expect(agent.status).toBe(200);
  await until(
    'nodes Ready and untainted',
    async () => {
      const nodes = (await c.core.listNode()).items;
      return (
        nodes.length === 2 &&
        nodes.every(
          (n) =>
            n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') &&
            !(n.spec?.taints ?? []).some((t) => t.key === 'node.kubernetes.io/not-ready'),
        )
      );
    },
    60_000,
  );
}, 180_000);
afterAll(async () => {
  await kd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const ns = async (name: string) => {
  await c.core.createNamespace({ body: { metadata: { name } } });
  await until('default ServiceAccount', async () =>
    (await c.core.listNamespacedServiceAccount({ namespace: name })).items.some((s) => s.metadata?.name === 'default'),
  );
  return name;
};

describe('the real kube-apiserver', () => {
  it('reports the pinned version and registers joined nodes under their node name with the kubelet version', async () => {
    const v = await raw(kd, 'GET', '/version', { token: kd.token });
    expect(v.json().gitVersion).toBe('v1.31.4');
    const node = await c.core.readNode({ name: 'pedro-cp' });
    expect(node.status?.nodeInfo?.kubeletVersion).toBe('v1.31.4+k3s1');
    expect(node.metadata?.labels?.['kubernetes.io/hostname']).toBe('pedro-cp');
    expect(node.metadata?.labels?.['node-role.kubernetes.io/control-plane']).toBe('true');
    // k3s's packaged CoreDNS manifest was applied by the server start.
    const cm = await c.core.readNamespacedConfigMap({ name: 'coredns', namespace: 'kube-system' });
    expect(cm.data?.Corefile).toContain('import /etc/coredns/custom/*.server');
  });

  it('refuses a wrong cluster token at join with the message k3s logs', async () => {
    const r = await registerServer(kd, 'pedro-cp2', { token: 'another-secret' });
    expect(r.status).toBe(401);
    expect(r.json().message).toBe('token CA hash does not match the Cluster CA certificate hash');
  });

  it('answers 415 to a strategic-merge patch of a custom resource', async () => {
    const name = await ns('smp-cr');
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: name,
      plural: 'helmcharts',
      body: { apiVersion: 'helm.cattle.io/v1', kind: 'HelmChart', metadata: { name: 'x' }, spec: { chart: 'nothing' } },
    });
    // Also stop the lab helm-controller from running it: delete once shown.
    const r = await raw(kd, 'PATCH', `/apis/helm.cattle.io/v1/namespaces/${name}/helmcharts/x`, {
      token: kd.token,
      body: { spec: { version: '1.0.0' } },
      contentType: 'application/strategic-merge-patch+json',
    });
    expect(r.status).toBe(415);
    // CRDs accept no strategic merge (apiextensions-apiserver has no Go types to merge by).
    expect(r.json().message).toBe(
      'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
    );
  });

  it('answers 422 naming the fields to a Velero Backup that violates its schema', async () => {
    const name = await ns('velero-422');
    const r = await raw(kd, 'POST', `/apis/velero.io/v1/namespaces/${name}/backups`, {
      token: kd.token,
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'Backup',
        metadata: { name: 'bad' },
        spec: { ttl: 720, includedNamespaces: 'eleduck-analytics' },
      },
    });
    expect(r.status).toBe(422);
    const body = r.json();
    expect(body.reason).toBe('Invalid');
    const fields = (body.details.causes as { field: string }[]).map((x) => x.field);
    expect(fields).toEqual(expect.arrayContaining(['spec.ttl', 'spec.includedNamespaces']));
  });

  it('serves the HelmChart CRD of helm-controller v0.16.5: a field only later versions know is pruned', async () => {
    // `spec.values` (structured values) arrived after v0.16; the v0.16.5 schema has no such field and
    // preserveUnknownFields: false, so the apiserver drops it on write, as a real k3s v1.31.4 would.
    const name = await ns('pruned');
    await raw(kd, 'POST', `/apis/helm.cattle.io/v1/namespaces/${name}/helmcharts`, {
      token: kd.token,
      body: {
        apiVersion: 'helm.cattle.io/v1',
        kind: 'HelmChart',
        metadata: { name: 'p' },
        spec: { chart: 'c', values: { a: 1 }, plainHTTP: true },
      },
    });
    const got = (
      await raw(kd, 'GET', `/apis/helm.cattle.io/v1/namespaces/${name}/helmcharts/p`, { token: kd.token })
    ).json();
    expect(got.spec).toEqual({ chart: 'c', plainHTTP: true });
  });

  it('answers 409 Conflict to a replace with a stale resourceVersion', async () => {
    const name = await ns('stale-rv');
    const created = await c.core.createNamespacedConfigMap({
      namespace: name,
      body: { metadata: { name: 'cm' }, data: { a: '1' } },
    });
    await c.core.replaceNamespacedConfigMap({ name: 'cm', namespace: name, body: { ...created, data: { a: '2' } } });
    const e = await c.core
      .replaceNamespacedConfigMap({ name: 'cm', namespace: name, body: { ...created, data: { a: '3' } } })
      .catch((err: unknown) => err);
    expect(statusOf(e).code).toBe(409);
    expect(statusOf(e).reason).toBe('Conflict');
  });

  it('keeps a namespace Terminating until the finalizers of its contents are gone', async () => {
    const name = await ns('terminating');
    await c.core.createNamespacedConfigMap({
      namespace: name,
      body: { metadata: { name: 'held', finalizers: ['lab.pedro-ops.io/hold'] } },
    });
    await c.core.deleteNamespace({ name });
    const terminating = await until(
      'Terminating with a condition',
      async () => {
        const n = await c.core.readNamespace({ name });
        return n.status?.phase === 'Terminating' &&
          n.status.conditions?.some((x) => x.type === 'NamespaceFinalizersRemaining' && x.status === 'True')
          ? n
          : undefined;
      },
      30_000,
    );
    expect(terminating.status?.conditions?.find((x) => x.type === 'NamespaceFinalizersRemaining')?.message).toContain(
      'lab.pedro-ops.io/hold',
    );
    await c.core.patchNamespacedConfigMap(
      { name: 'held', namespace: name, body: { metadata: { finalizers: null } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until(
      'namespace gone',
      async () => !(await c.core.listNamespace()).items.some((n) => n.metadata?.name === name),
      30_000,
    );
  });

  it('completes a rollout restart through the real Deployment controller and kwok pods', async () => {
    const name = await ns('restart');
    const labels = { app: 'web' };
    await c.apps.createNamespacedDeployment({
      namespace: name,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: { containers: [{ name: 'web', image: 'web:1' }] } },
        },
      },
    });
    await until(
      'available',
      async () => deploymentDone(await c.apps.readNamespacedDeployment({ name: 'web', namespace: name })),
      30_000,
    );
    const before = (await c.core.listNamespacedPod({ namespace: name })).items.map((p) => p.metadata?.name);
    await c.apps.patchNamespacedDeployment(
      {
        name: 'web',
        namespace: name,
        body: {
          spec: {
            template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    await until(
      'restarted',
      async () => {
        const d = await c.apps.readNamespacedDeployment({ name: 'web', namespace: name });
        const pods = (await c.core.listNamespacedPod({ namespace: name })).items.filter(
          (p) => !p.metadata?.deletionTimestamp,
        );
        return deploymentDone(d) && pods.length === 2 && pods.every((p) => !before.includes(p.metadata?.name));
      },
      30_000,
    );
    // The audit log saw one restart by the admin user.
    expect(kd.counters().restarts[`${name}/Deployment/web`]).toBe(1);
  });

  it('does not replace the pods of an OnDelete StatefulSet until they are deleted', async () => {
    const name = await ns('ondelete');
    const labels = { app: 'db' };
    const sts = {
      metadata: { name: 'db' },
      spec: {
        replicas: 1,
        serviceName: 'db',
        selector: { matchLabels: labels },
        updateStrategy: { type: 'OnDelete' },
        template: { metadata: { labels }, spec: { containers: [{ name: 'db', image: 'db:1' }] } },
      },
    };
    await c.apps.createNamespacedStatefulSet({ namespace: name, body: sts });
    await until(
      'ready',
      async () => (await c.apps.readNamespacedStatefulSet({ name: 'db', namespace: name })).status?.readyReplicas === 1,
      30_000,
    );
    await c.apps.patchNamespacedStatefulSet(
      {
        name: 'db',
        namespace: name,
        body: { spec: { template: { spec: { containers: [{ name: 'db', image: 'db:2' }] } } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    const after = await until('new revision observed', async () => {
      const s = await c.apps.readNamespacedStatefulSet({ name: 'db', namespace: name });
      return s.status?.observedGeneration === s.metadata?.generation &&
        s.status?.updateRevision !== s.status?.currentRevision
        ? s
        : undefined;
    });
    await new Promise((r) => setTimeout(r, 1500));
    const pod = await c.core.readNamespacedPod({ name: 'db-0', namespace: name });
    // Still the old revision: OnDelete never rolls by itself (kubectl rollout status does not wait for it).
    expect(pod.metadata?.labels?.['controller-revision-hash']).toBe(after.status?.currentRevision);
    expect(pod.spec?.containers[0].image).toBe('db:1');
    await c.core.deleteNamespacedPod({ name: 'db-0', namespace: name });
    await until(
      'recreated on the new revision',
      async () => {
        const p = await c.core.readNamespacedPod({ name: 'db-0', namespace: name }).catch(() => undefined);
        return (
          p?.spec?.containers[0].image === 'db:2' &&
          p.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')
        );
      },
      30_000,
    );
  });

  it('holds the new pods of a stalled rollout NotReady, and releases them on clear', async () => {
    const name = await ns('stalled');
    const labels = { app: 'api' };
    await c.apps.createNamespacedDeployment({
      namespace: name,
      body: {
        metadata: { name: 'api' },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: { containers: [{ name: 'a', image: 'a:1' }] } },
        },
      },
    });
    await until(
      'available',
      async () => deploymentDone(await c.apps.readNamespacedDeployment({ name: 'api', namespace: name })),
      30_000,
    );
    kd.faults.stallRollout(name, 'Deployment', 'api');
    await c.apps.patchNamespacedDeployment(
      { name: 'api', namespace: name, body: { spec: { template: { metadata: { annotations: { x: '1' } } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    await new Promise((r) => setTimeout(r, 2000));
    const d = await c.apps.readNamespacedDeployment({ name: 'api', namespace: name });
    expect(deploymentDone(d)).toBe(false);
    expect(d.status?.unavailableReplicas ?? 0).toBeGreaterThan(0);
    await kd.faults.clear();
    await until(
      'done after clear',
      async () => deploymentDone(await c.apps.readNamespacedDeployment({ name: 'api', namespace: name })),
      30_000,
    );
  });

  it('refuses writes through a validating webhook while the fault is on', async () => {
    const name = await ns('webhook');
    await kd.faults.rejectWrites('configmaps', 'lab: admission webhook denies configmaps');
    const e = await c.core
      .createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'x' } } })
      .catch((err: unknown) => err);
    expect(statusOf(e).code).toBe(403);
    expect(statusOf(e).message).toContain('lab: admission webhook denies configmaps');
    await kd.faults.clear();
    await c.core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'x' } } });
  });

  it('refuses connections while the apiserver is down, and serves the same state after it starts again', async () => {
    const name = await ns('restart-apiserver');
    await c.core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'kept' }, data: { k: 'v' } } });
    await kd.faults.apiserverDown();
    const e = await c.core.readNamespace({ name }).catch((err: unknown) => err);
    expect(String((e as Error).message ?? e)).toMatch(/ECONNREFUSED|socket hang up|ECONNRESET/);
    await kd.faults.apiserverUp();
    const cm = await c.core.readNamespacedConfigMap({ name: 'kept', namespace: name });
    expect(cm.data).toEqual({ k: 'v' });
  }, 90_000);
});
