// Control-plane snapshots in the built lab: prepare renders k3s's etcd-s3 settings into the server's
// config.yaml (keys from 1Password, never in a workflow payload), `k3s etcd-snapshot save` copies kine's
// database to the node and the lab's S3 store, `ls -o json` lists both, a cluster reset from the S3
// name brings back exactly what the snapshot held, and the scheduled drill passes with a fresh snapshot
// and fails once the newest one is older than the RPO.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { parse } from 'yaml';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { createActivities } from '../../activities/index.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import { parseSnapshotList, type EtcdSnapshotCheck } from '../../activities/k3s/etcd-snapshots.js';
import { activity, BUCKET, FOLDER, startEtcdLab, type EtcdLab } from './etcd-lab.js';

let t: TestTemporal;
let v: EtcdLab;
let keys: EtcdLab['keys'];
const onNode = (command: string) => v.onNode(command);

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'etcd-snapshots' }), startEtcdLab()]);
  keys = v.keys;
  expect(v.spec.k3s.etcdSnapshots!.s3.endpoint).toBe(new URL(v.lab.pieces.kube.objectStoreUrl).host);
  await t.startWorker(v.deps);
}, 240_000);

afterAll(async () => {
  await t?.close();
  await v?.stop();
});

describe('etcd snapshots', () => {
  test('prepare writes the etcd-s3 settings into the server config only', async () => {
    const acts = createActivities(v.deps);
    const res = await activity(() => acts.prepareNode({ cluster: v.spec.name, node: 'control-plane' }));
    expect(res.changed).toContain('wrote /etc/rancher/k3s/config.yaml');
    // The result says which file changed, never what is in it.
    expect(JSON.stringify(res)).not.toContain(keys.secret);
    const cfg = parse((await onNode('cat /etc/rancher/k3s/config.yaml')).stdout) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      'etcd-snapshot-schedule-cron': '0 */6 * * *',
      'etcd-snapshot-retention': 5,
      'etcd-s3': true,
      'etcd-s3-endpoint': v.spec.k3s.etcdSnapshots!.s3.endpoint,
      'etcd-s3-insecure': true,
      'etcd-s3-bucket': BUCKET,
      'etcd-s3-folder': FOLDER,
      'etcd-s3-access-key': keys.access,
      'etcd-s3-secret-key': keys.secret,
    });
    expect((await onNode('stat -c %a /etc/rancher/k3s/config.yaml')).stdout.trim()).toBe('600');
    // Agents get no S3 keys.
    const agent = await activity(() => acts.prepareNode({ cluster: v.spec.name, node: 'worker-1' }));
    expect(JSON.stringify(agent)).not.toContain(keys.secret);
  });

  test('save stores <name>-<node>-<ts> locally and in S3; ls -o json lists both; a reset restores it', async () => {
    const api = v.lab.pieces.kube.controlPlane.api;
    const cm = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: name } });
    await api.must('POST', '/api/v1/namespaces/default/configmaps', cm('before-snapshot'));
    const saved = await onNode('k3s etcd-snapshot save');
    expect(saved.code, saved.stderr).toBe(0);
    const name = /Snapshot (on-demand-control-plane-\d+) saved/.exec(saved.stderr)?.[1];
    expect(name).toBeDefined();
    const stored = v.lab.pieces.kube.objectStore.list(BUCKET, `${FOLDER}/`);
    expect(stored.map((o) => o.key)).toEqual([`${FOLDER}/${name}`]);
    expect(stored[0].size).toBeGreaterThan(4096);

    const ls = await onNode('k3s etcd-snapshot ls -o json');
    expect(ls.code, ls.stderr).toBe(0);
    // k3s >= v1.30: an ETCDSnapshotFileList; the S3 copy carries spec.s3 (pkg/etcd/snapshot/types.go)
    const list = JSON.parse(ls.stdout) as {
      kind: string;
      items: { spec: { snapshotName: string; nodeName: string; location: string; s3?: { bucket: string } } }[];
    };
    expect(list.kind).toBe('ETCDSnapshotFileList');
    const mine = list.items.filter((i) => i.spec.snapshotName === name);
    expect(mine.find((i) => !i.spec.s3)?.spec).toMatchObject({ nodeName: 'control-plane' });
    expect(mine.find((i) => i.spec.s3)?.spec).toMatchObject({
      location: `s3://${BUCKET}/${FOLDER}/${name}`,
      s3: { bucket: BUCKET },
    });
    expect(
      parseSnapshotList(ls.stdout)
        .filter((x) => x.name === name)
        .map((x) => x.nodeName),
    ).toEqual(['control-plane', 's3']);
    // The table: Name Location Size Created for every snapshot, the size in bytes.
    const table = await onNode('k3s etcd-snapshot ls');
    expect(table.stdout.split('\n')[0]).toMatch(/^Name\s+Location\s+Size\s+Created/);
    expect(table.stdout).toContain(`s3://${BUCKET}/${FOLDER}/${name}`);

    // After the snapshot: a change that a restore must undo.
    await api.must('POST', '/api/v1/namespaces/default/configmaps', cm('after-snapshot'));
    // The local copy is gone: the reset fetches the S3 object by name.
    await onNode(`rm -f /var/lib/rancher/k3s/server/db/snapshots/${name}`);
    const reset = await onNode(`k3s server --cluster-reset --cluster-reset-restore-path=${name}`);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stderr).toContain('restart without --cluster-reset flag now');
    expect(await api.get('/api/v1/namespaces/default/configmaps/before-snapshot')).toBeDefined();
    expect(await api.get('/api/v1/namespaces/default/configmaps/after-snapshot')).toBeUndefined();
  }, 120_000);

  test('the drill reports the snapshot age and fails once the newest snapshot is older than the RPO', async () => {
    const direct = await activity(() => createActivities(v.deps).verifyEtcdSnapshots({ cluster: v.spec.name }));
    expect(direct.problems).toEqual([]);

    const drill = async () =>
      (await t.client.workflow.execute('verifyBackup', {
        taskQueue: t.taskQueue,
        workflowId: `verify-backup/lab/${randomUUID()}`,
        args: [{ cluster: v.spec.name }],
      })) as DrillReport;
    const ok = await drill();
    expect(ok.reasons).toEqual([]);
    expect(ok.result).toBe('passed');
    expect(ok.etcdSnapshot).toMatchObject({ rpoSeconds: 3600, offNode: 1 });
    expect(ok.etcdSnapshot!.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(ok.etcdSnapshot!.sizeBytes).toBeGreaterThan(4096);

    // The same snapshot against an RPO it has outlived.
    const age = (await activity(() => createActivities(v.deps).verifyEtcdSnapshots({ cluster: v.spec.name })))
      .ageSeconds!;
    v.rewriteSpec((raw) => void (raw.k3s.etcdSnapshots!.rpoSeconds = Math.max(1, age)));
    await new Promise((r) => setTimeout(r, 2100));
    const stale: DrillReport = await drill();
    expect(stale.result).toBe('failed');
    expect(stale.reasons).toEqual([
      expect.stringMatching(
        /^EtcdSnapshotNotUsable: newest etcd snapshot on-demand-control-plane-\d+ is \d+s old, older than the RPO of \d+s$/,
      ),
    ]);
    // The Velero part still ran and passed on its own.
    expect(stale.restoreAttempted).toBe(true);
    expect(stale.cleanup.remaining).toEqual([]);
  }, 240_000);

  test('no snapshot in S3 is a finding, not a crash', async () => {
    const check: EtcdSnapshotCheck = await activity(() =>
      createActivities(v.deps).verifyEtcdSnapshots({
        cluster: v.spec.name,
      }),
    );
    expect(check.offNode).toBeGreaterThan(0);
    for (const o of v.lab.pieces.kube.objectStore.list(BUCKET)) v.lab.pieces.kube.objectStore.remove(BUCKET, o.key);
    const empty = await activity(() => createActivities(v.deps).verifyEtcdSnapshots({ cluster: v.spec.name }));
    expect(empty.offNode).toBe(0);
    expect(empty.problems).toEqual([
      expect.stringMatching(/^no etcd snapshot in s3:\/\/etcd-snapshots\/pedro-ops \(\d+ on control-plane only\)$/),
    ]);
  });
});
