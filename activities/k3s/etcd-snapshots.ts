// k3s's etcd snapshots as the orchestrator sees them: `k3s etcd-snapshot ls -o json` on a server, which
// lists the node's own snapshots and, with etcd-s3 in its config file, those in S3 (k3s-io/k3s
// pkg/cli/etcdsnapshot/etcd_snapshot.go list; the JSON is the map of pkg/etcd/snapshot/types.go File,
// S3 entries carry nodeName "s3"). The worker never holds the S3 keys: k3s reads them from the config
// file prepare wrote.
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

/** Parses `k3s etcd-snapshot ls -o json`: an object keyed local-<name> / s3-<name>. */
export function parseSnapshotList(stdout: string): EtcdSnapshot[] {
  const trimmed = stdout.trim();
  if (!trimmed) return [];
  const raw = JSON.parse(trimmed) as Record<string, Partial<EtcdSnapshot>> | null;
  return Object.values(raw ?? {}).map((s) => ({
    name: String(s.name ?? ''),
    location: String(s.location ?? ''),
    nodeName: String(s.nodeName ?? ''),
    createdAt: String(s.createdAt ?? ''),
    size: Number(s.size ?? 0),
    status: String(s.status ?? ''),
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
