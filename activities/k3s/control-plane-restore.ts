// The restore step of recoverControlPlane: k3s's documented single-server restore
// (docs.k3s.io/cli/etcd-snapshot "Restoring Snapshots"): stop k3s, run
// `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` (with etcd-s3 in config.yaml the
// path is the S3 snapshot name, downloaded first: k3s-io/k3s#8169), which restores and exits, then
// start k3s again without the flags. The reset runs detached on the node and records its result in
// a directory per run, so a retried attempt (worker killed during or after the reset) waits for the
// running reset or finds it done instead of running it twice.
import { shellQuote } from '../ssh/client.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { beat, sleep } from '../heartbeat.js';
import { must, nodeOrFail, withSession } from '../ssh/session.js';
import { installWithoutStart, type K3sInstallResult } from './install.js';
import { serverTokenActivities } from './server-token.js';

const MARKER_DIR = '/var/lib/rancher/pedro-ops';

export interface ControlPlaneRestoreResult {
  node: string;
  snapshot: string;
  /** The reset was started by an earlier attempt of this run; this one waited for it and started k3s. */
  alreadyRestored: boolean;
}

/**
 * What a restore onto this server needs: k3s installed (a replacement machine without it gets it from
 * installRestoreTarget), and the server token. The snapshot's confidential data is encrypted with the
 * token; without the same token the snapshot is unusable (docs.k3s.io/datastore/backup-restore:
 * "you must also back up the server token file at /var/lib/rancher/k3s/server/token"); a disk without
 * it gets it back from its 1Password copy (server-token.ts).
 */
export interface RestoreTarget {
  node: string;
  /** `k3s --version` on the node ('' when k3s is not installed). */
  k3sVersion: string;
  tokenPresent: boolean;
}

export const K3S_TOKEN_PATH = '/var/lib/rancher/k3s/server/token';

export function controlPlaneRestoreActivities(deps: ActivityDeps) {
  return {
    ...serverTokenActivities(deps),

    /** A replacement server (empty disk): k3s at the pinned version, installed but not started. */
    async installRestoreTarget(input: { cluster: string; node: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      return installWithoutStart(deps, spec, node);
    },

    async observeRestoreTarget(input: { cluster: string; node: string }): Promise<RestoreTarget> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      return withSession(deps, spec, node, async (s) => {
        const r = await must(
          s,
          node.name,
          `printf 'version=%s\\n' "$(k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3)"; ` +
            `[ -s ${K3S_TOKEN_PATH} ] && echo token=yes || echo token=no`,
          { what: 'observe k3s and its token' },
        );
        const value = (k: string) =>
          r.stdout
            .split('\n')
            .find((l) => l.startsWith(`${k}=`))
            ?.slice(k.length + 1)
            .trim() ?? '';
        return { node: node.name, k3sVersion: value('version'), tokenPresent: value('token') === 'yes' };
      });
    },

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
      // One directory per run: `done` (the snapshot restored), `pid` and `rc` of the reset, its log.
      const dir = `${MARKER_DIR}/cluster-reset-${input.runId.replace(/[^A-Za-z0-9-]/g, '')}`;
      const q = (f: string) => shellQuote(`${dir}/${f}`);
      const startBound = spec.k3s.startTimeoutSeconds ?? 300;
      return withSession(deps, spec, node, async (s) => {
        const status = async () =>
          (
            await must(
              s,
              node.name,
              `if [ -f ${q('done')} ]; then echo done; elif [ -f ${q('rc')} ]; then echo "failed $(cat ${q('rc')})"; ` +
                `elif [ -f ${q('pid')} ] && kill -0 "$(cat ${q('pid')})" 2>/dev/null; then echo running; else echo none; fi`,
              { what: 'cluster-reset status' },
            )
          ).stdout.trim();
        let state = await status();
        const startedHere = state === 'none';
        if (startedHere) {
          // Detached from this SSH session (nohup, output to a file): a worker killed mid-reset drops
          // the session, not the reset, and `done` is written by the same process that ran it. The
          // retry then finds it running or done instead of resetting a second time.
          beat({ node: node.name, step: `cluster-reset from ${input.snapshot}` });
          const snap = shellQuote(input.snapshot);
          const script =
            `systemctl stop k3s 2>/dev/null || true; ` +
            `k3s server --cluster-reset --cluster-reset-restore-path=${snap} >${q('log')} 2>&1; rc=$?; ` +
            `if [ $rc -eq 0 ]; then printf '%s\\n' ${snap} >${q('done.tmp')} && mv ${q('done.tmp')} ${q('done')}; fi; ` +
            `echo $rc >${q('rc')}`;
          await must(
            s,
            node.name,
            `mkdir -p ${shellQuote(dir)} && chmod 700 ${shellQuote(dir)} && ` +
              `{ nohup sh -c ${shellQuote(script)} </dev/null >/dev/null 2>&1 & echo $! >${q('pid')}; }`,
            { what: 'start k3s server --cluster-reset' },
          );
          state = await status();
        }
        const deadline = Date.now() + startBound * 1000;
        while (state === 'running') {
          beat({ node: node.name, step: `cluster-reset from ${input.snapshot} running` });
          if (Date.now() > deadline)
            throw retryable(ErrorType.NotReady, `${node.name}: cluster-reset still running after ${startBound}s`);
          await sleep(1000);
          state = await status();
        }
        if (state.startsWith('failed') && !state.endsWith(' 0')) {
          const log = (await s.exec(`tail -c 400 ${q('log')}`)).stdout.trim();
          // An operator's retry of the parked step starts a fresh reset.
          await s.exec(`rm -f ${q('rc')} ${q('pid')}`);
          throw nonRetryable(
            ErrorType.RestoreFailed,
            `${node.name}: k3s server --cluster-reset exited ${state.slice('failed '.length)}: ${log}`,
          );
        }
        if (state !== 'done')
          // The reset process is gone without a result (the node rebooted mid-reset): the next attempt starts it again.
          throw retryable(ErrorType.Transient, `${node.name}: cluster-reset ended without a result (${state})`);
        beat({ node: node.name, step: 'starting k3s' });
        await must(s, node.name, `timeout ${startBound} systemctl start k3s`, { what: 'systemctl start k3s' });
        return { node: node.name, snapshot: input.snapshot, alreadyRestored: !startedHere };
      });
    },
  };
}
