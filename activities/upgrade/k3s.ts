// k3s side of a rolling upgrade, over SSH: the etcd snapshot taken before any node is touched, the
// install of a given version (the provisioning installer with INSTALL_K3S_VERSION: install.ts), and the
// rollback of one node to the version it ran before. Restoring a snapshot is never done here: it is a
// separate, approved action (k3s server --cluster-reset --cluster-reset-restore-path).
import { Context } from '@temporalio/activity';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { shellQuote } from '../ssh/client.js';
import { must, nodeOrFail, withSession } from '../ssh/session.js';
import { installEnv, installOn, type K3sInstallResult } from '../k3s/install.js';
import { upgradeNodeActivities } from './nodes.js';

/** k3s's default --etcd-snapshot-dir: <data-dir>/server/db/snapshots (k3s-io/k3s pkg/etcd/snapshot.go snapshotDir). */
export const SNAPSHOT_DIR = '/var/lib/rancher/k3s/server/db/snapshots';

/** Operations that change the cluster; a read-only one (a drill in its sandbox namespace) may run beside an upgrade. */
export const MUTATING_OPERATIONS = ['provision', 'rotate-secrets', 'dr-restore', 'upgrade'];

export function upgradeK3sActivities(deps: ActivityDeps) {
  const nodes = upgradeNodeActivities(deps);
  return {
    /**
     * `k3s etcd-snapshot save --name <name>` on a server. Idempotent within a run: a snapshot of that
     * name taken since `notBefore` (epoch seconds, the run's start) is returned instead of a second one.
     */
    async etcdSnapshot(input: { cluster: string; node: string; name: string; notBefore: number }) {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      return withSession(deps, spec, node, async (s) => {
        // File names end in -<unix seconds> (pkg/etcd/snapshot.go: "%s-%s-%d", name, node name, now.Unix()).
        const ls = await s.exec(
          `ls -1 ${SNAPSHOT_DIR} 2>/dev/null | grep -F -- ${shellQuote(`${input.name}-`)} || true`,
        );
        const mine = ls.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l.startsWith(`${input.name}-`) && Number(/-(\d+)$/.exec(l)?.[1] ?? 0) >= input.notBefore)
          .sort();
        if (mine.length > 0)
          return { node: node.name, file: mine.at(-1)!, path: `${SNAPSHOT_DIR}/${mine.at(-1)}`, taken: false };
        const r = await must(s, node.name, `k3s etcd-snapshot save --name ${shellQuote(input.name)}`, {
          what: 'k3s etcd-snapshot save',
        });
        // logrus line `msg="Saving etcd snapshot to <path>"` (stderr): the path ends at the closing quote
        const path = /Saving etcd snapshot to ([^\s"]+)/.exec(`${r.stderr}\n${r.stdout}`)?.[1];
        if (!path)
          throw nonRetryable(ErrorType.InstallFailed, `k3s etcd-snapshot save on ${node.name} named no snapshot file`);
        return { node: node.name, file: path.split('/').at(-1)!, path, taken: true };
      });
    },

    /** Installs `version` on the node with the installer env it was provisioned with (install.ts installOn). */
    async installK3sVersion(input: { cluster: string; node: string; version: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      return installOn(deps, spec, node, installEnv(deps, spec, node), input.version);
    },

    /** Puts the node back on `version` (what it ran before) and waits until it is Ready on it again. */
    async rollbackK3sNode(input: { cluster: string; node: string; version: string; timeoutSeconds: number }) {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      const installed = await installOn(deps, spec, node, installEnv(deps, spec, node), input.version);
      const ready = await nodes.waitNodeUpgraded({
        cluster: input.cluster,
        node: input.node,
        version: input.version,
        timeoutSeconds: input.timeoutSeconds,
      });
      return { node: node.name, version: input.version, reinstalled: installed.installed, waitedMs: ready.waitedMs };
    },

    /**
     * Runs of this cluster that an upgrade must not overlap: another mutating run still running, or
     * any run parked in needs-attention. Read from Temporal's visibility (the search attributes every
     * run upserts: workflows/search-attributes.ts).
     */
    async upgradeRunConflicts(input: { cluster: string; self: string }) {
      const client = Context.current().client;
      const q = `ClusterName="${input.cluster.replace(/["\\]/g, '')}" AND ExecutionStatus="Running"`;
      const running: { workflowId: string; operation?: string; state?: string }[] = [];
      for await (const info of client.workflow.list({ query: q })) {
        if (info.workflowId === input.self) continue;
        const sa = info.searchAttributes as Record<string, unknown[] | undefined>;
        running.push({
          workflowId: info.workflowId,
          operation: sa.Operation?.[0] as string | undefined,
          state: sa.State?.[0] as string | undefined,
        });
      }
      return {
        parked: running.filter((r) => r.state === 'needs-attention'),
        mutating: running.filter(
          (r) => r.state !== 'needs-attention' && MUTATING_OPERATIONS.includes(r.operation ?? ''),
        ),
      };
    },
  };
}
