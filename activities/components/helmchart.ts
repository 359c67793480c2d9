// Platform components as k3s HelmChart resources. The desired HelmChart carries a spec-hash
// annotation: an existing chart with the same hash whose install Job completed is left untouched
// (no write), a different hash is updated, a failed Job is re-triggered by bumping an annotation.
// Success = Job helm-install-<name> Complete and every declared workload rolled out.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import type { ClusterSpec, ComponentSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from '../kube/rollout.js';
import { beat, sleep } from '../heartbeat.js';

export const HELM_NAMESPACE = 'kube-system';
export const SPEC_HASH = 'pedro-ops.dev/spec-hash';
export const RETRIGGER = 'pedro-ops.dev/retrigger';
const API = 'helm.cattle.io/v1';

type Obj = KubeObject & { spec?: Record<string, any>; status?: Record<string, any> };

export interface ComponentResult {
  name: string;
  version: string;
  /** created | updated | retriggered | unchanged */
  action: 'created' | 'updated' | 'retriggered' | 'unchanged';
  satisfied: boolean;
  workloads: { kind: string; name: string; namespace: string; message: string }[];
  durationMs: number;
}

function valuesOf(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string): Record<string, unknown> | undefined {
  if (c.values) return c.values;
  if (!c.valuesFile) return undefined;
  const path = resolve(clustersDir ?? '.', c.valuesFile);
  if (!existsSync(path))
    throw nonRetryable(ErrorType.BadConfig, `values file ${c.valuesFile} of ${c.name} not found at ${path}`);
  return parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  void spec;
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function desiredHelmChart(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string): Obj {
  const values = valuesOf(spec, c, clustersDir);
  const chartSpec: Record<string, unknown> = {
    chart: c.chart,
    version: c.version,
    targetNamespace: c.namespace,
    createNamespace: true,
    // Bounded: the default (1000) would keep a broken chart retrying for hours.
    backOffLimit: 2,
    timeout: `${c.timeoutSeconds}s`,
    failurePolicy: 'abort',
  };
  if (c.repo && !c.repo.startsWith('oci://')) chartSpec.repo = c.repo;
  if (c.repo?.startsWith('oci://')) {
    chartSpec.chart = `${c.repo.replace(/\/$/, '')}/${c.chart}`;
    // helm-controller v0.16.5 (k3s v1.31's) HelmChartSpec.PlainHTTP -> the job's PLAIN_HTTP env, i.e.
    // `helm pull --plain-http`: without it Helm speaks TLS to a plain-HTTP registry and the pull fails.
    // (k3s-io/helm-controller pkg/apis/helm.cattle.io/v1/types.go, pkg/controllers/chart/chart.go)
    if (spec.registry && !spec.registry.tls) chartSpec.plainHTTP = true;
  }
  if (values && Object.keys(values).length > 0) chartSpec.valuesContent = stringify(values);
  const hash = createHash('sha256').update(stableJson(chartSpec)).digest('hex').slice(0, 32);
  return {
    apiVersion: API,
    kind: 'HelmChart',
    metadata: {
      name: c.name,
      namespace: HELM_NAMESPACE,
      labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
      annotations: { [SPEC_HASH]: hash },
    },
    spec: chartSpec,
  };
}

const cond = (o: Obj | undefined, type: string) =>
  (o?.status?.conditions ?? []).find(
    (c: { type: string; status: string }) => c.type === type && c.status === 'True',
  ) as { message?: string } | undefined;

async function workloadsReady(
  kube: KubePort,
  c: ComponentSpec,
): Promise<{ done: boolean; failed?: string; list: ComponentResult['workloads'] }> {
  const list: ComponentResult['workloads'] = [];
  let done = true;
  for (const w of c.workloads) {
    const ns = w.namespace ?? c.namespace;
    const obj = await kube.read(WORKLOAD_API_VERSION[w.kind], w.kind, w.name, ns);
    if (!obj) {
      list.push({ kind: w.kind, name: w.name, namespace: ns, message: 'not created yet' });
      done = false;
      continue;
    }
    const st = w.readyWhen === 'running' ? await podsRunning(kube, obj, w.replicas ?? 1) : rolloutStatus(w.kind, obj);
    list.push({ kind: w.kind, name: w.name, namespace: ns, message: st.message });
    if (st.failed) return { done: false, failed: `${w.kind} ${ns}/${w.name}: ${st.message}`, list };
    if (!st.done) done = false;
  }
  return { done, list };
}

/** `readyWhen: running`: every pod of the workload Running, Ready or not (OpenBAO before its unseal). */
async function podsRunning(
  kube: KubePort,
  obj: Obj,
  want: number,
): Promise<{ done: boolean; failed: boolean; message: string }> {
  const match = (obj.spec?.selector?.matchLabels ?? {}) as Record<string, string>;
  const selector = Object.entries(match)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const pods = (await kube.list<Obj>('v1', 'Pod', obj.metadata?.namespace, selector)).filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
  const running = pods.filter((p) => p.status?.phase === 'Running').length;
  const ready = pods.filter((p) =>
    (p.status?.conditions ?? []).some(
      (c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True',
    ),
  ).length;
  return {
    done: running >= want,
    failed: false,
    message: `${running} of ${want} pods running, ${ready} ready${ready < running ? ' (readiness waits for a later step)' : ''}`,
  };
}

export function componentActivities(deps: ActivityDeps) {
  return {
    async installComponent(input: { cluster: string; component: string }): Promise<ComponentResult> {
      const t0 = Date.now();
      const spec = clusterOrFail(deps, input.cluster);
      const c = spec.components.find((x) => x.name === input.component);
      if (!c) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no component "${input.component}"`);
      const kube = deps.kube(spec);
      const desired = desiredHelmChart(spec, c, deps.clusters.dir);
      const hash = (desired.metadata!.annotations as Record<string, string>)[SPEC_HASH];
      const jobName = `helm-install-${c.name}`;

      beat({ component: c.name, step: 'observing' });
      const current = await kube.read<Obj>(API, 'HelmChart', c.name, HELM_NAMESPACE);
      const oldJob = await kube.read<Obj>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
      let action: ComponentResult['action'] = 'unchanged';
      if (!current) {
        await kube.create(desired);
        action = 'created';
      } else if (current.metadata?.annotations?.[SPEC_HASH] !== hash) {
        await kube.replace({
          ...desired,
          metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion },
        });
        action = 'updated';
      } else if (
        cond(oldJob, 'Failed') ||
        cond(current, 'Failed') ||
        (!oldJob && !(await workloadsReady(kube, c)).done)
      ) {
        // A previous install failed (or its Job vanished): a write makes helm-controller run it again.
        // The failed Job goes first: helm-controller keeps an existing Job, and a failed one never reruns.
        if (oldJob && cond(oldJob, 'Failed')) await kube.delete('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        const n = Number(current.metadata?.annotations?.[RETRIGGER] ?? '0') + 1;
        await kube.patch(
          {
            apiVersion: API,
            kind: 'HelmChart',
            metadata: { name: c.name, namespace: HELM_NAMESPACE, annotations: { [RETRIGGER]: String(n) } },
          },
          'merge',
        );
        action = 'retriggered';
      }
      const staleJobUid = action === 'unchanged' ? undefined : oldJob?.metadata?.uid;

      const deadline = t0 + c.timeoutSeconds * 1000;
      for (let polls = 0; ; polls++) {
        const job = await kube.read<Obj>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        const fresh = job && job.metadata?.uid !== staleJobUid;
        if (fresh && cond(job, 'Failed')) {
          throw nonRetryable(
            ErrorType.InstallFailed,
            `${c.name}: Job ${HELM_NAMESPACE}/${jobName} failed: ${cond(job, 'Failed')?.message ?? 'no message'}`,
            { component: c.name },
          );
        }
        // No Job but the chart unchanged and its workloads up: installed before Jobs were kept (or cleaned up).
        if ((fresh && cond(job, 'Complete')) || (action === 'unchanged' && !job)) {
          const w = await workloadsReady(kube, c);
          if (w.failed) throw nonRetryable(ErrorType.InstallFailed, `${c.name}: ${w.failed}`, { component: c.name });
          if (w.done)
            return {
              name: c.name,
              version: c.version,
              action,
              satisfied: action === 'unchanged',
              workloads: w.list,
              durationMs: Date.now() - t0,
            };
          beat({
            component: c.name,
            step: 'waiting for workloads',
            workloads: w.list.map((x) => `${x.kind}/${x.name}: ${x.message}`),
          });
        } else {
          beat({ component: c.name, step: `waiting for Job ${jobName}`, polls });
        }
        if (Date.now() > deadline) {
          throw nonRetryable(
            ErrorType.InstallFailed,
            `${c.name}: not ready within its timeout of ${c.timeoutSeconds}s`,
            { component: c.name },
          );
        }
        await sleep(200);
      }
    },
  };
}
