// The restore step of recoverControlPlane: k3s's documented single-server restore
// (docs.k3s.io/cli/etcd-snapshot "Restoring Snapshots"): stop k3s, run
// `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` (with etcd-s3 in config.yaml the
// path is the S3 snapshot name, downloaded first: k3s-io/k3s#8169), which restores and exits, then
// start k3s again without the flags. A marker per run on the node makes a retried attempt (worker
// killed after the reset) skip the reset instead of running it twice.
import { shellQuote } from '../ssh/client.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { beat } from '../heartbeat.js';
import { must, nodeOrFail, withSession } from '../ssh/session.js';

const MARKER_DIR = '/var/lib/rancher/pedro-ops';

export interface ControlPlaneRestoreResult {
  node: string;
  snapshot: string;
  /** The reset ran in an earlier attempt of this run; this one only made sure k3s is started. */
  alreadyRestored: boolean;
}

export function controlPlaneRestoreActivities(deps: ActivityDeps) {
  return {
    async restoreEtcdSnapshot(input: {
      cluster: string;
      node: string;
      snapshot: string;
      /** The workflow run: one reset per run. */
      runId: string;
    }): Promise<ControlPlaneRestoreResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      if (!/^[A-Za-z0-9._-]+$/.test(input.snapshot))
        throw nonRetryable(ErrorType.BadConfig, `not a snapshot name: ${JSON.stringify(input.snapshot)}`);
      const marker = `${MARKER_DIR}/cluster-reset-${input.runId.replace(/[^A-Za-z0-9-]/g, '')}`;
      const startBound = spec.k3s.startTimeoutSeconds ?? 300;
      return withSession(deps, spec, node, async (s) => {
        const done = (await s.exec(`test -f ${shellQuote(marker)}`)).code === 0;
        if (!done) {
          beat({ node: node.name, step: 'stopping k3s' });
          await s.exec('systemctl stop k3s 2>/dev/null || true');
          beat({ node: node.name, step: `cluster-reset from ${input.snapshot}` });
          const r = await s.exec(
            `k3s server --cluster-reset --cluster-reset-restore-path=${shellQuote(input.snapshot)}`,
          );
          if (r.code !== 0)
            throw nonRetryable(
              ErrorType.RestoreFailed,
              `${node.name}: k3s server --cluster-reset exited ${r.code}: ${r.stderr.trim().slice(-400)}`,
            );
          await must(
            s,
            node.name,
            `mkdir -p ${MARKER_DIR} && printf '%s\\n' ${shellQuote(input.snapshot)} >${shellQuote(marker)}`,
          );
        }
        beat({ node: node.name, step: 'starting k3s' });
        await must(s, node.name, `timeout ${startBound} systemctl start k3s`, { what: 'systemctl start k3s' });
        return { node: node.name, snapshot: input.snapshot, alreadyRestored: done };
      });
    },
  };
}
