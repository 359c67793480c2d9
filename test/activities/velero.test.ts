// The Velero activities called directly against the built lab: storage location, backup lookup,
// the gzip resource list through a DownloadRequest, the counts-per-kind fallback, data probes as
// Jobs, volume data read from PodVolumeRestores, and namespace cleanup that waits until the namespace
// is really gone.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { veleroActivities } from '../../activities/velero/index.js';
import { desiredSchedule } from '../../activities/components/platform.js';
import { startVeleroLab, type VeleroLab } from '../workflows/velero-lab.js';

let v: VeleroLab;
let a: ReturnType<typeof veleroActivities>;

beforeAll(async () => {
  v = await startVeleroLab((s) => {
    s.backups.drill.probes = [
      {
        type: 'job',
        namespace: 'eleduck-analytics',
        image: 'busybox:1.36',
        command: ['sh', '-c', 'test -n "$DRILL_NAMESPACE"'],
        timeoutSeconds: 20,
      },
      { type: 'http', url: 'http://example.invalid/health' },
    ];
  });
  a = veleroActivities(v.deps);
});
afterAll(async () => {
  await v?.stop();
});

describe('velero activities', () => {
  test('storage location and the newest Completed backup of the schedule', async () => {
    expect(await a.veleroStorageLocation({ cluster: 'lab' })).toMatchObject({
      name: 'default',
      available: true,
      phase: 'Available',
    });
    const found = await a.veleroFindBackup({ cluster: 'lab', schedule: 'daily' });
    const all = (await v.kube.list('velero.io/v1', 'Backup', 'velero'))
      .map((b) => b.metadata!.name!)
      .filter((n) => n.startsWith('daily-'))
      .sort();
    expect(found.backup?.name).toBe(all.at(-1));
    expect(found.backup).toMatchObject({ phase: 'Completed', errors: 0, scheduleName: 'daily' });
    expect(await a.veleroFindBackup({ cluster: 'lab', schedule: 'weekly' })).toMatchObject({
      reason: expect.stringContaining('schedule weekly has no Completed backup'),
    });
    await expect(a.veleroStorageLocation({ cluster: 'nope' })).rejects.toMatchObject({ type: 'NotFound' });
  });

  test('the resource list comes through a DownloadRequest (gzip JSON), which is deleted afterwards', async () => {
    const backup = (await a.veleroFindBackup({ cluster: 'lab', schedule: 'daily' })).backup!.name;
    const r = await a.veleroBackupResourceList({ cluster: 'lab', backup, timeoutSeconds: 10 });
    expect(r.unavailable).toBeUndefined();
    expect(r.list!['v1/Namespace']).toContain('eleduck-analytics');
    expect(
      Object.values(r.list!)
        .flat()
        .some((i) => i.startsWith('eleduck-analytics/')),
    ).toBe(true);
    expect(await v.kube.list('velero.io/v1', 'DownloadRequest', 'velero')).toEqual([]);
    // An unknown backup: the URL answers 404. The comparison falls back to counts, nothing parks.
    const missing = await a.veleroBackupResourceList({ cluster: 'lab', backup: 'no-such', timeoutSeconds: 5 });
    expect(missing.unavailable).toContain('HTTP 404');
  });

  test('a completed Job in the backup is not reported missing: Velero skips it on restore (issue 14 item 12)', async () => {
    const kc = v.kube;
    for (const ns of ['cj-src', 'cj-dst'])
      await kc.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await new Promise((r) => setTimeout(r, 1500)); // the default ServiceAccount
    await kc.create({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'sqlmesh-29000000', namespace: 'cj-src' },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'j', image: 'j:1' }] } } },
    });
    for (let i = 0; i < 100; i++) {
      const j = (await kc.read('batch/v1', 'Job', 'sqlmesh-29000000', 'cj-src')) as {
        status?: { completionTime?: string };
      };
      if (j?.status?.completionTime) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const r = await a.veleroCompareRestored({
      cluster: 'lab',
      mapping: { 'cj-src': 'cj-dst' },
      resourceList: { 'batch/v1/Job': ['cj-src/sqlmesh-29000000'] },
    });
    expect(r.missing).toEqual([]);
    expect(r.skipped).toEqual(['batch/v1/Job cj-dst/sqlmesh-29000000 (completed: Velero skips it)']);
  }, 60_000);

  test('without a publicUrl the URL is signed for the in-cluster s3Url: unavailable, naming publicUrl', async () => {
    const backup = (await a.veleroFindBackup({ cluster: 'lab', schedule: 'daily' })).backup!.name;
    const bsl = {
      apiVersion: 'velero.io/v1',
      kind: 'BackupStorageLocation',
      metadata: { name: 'default', namespace: 'velero' },
    };
    await v.kube.patch({ ...bsl, spec: { config: { publicUrl: null } } }, 'merge');
    try {
      const r = await a.veleroBackupResourceList({ cluster: 'lab', backup, timeoutSeconds: 10 });
      expect(r.unavailable).toMatch(/http:\/\/seaweedfs-s3\.seaweedfs:8333 failed .*set backups\.publicUrl/);
    } finally {
      await v.kube.patch({ ...bsl, spec: { config: { publicUrl: v.lab.spec.backups.publicUrl } } }, 'merge');
    }
  });

  test('compare by resource list and by counts per kind; a missing namespace is reported', async () => {
    const backup = (await a.veleroFindBackup({ cluster: 'lab', schedule: 'daily' })).backup!.name;
    const { list } = await a.veleroBackupResourceList({ cluster: 'lab', backup, timeoutSeconds: 10 });
    const same = await a.veleroCompareRestored({
      cluster: 'lab',
      mapping: { 'eleduck-analytics': 'eleduck-analytics' },
      resourceList: list,
    });
    expect(same.method).toBe('resource-list');
    expect(same.missing).toEqual([]);
    const counts = await a.veleroCompareRestored({
      cluster: 'lab',
      mapping: { 'eleduck-analytics': 'eleduck-analytics' },
    });
    expect(counts.method).toBe('counts');
    expect(Object.keys(counts.counts).length).toBeGreaterThan(0);
    const gone = await a.veleroCompareRestored({
      cluster: 'lab',
      mapping: { 'eleduck-analytics': 'drill-nothing-here' },
      resourceList: list,
    });
    expect(gone.missingNamespaces).toEqual(['drill-nothing-here']);
    expect(gone.missing.length).toBeGreaterThan(0);
  });

  test('backups ask for file-system backup; a restore’s volume data is read from its PodVolumeRestores (issue 14 item 14)', async () => {
    expect(desiredSchedule(v.spec).spec?.template).toMatchObject({ defaultVolumesToFsBackup: true });
    const name = `vd-${Date.now().toString(36)}`;
    await a.veleroEnsureBackup({ cluster: 'lab', name, namespaces: ['eleduck-analytics'] });
    const created = await v.kube.read<{ spec?: Record<string, unknown> }>('velero.io/v1', 'Backup', name, 'velero');
    expect(created?.spec?.defaultVolumesToFsBackup).toBe(true);
    expect((await a.veleroWaitBackup({ cluster: 'lab', name, timeoutSeconds: 30 })).phase).toBe('Completed');
    const mapping = { 'eleduck-analytics': `drill-${name}` };
    await a.veleroEnsureRestore({
      cluster: 'lab',
      name,
      backup: name,
      includedNamespaces: ['eleduck-analytics'],
      namespaceMapping: mapping,
    });
    try {
      expect((await a.veleroWaitRestore({ cluster: 'lab', name, timeoutSeconds: 30 })).phase).toBe('Completed');
      const [data] = await a.veleroVolumeData({ cluster: 'lab', restore: name, mapping });
      expect(data).toMatchObject({
        source: 'eleduck-analytics',
        target: `drill-${name}`,
        withData: ['airbyte-server-data', 'metabase-data'],
        withoutData: [],
      });
      expect(data.pvcs.map((p) => [p.method, p.phase])).toEqual([
        ['fs-backup', 'Completed'],
        ['fs-backup', 'Completed'],
      ]);
    } finally {
      await a.veleroDeleteRestore({ cluster: 'lab', name });
      await a.veleroDeleteNamespaces({ cluster: 'lab', namespaces: Object.values(mapping), timeoutSeconds: 60 });
    }
  }, 90_000);

  test('job probes run in the mapped namespace and are removed; live-endpoint probes are skipped', async () => {
    const results = await a.veleroRunProbes({
      cluster: 'lab',
      mapping: { 'eleduck-analytics': 'eleduck-analytics' },
      probes: v.spec.backups.drill.probes!,
      runId: 'abc123',
    });
    expect(results).toEqual([
      { name: 'drill-probe-0-abc123', namespace: 'eleduck-analytics', passed: true, message: 'job completed' },
      expect.objectContaining({ skipped: true, passed: true }),
    ]);
    expect(await v.kube.read('batch/v1', 'Job', 'drill-probe-0-abc123', 'eleduck-analytics')).toBeUndefined();
  });

  test('a data probe reads a claim of the namespace; a claim that was not restored fails it', async () => {
    // The real scheduler leaves a pod whose PVC does not exist Pending ("persistentvolumeclaim ... not
    // found", volumebinding plugin), so the probe's Job never finishes: the drill's verdict is "failed".
    const pvcs = await v.kube.list('v1', 'PersistentVolumeClaim', 'eleduck-analytics');
    const bound = pvcs.filter((p) => (p as { status?: { phase?: string } }).status?.phase === 'Bound');
    expect(bound.length).toBeGreaterThan(0);
    const probe = (claims: string[]) => ({
      type: 'job' as const,
      namespace: 'eleduck-analytics',
      image: 'busybox:1.36',
      command: ['sh', '-c', `test -n "$(ls -A /data/${claims[0]})"`],
      timeoutSeconds: 15,
      claims,
    });
    const results = await a.veleroRunProbes({
      cluster: 'lab',
      mapping: { 'eleduck-analytics': 'eleduck-analytics' },
      probes: [probe([bound[0]?.metadata?.name ?? 'unnamed']), probe(['no-such-claim'])],
      runId: 'data01',
    });
    expect(results.map((r) => [r.name, r.passed])).toEqual([
      ['drill-probe-0-data01', true],
      ['drill-probe-1-data01', false],
    ]);
    expect(results[1].message).toMatch(/did not finish within 15s/);
  }, 90_000);

  test('namespace deletion waits until the namespace is gone, and is idempotent', async () => {
    await v.kube.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'drill-x-000000' } });
    expect(
      await a.veleroDeleteNamespaces({ cluster: 'lab', namespaces: ['drill-x-000000'], timeoutSeconds: 10 }),
    ).toEqual({ deleted: ['drill-x-000000'], remaining: [] });
    expect(await v.kube.read('v1', 'Namespace', 'drill-x-000000')).toBeUndefined();
    expect(
      await a.veleroDeleteNamespaces({ cluster: 'lab', namespaces: ['drill-x-000000'], timeoutSeconds: 10 }),
    ).toEqual({ deleted: [], remaining: [] });
  });
});
