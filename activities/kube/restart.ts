// `kubectl rollout restart` + `kubectl rollout status` for one consumer. The restart annotation value
// comes from the workflow (unique per rotation and per rollback, millisecond precision), so a retried
// activity finds its own annotation already set and only waits: one restart per rotation, never two.
import { beat, sleep } from '../heartbeat.js';
import type { WorkloadRef } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import type { KubeObject } from './client.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from './rollout.js';

export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';
export const ROTATION_ANNOTATION = 'pedro-ops.io/rotation-id';

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

type Workload = KubeObject & { spec?: Record<string, any>; metadata: KubeObject['metadata'] & { generation?: number } };

function templateAnnotations(kind: string, obj: Workload): Record<string, string> | undefined {
  const t = kind === 'CronJob' ? obj.spec?.jobTemplate?.spec?.template : obj.spec?.template;
  return t?.metadata?.annotations;
}

function restartPatch(kind: string, name: string, namespace: string, annotations: Record<string, string>): KubeObject {
  const template = { metadata: { annotations } };
  // CronJobs cannot be rolled; annotating the job template makes the next Job carry the new Secret and marks the restart.
  const spec = kind === 'CronJob' ? { jobTemplate: { spec: { template } } } : { template };
  return { apiVersion: WORKLOAD_API_VERSION[kind], kind, metadata: { name, namespace }, spec } as KubeObject;
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
  const deadline = Date.now() + input.timeoutSeconds * 1000;
  const pollMs = input.pollMs ?? 500;
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
    beat({ workload: id, message: st.message });
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
