// Chart upgrades with automatic rollback, reusable by any workflow (upgradeCluster, a drift reconcile):
// a component whose version or values changed gets its HelmChart updated (installComponent applies it
// and waits for the release and the workloads); if that fails, the chart goes back to the spec it had
// before. The previous spec is kept on the HelmChart itself (annotation below), not in workflow
// history: values may name things we keep out of history, and a retry after a crash finds it there.
import { removeAnnotation, type KubeObject } from '../kube/client.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { beat, sleep } from '../heartbeat.js';
import {
  HELM_NAMESPACE,
  SPEC_HASH,
  applyHelmChart,
  componentActivities,
  desiredHelmChart,
  rollBackFailedRelease,
  workloadsReady,
} from '../components/helmchart.js';

/** JSON {hash, spec} of the HelmChart before the upgrade that is under way. */
export const ROLLBACK_SPEC = 'pedro-ops.dev/rollback-spec';
const API = 'helm.cattle.io/v1';
type Chart = KubeObject & { spec?: Record<string, unknown> };
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
      // A retry of an interrupted upgrade finds the new hash applied and the old spec in the annotation.
      let previous: { hash: string; spec: Record<string, unknown> } | undefined = anns[ROLLBACK_SPEC]
        ? (JSON.parse(anns[ROLLBACK_SPEC]) as { hash: string; spec: Record<string, unknown> })
        : undefined;
      if (anns[SPEC_HASH] === hash && !previous) {
        await components.installComponent(input); // converges an unchanged chart (no write when healthy)
        return { name: c.name, action: 'unchanged', to: c.version };
      }
      if (anns[SPEC_HASH] !== hash) {
        previous = { hash: anns[SPEC_HASH] ?? '', spec: current.spec ?? {} };
        await kube.patch(
          {
            apiVersion: API,
            kind: 'HelmChart',
            metadata: {
              name: c.name,
              namespace: HELM_NAMESPACE,
              annotations: { [ROLLBACK_SPEC]: JSON.stringify(previous) },
            },
          },
          'merge',
        );
      }
      const from = typeof previous!.spec.version === 'string' ? previous!.spec.version : '';
      try {
        await components.installComponent(input);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        const back = await rollBack(c.name, previous!, c.timeoutSeconds);
        throw nonRetryable(
          ErrorType.InstallFailed,
          `upgrade of ${c.name} ${from} → ${c.version} failed (${why}); rolled back to version ${from} and its previous values${back ? ` (${back})` : ''}`,
          { component: c.name, rolledBackTo: from },
        );
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

      /** The previous spec applied again, and its install Job waited for. */
      async function rollBack(
        name: string,
        prev: { hash: string; spec: Record<string, unknown> },
        timeoutSeconds: number,
      ): Promise<string | undefined> {
        const jobName = `helm-install-${name}`;
        const released = await rollBackFailedRelease(kube, c!);
        const cur = await kube.read<Chart>(API, 'HelmChart', name, HELM_NAMESPACE);
        const oldJob = await kube.read<Job>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        await applyHelmChart(kube, cur ?? {}, {
          apiVersion: API,
          kind: 'HelmChart',
          metadata: { name, namespace: HELM_NAMESPACE, annotations: { [SPEC_HASH]: prev.hash, [ROLLBACK_SPEC]: null } },
          spec: prev.spec,
        } as never);
        // helm-controller replaces a changed Job (k3s-io/helm-controller@v0.16.5 pkg/controllers/chart/chart.go
        // jobPatcher); a failed one that did not change would never rerun. Only the failed Job goes: by
        // now the controller may have created the rollback's Job under the same name, and deleting that
        // one would cut its helm run short (a release left pending, which failurePolicy abort refuses).
        if (oldJob?.metadata?.uid)
          await kube.delete('batch/v1', 'Job', jobName, HELM_NAMESPACE, { uid: oldJob.metadata.uid });
        const deadline = Date.now() + timeoutSeconds * 1000;
        for (;;) {
          const job = await kube.read<Job>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
          const fresh = job && job.metadata?.uid !== oldJob?.metadata?.uid;
          const done = (t: string) => job?.status?.conditions?.some((x) => x.type === t && x.status === 'True');
          // The release is back; so must the workloads be, as installComponent waits for them.
          const w = fresh && done('Complete') ? await workloadsReady(kube, c!) : undefined;
          if (w?.done) return released;
          if ((fresh && done('Failed')) || w?.failed || Date.now() > deadline)
            throw nonRetryable(
              ErrorType.InstallFailed,
              `${name}: the upgrade failed and so did the rollback to ${String(prev.spec.version)}; the release needs an operator`,
              { component: name },
            );
          beat({ component: name, step: `rolling back to ${String(prev.spec.version)}` });
          await sleep(250);
        }
      }
    },
  };
}
