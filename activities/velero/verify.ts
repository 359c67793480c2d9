// Checks on what a restore produced: objects against the backup's resource list (or counts per
// kind), workload availability by kubectl's rollout rules, data probes as Jobs; and the scratch
// namespace cleanup every drill ends with. One file: they are the one activity set
// (veleroVerifyActivities) a drill and a DR restore call after Velero reports the restore done.
import { CoreV1Api, KubernetesObjectApi } from '@kubernetes/client-node';
import type { ProbeSpec } from '../../config/schema.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from '../kube/rollout.js';
import { beat, dnsLabel, loadKubeConfig, pollUntil, splitGvk } from './client.js';
import { resumeDetails } from '../heartbeat.js';
import { claimMounts } from '../probes/index.js';
import type { CompareResult, ProbeResult, ResourceList, StuckNamespace, WorkloadsResult } from './types.js';
import { restoredSnapshotNames, restoreUid } from './volumes.js';

/** Objects controllers recreate under new names (or that Velero skips): presence by name proves nothing. */
const VOLATILE_KINDS = new Set([
  'Pod',
  'Event',
  'Endpoints',
  'EndpointSlice',
  'ReplicaSet',
  'ControllerRevision',
  'Lease',
  'PodMetrics',
]);
/** Kinds counted when no resource list is available. */
const COUNT_KINDS = [
  'v1/ConfigMap',
  'v1/Secret',
  'v1/Service',
  'v1/ServiceAccount',
  'v1/PersistentVolumeClaim',
  'apps/v1/Deployment',
  'apps/v1/StatefulSet',
  'apps/v1/DaemonSet',
  'batch/v1/CronJob',
];

/** Lists a kind; undefined when the API server does not serve it (a CRD not installed, an old API). */
async function listServed(
  kube: KubePort,
  apiVersion: string,
  kind: string,
  ns: string,
): Promise<KubeObject[] | undefined> {
  try {
    return await kube.list(apiVersion, kind, ns);
  } catch (err) {
    if (/Unrecognized API version and kind/i.test((err as Error).message)) return undefined;
    throw err;
  }
}

/** The source Job finished (or is gone, e.g. a CronJob's history limit removed it). */
async function completedJob(kube: KubePort, ns: string, name: string): Promise<boolean> {
  const job = await kube.read<KubeObject & { status?: { completionTime?: string } }>('batch/v1', 'Job', name, ns);
  return !job || Boolean(job.status?.completionTime);
}

export function veleroVerifyActivities(deps: ActivityDeps) {
  const kubeOf = (cluster: string) => {
    const spec = clusterOrFail(deps, cluster);
    return { spec, kube: deps.kube(spec) };
  };

  return {
    /**
     * Every namespaced item of the mapped source namespaces must exist by name in its target
     * namespace. Without a list, counts per kind in source vs target are compared instead.
     */
    async veleroCompareRestored(input: {
      cluster: string;
      mapping: Record<string, string>;
      resourceList?: ResourceList;
      /** The Restore: VolumeSnapshots come back under names derived from its uid. */
      restore?: string;
    }): Promise<CompareResult> {
      const { spec, kube } = kubeOf(input.cluster);
      const targets = Object.values(input.mapping);
      const missingNamespaces: string[] = [];
      const restoredBy = new Set<string>();
      for (const ns of targets) {
        const o = await kube.read('v1', 'Namespace', ns);
        if (!o) missingNamespaces.push(ns);
        const by = o?.metadata?.labels?.['velero.io/restore-name'];
        if (by) restoredBy.add(by);
      }
      // A restored namespace carries the Restore's name when the caller did not give it (older histories).
      const uid = await restoreUid(kube, spec.backups.veleroNamespace, input.restore ?? [...restoredBy][0]);
      const counts: CompareResult['counts'] = {};
      const missing: string[] = [];
      const skipped: string[] = [];

      if (input.resourceList) {
        for (const [gvk, items] of Object.entries(input.resourceList)) {
          const { apiVersion, kind } = splitGvk(gvk);
          if (VOLATILE_KINDS.has(kind) || kind === 'Namespace') continue;
          const wanted = new Map<string, string[]>();
          const sourceOf = new Map<string, string>();
          for (const item of items) {
            const slash = item.indexOf('/');
            if (slash < 0) continue; // cluster-scoped: not part of a namespace restore check
            const target = input.mapping[item.slice(0, slash)];
            if (!target) continue;
            sourceOf.set(target, item.slice(0, slash));
            wanted.set(target, [...(wanted.get(target) ?? []), item.slice(slash + 1)]);
          }
          if (wanted.size === 0) continue;
          const c = (counts[gvk] = { expected: 0, restored: 0 });
          for (const [target, names] of wanted) {
            const present = new Set((await listServed(kube, apiVersion, kind, target))?.map((o) => o.metadata?.name));
            for (const n of names) {
              if (!present.has(n) && kind === 'Job' && (await completedJob(kube, sourceOf.get(target)!, n))) {
                // Velero does not restore a Job that completed (pkg/restore/restore.go isCompleted):
                // a CronJob's finished runs are expected to be absent.
                skipped.push(`${gvk} ${target}/${n} (completed: Velero skips it)`);
                continue;
              }
              c.expected += 1;
              const names = kind === 'VolumeSnapshot' ? restoredSnapshotNames(uid, n) : [n];
              if (names.some((x) => present.has(x))) c.restored += 1;
              else missing.push(`${gvk} ${target}/${n}`);
            }
          }
          beat({ compared: gvk });
        }
        return { method: 'resource-list', counts, missing, missingNamespaces, ...(skipped.length ? { skipped } : {}) };
      }

      for (const gvk of COUNT_KINDS) {
        const { apiVersion, kind } = splitGvk(gvk);
        let expected = 0;
        let restored = 0;
        for (const [source, target] of Object.entries(input.mapping)) {
          expected += (await listServed(kube, apiVersion, kind, source))?.length ?? 0;
          restored += (await listServed(kube, apiVersion, kind, target))?.length ?? 0;
        }
        if (expected === 0 && restored === 0) continue;
        counts[gvk] = { expected, restored };
        if (restored < expected) missing.push(`${gvk}: ${restored} of ${expected} restored`);
      }
      return { method: 'counts', counts, missing, missingNamespaces };
    },

    /** Waits until every Deployment/StatefulSet/DaemonSet in the namespaces is rolled out. */
    async veleroWaitWorkloads(input: {
      cluster: string;
      namespaces: string[];
      timeoutSeconds: number;
    }): Promise<WorkloadsResult> {
      const { kube } = kubeOf(input.cluster);
      let notReady: WorkloadsResult['notReady'] = [];
      let ready: string[] = [];
      const ok = await pollUntil(input.timeoutSeconds, 'restored workloads', async () => {
        notReady = [];
        ready = [];
        for (const ns of input.namespaces) {
          for (const kind of ['Deployment', 'StatefulSet', 'DaemonSet']) {
            for (const o of await kube.list(WORKLOAD_API_VERSION[kind], kind, ns)) {
              const id = `${kind} ${ns}/${o.metadata?.name}`;
              const st = rolloutStatus(kind, o);
              if (st.done) ready.push(id);
              else notReady.push({ workload: id, message: st.message });
            }
          }
        }
        return notReady.length === 0 ? true : undefined;
      });
      return { ready, notReady, timedOut: !ok };
    },

    /** Runs each job probe in the namespace its source namespace was restored to. */
    async veleroRunProbes(input: {
      cluster: string;
      mapping: Record<string, string>;
      probes: ProbeSpec[];
      runId: string;
    }): Promise<ProbeResult[]> {
      const { spec, kube } = kubeOf(input.cluster);
      // A retry (after a crash or a hand-back) keeps the probes the earlier attempt finished: their Jobs
      // are deleted already, and running one again would cost its whole runtime.
      const before = resumeDetails<{ probesDone: ProbeResult[]; runId: string }>();
      const results: ProbeResult[] =
        before?.runId === input.runId && Array.isArray(before.probesDone)
          ? before.probesDone.slice(0, input.probes.length)
          : [];
      const progress = () => ({ runId: input.runId, probesDone: results });
      for (const [i, probe] of input.probes.entries()) {
        if (i < results.length) continue;
        if (probe.type !== 'job') {
          results.push({
            name: `probe-${i}`,
            namespace: '',
            passed: true,
            skipped: true,
            message: `${probe.type} probes check live endpoints, not restored namespaces`,
          });
          continue;
        }
        const target = input.mapping[probe.namespace];
        const name = dnsLabel(`drill-probe-${i}-${input.runId}`);
        if (!target) {
          results.push({
            name,
            namespace: probe.namespace,
            passed: true,
            skipped: true,
            message: `namespace ${probe.namespace} is not part of this restore`,
          });
          continue;
        }
        const existing = await kube.read('batch/v1', 'Job', name, target);
        if (!existing) {
          await kube.create({
            apiVersion: 'batch/v1',
            kind: 'Job',
            metadata: {
              name,
              namespace: target,
              labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator', 'pedro-ops/probe': name },
            },
            spec: {
              backoffLimit: 0,
              activeDeadlineSeconds: probe.timeoutSeconds ?? 300,
              template: {
                metadata: { labels: { 'pedro-ops/probe': name } },
                spec: {
                  restartPolicy: 'Never',
                  containers: [
                    {
                      name: 'probe',
                      image: probe.image,
                      command: probe.command,
                      env: [
                        { name: 'DRILL_NAMESPACE', value: target },
                        { name: 'DRILL_SOURCE_NAMESPACE', value: probe.namespace },
                      ],
                      volumeMounts: claimMounts(probe.claims).volumeMounts,
                    },
                  ],
                  // The restored claims, read-only: the probe reads what the restore brought back.
                  volumes: claimMounts(probe.claims).volumes,
                },
              },
            },
          });
        }
        const outcome = await pollUntil(
          probe.timeoutSeconds ?? 300,
          `probe ${name}`,
          async () => {
            const j = await kube.read<
              KubeObject & { status?: { conditions?: { type: string; status: string; message?: string }[] } }
            >('batch/v1', 'Job', name, target);
            const conds = j?.status?.conditions ?? [];
            if (conds.some((c) => c.type === 'Complete' && c.status === 'True'))
              return { passed: true, message: 'job completed' };
            const failed = conds.find((c) => c.type === 'Failed' && c.status === 'True');
            return failed ? { passed: false, message: failed.message ?? 'job failed' } : undefined;
          },
          progress(),
        );
        let message = outcome?.message ?? `job did not finish within ${probe.timeoutSeconds ?? 300}s`;
        if (!outcome?.passed) message += await podLogTail(deps, spec, target, name);
        results.push({ name, namespace: target, passed: outcome?.passed ?? false, message });
        // Scratch namespaces take the Job with them; in a real restore target it must not linger.
        await deleteWithPods(deps, spec, 'batch/v1', 'Job', name, target);
        beat(progress());
      }
      return results;
    },

    /** Deletes namespaces and waits until they are gone (Terminating counts as still there). */
    async veleroDeleteNamespaces(input: {
      cluster: string;
      namespaces: string[];
      timeoutSeconds: number;
    }): Promise<{ deleted: string[]; remaining: string[]; stuck?: StuckNamespace[] }> {
      const { kube } = kubeOf(input.cluster);
      const deleted: string[] = [];
      for (const ns of input.namespaces) if (await kube.delete('v1', 'Namespace', ns)) deleted.push(ns);
      let remaining: KubeObject[] = [];
      await pollUntil(input.timeoutSeconds, 'namespace deletion', async () => {
        remaining = [];
        for (const ns of input.namespaces) {
          const o = await kube.read('v1', 'Namespace', ns);
          if (o) remaining.push(o);
        }
        return remaining.length === 0 ? true : undefined;
      });
      const stuck = remaining.map(stuckNamespace);
      return { deleted, remaining: remaining.map((o) => o.metadata!.name!), ...(stuck.length ? { stuck } : {}) };
    },

    async veleroNamespacesExist(input: { cluster: string; namespaces: string[] }): Promise<string[]> {
      const { kube } = kubeOf(input.cluster);
      const found: string[] = [];
      for (const ns of input.namespaces) if (await kube.read('v1', 'Namespace', ns)) found.push(ns);
      return found;
    },
  };
}

/**
 * Why a namespace is still there: its phase and the namespace controller's True conditions
 * (NamespaceContentRemaining, NamespaceFinalizersRemaining, NamespaceDeletionContentFailure, …:
 * k8s.io/api core/v1 types.go NamespaceConditionType), or that it was never deleted (re-created).
 */
function stuckNamespace(o: KubeObject): StuckNamespace {
  const n = o as KubeObject & {
    status?: { phase?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
  };
  return {
    namespace: n.metadata!.name!,
    phase: n.status?.phase ?? 'Active',
    terminating: Boolean(n.metadata?.deletionTimestamp),
    conditions: (n.status?.conditions ?? [])
      .filter((c) => c.status === 'True')
      .map((c) => `${c.type}${c.reason ? ` (${c.reason})` : ''}${c.message ? `: ${c.message.slice(0, 300)}` : ''}`),
  };
}

async function podLogTail(
  deps: ActivityDeps,
  spec: Parameters<typeof loadKubeConfig>[0],
  ns: string,
  job: string,
): Promise<string> {
  try {
    const core = loadKubeConfig(spec, deps.dataDir).makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `pedro-ops/probe=${job}` });
    const pod = pods.items[0]?.metadata?.name;
    if (!pod) return '';
    const log = await core.readNamespacedPodLog({ name: pod, namespace: ns, tailLines: 5 });
    return log ? `: ${String(log).trim().slice(-400)}` : '';
  } catch {
    return '';
  }
}

async function deleteWithPods(
  deps: ActivityDeps,
  spec: Parameters<typeof loadKubeConfig>[0],
  apiVersion: string,
  kind: string,
  name: string,
  ns: string,
): Promise<void> {
  try {
    const api = KubernetesObjectApi.makeApiClient(loadKubeConfig(spec, deps.dataDir));
    await api.delete(
      { apiVersion, kind, metadata: { name, namespace: ns } },
      undefined,
      undefined,
      undefined,
      undefined,
      'Background',
    );
  } catch {
    // Already gone, or the namespace is going: either way nothing lingers.
  }
}
