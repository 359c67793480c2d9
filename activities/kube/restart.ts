// `kubectl rollout restart` + `kubectl rollout status` for one consumer. The restart annotation value
// comes from the workflow (unique per rotation and per rollback, millisecond precision), so a retried
// activity finds its own annotation already set and only waits: one restart per rotation, never two.
import { createHash } from 'node:crypto';
import { beat, sleep, waitDeadline } from '../heartbeat.js';
import type { WorkloadRef } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import type { KubeObject } from './client.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from './rollout.js';
import { unsealIfSealed } from '../openbao/bootstrap.js';

export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';
export const ROTATION_ANNOTATION = 'pedro-ops.io/rotation-id';
const DS_TEMPLATE_GENERATION = 'deprecated.daemonset.template.generation';

export interface RestartInput {
  cluster: string;
  workload: WorkloadRef & { namespace: string };
  /** Unique per rotation (and per rollback): ISO time with ms plus the rotation id. */
  restartedAt: string;
  rotationId: string;
  timeoutSeconds: number;
  pollMs?: number;
}

export interface RestartResult {
  workload: string;
  /** This call patched the template (false: an earlier attempt already had). */
  patched: boolean;
  outcome: 'complete' | 'failed' | 'timeout' | 'missing';
  message: string;
}

/** A pod template's metadata: apps/v1 `spec.template`, batch/v1 CronJob `spec.jobTemplate.spec.template`. */
type Template = {
  metadata?: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec?: unknown;
};
type Workload = KubeObject & {
  spec?: {
    template?: Template;
    suspend?: boolean;
    jobTemplate?: { metadata?: Template['metadata']; spec?: { template?: Template } & Record<string, unknown> };
    selector?: { matchLabels?: Record<string, string> };
    updateStrategy?: { type?: string };
  };
  status?: { observedGeneration?: number; updateRevision?: string };
  metadata: KubeObject['metadata'] & { generation?: number };
};

function templateAnnotations(kind: string, obj: Workload): Record<string, string> | undefined {
  const t = kind === 'CronJob' ? obj.spec?.jobTemplate?.spec?.template : obj.spec?.template;
  return t?.metadata?.annotations;
}

function restartPatch(kind: string, name: string, namespace: string, annotations: Record<string, string>): KubeObject {
  const template = { metadata: { annotations } };
  // CronJobs cannot be rolled; annotating the job template makes the next Job carry the new Secret and marks the restart.
  const spec = kind === 'CronJob' ? { jobTemplate: { spec: { template } } } : { template };
  return { apiVersion: WORKLOAD_API_VERSION[kind], kind, metadata: { name, namespace }, spec };
}

export async function restartConsumer(deps: ActivityDeps, input: RestartInput): Promise<RestartResult> {
  const spec = clusterOrFail(deps, input.cluster);
  const { kind, name, namespace } = input.workload;
  const apiVersion = WORKLOAD_API_VERSION[kind];
  if (!apiVersion) throw nonRetryable(ErrorType.BadConfig, `cannot restart workload kind ${kind}`);
  const id = `${namespace}/${kind}/${name}`;
  const kube = deps.kube(spec);
  const obj = await kube.read<Workload>(apiVersion, kind, name, namespace);
  if (!obj)
    return { workload: id, patched: false, outcome: 'missing', message: `${kind} ${namespace}/${name} not found` };
  let patched = false;
  if (templateAnnotations(kind, obj)?.[RESTARTED_AT] !== input.restartedAt) {
    await kube.patch(
      restartPatch(kind, name, namespace, {
        [RESTARTED_AT]: input.restartedAt,
        [ROTATION_ANNOTATION]: input.rotationId,
      }),
      'strategic',
    );
    patched = true;
    deps.log.info({ workload: id, restartedAt: input.restartedAt }, 'consumer restarted');
  }
  // A retry after a crash keeps waiting against the first attempt's deadline (heartbeat details).
  const waiting = `rollout ${id} ${input.restartedAt}`;
  const deadline = waitDeadline(input.timeoutSeconds, waiting);
  const pollMs = input.pollMs ?? 500;
  if (kind === 'CronJob') return verifyCronJob(deps, input, obj, patched, deadline, pollMs);
  if (obj.spec?.updateStrategy?.type === 'OnDelete') {
    const replaced = await replaceOnDeletePods(deps, spec, input, deadline, pollMs);
    if (replaced) return { workload: id, patched, ...replaced };
  }
  for (;;) {
    const cur = await kube.read<Workload>(apiVersion, kind, name, namespace);
    if (!cur)
      return {
        workload: id,
        patched,
        outcome: 'missing',
        message: `${kind} ${namespace}/${name} disappeared during the rollout`,
      };
    const st = rolloutStatus(kind, cur);
    beat({ workload: id, message: st.message, waiting, deadline });
    if (st.done) return { workload: id, patched, outcome: 'complete', message: st.message };
    if (st.failed) return { workload: id, patched, outcome: 'failed', message: st.message };
    if (Date.now() >= deadline)
      return {
        workload: id,
        patched,
        outcome: 'timeout',
        message: `rollout not done after ${input.timeoutSeconds}s: ${st.message}`,
      };
    await sleep(pollMs);
  }
}

type Pod = KubeObject & { status?: { phase?: string; conditions?: { type: string; status: string }[] } };
const podReady = (p: Pod) => (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/**
 * An OnDelete StatefulSet or DaemonSet never replaces its pods after a template change (that is what
 * OnDelete means: k8s pkg/controller/statefulset/stateful_set_control.go skips updates, kubectl rollout
 * status refuses to wait). So the restart deletes the pods that are not on the new revision, one at a
 * time, each time waiting for its replacement to be Ready. A retry skips pods already replaced.
 * Returns a terminal outcome, or undefined when every pod is on the new revision.
 */
async function replaceOnDeletePods(
  deps: ActivityDeps,
  spec: ReturnType<typeof clusterOrFail>,
  input: RestartInput,
  deadline: number,
  pollMs: number,
): Promise<Pick<RestartResult, 'outcome' | 'message'> | undefined> {
  const { kind, name, namespace } = input.workload;
  const kube = deps.kube(spec);
  const apiVersion = WORKLOAD_API_VERSION[kind];
  const isOpenBao =
    namespace === spec.openbao.namespace &&
    spec.components.some((c) =>
      c.workloads.some((w) => w.name === name && w.kind === kind && w.readyWhen === 'running'),
    );
  const wait = async <T>(what: string, fn: () => Promise<T | undefined>): Promise<T | undefined> => {
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() >= deadline) return undefined;
      beat({ workload: `${namespace}/${kind}/${name}`, message: what });
      await sleep(pollMs);
    }
  };
  // The controller must have seen the new template before "the new revision" means anything.
  const cur = await wait('waiting for the new revision', async () => {
    const o = await kube.read<Workload>(apiVersion, kind, name, namespace);
    return o && (o.status?.observedGeneration ?? 0) >= (o.metadata.generation ?? 0) ? o : undefined;
  });
  if (!cur) return { outcome: 'timeout', message: `${kind} ${namespace}/${name}: new revision not observed in time` };
  const selector = Object.entries(cur.spec?.selector?.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  // A StatefulSet names its new revision in status. A DaemonSet does not: its controller stamps pods with
  // `pod-template-generation` = the set's template generation, which the apiserver keeps in annotation
  // deprecated.daemonset.template.generation and bumps only when the template changes
  // (pkg/registry/apps/daemonset/strategy.go PrepareForUpdate; pkg/controller/daemon/util
  // IsPodUpdated/GetTemplateGeneration). metadata.generation also counts other spec edits
  // (minReadySeconds, updateStrategy), so it can never match a pod's label after one.
  const onNew = (p: Pod, o: Workload) =>
    kind === 'StatefulSet'
      ? p.metadata?.labels?.['controller-revision-hash'] === o.status?.updateRevision
      : p.metadata?.labels?.['pod-template-generation'] === o.metadata.annotations?.[DS_TEMPLATE_GENERATION];
  for (;;) {
    const o = (await kube.read<Workload>(apiVersion, kind, name, namespace)) ?? cur;
    const pods = (await kube.list<Pod>('v1', 'Pod', namespace, selector)).filter((p) => !p.metadata?.deletionTimestamp);
    const old = pods
      .filter((p) => !onNew(p, o))
      .sort((a, b) => String(a.metadata?.name).localeCompare(String(b.metadata?.name)));
    if (old.length === 0) return undefined;
    const victim = old[old.length - 1].metadata!.name!; // highest ordinal first, as a rolling update would
    await kube.delete('v1', 'Pod', victim, namespace);
    deps.log.info(
      { workload: `${namespace}/${kind}/${name}`, pod: victim },
      'OnDelete: pod deleted for the new revision',
    );
    const back = await wait(`waiting for ${victim} on the new revision`, async () => {
      const fresh = (await kube.read<Workload>(apiVersion, kind, name, namespace)) ?? o;
      const now = (await kube.list<Pod>('v1', 'Pod', namespace, selector)).filter(
        (p) => !p.metadata?.deletionTimestamp,
      );
      // StatefulSet pods come back under the same name; DaemonSet pods under a new one.
      // An OpenBAO pod comes back sealed and stays NotReady (`bao status`) until it is unsealed.
      if (isOpenBao && now.some((p) => onNew(p, fresh) && p.status?.phase === 'Running' && !podReady(p)))
        await unsealIfSealed(deps, spec);
      const replaced = now.filter((p) => onNew(p, fresh) && podReady(p));
      return replaced.length > pods.length - old.length ? true : undefined;
    });
    if (!back)
      return {
        outcome: 'timeout',
        message: `${kind} ${namespace}/${name}: ${victim} not Ready on the new revision in time`,
      };
  }
}

type JobObj = KubeObject & {
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
};

/**
 * A CronJob has no rollout: annotating its job template only changes the next Job. Counting it done
 * at once would never catch a rejected credential, so the new Secret is proven by a run of the
 * CronJob's own Job now, made as `kubectl create job --from=cronjob/<name>` makes it
 * (kubectl pkg/cmd/create/create_job.go, createJobFromCronJob: the job template's labels,
 * annotations and spec, annotation cronjob.kubernetes.io/instantiate=manual, and an ownerReference
 * to the CronJob, so the CronJob's history limits clean it up). Named per restart, so a retried
 * activity waits for its own Job instead of starting another. A suspended CronJob is not run.
 */
async function verifyCronJob(
  deps: ActivityDeps,
  input: RestartInput,
  cronJob: Workload,
  patched: boolean,
  deadline: number,
  pollMs: number,
): Promise<RestartResult> {
  const { name, namespace } = input.workload;
  const id = `${namespace}/CronJob/${name}`;
  const kube = deps.kube(clusterOrFail(deps, input.cluster));
  const cur = (await kube.read<Workload>('batch/v1', 'CronJob', name, namespace)) ?? cronJob;
  if (cur.spec?.suspend)
    return { workload: id, patched, outcome: 'complete', message: 'suspended: its next Job will use the new Secret' };
  const hash = createHash('sha256').update(input.restartedAt).digest('hex').slice(0, 8);
  const jobName = `${name.slice(0, 63 - 13)}-rot-${hash}`;
  let job = await kube.read<JobObj>('batch/v1', 'Job', jobName, namespace);
  if (!job) {
    const tpl = cur.spec?.jobTemplate ?? {};
    job = await kube.create<JobObj>({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: jobName,
        namespace,
        labels: tpl.metadata?.labels,
        annotations: {
          ...(tpl.metadata?.annotations ?? {}),
          'cronjob.kubernetes.io/instantiate': 'manual',
          [ROTATION_ANNOTATION]: input.rotationId,
        },
        ownerReferences: [
          {
            apiVersion: 'batch/v1',
            kind: 'CronJob',
            name,
            uid: cur.metadata.uid!,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: tpl.spec,
    });
    deps.log.info({ workload: id, job: jobName }, 'CronJob run started to verify the new Secret');
  }
  const what = `Job ${namespace}/${jobName}`;
  for (;;) {
    const conds = job?.status?.conditions ?? [];
    const failed = conds.find((c) => c.type === 'Failed' && c.status === 'True');
    if (failed)
      return {
        workload: id,
        patched,
        outcome: 'failed',
        message: `${what} failed: ${failed.message ?? failed.reason ?? 'no reason given'}`,
      };
    if (conds.some((c) => c.type === 'Complete' && c.status === 'True'))
      return { workload: id, patched, outcome: 'complete', message: `${what} completed with the new Secret` };
    if (Date.now() >= deadline)
      return {
        workload: id,
        patched,
        outcome: 'timeout',
        message: `${what} did not finish within ${input.timeoutSeconds}s`,
      };
    beat({ workload: id, job: jobName });
    await sleep(pollMs);
    job = await kube.read<JobObj>('batch/v1', 'Job', jobName, namespace);
    if (!job) return { workload: id, patched, outcome: 'failed', message: `${what} disappeared` };
  }
}
