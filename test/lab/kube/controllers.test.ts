// The lab's controllers on the real apiserver: helm-controller/klipper-helm (Jobs, releases,
// failure policies, uninstall), OpenBAO's readiness probe, and Velero (backup, restore, downloads).
import { gunzipSync } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOpenBaoDouble, type OpenBaoDouble } from '../openbao.js';
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

const chart = (name: string, spec: object) => ({
  apiVersion: 'helm.cattle.io/v1',
  kind: 'HelmChart',
  metadata: { name, namespace: 'kube-system' },
  spec: { targetNamespace: name, createNamespace: true, version: '1.0.0', backOffLimit: 1, ...spec },
});
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
    await c.custom.createNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
      body: chart('broken', { chart: 'broken', failurePolicy: 'abort' }),
    });
    const failed = await until(
      'Job Failed',
      async () => (cond(await job('broken'), 'Failed') ? job('broken') : undefined),
      30_000,
    );
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
});
