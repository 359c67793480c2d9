// Chart upgrades with automatic rollback, reusable by any workflow (upgradeCluster, a drift reconcile):
// a component whose version or values changed gets its HelmChart updated (installComponent applies it
// and waits for the release and the workloads); if that fails, the chart goes back to the spec it had
// before. The previous spec is kept on the HelmChart itself (annotation below), not in workflow
// history: values may name things we keep out of history, and a retry after a crash finds it there.
// A retry of the same activity execution (a crashed worker, activityKey) never runs the new version
// again: a failed helm Job it finds for the spec it wrote is the outcome, and a rollback it had written
// back (annotation ROLLED_BACK, in the same write as the previous spec) is waited for, not repeated. An
// operator's retry is a new activity execution: it upgrades again.
import { removeAnnotation, type KubeObject } from '../kube/client.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { activityKey, beat, sleep } from '../heartbeat.js';
import {
  HELM_NAMESPACE,
  SPEC_HASH,
  applyHelmChart,
  componentActivities,
  desiredHelmChart,
  rollBackFailedRelease,
  workloadsReady,
} from '../components/helmchart.js';

/** JSON {hash, spec, by} of the HelmChart before the upgrade that is under way; `by` the activity that wrote it. */
export const ROLLBACK_SPEC = 'pedro-ops.dev/rollback-spec';
/** JSON RolledBack: set with the previous spec when a failed upgrade is rolled back. */
export const ROLLED_BACK = 'pedro-ops.dev/rolled-back';
const API = 'helm.cattle.io/v1';
type Chart = KubeObject & { spec?: Record<string, unknown> };
type Previous = { hash: string; spec: Record<string, unknown>; by?: string };
/** What a rollback recorded: the failed spec's hash, the activity that rolled back, why, and the failed Job. */
type RolledBack = { hash: string; by?: string; why: string; from: string; released?: string; failedJob?: string };
type Job = KubeObject & { status?: { conditions?: { type: string; status: string }[] } };

export interface ChartUpgradeResult {
  name: string;
  /** unchanged: nothing to upgrade; upgraded: new spec installed and healthy. */
  action: 'unchanged' | 'upgraded' | 'installed';
  from?: string;
  to: string;
}

export function chartUpgradeActivities(deps: ActivityDeps) {
  const components = componentActivities(deps);
  return {
    /**
     * Upgrades one component to its configured chart version and values. On failure the chart is
     * rolled back to its previous version and values, the rollback is waited for, and the failure
     * (InstallFailed, non-retryable) says what failed and what it went back to.
     */
    async upgradeComponent(input: { cluster: string; component: string }): Promise<ChartUpgradeResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const c = spec.components.find((x) => x.name === input.component);
      if (!c) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no component "${input.component}"`);
      const kube = deps.kube(spec);
      const desired = desiredHelmChart(spec, c, deps.clusters.dir);
      const hash = (desired.metadata!.annotations as Record<string, string>)[SPEC_HASH];
      const current = await kube.read<Chart>(API, 'HelmChart', c.name, HELM_NAMESPACE);
      const anns = (current?.metadata?.annotations ?? {}) as Record<string, string>;
      if (!current) {
        await components.installComponent(input);
        return { name: c.name, action: 'installed', to: c.version };
      }
      const key = activityKey();
      // A retry of an interrupted upgrade finds the new hash applied and the old spec in the annotation.
      let previous: Previous | undefined = anns[ROLLBACK_SPEC]
        ? (JSON.parse(anns[ROLLBACK_SPEC]) as Previous)
        : undefined;
      const rolled = anns[ROLLED_BACK] ? (JSON.parse(anns[ROLLED_BACK]) as RolledBack) : undefined;
      if (key && rolled?.by === key && rolled.hash === hash) {
        // This activity already failed the upgrade and wrote the previous spec back; its worker died
        // while the rollback ran. Finish waiting for it and fail as that attempt would have.
        beat({ component: c.name, step: `resuming the rollback to ${rolled.from}` });
        if (rolled.failedJob)
          await kube.delete('batch/v1', 'Job', `helm-install-${c.name}`, HELM_NAMESPACE, { uid: rolled.failedJob });
        await awaitRollback(c.name, rolled.from, rolled.failedJob, c.timeoutSeconds);
        throw upgradeFailed(rolled);
      }
      if (anns[SPEC_HASH] === hash && !previous) {
        await components.installComponent(input); // converges an unchanged chart (no write when healthy)
        return { name: c.name, action: 'unchanged', to: c.version };
      }
      if (anns[SPEC_HASH] !== hash) {
        previous = { hash: anns[SPEC_HASH] ?? '', spec: current.spec ?? {}, by: key };
        await kube.patch(
          {
            apiVersion: API,
            kind: 'HelmChart',
            metadata: {
              name: c.name,
              namespace: HELM_NAMESPACE,
              annotations: { [ROLLBACK_SPEC]: JSON.stringify(previous), ...removeAnnotation(ROLLED_BACK) },
            },
          },
          'merge',
        );
      }
      const from = typeof previous!.spec.version === 'string' ? previous!.spec.version : '';
      try {
        // The spec this activity wrote in an earlier attempt: its failed Job is this upgrade's outcome.
        await components.installComponent(input, { failedJobIsOutcome: Boolean(key) && previous!.by === key });
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw upgradeFailed(await rollBack(c.name, previous!, { hash, by: key, why, from }, c.timeoutSeconds));
      }
      await kube.patch(
        {
          apiVersion: API,
          kind: 'HelmChart',
          metadata: { name: c.name, namespace: HELM_NAMESPACE, annotations: removeAnnotation(ROLLBACK_SPEC) },
        },
        'merge',
      );
      return { name: c.name, action: 'upgraded', from, to: c.version };

      function upgradeFailed(r: RolledBack) {
        return nonRetryable(
          ErrorType.InstallFailed,
          `upgrade of ${c!.name} ${r.from} → ${c!.version} failed (${r.why}); rolled back to version ${r.from} and its previous values${r.released ? ` (${r.released})` : ''}`,
          { component: c!.name, rolledBackTo: r.from },
        );
      }

      /** The previous spec applied again (recording the rollback in the same write), and its install Job waited for. */
      async function rollBack(
        name: string,
        prev: Previous,
        r: RolledBack,
        timeoutSeconds: number,
      ): Promise<RolledBack> {
        const jobName = `helm-install-${name}`;
        const released = await rollBackFailedRelease(kube, c!);
        const cur = await kube.read<Chart>(API, 'HelmChart', name, HELM_NAMESPACE);
        const oldJob = await kube.read<Job>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        const record: RolledBack = { ...r, released, failedJob: oldJob?.metadata?.uid };
        await applyHelmChart(kube, cur ?? {}, {
          apiVersion: API,
          kind: 'HelmChart',
          metadata: {
            name,
            namespace: HELM_NAMESPACE,
            annotations: { [SPEC_HASH]: prev.hash, [ROLLBACK_SPEC]: null, [ROLLED_BACK]: JSON.stringify(record) },
          },
          spec: prev.spec,
        } as never);
        // helm-controller replaces a changed Job (k3s-io/helm-controller@v0.16.5 pkg/controllers/chart/chart.go
        // jobPatcher); a failed one that did not change would never rerun. Only the failed Job goes: by
        // now the controller may have created the rollback's Job under the same name, and deleting that
        // one would cut its helm run short (a release left pending, which failurePolicy abort refuses).
        if (oldJob?.metadata?.uid)
          await kube.delete('batch/v1', 'Job', jobName, HELM_NAMESPACE, { uid: oldJob.metadata.uid });
        await awaitRollback(name, String(prev.spec.version), oldJob?.metadata?.uid, timeoutSeconds);
        return record;
      }

      /** Waits for the rollback's own helm Job (not the failed one) and then the workloads. */
      async function awaitRollback(
        name: string,
        version: string,
        failedJob: string | undefined,
        timeoutSeconds: number,
      ) {
        const jobName = `helm-install-${name}`;
        const deadline = Date.now() + timeoutSeconds * 1000;
        for (;;) {
          const job = await kube.read<Job>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
          const fresh = job && job.metadata?.uid !== failedJob;
          const done = (t: string) => job?.status?.conditions?.some((x) => x.type === t && x.status === 'True');
          // The release is back; so must the workloads be, as installComponent waits for them.
          const w = fresh && done('Complete') ? await workloadsReady(kube, c!) : undefined;
          if (w?.done) return;
          if ((fresh && done('Failed')) || w?.failed || Date.now() > deadline)
            throw nonRetryable(
              ErrorType.InstallFailed,
              `${name}: the upgrade failed and so did the rollback to ${version}; the release needs an operator`,
              { component: name },
            );
          beat({ component: name, step: `rolling back to ${version}` });
          await sleep(250);
        }
      }
    },
  };
}
