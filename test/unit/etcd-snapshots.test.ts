// The drill's judgement of k3s's snapshot list and the config.yaml keys prepare renders, without a lab.
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { judgeSnapshots, parseSnapshotList, type EtcdSnapshot } from '../../activities/k3s/etcd-snapshots.js';
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
  test('parses the ls -o json map', () => {
    const out = JSON.stringify({ 's3-a': snap('a', 's3', 5), 'local-a': snap('a', 'cp', 5) });
    expect(parseSnapshotList(`${out}\n`).map((s) => s.nodeName)).toEqual(['s3', 'cp']);
    expect(parseSnapshotList('')).toEqual([]);
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
