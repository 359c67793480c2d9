// CRD schema enforcement and the Velero controllers, plus the seeded "built" cluster.
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClusterFile } from '../../../config/loader.js';
import { startKubeDouble, type KubeDouble } from './index.js';
import { clients, deploymentDone, raw, statusOf, until } from './test-client.js';

const crdDir = fileURLToPath(new URL('../crds/', import.meta.url));
const specFile = fileURLToPath(new URL('../../../config/clusters/pedro-ops.yaml', import.meta.url));
let kd: KubeDouble;
let c: ReturnType<typeof clients>;
const V = { group: 'velero.io', version: 'v1', namespace: 'velero' };

beforeAll(async () => {
  kd = await startKubeDouble({
    host: '127.0.0.1',
    token: 'vtoken',
    crdDir,
    readyDelayMs: 50,
    rolloutStepMs: 20,
    veleroStepMs: 40,
  });
  c = clients(kd);
  kd.seedBuilt(loadClusterFile(specFile));
});
afterAll(async () => {
  await kd?.stop();
});

const create = (plural: string, name: string, spec: object) =>
  c.custom.createNamespacedCustomObject({
    ...V,
    plural,
    body: { apiVersion: 'velero.io/v1', kind: kindOf[plural], metadata: { name }, spec },
  }) as Promise<any>;
const get = (plural: string, name: string) =>
  c.custom.getNamespacedCustomObject({ ...V, plural, name }) as Promise<any>;
const kindOf: Record<string, string> = {
  backups: 'Backup',
  restores: 'Restore',
  downloadrequests: 'DownloadRequest',
  deletebackuprequests: 'DeleteBackupRequest',
  schedules: 'Schedule',
};
const phase = (plural: string, name: string, phases: string[]) =>
  until(`${plural}/${name} in ${phases}`, async () => {
    const o = await get(plural, name);
    return phases.includes(o.status?.phase) && o;
  });

describe('seedBuilt', () => {
  it('has Ready nodes, completed install Jobs, ready workloads, Velero schedule and two Completed backups', async () => {
    const nodes = await c.core.listNode();
    expect(nodes.items.map((n) => n.metadata?.name)).toEqual(['control-plane', 'worker-1', 'worker-2']);
    expect(nodes.items.every((n) => n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'))).toBe(
      true,
    );
    const charts = (await c.custom.listNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      namespace: 'kube-system',
      plural: 'helmcharts',
    })) as any;
    expect(charts.items).toHaveLength(15);
    const job = await c.batch.readNamespacedJob({ name: 'helm-install-airbyte', namespace: 'kube-system' });
    expect(job.status?.conditions?.some((x) => x.type === 'Complete' && x.status === 'True')).toBe(true);
    expect(
      deploymentDone(await c.apps.readNamespacedDeployment({ name: 'airbyte-server', namespace: 'eleduck-analytics' })),
    ).toBe(true);
    const ds = await c.apps.readNamespacedDaemonSet({ name: 'longhorn-manager', namespace: 'longhorn-system' });
    expect(ds.status).toMatchObject({ desiredNumberScheduled: 3, numberAvailable: 3, updatedNumberScheduled: 3 });
    expect((await get('schedules', 'daily')).status.phase).toBe('Enabled');
    const backups = (await c.custom.listNamespacedCustomObject({
      ...V,
      plural: 'backups',
      labelSelector: 'velero.io/schedule-name=daily',
    })) as any;
    expect(backups.items.map((b: any) => b.status.phase)).toEqual(['Completed', 'Completed']);
    expect((await get('backupstoragelocations', 'default')).status.phase).toBe('Available');
    await c.core.readNamespacedSecret({ name: 'supabase-credentials', namespace: 'eleduck-analytics' });
    expect(
      (await c.core.readNamespacedConfigMap({ name: 'coredns', namespace: 'kube-system' })).data?.Corefile,
    ).toContain('kubernetes cluster.local');
  });
});

describe('CRD validation', () => {
  it('rejects a Backup with a wrongly typed field and an unknown enum value, naming the fields', async () => {
    const e = await create('backups', 'bad', {
      ttl: 5,
      orderedResources: { pods: 'ns/a' },
      hooks: { resources: [{ name: 'h', pre: [{ exec: { command: ['true'], onError: 'Explode' } }] }] },
    }).catch((x) => x);
    expect(e.code).toBe(422);
    const s = statusOf(e);
    expect(s).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'Invalid',
      details: { name: 'bad', group: 'velero.io', kind: 'Backup' },
    });
    expect(s.message).toMatch(/^Backup\.velero\.io "bad" is invalid: .*spec\.ttl: Invalid value: /);
    expect(s.details.causes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: 'spec.ttl', reason: 'FieldValueInvalid' }),
        expect.objectContaining({
          field: 'spec.hooks.resources[0].pre[0].exec.onError',
          reason: 'FieldValueNotSupported',
        }),
      ]),
    );
    await expect(get('backups', 'bad')).rejects.toMatchObject({ code: 404 });
  });

  it('prunes unknown fields instead of rejecting them, and rejects a missing required field', async () => {
    const b = await create('backups', 'pruned', {
      includedNamespaces: ['eleduck-analytics'],
      notAField: true,
      ttl: '1h0m0s',
    });
    expect(b.spec.notAField).toBeUndefined();
    expect(b.spec.ttl).toBe('1h0m0s');
    const dr = await create('downloadrequests', 'no-target', {}).catch((x) => x);
    expect(dr.code).toBe(422);
    expect(statusOf(dr).details.causes[0]).toMatchObject({ field: 'spec.target', reason: 'FieldValueRequired' });
    const kindless = await c.custom
      .createNamespacedCustomObject({ ...V, plural: 'backups', body: { metadata: { name: 'kindless' }, spec: {} } })
      .catch((x) => x);
    expect(kindless.code).toBe(400);
    const stale = await c.custom
      .replaceNamespacedCustomObject({
        ...V,
        plural: 'backups',
        name: 'pruned',
        body: { ...b, metadata: { ...b.metadata, resourceVersion: '1' } },
      })
      .catch((x) => x);
    expect(stale.code).toBe(409);
  });
});

describe('backups and restores', () => {
  it('walks a Backup New → InProgress → Completed and lists its resources through a DownloadRequest', async () => {
    const seen = new Set<string>();
    await create('backups', 'manual-1', {
      includedNamespaces: ['eleduck-analytics'],
      storageLocation: 'default',
      ttl: '24h0m0s',
    });
    const done = await until(
      'Completed',
      async () => {
        const o = await get('backups', 'manual-1');
        seen.add(o.status?.phase);
        return o.status?.phase === 'Completed' && o;
      },
      10_000,
      10,
    );
    expect([...seen]).toEqual(expect.arrayContaining(['InProgress', 'Completed']));
    expect(done.status.progress.totalItems).toBeGreaterThan(0);
    expect(done.status.progress.itemsBackedUp).toBe(done.status.progress.totalItems);
    expect(Date.parse(done.status.completionTimestamp)).toBeGreaterThanOrEqual(Date.parse(done.status.startTimestamp));
    await create('downloadrequests', 'dl-1', { target: { kind: 'BackupResourceList', name: 'manual-1' } });
    const dr = await phase('downloadrequests', 'dl-1', ['Processed']);
    const r = await raw(kd, 'GET', new URL(dr.status.downloadURL).pathname);
    expect(r.status).toBe(200);
    const list = JSON.parse(gunzipSync(r.body).toString());
    expect(list['v1/Secret']).toEqual(expect.arrayContaining(['eleduck-analytics/supabase-credentials']));
    expect(list['apps/v1/Deployment']).toEqual(
      expect.arrayContaining(['eleduck-analytics/airbyte-server', 'eleduck-analytics/metabase']),
    );
    expect(list['v1/Namespace']).toEqual(['eleduck-analytics']);
  });

  it('restores into a mapped namespace with fresh identities and labels, and the workloads become ready', async () => {
    await create('restores', 'drill-1', {
      backupName: 'manual-1',
      includedNamespaces: ['eleduck-analytics'],
      namespaceMapping: { 'eleduck-analytics': 'drill-eleduck' },
      existingResourcePolicy: 'none',
    });
    const r = await phase('restores', 'drill-1', ['Completed', 'Failed', 'FailedValidation']);
    expect(r.status.phase).toBe('Completed');
    expect(r.status.progress.itemsRestored).toBeGreaterThan(0);
    const orig = await c.core.readNamespacedSecret({ name: 'supabase-credentials', namespace: 'eleduck-analytics' });
    const copy = await c.core.readNamespacedSecret({ name: 'supabase-credentials', namespace: 'drill-eleduck' });
    expect(copy.metadata?.uid).not.toBe(orig.metadata?.uid);
    expect(copy.metadata?.labels).toMatchObject({
      'velero.io/restore-name': 'drill-1',
      'velero.io/backup-name': 'manual-1',
    });
    await until('restored metabase ready', async () =>
      deploymentDone(await c.apps.readNamespacedDeployment({ name: 'metabase', namespace: 'drill-eleduck' })),
    );
    // The source namespace is untouched.
    expect(
      (await c.core.readNamespacedSecret({ name: 'supabase-credentials', namespace: 'eleduck-analytics' })).metadata
        ?.labels?.['velero.io/restore-name'],
    ).toBeUndefined();
    await create('downloadrequests', 'dl-log', { target: { kind: 'RestoreLog', name: 'drill-1' } });
    const dl = await phase('downloadrequests', 'dl-log', ['Processed']);
    expect(gunzipSync((await raw(kd, 'GET', new URL(dl.status.downloadURL).pathname)).body).toString()).toContain(
      'Restored Secret drill-eleduck/supabase-credentials',
    );
  });

  it('honours the PartiallyFailed and restore Failed faults, and refuses a restore of a missing backup', async () => {
    kd.faults.backupPartiallyFailed();
    await create('backups', 'partial', { includedNamespaces: ['monitoring'] });
    const p = await phase('backups', 'partial', ['Completed', 'PartiallyFailed']);
    expect(p.status).toMatchObject({ phase: 'PartiallyFailed', errors: 1 });
    kd.faults.restoreFailed('doomed', 'error restoring: lab says no');
    await create('restores', 'doomed', { backupName: 'partial' });
    const f = await phase('restores', 'doomed', ['Completed', 'Failed']);
    expect(f.status).toMatchObject({ phase: 'Failed', failureReason: 'error restoring: lab says no' });
    await create('restores', 'ghost', { backupName: 'does-not-exist' });
    const g = await phase('restores', 'ghost', ['FailedValidation']);
    expect(g.status.validationErrors[0]).toContain('not found');
  });

  it('marks a Backup FailedValidation while the storage location is Unavailable', async () => {
    kd.faults.bslUnavailable('default');
    expect((await get('backupstoragelocations', 'default')).status.phase).toBe('Unavailable');
    await create('backups', 'no-bsl', { includedNamespaces: ['monitoring'] });
    const b = await phase('backups', 'no-bsl', ['FailedValidation', 'Completed']);
    expect(b.status.validationErrors[0]).toContain('Unavailable');
    kd.faults.clear();
    expect((await get('backupstoragelocations', 'default')).status.phase).toBe('Available');
  });

  it('enables a new Schedule and backs up at once unless skipImmediately', async () => {
    await create('schedules', 'hourly', { schedule: '0 * * * *', template: { includedNamespaces: ['zot-system'] } });
    await create('schedules', 'quiet', {
      schedule: '0 3 * * *',
      skipImmediately: true,
      template: { includedNamespaces: ['zot-system'] },
    });
    const bad = await create('schedules', 'broken', { schedule: 'every day', template: {} });
    expect((await phase('schedules', 'hourly', ['Enabled'])).status.lastBackup).toBeDefined();
    expect((await phase('schedules', 'broken', ['FailedValidation'])).status.validationErrors[0]).toContain(
      'invalid schedule',
    );
    expect(bad.metadata.name).toBe('broken');
    const first = await until('scheduled backup Completed', async () => {
      const l = (await c.custom.listNamespacedCustomObject({
        ...V,
        plural: 'backups',
        labelSelector: 'velero.io/schedule-name=hourly',
      })) as any;
      return l.items[0]?.status?.phase === 'Completed' && l.items[0];
    });
    expect(first.spec.includedNamespaces).toEqual(['zot-system']);
    const quiet = (await c.custom.listNamespacedCustomObject({
      ...V,
      plural: 'backups',
      labelSelector: 'velero.io/schedule-name=quiet',
    })) as any;
    expect(quiet.items).toEqual([]);
  });

  it('deletes a Backup through a DeleteBackupRequest', async () => {
    await create('deletebackuprequests', 'del-1', { backupName: 'partial' });
    await phase('deletebackuprequests', 'del-1', ['Processed']);
    await expect(get('backups', 'partial')).rejects.toMatchObject({ code: 404 });
  });
});
