// k3s's etcd snapshots as the orchestrator sees them: `k3s etcd-snapshot ls -o json` on a server, which
// lists the node's own snapshots and, with etcd-s3 in its config file, those in S3. Since k3s v1.30
// (PR #9816) it prints the ETCDSnapshotFileList the running server answers (k3s-io/k3s
// pkg/cli/etcdsnapshot/etcd_snapshot.go list, read at the v1.35.1 module; pkg/etcd/snapshot/types.go
// ToETCDSnapshotFile; k3s-io/api k3s.cattle.io/v1 types.go). The worker never holds the S3 keys: k3s
// reads them from the config file prepare wrote.
import type { ClusterSpec, EtcdSnapshotsSpec, NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { nodeOrFail, withSession } from '../ssh/session.js';

export const DEFAULT_MIN_SNAPSHOT_BYTES = 65_536;

export interface EtcdSnapshot {
  name: string;
  location: string;
  /** "s3" for a snapshot in S3, else the node that holds the file. */
  nodeName: string;
  createdAt: string;
  size: number;
  status: string;
}

export interface EtcdSnapshotCheck {
  node: string;
  /** Problems that fail the drill; empty when the newest off-node snapshot is usable. */
  problems: string[];
  newest?: EtcdSnapshot;
  /** Age of the newest S3 snapshot when checked: the RPO a control-plane loss would have now. */
  ageSeconds?: number;
  rpoSeconds: number;
  offNode: number;
  local: number;
  /** The S3 snapshots, newest first (at most 20): what a recovery can choose from. */
  available: { name: string; createdAt: string; size: number }[];
}

const QUANTITY_SUFFIX: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Bytes of a resource.Quantity string ("1500k", "4096", "2Gi", "1e3"); NaN when it is none. */
export function quantityBytes(q: unknown): number {
  if (typeof q === 'number') return q;
  if (typeof q !== 'string') return Number.NaN;
  const m = /^([0-9]+(?:\.[0-9]+)?)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?)$/.exec(q);
  if (!m) return Number.NaN;
  return m[2] ? Number(`${m[1]}${m[2]}`) : Number(m[1]) * QUANTITY_SUFFIX[m[3] ?? ''];
}

interface SnapshotFileItem {
  spec?: { snapshotName?: string; nodeName?: string; location?: string; s3?: unknown };
  status?: { size?: unknown; creationTime?: string; readyToUse?: boolean };
}

/**
 * Parses `k3s etcd-snapshot ls -o json`: an ETCDSnapshotFileList. An item with spec.s3 is the S3 copy
 * (its nodeName is the node that took it when known), reported here with nodeName "s3"; readyToUse
 * is `status == successful` of the snapshot's record.
 */
export function parseSnapshotList(stdout: string): EtcdSnapshot[] {
  const trimmed = stdout.trim();
  if (!trimmed) return [];
  const raw = JSON.parse(trimmed) as { items?: SnapshotFileItem[] } | null;
  if (!raw || !Array.isArray(raw.items))
    throw new Error('not an ETCDSnapshotFileList (k3s >= v1.30 prints one; an older k3s printed a map)');
  return raw.items.map((i) => ({
    name: String(i.spec?.snapshotName ?? ''),
    location: String(i.spec?.location ?? ''),
    nodeName: i.spec?.s3 ? 's3' : String(i.spec?.nodeName ?? ''),
    createdAt: String(i.status?.creationTime ?? ''),
    size: quantityBytes(i.status?.size ?? 0),
    status: i.status?.readyToUse ? 'successful' : 'failed',
  }));
}

/** S3 snapshots that k3s recorded as successful, newest first. */
export function offNodeSnapshots(list: EtcdSnapshot[]): EtcdSnapshot[] {
  return list
    .filter((s) => s.nodeName === 's3' && s.status === 'successful' && !Number.isNaN(Date.parse(s.createdAt)))
    .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
}

/**
 * The drill's judgement: the newest S3 snapshot exists, is younger than the RPO, and is not implausibly
 * small (under the configured floor, or under half the one before it: a snapshot of a mostly empty
 * datastore would restore a mostly empty cluster).
 */
export function judgeSnapshots(
  node: string,
  list: EtcdSnapshot[],
  cfg: EtcdSnapshotsSpec,
  nowMs: number,
): EtcdSnapshotCheck {
  const s3 = offNodeSnapshots(list);
  const check: EtcdSnapshotCheck = {
    node,
    problems: [],
    rpoSeconds: cfg.rpoSeconds,
    offNode: s3.length,
    local: list.filter((s) => s.nodeName !== 's3').length,
    available: s3.slice(0, 20).map((x) => ({ name: x.name, createdAt: x.createdAt, size: x.size })),
  };
  const [newest, previous] = s3;
  if (!newest) {
    check.problems.push(
      `no etcd snapshot in s3://${cfg.s3.bucket}/${cfg.s3.folder ?? ''} (${check.local} on ${node} only)`,
    );
    return check;
  }
  check.newest = newest;
  check.ageSeconds = Math.max(0, Math.floor((nowMs - Date.parse(newest.createdAt)) / 1000));
  if (check.ageSeconds > cfg.rpoSeconds)
    check.problems.push(
      `newest etcd snapshot ${newest.name} is ${check.ageSeconds}s old, older than the RPO of ${cfg.rpoSeconds}s`,
    );
  const floor = cfg.minSizeBytes ?? DEFAULT_MIN_SNAPSHOT_BYTES;
  if (newest.size < floor) check.problems.push(`etcd snapshot ${newest.name} is ${newest.size} bytes (< ${floor})`);
  else if (previous && newest.size < previous.size / 2)
    check.problems.push(
      `etcd snapshot ${newest.name} is ${newest.size} bytes, less than half of ${previous.name} (${previous.size})`,
    );
  return check;
}

export function firstServer(spec: ClusterSpec): NodeSpec {
  const node = spec.nodes.find((n) => n.role === 'server');
  if (!node) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no server node`);
  return node;
}

/** `k3s etcd-snapshot ls -o json` on a node, parsed. */
export async function listSnapshotsOn(deps: ActivityDeps, spec: ClusterSpec, node: NodeSpec): Promise<EtcdSnapshot[]> {
  return withSession(deps, spec, node, async (s) => {
    const r = await s.exec('k3s etcd-snapshot ls -o json');
    if (r.code !== 0)
      throw retryable(
        ErrorType.Transient,
        `${node.name}: k3s etcd-snapshot ls exited ${r.code}: ${r.stderr.trim().slice(-300)}`,
      );
    try {
      return parseSnapshotList(r.stdout);
    } catch (err) {
      throw nonRetryable(
        ErrorType.VerificationFailed,
        `${node.name}: k3s etcd-snapshot ls printed no JSON (${err instanceof Error ? err.message : String(err)})`,
      );
    }
  });
}

export function etcdSnapshotActivities(deps: ActivityDeps) {
  return {
    /** The drill's control-plane check (verifyBackup): newest off-node snapshot, its age and size. */
    async verifyEtcdSnapshots(input: { cluster: string; node?: string }): Promise<EtcdSnapshotCheck> {
      const spec = clusterOrFail(deps, input.cluster);
      const cfg = spec.k3s.etcdSnapshots;
      if (!cfg) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} configures no etcd snapshots`);
      const node = input.node ? nodeOrFail(spec, input.node) : firstServer(spec);
      const list = await listSnapshotsOn(deps, spec, node);
      return judgeSnapshots(node.name, list, cfg, Date.now());
    },
  };
}
