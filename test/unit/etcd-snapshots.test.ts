// The drill's judgement of k3s's snapshot list and the config.yaml keys prepare renders, without a lab.
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import {
  judgeSnapshots,
  parseSnapshotList,
  quantityBytes,
  type EtcdSnapshot,
} from '../../activities/k3s/etcd-snapshots.js';
import { etcdSnapshotConfig } from '../../activities/ssh/prepare.js';
import type { ClusterSpec, EtcdSnapshotsSpec } from '../../config/schema.js';

const cfg: EtcdSnapshotsSpec = {
  scheduleCron: '0 */6 * * *',
  retention: 5,
  rpoSeconds: 3600,
  minSizeBytes: 1000,
  s3: {
    endpoint: 'seaweedfs-s3:8333',
    bucket: 'etcd',
    folder: 'pedro',
    accessKeyRef: 'op://v/i/a',
    secretKeyRef: 'op://v/i/s',
  },
};
const now = Date.parse('2026-12-02T12:00:00Z');
const snap = (name: string, nodeName: string, agoS: number, size = 5000, status = 'successful'): EtcdSnapshot => ({
  name,
  location: nodeName === 's3' ? `s3://etcd/pedro/${name}` : `file:///var/lib/rancher/k3s/server/db/snapshots/${name}`,
  nodeName,
  createdAt: new Date(now - agoS * 1000).toISOString(),
  size,
  status,
});

describe('judgeSnapshots', () => {
  test('the newest successful S3 snapshot within the RPO passes and gives its age', () => {
    const c = judgeSnapshots('cp', [snap('a', 's3', 7200), snap('b', 's3', 600), snap('c', 'cp', 10)], cfg, now);
    expect(c.problems).toEqual([]);
    expect(c.newest?.name).toBe('b');
    expect(c.ageSeconds).toBe(600);
    expect(c).toMatchObject({ offNode: 2, local: 1 });
  });
  test('only local copies: not off the node', () => {
    const c = judgeSnapshots('cp', [snap('c', 'cp', 10)], cfg, now);
    expect(c.problems).toEqual(['no etcd snapshot in s3://etcd/pedro (1 on cp only)']);
  });
  test('older than the RPO; failed uploads do not count', () => {
    const c = judgeSnapshots('cp', [snap('a', 's3', 4000), snap('f', 's3', 5, 0, 'failed')], cfg, now);
    expect(c.problems).toEqual(['newest etcd snapshot a is 4000s old, older than the RPO of 3600s']);
  });
  test('too small, or shrunk to under half of the one before', () => {
    expect(judgeSnapshots('cp', [snap('a', 's3', 5, 10)], cfg, now).problems).toEqual([
      'etcd snapshot a is 10 bytes (< 1000)',
    ]);
    expect(judgeSnapshots('cp', [snap('a', 's3', 50, 10_000), snap('b', 's3', 5, 4000)], cfg, now).problems).toEqual([
      'etcd snapshot b is 4000 bytes, less than half of a (10000)',
    ]);
  });
  test('parses the ETCDSnapshotFileList that k3s >= v1.30 prints for ls -o json', () => {
    // pkg/cli/etcdsnapshot/etcd_snapshot.go list (JSONPrinter over the server's ETCDSnapshotFileList);
    // an S3 copy carries spec.s3, and its nodeName is the node that took it when known
    // (pkg/etcd/snapshot/types.go ToETCDSnapshotFile); status.size is a resource.Quantity.
    const item = (name: string, node: string, size: string, created: string, s3: boolean, ready = true) => ({
      apiVersion: 'k3s.cattle.io/v1',
      kind: 'ETCDSnapshotFile',
      metadata: { name: `${s3 ? 's3' : 'local'}-${name}` },
      spec: {
        snapshotName: name,
        nodeName: node,
        location: s3 ? `s3://etcd/pedro/${name}` : `file:///var/lib/rancher/k3s/server/db/snapshots/${name}`,
        ...(s3 ? { s3: { bucket: 'etcd', prefix: 'pedro', endpoint: 's3.example' } } : {}),
      },
      status: { size: size, creationTime: created, readyToUse: ready },
    });
    const out = JSON.stringify(
      {
        apiVersion: 'k3s.cattle.io/v1',
        kind: 'ETCDSnapshotFileList',
        metadata: {},
        items: [
          item('a', 'control-plane', '1500k', '2026-12-08T00:00:00Z', false),
          item('a', 'control-plane', '1500k', '2026-12-08T00:00:00Z', true),
          item('b', 's3', '4096', '2026-12-08T01:00:00Z', true, false),
        ],
      },
      null,
      4,
    );
    expect(parseSnapshotList(`${out}\n`)).toEqual([
      {
        name: 'a',
        nodeName: 'control-plane',
        location: 'file:///var/lib/rancher/k3s/server/db/snapshots/a',
        createdAt: '2026-12-08T00:00:00Z',
        size: 1_500_000,
        status: 'successful',
      },
      {
        name: 'a',
        nodeName: 's3',
        location: 's3://etcd/pedro/a',
        createdAt: '2026-12-08T00:00:00Z',
        size: 1_500_000,
        status: 'successful',
      },
      {
        name: 'b',
        nodeName: 's3',
        location: 's3://etcd/pedro/b',
        createdAt: '2026-12-08T01:00:00Z',
        size: 4096,
        status: 'failed',
      },
    ]);
    expect(parseSnapshotList('{"apiVersion":"k3s.cattle.io/v1","kind":"ETCDSnapshotFileList","items":[]}')).toEqual([]);
    expect(parseSnapshotList('')).toEqual([]);
    expect(['4096', '1500k', '2Gi', '1e3', '1.5M', 'x1'].map(quantityBytes)).toEqual([
      4096,
      1_500_000,
      2 ** 31,
      1000,
      1_500_000,
      NaN,
    ]);
    // The map older k3s printed (before PR #9816) is not what the pinned version prints.
    expect(() => parseSnapshotList(JSON.stringify({ 'local-a': snap('a', 'cp', 5) }))).toThrow(/ETCDSnapshotFileList/);
  });
});

describe('etcdSnapshotConfig', () => {
  const spec = { k3s: { etcdSnapshots: cfg } } as unknown as ClusterSpec;
  test('k3s flag names; S3 only with resolved keys', () => {
    expect(etcdSnapshotConfig(spec)).toEqual({
      'etcd-snapshot-schedule-cron': '0 */6 * * *',
      'etcd-snapshot-retention': 5,
    });
    const full = etcdSnapshotConfig(spec, { accessKey: 'AK', secretKey: 'SK' });
    expect(parse(JSON.stringify(full))).toEqual({
      'etcd-snapshot-schedule-cron': '0 */6 * * *',
      'etcd-snapshot-retention': 5,
      'etcd-s3': true,
      'etcd-s3-endpoint': 'seaweedfs-s3:8333',
      'etcd-s3-bucket': 'etcd',
      'etcd-s3-folder': 'pedro',
      'etcd-s3-access-key': 'AK',
      'etcd-s3-secret-key': 'SK',
    });
  });
  test('nothing without the section', () => {
    expect(etcdSnapshotConfig({ k3s: {} } as unknown as ClusterSpec)).toEqual({});
  });
});
