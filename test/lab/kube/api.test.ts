// The double's REST semantics, exercised through the real @kubernetes/client-node 1.4.
import { PatchStrategy, setHeaderOptions, type V1Deployment } from '@kubernetes/client-node';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeDouble, type KubeDouble } from './index.js';
import { clients, deploymentDone, raw, registerServer, statusOf, until } from './test-client.js';

const crdDir = fileURLToPath(new URL('../crds/', import.meta.url));
let kd: KubeDouble;
let c: ReturnType<typeof clients>;

beforeAll(async () => {
  kd = await startKubeDouble({ host: '127.0.0.1', token: 'lab-token', crdDir, readyDelayMs: 150, rolloutStepMs: 40 });
  c = clients(kd);
});
afterAll(async () => {
  await kd?.stop();
});

const deployment = (name: string, replicas = 2): V1Deployment => ({
  metadata: { name, labels: { app: name } },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: {
        containers: [
          { name: 'main', image: 'nginx:1.27', env: [{ name: 'A', value: '1' }] },
          { name: 'side', image: 'busybox' },
        ],
      },
    },
  },
});

describe('auth and discovery', () => {
  it('refuses requests without the bearer token with a 401 Status', async () => {
    const r = await raw(kd, 'GET', '/api/v1/namespaces');
    expect(r.status).toBe(401);
    expect(r.json()).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 });
    const bad = clients(kd, 'wrong-token');
    await expect(bad.core.listNamespace()).rejects.toMatchObject({ code: 401 });
  });

  it('serves /version publicly and discovery documents with the CRD groups', async () => {
    expect((await raw(kd, 'GET', '/version')).json()).toMatchObject({
      major: '1',
      minor: '31',
      gitVersion: 'v1.31.4+k3s1',
    });
    const groups = (await raw(kd, 'GET', '/apis', { token: kd.token })).json();
    expect(groups.groups.map((g: { name: string }) => g.name)).toEqual(
      expect.arrayContaining(['apps', 'batch', 'helm.cattle.io', 'velero.io']),
    );
    const velero = await c.custom.getAPIResources({ group: 'velero.io', version: 'v1' });
    expect(velero.resources.map((r) => r.name)).toEqual(
      expect.arrayContaining([
        'backups',
        'restores',
        'schedules',
        'backupstoragelocations',
        'downloadrequests',
        'deletebackuprequests',
      ]),
    );
    const core = (await raw(kd, 'GET', '/api/v1', { token: kd.token })).json();
    expect(core.resources.find((r: { name: string }) => r.name === 'pods').verbs).toEqual(['get', 'list', 'watch']);
  });
});

describe('k3s registration', () => {
  it('registers a server node NotReady, then Ready, and seeds kube-system with CoreDNS', async () => {
    const r = await registerServer(kd, 'control-plane');
    expect(r.status).toBe(200);
    expect(r.json().agentToken).toMatch(/^K10[0-9a-f]{64}::node:/);
    const first = await c.core.readNode({ name: 'control-plane' });
    expect(first.status?.conditions?.find((x) => x.type === 'Ready')?.status).toBe('False');
    expect(first.metadata?.labels).toMatchObject({
      'kubernetes.io/hostname': 'control-plane',
      'node-role.kubernetes.io/control-plane': 'true',
    });
    expect(first.status?.nodeInfo?.kubeletVersion).toBe('v1.31.4+k3s1');
    expect(JSON.parse(first.metadata?.annotations?.['k3s.io/node-args'] ?? '[]')).toEqual([
      'server',
      '--cluster-init',
      '--disable',
      'traefik',
      '--node-ip',
      '127.0.0.2',
    ]);
    expect(first.status?.addresses).toContainEqual({ type: 'InternalIP', address: '127.0.0.2' });
    await until('node Ready', async () =>
      (await c.core.listNode()).items.every((n) =>
        n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
      ),
    );
    const cm = await c.core.readNamespacedConfigMap({ name: 'coredns', namespace: 'kube-system' });
    expect(cm.data?.Corefile).toContain('forward . /etc/resolv.conf');
    expect(
      (await c.apps.readNamespacedDeployment({ name: 'coredns', namespace: 'kube-system' })).status?.readyReplicas,
    ).toBe(1);
  });

  it('refuses a wrong token, a second cluster token and an agent newer than the server', async () => {
    const agentToken = (await registerServer(kd, 'control-plane')).json().agentToken;
    const other = await registerServer(kd, 'other-server', { token: 'different' });
    expect(other.status).toBe(401);
    const wrong = await raw(kd, 'POST', '/lab/k3s/agent', {
      token: kd.token,
      body: { node: 'worker-1', version: 'v1.31.4+k3s1', serverUrl: kd.url, token: 'nope', nodeIp: '127.0.0.3' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.json().message).toBe('token CA hash does not match the Cluster CA certificate hash');
    const newer = await raw(kd, 'POST', '/lab/k3s/agent', {
      token: kd.token,
      body: { node: 'worker-1', version: 'v1.32.0+k3s1', serverUrl: kd.url, token: agentToken, nodeIp: '127.0.0.3' },
    });
    expect(newer.status).toBe(400);
    const ok = await raw(kd, 'POST', '/lab/k3s/agent', {
      token: kd.token,
      body: { node: 'worker-1', version: 'v1.31.4+k3s1', serverUrl: kd.url, token: agentToken, nodeIp: '127.0.0.3' },
    });
    expect(ok.status).toBe(200);
    const w = await c.core.readNode({ name: 'worker-1' });
    expect(w.metadata?.labels?.['node-role.kubernetes.io/control-plane']).toBeUndefined();
    expect((await raw(kd, 'POST', '/lab/k3s/agent', { body: {} })).status).toBe(401);
    expect((await raw(kd, 'DELETE', '/lab/k3s/nodes/worker-1', { token: kd.token })).status).toBe(200);
    await expect(c.core.readNode({ name: 'worker-1' })).rejects.toMatchObject({ code: 404 });
  });
});

describe('objects', () => {
  it('creates Secrets (stringData folded into base64 data) and reports AlreadyExists / missing namespace', async () => {
    const s = await c.core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'db', labels: { tier: 'data', team: 'a' } }, stringData: { password: 'hunter2' } },
    });
    expect(s.data).toEqual({ password: Buffer.from('hunter2').toString('base64') });
    expect(s.type).toBe('Opaque');
    expect(s.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number(s.metadata?.resourceVersion)).toBeGreaterThan(0);
    const dup = await c.core
      .createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'db' } } })
      .catch((e) => e);
    expect(dup.code).toBe(409);
    expect(statusOf(dup)).toMatchObject({
      reason: 'AlreadyExists',
      message: 'secrets "db" already exists',
      details: { name: 'db', kind: 'secrets' },
    });
    const missing = await c.core
      .createNamespacedSecret({ namespace: 'nowhere', body: { metadata: { name: 'x' } } })
      .catch((e) => e);
    expect(missing.code).toBe(404);
    expect(statusOf(missing)).toMatchObject({ reason: 'NotFound', message: 'namespaces "nowhere" not found' });
    const bad = await c.core
      .createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'Bad_Name' } } })
      .catch((e) => e);
    expect(bad.code).toBe(422);
    expect(statusOf(bad).details.causes[0].field).toBe('metadata.name');
  });

  it('filters lists by label and field selectors', async () => {
    await c.core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'api', labels: { tier: 'web', team: 'b' } } },
    });
    await c.core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'cache', labels: { tier: 'data' } } },
    });
    const names = async (labelSelector?: string, fieldSelector?: string) =>
      (await c.core.listNamespacedSecret({ namespace: 'default', labelSelector, fieldSelector })).items.map(
        (i) => i.metadata?.name,
      );
    expect(await names('tier=data')).toEqual(['cache', 'db']);
    expect(await names('tier=data,team!=a')).toEqual(['cache']);
    expect(await names('tier in (web,data),team')).toEqual(['api', 'db']);
    expect(await names('!team')).toEqual(['cache']);
    expect(await names(undefined, 'metadata.name=api')).toEqual(['api']);
  });

  it('rolls a Deployment out after a strategic-merge patch of its template annotation', async () => {
    await c.apps.createNamespacedDeployment({ namespace: 'default', body: deployment('web') });
    await until('initial rollout', async () =>
      deploymentDone(await c.apps.readNamespacedDeployment({ name: 'web', namespace: 'default' })),
    );
    const patched = await c.apps.patchNamespacedDeployment(
      {
        name: 'web',
        namespace: 'default',
        body: {
          spec: {
            template: {
              metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': '2025-01-01T00:00:00Z' } },
              spec: { containers: [{ name: 'main', env: [{ name: 'B', value: '2' }] }] },
            },
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(patched.metadata?.generation).toBe(2);
    expect(deploymentDone(patched)).toBe(false);
    // Lists merge by key: the side container stays, env gains B and keeps A.
    expect(patched.spec?.template.spec?.containers.map((x) => x.name)).toEqual(['main', 'side']);
    expect(patched.spec?.template.spec?.containers[0].env).toEqual([
      { name: 'A', value: '1' },
      { name: 'B', value: '2' },
    ]);
    const seen = new Set<string>();
    const done = await until(
      'rollout',
      async () => {
        const d = await c.apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
        seen.add(`${d.status?.updatedReplicas}/${d.status?.replicas}`);
        return deploymentDone(d) && d;
      },
      10_000,
      10,
    );
    expect(done.status).toMatchObject({
      observedGeneration: 2,
      replicas: 2,
      updatedReplicas: 2,
      availableReplicas: 2,
      readyReplicas: 2,
    });
    expect(seen.size).toBeGreaterThan(1);
    expect(kd.counters().restarts['default/Deployment/web']).toBe(1);
    expect(kd.counters().writes['patch:Deployment']).toBe(1);
    const pods = await c.core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
    expect(pods.items).toHaveLength(2);
    expect(pods.items.every((p) => p.status?.phase === 'Running')).toBe(true);
  });

  it('answers 415 to a patch with a content type the server does not accept', async () => {
    const e = await c.apps
      .patchNamespacedDeployment(
        { name: 'web', namespace: 'default', body: { metadata: { labels: { x: 'y' } } } },
        setHeaderOptions('Content-Type', 'application/json'),
      )
      .catch((x) => x);
    expect(e.code).toBe(415);
    expect(statusOf(e).reason).toBe('UnsupportedMediaType');
    // Custom resources have no strategic merge, as on a real apiserver.
    const r = await raw(kd, 'PATCH', '/apis/velero.io/v1/namespaces/default/backups/x', {
      token: kd.token,
      body: {},
      contentType: 'application/strategic-merge-patch+json',
    });
    expect(r.status).toBe(415);
  });

  it('answers 409 Conflict to a replace with a stale resourceVersion', async () => {
    const cur = await c.core.readNamespacedSecret({ name: 'db', namespace: 'default' });
    const updated = await c.core.replaceNamespacedSecret({
      name: 'db',
      namespace: 'default',
      body: { ...cur, stringData: { password: 'new' } },
    });
    expect(updated.metadata?.resourceVersion).not.toBe(cur.metadata?.resourceVersion);
    const stale = await c.core.replaceNamespacedSecret({ name: 'db', namespace: 'default', body: cur }).catch((e) => e);
    expect(stale.code).toBe(409);
    expect(statusOf(stale)).toMatchObject({
      reason: 'Conflict',
      message: expect.stringContaining('the object has been modified'),
    });
  });

  it('applies merge, JSON and server-side-apply patches', async () => {
    const merged = await c.core.patchNamespacedSecret(
      { name: 'db', namespace: 'default', body: { metadata: { labels: { team: null, extra: 'y' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(merged.metadata?.labels).toEqual({ tier: 'data', extra: 'y' });
    const jp = await c.core.patchNamespacedSecret(
      { name: 'db', namespace: 'default', body: [{ op: 'add', path: '/metadata/annotations', value: { a: 'b' } }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    expect(jp.metadata?.annotations).toEqual({ a: 'b' });
    const failedTest = await c.core
      .patchNamespacedSecret(
        { name: 'db', namespace: 'default', body: [{ op: 'test', path: '/metadata/annotations/a', value: 'zzz' }] },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )
      .catch((e) => e);
    expect(failedTest.code).toBe(422);
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied' }, data: { k: 'v1' } };
    const noManager = await c.core
      .patchNamespacedConfigMap(
        { name: 'applied', namespace: 'default', body },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      )
      .catch((e) => e);
    expect(noManager.code).toBe(422);
    const created = await c.core.patchNamespacedConfigMap(
      { name: 'applied', namespace: 'default', body, fieldManager: 'pedro-ops' },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    expect(created.data).toEqual({ k: 'v1' });
    const again = await c.core.patchNamespacedConfigMap(
      {
        name: 'applied',
        namespace: 'default',
        body: { ...body, data: { k: 'v2' } },
        fieldManager: 'pedro-ops',
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    expect(again.data).toEqual({ k: 'v2' });
    expect(again.metadata?.uid).toBe(created.metadata?.uid);
    // A write that changes nothing keeps the resourceVersion.
    const same = await c.core.patchNamespacedConfigMap(
      { name: 'applied', namespace: 'default', body: { ...body, data: { k: 'v2' } }, fieldManager: 'pedro-ops' },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    expect(same.metadata?.resourceVersion).toBe(again.metadata?.resourceVersion);
  });

  it('terminates a namespace: Terminating, contents deleted, then gone', async () => {
    await c.core.createNamespace({ body: { metadata: { name: 'scratch' } } });
    await c.core.createNamespacedConfigMap({
      namespace: 'scratch',
      body: { metadata: { name: 'cm' }, data: { a: '1' } },
    });
    const ns = (await c.core.deleteNamespace({ name: 'scratch' })) as unknown as { status?: { phase?: string } };
    expect(ns.status?.phase).toBe('Terminating');
    const refused = await c.core
      .createNamespacedConfigMap({ namespace: 'scratch', body: { metadata: { name: 'late' } } })
      .catch((e) => e);
    expect(refused.code).toBe(403);
    await until('namespace gone', async () =>
      (await c.core.listNamespace()).items.every((n) => n.metadata?.name !== 'scratch'),
    );
    expect((await c.core.listNamespacedConfigMap({ namespace: 'scratch' })).items).toEqual([]);
  });

  it('streams watch events for a collection', async () => {
    const list = await c.core.listNamespacedConfigMap({ namespace: 'default' });
    const watch = raw(
      kd,
      'GET',
      `/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion=${list.metadata?.resourceVersion}`,
      { token: kd.token },
    );
    await new Promise((r) => setTimeout(r, 100));
    await c.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'watched' } } });
    const events = (await watch).body
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'ADDED',
        object: expect.objectContaining({ metadata: expect.objectContaining({ name: 'watched' }) }),
      }),
    );
  });
});
