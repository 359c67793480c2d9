// The lab's controllers on the real apiserver: helm-controller/klipper-helm (Jobs, releases,
// failure policies, uninstall), OpenBAO's readiness probe, and Velero (backup, restore, downloads,
// pod volumes and CSI VolumeSnapshots).
import { gunzipSync } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomInt } from 'node:crypto';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOpenBaoDouble, type OpenBaoDouble } from '../openbao.js';
import {
  decodeRelease,
  expectedInstallJob,
  helmChartDiff,
  installJobDiff,
  manifestObjects,
} from '../../../activities/components/helmchart.js';
import type { LockedObject } from '../../../activities/components/chart-lock.js';
import { startKubeLab, type KubeLab } from './index.js';
import { clients, raw, registerServer, until } from './test-client.js';

let kd: KubeLab;
let bao: OpenBaoDouble;
let c: ReturnType<typeof clients>;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lab-controllers-'));
  const host = `127.${randomInt(1, 255)}.${randomInt(0, 256)}.1`;
  bao = await startOpenBaoDouble({ host });
  kd = await startKubeLab({
    host,
    dir,
    openbaoUrl: bao.url,
    onOpenBaoPodStart: () => bao.faults.seal(),
    jobDelayMs: 200,
    veleroStepMs: 50,
  });
  c = clients(kd);
  expect((await registerServer(kd, 'pedro-cp')).status).toBe(200);
  kd.setComponentWorkloads({
    web: { namespace: 'web', workloads: [{ kind: 'Deployment', name: 'web', replicas: 2 }] },
    broken: { namespace: 'broken', workloads: [{ kind: 'Deployment', name: 'broken' }] },
    openbao: { namespace: 'openbao-system', workloads: [{ kind: 'StatefulSet', name: 'openbao' }] },
    // As the chart lock records renders (activities/components/chart-lock.ts lockedObject)
    pinned: { namespace: 'pinned', workloads: [], render: { objects: PINNED_RENDER } },
    unrenderable: {
      namespace: 'unrenderable',
      workloads: [],
      render: {
        error:
          'Error: execution error at (loki/templates/validate.yaml:40:4): You must provide a schema_config for Loki',
      },
    },
  });
  await until(
    'node Ready',
    async () =>
      (await c.core.listNode()).items.some((n) =>
        n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
      ),
    60_000,
  );
}, 180_000);
afterAll(async () => {
  await kd?.stop();
  await bao?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const PINNED_LABELS = { 'app.kubernetes.io/name': 'pinned', 'app.kubernetes.io/instance': 'pinned' };
const PINNED_RENDER: LockedObject[] = [
  {
    apiVersion: 'v1',
    kind: 'Service',
    name: 'pinned-web',
    namespace: 'pinned',
    type: 'ClusterIP',
    selector: PINNED_LABELS,
    ports: [{ name: 'http', port: 80, targetPort: 'http' }],
  },
  { apiVersion: 'v1', kind: 'ConfigMap', name: 'pinned-config', namespace: 'pinned' },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    name: 'pinned-web',
    namespace: 'pinned',
    replicas: 1,
    selector: PINNED_LABELS,
    podLabels: { ...PINNED_LABELS, tier: 'web' },
    nodeSelector: { 'kubernetes.io/hostname': 'pedro-cp' },
    containers: [{ name: 'web', image: 'registry.example/web:1.0.0', ports: [{ containerPort: 8080, name: 'http' }] }],
    updateStrategy: 'Recreate',
  },
  {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    name: 'pinned-web',
    namespace: 'pinned',
    minAvailable: 1,
    selector: PINNED_LABELS,
  },
  {
    apiVersion: 'batch/v1',
    kind: 'Job',
    name: 'pinned-migrate',
    namespace: 'pinned',
    hook: { events: ['pre-install'] },
    containers: [{ name: 'migrate', image: 'registry.example/web:1.0.0' }],
  },
];

const chart = (name: string, spec: object) => ({
  apiVersion: 'helm.cattle.io/v1',
  kind: 'HelmChart',
  metadata: { name, namespace: 'kube-system' },
  spec: { targetNamespace: name, createNamespace: true, version: '1.0.0', backOffLimit: 1, ...spec },
});
const createChart = (name: string, spec: object) =>
  c.custom.createNamespacedCustomObject({
    group: 'helm.cattle.io',
    version: 'v1',
    namespace: 'kube-system',
    plural: 'helmcharts',
    body: chart(name, spec),
  });
/** Waits for Job helm-install-<name> to fail, and returns it. */
const jobFailed = (name: string, ms: number) =>
  until('Job Failed', async () => (cond(await job(name), 'Failed') ? job(name) : undefined), ms);
const readChart = (name: string) =>
  c.custom.getNamespacedCustomObject({
    group: 'helm.cattle.io',
    version: 'v1',
    namespace: 'kube-system',
    plural: 'helmcharts',
    name,
  });
const job = (name: string) =>
  c.batch.readNamespacedJob({ name: `helm-install-${name}`, namespace: 'kube-system' }).catch(() => undefined);
const cond = (o: any, type: string) => o?.status?.conditions?.find((x: any) => x.type === type && x.status === 'True');
const releases = async (ns: string, name: string) =>
  (await c.core.listNamespacedSecret({ namespace: ns, labelSelector: `owner=helm,name=${name}` })).items
    .map((s) => ({ v: Number(s.metadata?.labels?.version), status: s.metadata?.labels?.status }))
    .sort((a, b) => a.v - b.v);

/** Helm's secret driver: data.release = base64(gzip(JSON)) (helm.sh/helm/v3 pkg/storage/driver/util.go). */
const releaseDescription = async (ns: string, name: string, v: number) => {
  const s = await c.core.readNamespacedSecret({ name: `sh.helm.release.v1.${name}.v${v}`, namespace: ns });
  const inner = Buffer.from(s.data!.release, 'base64').toString('utf8');
  return JSON.parse(gunzipSync(Buffer.from(inner, 'base64')).toString('utf8')).info.description as string;
};

describe('helm-controller and klipper-helm', () => {
  it('installs through Job helm-install-<name>, records a deployed release and creates the workloads', async () => {
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: chart('web', { chart: 'web' }),
    });
    const done = await until(
      'Job Complete',
      async () => (cond(await job('web'), 'Complete') ? job('web') : undefined),
      30_000,
    );
    expect(done.spec?.template.spec?.serviceAccountName).toBe('helm-web');
    expect(done.spec?.template.metadata?.annotations?.['helmcharts.helm.cattle.io/configHash']).toMatch(/^SHA256=/);
    const hc = await readChart('web');
    expect(hc.metadata.finalizers).toContain('wrangler.cattle.io/on-helm-chart-remove');
    expect(hc.status.jobName).toBe('helm-install-web');
    expect(hc.status.conditions).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'JobCreated', status: 'True' })]),
    );
    await until('release deployed', async () => (await releases('web', 'web')).at(-1)?.status === 'deployed', 10_000);
    await until(
      'web available',
      async () =>
        (await c.apps.readNamespacedDeployment({ name: 'web', namespace: 'web' }).catch(() => undefined))?.status
          ?.availableReplicas === 2,
      30_000,
    );
  });

  it('is the real helm-controller: it claims a HelmChart with a typed Update, so `600s` comes back as `10m0s`', async () => {
    // helm-controller v0.16.5 pkg/controllers/chart/chart.go shouldManage(): a chart without the
    // managed-by annotation is claimed by Update of the whole object; spec.timeout is a
    // *metav1.Duration and marshals with Duration.String().
    const written = chart('claimed', { chart: 'claimed', timeout: '600s', valuesContent: 'replicas: 1\n' });
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: written,
    });
    const done = await until(
      'Job Complete',
      async () => (cond(await job('claimed'), 'Complete') ? job('claimed') : undefined),
      30_000,
    );
    const hc = await readChart('claimed');
    expect(hc.metadata.annotations['helmcharts.cattle.io/managed-by']).toBe('helm-controller');
    expect(hc.spec.timeout).toBe('10m0s');
    expect(helmChartDiff(written, hc)).toEqual([]); // compared by value
    // The Job is the one the orchestrator predicts from the spec it wrote (env, args, backoffLimit, configHash).
    expect(installJobDiff(done as never, expectedInstallJob(written))).toEqual([]);
    expect(
      installJobDiff(done as never, expectedInstallJob({ ...written, spec: { ...written.spec, version: '2.0.0' } })),
    ).toEqual(['env VERSION', 'args']);
    expect(
      installJobDiff(
        done as never,
        expectedInstallJob({ ...written, spec: { ...written.spec, valuesContent: 'replicas: 2\n' } }),
      ),
    ).toEqual(['configHash']);
    expect(
      installJobDiff(done as never, expectedInstallJob({ ...written, spec: { ...written.spec, timeout: '10m' } })),
    ).toEqual([]);
  });

  it('replaces the Job when the spec changes, and upgrades the release', async () => {
    const uid = (await job('web'))!.metadata?.uid;
    await c.custom
      .patchNamespacedCustomObject(
        {
          group: 'helm.cattle.io',
          version: 'v1',
          namespace: 'kube-system',
          plural: 'helmcharts',
          name: 'web',
          body: { spec: { version: '1.1.0' } },
        },
        { headers: { 'Content-Type': 'application/merge-patch+json' } } as never,
      )
      .catch(async () =>
        raw(kd, 'PATCH', '/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/web', {
          token: kd.token,
          body: { spec: { version: '1.1.0' } },
          contentType: 'application/merge-patch+json',
        }),
      );
    await until(
      'new Job Complete',
      async () => {
        const j = await job('web');
        return j && j.metadata?.uid !== uid && cond(j, 'Complete');
      },
      30_000,
    );
    await until(
      'revision 2 deployed, 1 superseded',
      async () => {
        const r = await releases('web', 'web');
        return r.length === 2 && r[0].status === 'superseded' && r[1].status === 'deployed';
      },
      10_000,
    );
  });

  it('fails the Job (not the HelmChart) when helm fails; with failurePolicy abort a rerun waits for the operator', async () => {
    kd.faults.failHelmChart('broken', 'chart broken-9.9.9 not found');
    await createChart('broken', { chart: 'broken', failurePolicy: 'abort' });
    const failed = await jobFailed('broken', 30_000);
    expect(cond(failed, 'Failed').reason).toBe('BackoffLimitExceeded');
    // helm-controller v0.16 sets Failed only when it cannot generate the Job.
    const hc = await readChart('broken');
    expect(hc.status.conditions.find((x: any) => x.type === 'Failed').status).toBe('False');
    expect(await releases('broken', 'broken')).toEqual([{ v: 1, status: 'failed' }]);
    // The Job controller deleted the failed pod; helm keeps the error in the release (info.description).
    expect(await releaseDescription('broken', 'broken', 1)).toBe(
      'Error: INSTALLATION FAILED: chart broken-9.9.9 not found',
    );

    // The fault is gone, the failed Job deleted: helm-controller applies it again, klipper-helm refuses.
    await kd.faults.clear();
    const oldUid = failed.metadata?.uid;
    await c.batch.deleteNamespacedJob({
      name: 'helm-install-broken',
      namespace: 'kube-system',
      propagationPolicy: 'Background',
    });
    const again = await until(
      'rerun Failed',
      async () => {
        const j = await job('broken');
        return j && j.metadata?.uid !== oldUid && cond(j, 'Failed') ? j : undefined;
      },
      30_000,
    );
    expect(again.metadata?.uid).not.toBe(oldUid);
    // klipper-helm exited before touching the release: still revision 1, failed.
    expect(await releases('broken', 'broken')).toEqual([{ v: 1, status: 'failed' }]);

    // reinstall: uninstall the failed release, install again.
    await raw(kd, 'PATCH', '/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/broken', {
      token: kd.token,
      body: { spec: { failurePolicy: 'reinstall' } },
      contentType: 'application/merge-patch+json',
    });
    await until('reinstalled', async () => cond(await job('broken'), 'Complete'), 30_000);
    expect(
      await until(
        'deployed',
        async () => {
          const r = await releases('broken', 'broken');
          return r.length === 1 && r[0].status === 'deployed' ? r : undefined;
        },
        10_000,
      ),
    ).toEqual([{ v: 1, status: 'deployed' }]);
  });

  it("applies the chart lock's render: real names, nodeSelector, strategy and PDB; the manifest lists what it applied", async () => {
    await createChart('pinned', { chart: 'pinned' });
    await until(
      'release deployed',
      async () => (await releases('pinned', 'pinned')).at(-1)?.status === 'deployed',
      30_000,
    );
    const d = await c.apps.readNamespacedDeployment({ name: 'pinned-web', namespace: 'pinned' });
    expect(d.spec?.template.spec?.nodeSelector).toEqual({ 'kubernetes.io/hostname': 'pedro-cp' });
    expect(d.spec?.strategy?.type).toBe('Recreate');
    expect(d.spec?.template.metadata?.labels).toEqual({ ...PINNED_LABELS, tier: 'web' });
    expect(d.spec?.template.spec?.containers[0].image).toBe('registry.example/web:1.0.0');
    expect(d.metadata?.annotations?.['meta.helm.sh/release-name']).toBe('pinned');
    const pdb = await c.policy.readNamespacedPodDisruptionBudget({ name: 'pinned-web', namespace: 'pinned' });
    expect(pdb.spec?.minAvailable).toBe(1);
    // the real disruption controller counts the pod the real scheduler placed on the pinned node
    await until(
      'PDB counts its pod',
      async () =>
        (await c.policy.readNamespacedPodDisruptionBudget({ name: 'pinned-web', namespace: 'pinned' })).status
          ?.currentHealthy === 1,
      30_000,
    );
    const pods = await c.core.listNamespacedPod({ namespace: 'pinned' });
    expect(pods.items.map((p) => p.spec?.nodeName)).toEqual(['pedro-cp']);
    // hooks and kinds the lab does not play are neither applied nor in the manifest
    expect(await c.batch.readNamespacedJob({ name: 'pinned-migrate', namespace: 'pinned' }).catch(() => 'none')).toBe(
      'none',
    );
    const s = await c.core.readNamespacedSecret({ name: 'sh.helm.release.v1.pinned.v1', namespace: 'pinned' });
    const manifest = decodeRelease(s.data!.release)!.manifest!;
    expect(manifestObjects(manifest, 'pinned').map((o) => `${o.kind}/${o.name}`)).toEqual([
      'Service/pinned-web',
      'Deployment/pinned-web',
      'PodDisruptionBudget/pinned-web',
    ]);
  });

  it('a chart the lock records as not rendering fails its install as Helm does: no release stored', async () => {
    await createChart('unrenderable', { chart: 'unrenderable', failurePolicy: 'abort' });
    const failed = await jobFailed('unrenderable', 60_000);
    expect(cond(failed, 'Failed').reason).toBe('BackoffLimitExceeded');
    // a deployed chart would have a release by now (the install test's Job completes in under a second)
    expect(await releases('unrenderable', 'unrenderable')).toEqual([]);
  });

  it('uninstalls on delete: helm-delete Job, workloads and release gone, finalizer removed', async () => {
    await c.custom.deleteNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      name: 'broken',
    });
    await until('chart gone', async () => !(await readChart('broken').catch(() => undefined)), 30_000);
    expect(await releases('broken', 'broken')).toEqual([]);
    expect(await c.apps.readNamespacedDeployment({ name: 'broken', namespace: 'broken' }).catch(() => 'gone')).toBe(
      'gone',
    );
  });

  it("keeps OpenBAO's pods NotReady while it is sealed (its probe is `bao status`), Ready once unsealed", async () => {
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: {
        ...chart('openbao', { chart: 'openbao', targetNamespace: 'openbao-system' }),
        metadata: { name: 'openbao', namespace: 'kube-system' },
      },
    });
    const sts = await until(
      'statefulset',
      async () =>
        c.apps.readNamespacedStatefulSet({ name: 'openbao', namespace: 'openbao-system' }).catch(() => undefined),
      30_000,
    );
    expect(sts.spec?.updateStrategy?.type).toBe('OnDelete');
    expect(sts.spec?.template.spec?.containers[0].readinessProbe?.exec?.command?.join(' ')).toContain('bao status');
    const running = await until(
      'pod Running',
      async () => {
        const p = await c.core
          .readNamespacedPod({ name: 'openbao-0', namespace: 'openbao-system' })
          .catch(() => undefined);
        return p?.status?.phase === 'Running' ? p : undefined;
      },
      30_000,
    );
    expect(running.status?.conditions?.find((x) => x.type === 'Ready')?.status).toBe('False');
    await new Promise((r) => setTimeout(r, 1000));
    expect(
      (await c.apps.readNamespacedStatefulSet({ name: 'openbao', namespace: 'openbao-system' })).status
        ?.readyReplicas ?? 0,
    ).toBe(0);
    const init = bao.initialize(1, 1);
    bao.unsealAll();
    expect(init.keys).toHaveLength(1);
    await until(
      'Ready after unseal',
      async () =>
        (await c.apps.readNamespacedStatefulSet({ name: 'openbao', namespace: 'openbao-system' })).status
          ?.readyReplicas === 1,
      15_000,
    );
    // A restarted OpenBAO pod comes back sealed, and NotReady.
    await c.core.deleteNamespacedPod({ name: 'openbao-0', namespace: 'openbao-system' });
    await until(
      'recreated, NotReady',
      async () => {
        const p = await c.core
          .readNamespacedPod({ name: 'openbao-0', namespace: 'openbao-system' })
          .catch(() => undefined);
        return (
          p &&
          p.metadata?.uid !== running.metadata?.uid &&
          p.status?.phase === 'Running' &&
          p.status.conditions?.find((x) => x.type === 'Ready')?.status === 'False'
        );
      },
      30_000,
    );
    const status = (await (await fetch(`${bao.url}/v1/sys/seal-status`)).json()) as { sealed: boolean };
    expect(status.sealed).toBe(true);
  });
});

describe('Velero volumes', () => {
  const VNS = 'velero-vols';
  const crd = (plural: string, group = 'velero.io', version = 'v1') => ({ group, version, plural });
  const create = (plural: string, ns: string, body: object, group?: string, version?: string) =>
    c.custom.createNamespacedCustomObject({ ...crd(plural, group, version), namespace: ns, body });
  const get = (plural: string, ns: string, name: string, group?: string, version?: string): Promise<any> =>
    c.custom.getNamespacedCustomObject({ ...crd(plural, group, version), namespace: ns, name });
  const list = async (plural: string, labelSelector: string): Promise<any[]> =>
    (await c.custom.listNamespacedCustomObject({ ...crd(plural), namespace: VNS, labelSelector })).items;
  const finished = (plural: string, name: string) =>
    until(
      `${plural}/${name} terminal`,
      async () => {
        const o = await get(plural, VNS, name);
        return ['Completed', 'PartiallyFailed', 'Failed'].includes(o.status?.phase) ? o : undefined;
      },
      20_000,
    );
  const backup = async (name: string, spec: object) => {
    await create('backups', VNS, { apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name }, spec });
    return finished('backups', name);
  };
  const restore = async (name: string, backupName: string, to: string) => {
    await create('restores', VNS, {
      apiVersion: 'velero.io/v1',
      kind: 'Restore',
      metadata: { name },
      spec: { backupName, includedNamespaces: ['vols-app'], namespaceMapping: { 'vols-app': to } },
    });
    return finished('restores', name);
  };

  beforeAll(async () => {
    for (const ns of [VNS, 'vols-app']) await c.core.createNamespace({ body: { metadata: { name: ns } } });
    await create('backupstoragelocations', VNS, {
      apiVersion: 'velero.io/v1',
      kind: 'BackupStorageLocation',
      metadata: { name: 'default' },
      spec: { provider: 'aws', objectStorage: { bucket: 'velero' }, config: { s3Url: 'http://s3.invalid' } },
    });
    // A Longhorn claim: the PV controller asks the provisioner (controllers/provisioner.ts), then binds.
    await c.core.createNamespacedPersistentVolumeClaim({
      namespace: 'vols-app',
      body: {
        metadata: { name: 'data' },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'longhorn',
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    await until(
      'PVC Bound',
      async () => {
        const p = await c.core.readNamespacedPersistentVolumeClaim({ name: 'data', namespace: 'vols-app' });
        return p.status?.phase === 'Bound';
      },
      30_000,
    );
    await c.core.createNamespacedConfigMap({ namespace: 'vols-app', body: { metadata: { name: 'cfg' } } });
    await c.core.createNamespacedPod({
      namespace: 'vols-app',
      body: {
        metadata: { name: 'db' },
        spec: {
          containers: [{ name: 'db', image: 'postgres:16', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
          volumes: [
            { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
            { name: 'cfg', configMap: { name: 'cfg' } },
          ],
        },
      },
    });
    await until(
      'pod Running',
      async () => {
        const p = await c.core.readNamespacedPod({ name: 'db', namespace: 'vols-app' });
        return p.status?.phase === 'Running';
      },
      30_000,
    );
    // A CSI snapshot of the claim, bound to its content as the snapshot-controller leaves it.
    await create(
      'volumesnapshots',
      'vols-app',
      {
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshot',
        metadata: { name: 'data-snap' },
        spec: { source: { persistentVolumeClaimName: 'data' }, volumeSnapshotClassName: 'longhorn-snapshot' },
      },
      'snapshot.storage.k8s.io',
      'v1',
    );
    await c.custom.patchNamespacedCustomObjectStatus(
      {
        ...crd('volumesnapshots', 'snapshot.storage.k8s.io', 'v1'),
        namespace: 'vols-app',
        name: 'data-snap',
        body: { status: { boundVolumeSnapshotContentName: 'snapcontent-1', readyToUse: true } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until(
      'BSL Available',
      async () => (await get('backupstoragelocations', VNS, 'default')).status?.phase === 'Available',
    );
  }, 120_000);

  it('copies pod volumes only with defaultVolumesToFsBackup, and restores them with PodVolumeRestores', async () => {
    const plain = await backup('no-fs', { includedNamespaces: ['vols-app'] });
    expect(plain.status.phase).toBe('Completed');
    expect(await list('podvolumebackups', 'velero.io/backup-name=no-fs')).toEqual([]);

    const fs = await backup('with-fs', { includedNamespaces: ['vols-app'], defaultVolumesToFsBackup: true });
    const pvc = await c.core.readNamespacedPersistentVolumeClaim({ name: 'data', namespace: 'vols-app' });
    const pod = await c.core.readNamespacedPod({ name: 'db', namespace: 'vols-app' });
    const pvbs = await list('podvolumebackups', 'velero.io/backup-name=with-fs');
    // The ConfigMap and service-account token volumes are not copied (GetVolumesByPod).
    expect(pvbs).toHaveLength(1);
    expect(pvbs[0].metadata.name.startsWith('with-fs-')).toBe(true);
    expect(pvbs[0].metadata.labels).toMatchObject({
      'velero.io/backup-uid': fs.metadata.uid,
      'velero.io/pvc-uid': pvc.metadata?.uid,
    });
    expect(pvbs[0].metadata.annotations['velero.io/pvc-name']).toBe('data');
    expect(pvbs[0].spec).toMatchObject({
      volume: 'data',
      uploaderType: 'kopia',
      pod: { name: 'db', uid: pod.metadata?.uid },
    });
    expect(pvbs[0].status).toMatchObject({ phase: 'Completed', snapshotID: expect.stringMatching(/^[0-9a-f]{32}$/) });

    const r = await restore('vols-r1', 'with-fs', 'vols-copy');
    expect(r.status.phase).toBe('Completed');
    const restoredPod = await c.core.readNamespacedPod({ name: 'db', namespace: 'vols-copy' });
    const pvrs = await list('podvolumerestores', 'velero.io/restore-name=vols-r1');
    expect(pvrs).toHaveLength(1);
    expect(pvrs[0].metadata.labels).toMatchObject({
      'velero.io/restore-uid': r.metadata.uid,
      'velero.io/pod-uid': restoredPod.metadata?.uid,
    });
    expect(pvrs[0].spec).toMatchObject({
      volume: 'data',
      sourceNamespace: 'vols-app',
      snapshotID: pvbs[0].status.snapshotID,
      pod: { namespace: 'vols-copy', name: 'db' },
    });
    expect(pvrs[0].status.phase).toBe('Completed');
    // The restored claim is a new volume (the PodVolumeRestore filled it), not the source's PV.
    const copy = await until(
      'restored PVC Bound',
      async () => {
        const p = await c.core.readNamespacedPersistentVolumeClaim({ name: 'data', namespace: 'vols-copy' });
        return p.status?.phase === 'Bound' ? p : undefined;
      },
      30_000,
    );
    expect(copy.spec?.volumeName).toBe(`pvc-${copy.metadata?.uid}`);

    // Restored without the node-agent's copies, the volume comes back empty: no PodVolumeRestore.
    const empty = await restore('vols-r2', 'no-fs', 'vols-empty');
    expect(empty.status.phase).toBe('Completed');
    expect(await list('podvolumerestores', 'velero.io/restore-name=vols-r2')).toEqual([]);
    // The lab fault: the backup's PodVolumeBackups are not in the cluster; the restore still Completes.
    kd.faults.restoreWithoutVolumeData('with-fs');
    try {
      const lost = await restore('vols-r3', 'with-fs', 'vols-lost');
      expect(lost.status.phase).toBe('Completed');
      expect(await list('podvolumerestores', 'velero.io/restore-name=vols-r3')).toEqual([]);
    } finally {
      await kd.faults.clear();
    }
  }, 120_000);

  it('restores a CSI VolumeSnapshot under sha256(<restore uid>/<name>) (Velero ≥ 1.16)', async () => {
    const r = await get('restores', VNS, 'vols-r1');
    const name = createHash('sha256').update(`${r.metadata.uid}/data-snap`).digest('hex');
    const vs = await get('volumesnapshots', 'vols-copy', name, 'snapshot.storage.k8s.io', 'v1');
    expect(vs.spec.source).toEqual({ volumeSnapshotContentName: name });
    expect(vs.spec.volumeSnapshotClassName).toBeUndefined();
    expect(vs.metadata.annotations['velero.io/csi-vsc-deletion-policy']).toBe('Retain');
    expect(
      await get('volumesnapshots', 'vols-copy', 'data-snap', 'snapshot.storage.k8s.io', 'v1').catch(() => 'renamed'),
    ).toBe('renamed');
  });
});

describe('Velero', () => {
  it('backs up, and restores into a mapped namespace: completed Jobs skipped, ownerReferences stripped', async () => {
    await c.core.createNamespace({ body: { metadata: { name: 'velero' } } });
    await c.core.createNamespace({ body: { metadata: { name: 'app' } } });
    await until(
      'default SA',
      async () => (await c.core.listNamespacedServiceAccount({ namespace: 'app' })).items.length > 0,
    );
    await c.core.createNamespacedConfigMap({ namespace: 'app', body: { metadata: { name: 'cfg' }, data: { a: '1' } } });
    await c.batch.createNamespacedJob({
      namespace: 'app',
      body: {
        metadata: { name: 'once' },
        spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'j', image: 'j:1' }] } } },
      },
    });
    await until(
      'job complete',
      async () => Boolean((await c.batch.readNamespacedJob({ name: 'once', namespace: 'app' })).status?.completionTime),
      30_000,
    );
    await c.custom.createNamespacedCustomObject({
      group: 'velero.io',
      version: 'v1',
      namespace: 'velero',
      plural: 'backupstoragelocations',
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'BackupStorageLocation',
        metadata: { name: 'default' },
        spec: {
          provider: 'aws',
          objectStorage: { bucket: 'velero' },
          config: { s3Url: 'http://seaweedfs-s3.seaweedfs:8333', publicUrl: kd.objectStoreUrl },
        },
      },
    });
    await until(
      'BSL Available',
      async () =>
        (
          await c.custom.getNamespacedCustomObject({
            group: 'velero.io',
            version: 'v1',
            namespace: 'velero',
            plural: 'backupstoragelocations',
            name: 'default',
          })
        ).status?.phase === 'Available',
    );
    await c.custom.createNamespacedCustomObject({
      group: 'velero.io',
      version: 'v1',
      namespace: 'velero',
      plural: 'backups',
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'Backup',
        metadata: { name: 'b1' },
        spec: { includedNamespaces: ['app'] },
      },
    });
    await until(
      'Completed',
      async () =>
        (
          await c.custom.getNamespacedCustomObject({
            group: 'velero.io',
            version: 'v1',
            namespace: 'velero',
            plural: 'backups',
            name: 'b1',
          })
        ).status?.phase === 'Completed',
      15_000,
    );
    await c.custom.createNamespacedCustomObject({
      group: 'velero.io',
      version: 'v1',
      namespace: 'velero',
      plural: 'downloadrequests',
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'DownloadRequest',
        metadata: { name: 'd1' },
        spec: { target: { kind: 'BackupResourceList', name: 'b1' } },
      },
    });
    const url = await until(
      'download URL',
      async () =>
        (
          await c.custom.getNamespacedCustomObject({
            group: 'velero.io',
            version: 'v1',
            namespace: 'velero',
            plural: 'downloadrequests',
            name: 'd1',
          })
        ).status?.downloadURL as string | undefined,
    );
    // Signed for the BSL's publicUrl: the lab's plain-HTTP object store (like SeaweedFS's S3 gateway).
    expect(url.startsWith(`${kd.objectStoreUrl}/velero/backups/b1/`)).toBe(true);
    const list = JSON.parse(gunzipSync(Buffer.from(await (await fetch(url)).arrayBuffer())).toString('utf8'));
    expect(list['batch/v1/Job']).toEqual(['app/once']);
    expect(list['v1/Pod']).toHaveLength(1);

    await c.custom.createNamespacedCustomObject({
      group: 'velero.io',
      version: 'v1',
      namespace: 'velero',
      plural: 'restores',
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'Restore',
        metadata: { name: 'r1' },
        spec: { backupName: 'b1', namespaceMapping: { app: 'drill-app' } },
      },
    });
    await until(
      'restore Completed',
      async () =>
        (
          await c.custom.getNamespacedCustomObject({
            group: 'velero.io',
            version: 'v1',
            namespace: 'velero',
            plural: 'restores',
            name: 'r1',
          })
        ).status?.phase === 'Completed',
      15_000,
    );
    const cm = await c.core.readNamespacedConfigMap({ name: 'cfg', namespace: 'drill-app' });
    expect(cm.metadata?.labels?.['velero.io/restore-name']).toBe('r1');
    // pkg/restore/restore.go isCompleted: the finished Job and its Succeeded pod are skipped.
    expect(await c.batch.readNamespacedJob({ name: 'once', namespace: 'drill-app' }).catch(() => 'skipped')).toBe(
      'skipped',
    );
    expect((await c.core.listNamespacedPod({ namespace: 'drill-app' })).items).toHaveLength(0);
  }, 120_000);

  // Everything below builds on the velero namespace and BSL of the first test.
  const api = (method: string, path: string, body?: unknown, contentType?: string) =>
    raw(kd, method, path, { token: kd.token, body, contentType });
  const V = '/apis/velero.io/v1/namespaces/velero';
  const veleroObject = async (plural: string, name: string) => {
    const r = await api('GET', `${V}/${plural}/${name}`);
    return r.status === 200 ? r.json() : undefined;
  };
  const phaseOf = async (plural: string, name: string, phases: string[], ms = 20_000) =>
    until(
      `${plural}/${name} ${phases.join('|')}`,
      async () => {
        const o = await veleroObject(plural, name);
        return phases.includes(o?.status?.phase) ? o : undefined;
      },
      ms,
    );
  const restore = (name: string, spec: object) =>
    api('POST', `${V}/restores`, { apiVersion: 'velero.io/v1', kind: 'Restore', metadata: { name }, spec });
  const download = async (kind: string, name: string): Promise<{ status: number; body?: any }> => {
    const req = `${name}-${randomInt(1e9)}`;
    await api('POST', `${V}/downloadrequests`, {
      apiVersion: 'velero.io/v1',
      kind: 'DownloadRequest',
      metadata: { name: req },
      spec: { target: { kind, name } },
    });
    const dr = await until(
      'download URL',
      async () => (await veleroObject('downloadrequests', req))?.status?.downloadURL,
    );
    const res = await fetch(dr as string);
    if (res.status !== 200) return { status: res.status };
    return { status: 200, body: JSON.parse(gunzipSync(Buffer.from(await res.arrayBuffer())).toString('utf8')) };
  };

  it('restores production hosts, CronJobs and fixed nodePorts as they were, and records the error in the results', async () => {
    await c.core.createNamespace({ body: { metadata: { name: 'shop' } } });
    await api('POST', '/apis/networking.k8s.io/v1/namespaces/shop/ingresses', {
      metadata: { name: 'web' },
      spec: {
        rules: [
          {
            host: 'shop.soypetetech.local',
            http: {
              paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }],
            },
          },
        ],
      },
    });
    await c.batch.createNamespacedCronJob({
      namespace: 'shop',
      body: {
        metadata: { name: 'nightly' },
        spec: {
          schedule: '0 2 * * *',
          jobTemplate: {
            spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'n', image: 'n:1' }] } } },
          },
        },
      },
    });
    // A fixed nodePort Helm set (its field manager owns spec.ports[].nodePort), and one the apiserver picked.
    const fixed = 30000 + randomInt(2000);
    const svc = (name: string, nodePort?: number) =>
      api(
        'PATCH',
        `/api/v1/namespaces/shop/services/${name}?fieldManager=helm&force=true`,
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name },
          spec: {
            type: 'NodePort',
            selector: { app: name },
            ports: [{ name: 'http', port: 80, protocol: 'TCP', ...(nodePort ? { nodePort } : {}) }],
          },
        },
        'application/apply-patch+yaml',
      );
    expect((await svc('fixed', fixed)).status).toBe(201);
    expect((await svc('auto')).status).toBe(201);
    await api('POST', `${V}/backups`, {
      apiVersion: 'velero.io/v1',
      kind: 'Backup',
      metadata: { name: 'shop-1' },
      spec: { includedNamespaces: ['shop'] },
    });
    await phaseOf('backups', 'shop-1', ['Completed']);

    expect(
      (await restore('shop-plain', { backupName: 'shop-1', namespaceMapping: { shop: 'drill-shop-a' } })).status,
    ).toBe(201);
    const done = await phaseOf('restores', 'shop-plain', ['Completed', 'PartiallyFailed']);
    expect(done.metadata.finalizers).toContain('restores.velero.io/external-resources-finalizer');
    const ing = (await api('GET', '/apis/networking.k8s.io/v1/namespaces/drill-shop-a/ingresses/web')).json();
    expect(ing.spec.rules[0].host).toBe('shop.soypetetech.local');
    expect((await c.batch.readNamespacedCronJob({ name: 'nightly', namespace: 'drill-shop-a' })).spec?.suspend).toBe(
      false,
    );
    // service_action.go: the auto-assigned port is cleared (a new one allocated), the fixed one kept: it collides.
    const auto = await c.core.readNamespacedService({ name: 'auto', namespace: 'drill-shop-a' });
    expect(auto.spec?.ports?.[0].nodePort).toBeGreaterThan(0);
    expect(done.status.phase).toBe('PartiallyFailed');
    expect(done.status.errors).toBe(1);
    const results = await download('RestoreResults', 'shop-plain');
    expect(results.body.errors.namespaces['drill-shop-a']).toEqual([
      expect.stringMatching(new RegExp(`^error restoring services/drill-shop-a/fixed: .*${fixed}.*already allocated`)),
    ]);
    expect(results.body.warnings).toEqual({});
  }, 120_000);

  it('applies resource modifiers matched on the source namespace; a bad ConfigMap fails validation', async () => {
    const cm = (name: string, yaml: string) =>
      api('POST', '/api/v1/namespaces/velero/configmaps', { metadata: { name }, data: { 'rules.yaml': yaml } });
    const fixedPort = (await c.core.readNamespacedService({ name: 'fixed', namespace: 'shop' })).spec!.ports![0]
      .nodePort!;
    await cm(
      'sandbox',
      [
        'version: v1',
        'resourceModifierRules:',
        '- conditions: {groupResource: ingresses.networking.k8s.io, namespaces: [shop], matches: [{path: /spec/rules/0/host, value: shop.soypetetech.local}]}',
        '  patches: [{operation: replace, path: /spec/rules/0/host, value: shop.drill.invalid}]',
        '- conditions: {groupResource: cronjobs.batch, namespaces: [shop]}',
        `  mergePatches: [{patchData: '{"spec": {"suspend": true}}'}]`,
        `- conditions: {groupResource: services, namespaces: [shop], resourceNameRegex: "^fixed$", matches: [{path: /spec/ports/0/nodePort, value: "${fixedPort}"}]}`,
        '  patches: [{operation: remove, path: /spec/ports/0/nodePort}]',
        // Not matched: conditions name the source namespace, never the mapped one.
        '- conditions: {groupResource: "*.batch", namespaces: [drill-shop-b]}',
        `  mergePatches: [{patchData: '{"metadata": {"labels": {"wrong": "namespace"}}}'}]`,
      ].join('\n'),
    );
    expect(
      (
        await restore('shop-sandbox', {
          backupName: 'shop-1',
          namespaceMapping: { shop: 'drill-shop-b' },
          resourceModifier: { kind: 'ConfigMap', name: 'sandbox' },
        })
      ).status,
    ).toBe(201);
    const done = await phaseOf('restores', 'shop-sandbox', ['Completed', 'PartiallyFailed']);
    expect(done.status).toMatchObject({ phase: 'Completed', errors: 0 });
    const ing = (await api('GET', '/apis/networking.k8s.io/v1/namespaces/drill-shop-b/ingresses/web')).json();
    expect(ing.spec.rules[0].host).toBe('shop.drill.invalid');
    const cron = await c.batch.readNamespacedCronJob({ name: 'nightly', namespace: 'drill-shop-b' });
    expect(cron.spec?.suspend).toBe(true);
    expect(cron.metadata?.labels?.wrong).toBeUndefined();
    const fixed = await c.core.readNamespacedService({ name: 'fixed', namespace: 'drill-shop-b' });
    expect(fixed.spec?.ports?.[0].nodePort).not.toBe(fixedPort);

    await cm(
      'bad',
      'version: v1\nresourceModifierRules:\n- conditions: {groupResource: services}\n  patches: [{operation: replace, path: /spec/type, value: 1}]',
    );
    await restore('shop-bad', {
      backupName: 'shop-1',
      namespaceMapping: { shop: 'drill-shop-c' },
      resourceModifier: { kind: 'ConfigMap', name: 'bad' },
    });
    const bad = await phaseOf('restores', 'shop-bad', ['FailedValidation']);
    expect(bad.status.validationErrors[0]).toMatch(
      /^Error in parsing resource modifiers provided in configmap velero\/bad: failed to decode yaml/,
    );
    await restore('shop-missing', { backupName: 'shop-1', resourceModifier: { kind: 'ConfigMap', name: 'nope' } });
    const missing = await phaseOf('restores', 'shop-missing', ['FailedValidation']);
    expect(missing.status.validationErrors).toEqual(['failed to get resource modifiers configmap velero/nope']);
  }, 120_000);

  it('a Restore deleted while InProgress stays until its restore ends (re-creating a deleted namespace), then takes its results along', async () => {
    kd.faults.restoreSlow(1000);
    try {
      await restore('shop-slow', { backupName: 'shop-1', namespaceMapping: { shop: 'drill-shop-d' } });
      await phaseOf('restores', 'shop-slow', ['InProgress']);
      await until(
        'namespace created',
        async () => (await api('GET', '/api/v1/namespaces/drill-shop-d')).status === 200,
      );
      expect((await api('DELETE', `${V}/restores/shop-slow`)).status).toBe(200);
      await c.core.deleteNamespace({ name: 'drill-shop-d' });
      const held = await veleroObject('restores', 'shop-slow');
      expect(held.metadata.deletionTimestamp).toBeDefined();
      expect(held.status.phase).toBe('InProgress');
      // EnsureNamespaceExistsAndIsReady: the restore waits for the namespace to go and creates it again.
      await until(
        'namespace re-created',
        async () => {
          const ns = await api('GET', '/api/v1/namespaces/drill-shop-d');
          return ns.status === 200 && !ns.json().metadata.deletionTimestamp;
        },
        30_000,
      );
      await until('Restore gone', async () => (await veleroObject('restores', 'shop-slow')) === undefined, 30_000);
      expect((await download('RestoreResults', 'shop-slow')).status).toBe(404);
    } finally {
      kd.faults.restoreSlow(0);
    }
  }, 120_000);
});
