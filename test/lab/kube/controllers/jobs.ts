// The Job controller: one pod per Job, Complete after jobDelayMs, or Failed when the pod template
// asks for it (annotation or env `lab.pedro-ops/fail: "true"`) or an owning controller says so.
import { shortHash, timestamp, type KObj } from '../util.js';
import { condition, defer, ownerRef, rtOf, setStatus, type Ctx, type JobOutcome } from './ctx.js';
import { runningPodStatus } from './workloads.js';

export const FAIL_MARK = 'lab.pedro-ops/fail';
export const HELM_CHART_LABEL = 'helmcharts.helm.cattle.io/chart';

export class JobController {
  constructor(private readonly ctx: Ctx) {
    ctx.store.on((e) => {
      if (e.rt.kind !== 'Job' || e.type !== 'ADDED') return;
      defer(ctx, () => this.start(e.obj));
    });
  }

  private podName(job: KObj) {
    return `${job.metadata.name}-${shortHash(job.metadata.uid, 5)}`;
  }

  private start(job: KObj): void {
    const jobRt = rtOf(this.ctx, 'batch/v1', 'Job');
    const ns = job.metadata.namespace!;
    const cur = this.ctx.store.get(jobRt, ns, job.metadata.name);
    if (!cur || cur.metadata.uid !== job.metadata.uid || cur.status?.conditions?.length) return;
    const started = setStatus(this.ctx, jobRt, ns, job.metadata.name, () => ({
      startTime: timestamp(),
      active: 1,
      ready: 1,
      terminating: 0,
      uncountedTerminatedPods: {},
    }));
    if (!started) return;
    this.ctx.store.create(
      rtOf(this.ctx, 'v1', 'Pod'),
      ns,
      {
        metadata: {
          name: this.podName(cur),
          labels: cur.spec.template?.metadata?.labels,
          annotations: cur.spec.template?.metadata?.annotations,
          ownerReferences: [ownerRef(cur)],
        },
        spec: cur.spec.template?.spec ?? {},
        status: runningPodStatus(cur.spec.template?.spec?.containers ?? []),
      },
      'controller',
    );
    const chart = cur.metadata.labels?.[HELM_CHART_LABEL];
    const delay = this.ctx.delays.jobDelayMs(chart ?? cur.metadata.name);
    this.ctx.timers.after(delay, () => this.finish(cur));
  }

  private outcome(job: KObj): JobOutcome {
    for (const hook of this.ctx.jobOutcomes) {
      const o = hook(job);
      if (o) return o;
    }
    const t = job.spec.template ?? {};
    const marked =
      [job.metadata.annotations, t.metadata?.annotations].some((a) => a?.[FAIL_MARK] === 'true') ||
      (t.spec?.containers ?? []).some((c: KObj) =>
        (c.env ?? []).some(
          (e: KObj) => (e.name === FAIL_MARK || e.name === 'LAB_PEDRO_OPS_FAIL') && e.value === 'true',
        ),
      );
    if (marked)
      return {
        result: 'fail',
        message: 'Job has reached the specified backoff limit',
        log: 'lab: probe failed (lab.pedro-ops/fail)\n',
      };
    return { result: 'succeed' };
  }

  private finish(job: KObj): void {
    const jobRt = rtOf(this.ctx, 'batch/v1', 'Job');
    const ns = job.metadata.namespace!;
    const cur = this.ctx.store.get(jobRt, ns, job.metadata.name);
    if (!cur || cur.metadata.uid !== job.metadata.uid) return;
    const out = this.outcome(cur);
    // A stalled Job stays stalled (like a hung helm install); only a rerun sees cleared faults.
    if (out.result === 'stall') return;
    const podRt = rtOf(this.ctx, 'v1', 'Pod');
    const podName = this.podName(cur);
    const containers = cur.spec.template?.spec?.containers ?? [];
    const now = timestamp();
    if (out.result === 'succeed') {
      this.ctx.logs.set(
        `${ns}/${podName}`,
        this.ctx.logs.get(`${ns}/${podName}`) ?? `lab: job ${cur.metadata.name} completed\n`,
      );
      setStatus(this.ctx, podRt, ns, podName, () => runningPodStatus(containers, 'Succeeded'));
      setStatus(this.ctx, jobRt, ns, cur.metadata.name, (c) => ({
        startTime: c.status?.startTime,
        completionTime: now,
        succeeded: 1,
        ready: 0,
        terminating: 0,
        uncountedTerminatedPods: {},
        conditions: [
          condition('SuccessCriteriaMet', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods'),
          condition('Complete', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods'),
        ],
      }));
    } else {
      this.ctx.logs.set(`${ns}/${podName}`, out.log ?? `${out.message}\n`);
      setStatus(this.ctx, podRt, ns, podName, () => runningPodStatus(containers, 'Failed'));
      setStatus(this.ctx, jobRt, ns, cur.metadata.name, (c) => ({
        startTime: c.status?.startTime,
        failed: 1,
        ready: 0,
        terminating: 0,
        uncountedTerminatedPods: {},
        conditions: [
          condition('FailureTarget', 'True', 'BackoffLimitExceeded', out.message),
          condition('Failed', 'True', 'BackoffLimitExceeded', out.message),
        ],
      }));
    }
  }
}
