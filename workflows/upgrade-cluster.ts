// upgradeCluster: a rolling, health-gated upgrade of k3s and the platform charts (issue 18). Preflight
// (nodes Ready, no parked or concurrent mutating run, an allowed version path, no PodDisruptionBudget
// that would block a drain, the disruption each drain causes) → an etcd snapshot before any node is
// touched → servers one at a time, then agents `concurrency` at a time, each cordon → drain → install →
// Ready → uncordon → unseal → health gate → charts in dependency order. A node that fails is rolled back to the version
// it ran, uncordoned, and parked (retry | skip | abort). Abort, cancel or any failure uncordons every
// node this run cordoned, in non-cancellable compensation (DESIGN rule 11). Restoring the snapshot is
// never automatic.
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  patched,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { ClusterSpec } from '../config/schema.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import { AbortRequested, StepRunner } from './steps.js';
import { buildUpgradePlan, versionPathRefusal, type UpgradePlan } from './upgrade-plan.js';

export interface UpgradeInput {
  cluster: string;
  requestedBy?: string;
}

export interface UpgradeNodeReport {
  name: string;
  role: string;
  from?: string;
  to: string;
  state: string;
  detail?: string;
  drainMs?: number;
  installMs?: number;
  readyMs?: number;
  totalMs?: number;
  rolledBack?: boolean;
}

export interface UpgradeReport {
  cluster: string;
  state: 'succeeded' | 'partial';
  targetVersion: string;
  snapshot?: { node: string; file: string; path: string };
  nodes: UpgradeNodeReport[];
  charts: { name: string; state: string; detail?: string }[];
  disruption: { node: string; evict: number; skipped: number; pdbs: string[] }[];
  durationMs: number;
}

const short = shortActivities();
const steady = steadyActivities();
const waits = waitActivities();
const opts = (summary: string, extra: ActivityOptions = {}): ActivityOptions => ({ ...extra, summary });
const INSTALL_S = 15 * 60;

export async function upgradeCluster(input: UpgradeInput): Promise<UpgradeReport> {
  const t0 = Date.now();
  const info = workflowInfo();
  const runner = new StepRunner('upgradeCluster', input.cluster, 'upgrade');
  const spec: ClusterSpec = await short.loadClusterSpec.executeWithOptions(opts(`load cluster ${input.cluster}`), [
    input.cluster,
  ]);
  const cluster = spec.name;
  const plan = buildUpgradePlan(spec);
  const owner = `${info.workflowId}@${info.runId}`;
  // Added before the cordon call: a crash or cancel between the patch and its answer is compensated too.
  const cordoned = new Set<string>();
  const nodes = new Map<string, UpgradeNodeReport>(
    spec.nodes.map((n) => [n.name, { name: n.name, role: n.role, to: plan.targetVersion, state: 'pending' }]),
  );
  const report: Omit<UpgradeReport, 'state' | 'durationMs'> = {
    cluster,
    targetVersion: plan.targetVersion,
    nodes: [],
    charts: [],
    disruption: [],
  };

  runner.plan('preflight', 'preflight', 'Preflight: nodes Ready, no conflicting run, version path, PDBs');
  runner.plan('snapshot', 'snapshot', `etcd snapshot ${plan.snapshotName}`);
  for (const b of plan.batches)
    for (const n of b) runner.plan(`node/${n}`, 'nodes', `Upgrade ${n} to ${plan.targetVersion}`);
  for (const c of plan.charts) runner.plan(`chart/${c}`, 'charts', `Upgrade chart ${c}`);

  try {
    runner.setPhase('preflight');
    // The versions each node runs now, also when an operator skips the preflight: a rollback needs them.
    for (const o of await short.observeUpgradeNodes.executeWithOptions(opts('observe nodes'), [{ cluster }]))
      nodes.get(o.name)!.from = o.version;
    await runner.run(
      'preflight',
      'preflight',
      'Preflight',
      () => preflight(spec, plan, info.workflowId, report, nodes),
      {
        describe: (d) => ({ detail: d }),
      },
    );

    const todo = spec.nodes.filter((n) => nodes.get(n.name)!.from !== plan.targetVersion).map((n) => n.name);
    runner.setPhase('snapshot');
    if (todo.length === 0)
      runner.mark('snapshot', 'satisfied', `already satisfied: every node runs ${plan.targetVersion}`);
    else {
      const server = spec.nodes.find((n) => n.role === 'server')!;
      const snap = await runner.run(
        'snapshot',
        'snapshot',
        `etcd snapshot ${plan.snapshotName}`,
        () =>
          steady.etcdSnapshot.executeWithOptions(opts(`etcd snapshot on ${server.name}`), [
            {
              cluster,
              node: server.name,
              name: plan.snapshotName,
              notBefore: Math.floor(info.startTime.getTime() / 1000),
            },
          ]),
        {
          skipRefusal: () => 'no node is touched without a snapshot to go back to',
          describe: (r) => ({ detail: `${r.path} on ${r.node}${r.taken ? '' : ' (taken earlier in this run)'}` }),
        },
      );
      if (snap) report.snapshot = { node: snap.node, file: snap.file, path: snap.path };
    }

    runner.setPhase('nodes');
    for (const batch of plan.batches) {
      await Promise.all(
        batch.map(async (name) => {
          const n = nodes.get(name)!;
          if (n.from === plan.targetVersion) {
            n.state = 'satisfied';
            runner.mark(`node/${name}`, 'satisfied', `already satisfied: runs ${plan.targetVersion}`);
            return;
          }
          const done = await runner.run(`node/${name}`, 'nodes', `Upgrade ${name}`, () => upgradeNode(name), {
            describe: (r) => ({ detail: r }),
          });
          n.state = done === undefined ? 'skipped' : 'succeeded';
        }),
      );
    }

    runner.setPhase('charts');
    for (const c of plan.charts) {
      const r = await runner.run(
        `chart/${c}`,
        'charts',
        `Upgrade chart ${c}`,
        () =>
          waits.upgradeComponent.executeWithOptions(
            opts(
              `upgrade chart ${c}`,
              waitUpTo(2 * (spec.components.find((x) => x.name === c)?.timeoutSeconds ?? 600)),
            ),
            [{ cluster, component: c }],
          ),
        {
          describe: (x) => ({
            satisfied: x.action === 'unchanged',
            detail:
              x.action === 'upgraded'
                ? `${x.from} → ${x.to}`
                : x.action === 'unchanged'
                  ? `already satisfied: ${x.to}`
                  : `installed ${x.to}`,
          }),
        },
      );
      const s = runner.step(`chart/${c}`)!;
      // A skipped chart keeps the finding it was skipped on: what failed and what it was rolled back to.
      const detail = r === undefined && s.lastError ? `${s.detail}: ${s.lastError.message}` : s.detail;
      report.charts.push({ name: c, state: r === undefined ? 'skipped' : s.state, detail });
    }
  } catch (err) {
    await CancellationScope.nonCancellable(() => uncordonAll());
    if (err instanceof AbortRequested) {
      runner.setPhase('aborted');
      runner.setState('failed');
      throw ApplicationFailure.create({
        type: 'Aborted',
        nonRetryable: true,
        message: `${err.message}; every node this run cordoned is uncordoned, failed nodes run their previous version (the etcd snapshot ${report.snapshot?.file ?? 'was not taken'} is kept; restoring it is a separate, approved action)`,
      });
    }
    throw err;
  }

  const partial = runner.progress.steps.some((s) => s.state === 'skipped' && s.id !== 'preflight');
  runner.setPhase('done');
  runner.setState(partial ? 'partial' : 'succeeded');
  return {
    ...report,
    nodes: [...nodes.values()],
    state: partial ? 'partial' : 'succeeded',
    durationMs: Date.now() - t0,
  };

  /** Uncordons what this run cordoned; never parks (compensation must reach its end). */
  async function uncordonAll(): Promise<void> {
    for (const name of [...cordoned]) {
      const r = await runner.attempt(`uncordon/${name}`, 'compensation', `Uncordon ${name}`, () =>
        short.uncordonNode.executeWithOptions(opts(`uncordon ${name}`), [{ cluster, node: name, owner }]),
      );
      if (!r.error) cordoned.delete(name);
    }
  }

  /** cordon → drain → install → Ready → uncordon → unseal → health gate (runs recorded before the
   * `uncordon-when-ready` patch: the gate, then uncordon); on failure roll back, uncordon, rethrow (the runner parks). */
  async function upgradeNode(name: string): Promise<string> {
    const n = nodes.get(name)!;
    const from = n.from!;
    const began = Date.now();
    let installing = false;
    // Progress shows which part runs; a failure propagates as it is (a cancellation stays one).
    const sub = <T>(part: string, _title: string, fn: () => Promise<T>): Promise<T> => {
      runner.mark(`node/${name}`, 'running', part);
      return fn();
    };
    try {
      cordoned.add(name);
      await sub('cordon', `Cordon ${name}`, () =>
        short.cordonNode.executeWithOptions(opts(`cordon ${name}`), [{ cluster, node: name, owner }]),
      );
      const drained = await sub('drain', `Drain ${name}`, () =>
        waits.drainNode.executeWithOptions(opts(`drain ${name}`, waitUpTo(plan.drainTimeoutSeconds)), [
          { cluster, node: name, timeoutSeconds: plan.drainTimeoutSeconds },
        ]),
      );
      n.drainMs = drained.durationMs;
      installing = true;
      const t1 = Date.now();
      await sub('install', `Install ${plan.targetVersion} on ${name}`, () =>
        waits.installK3sVersion.executeWithOptions(
          opts(`install k3s ${plan.targetVersion} on ${name}`, waitUpTo(INSTALL_S)),
          [{ cluster, node: name, version: plan.targetVersion }],
        ),
      );
      n.installMs = Date.now() - t1;
      const evictedOpenBao = drained.workloads.some((w) => w.namespace === spec.openbao.namespace);
      // An evicted OpenBAO pod starts again sealed (its keys live only in memory): unseal it before the
      // gate waits for it (bootstrapOpenBao is idempotent: an unsealed OpenBAO is left as it is).
      const unseal = async () => {
        if (evictedOpenBao)
          await sub('unseal', 'Unseal OpenBAO', () =>
            steady.bootstrapOpenBao.executeWithOptions(opts('unseal OpenBAO after its pod moved'), [{ cluster }]),
          );
      };
      const uncordon = async () => {
        await sub('uncordon', `Uncordon ${name}`, () =>
          short.uncordonNode.executeWithOptions(opts(`uncordon ${name}`), [{ cluster, node: name, owner }]),
        );
        cordoned.delete(name);
      };
      /** The Node Ready on the target version, and with `workloads`, those available again. */
      const waitUpgraded = (part: string, title: string, summary: string, workloads?: typeof drained.workloads) =>
        sub(part, title, () =>
          waits.waitNodeUpgraded.executeWithOptions(opts(summary, waitUpTo(plan.nodeReadyTimeoutSeconds)), [
            {
              cluster,
              node: name,
              version: plan.targetVersion,
              timeoutSeconds: plan.nodeReadyTimeoutSeconds,
              ...(workloads ? { workloads } : {}),
            },
          ]),
        );
      if (patched('uncordon-when-ready')) {
        // Workloads pinned to this node come back only to this node: openbao, powerdns and zot carry
        // `nodeSelector: kubernetes.io/hostname: control-plane` (their renders in the chart lock), and the
        // scheduler's NodeUnschedulable filter (kubernetes pkg/scheduler/framework/plugins/
        // nodeunschedulable) keeps their replacements Pending while it is cordoned. So the node is
        // uncordoned as soon as it is Ready on the new version, before the unseal and the gate wait
        // for those pods.
        const up = await waitUpgraded(
          'ready',
          `${name} Ready on ${plan.targetVersion}`,
          `wait for ${name} on ${plan.targetVersion}`,
        );
        await uncordon();
        await unseal();
        const gate = await waitUpgraded(
          'gate',
          `${name}: its workloads available again`,
          `workloads of ${name} available`,
          drained.workloads,
        );
        n.readyMs = up.waitedMs + gate.waitedMs;
      } else {
        await unseal();
        const ready = await waitUpgraded(
          'ready',
          `${name} Ready on ${plan.targetVersion}, workloads available`,
          `wait for ${name} on ${plan.targetVersion}`,
          drained.workloads,
        );
        n.readyMs = ready.waitedMs;
        await uncordon();
      }
      n.totalMs = Date.now() - began;
      n.rolledBack = false;
      return `${from} → ${plan.targetVersion}: drain ${n.drainMs} ms (${drained.evicted.length} pods evicted, ${drained.skipped.daemonset} DaemonSet pods left), install ${n.installMs} ms, ready ${n.readyMs} ms`;
    } catch (err) {
      // Non-cancellable: a cancel arriving now must not leave the node half upgraded or cordoned.
      await CancellationScope.nonCancellable(async () => {
        if (installing) {
          const r = await runner.attempt(`node/${name}/rollback`, 'nodes', `Roll ${name} back to ${from}`, () =>
            waits.rollbackK3sNode.executeWithOptions(
              opts(`roll ${name} back to ${from}`, waitUpTo(INSTALL_S + plan.nodeReadyTimeoutSeconds)),
              [{ cluster, node: name, version: from, timeoutSeconds: plan.nodeReadyTimeoutSeconds }],
            ),
          );
          n.rolledBack = !r.error;
        }
        const u = await runner.attempt(`node/${name}/uncordon`, 'nodes', `Uncordon ${name}`, () =>
          short.uncordonNode.executeWithOptions(opts(`uncordon ${name}`), [{ cluster, node: name, owner }]),
        );
        if (!u.error) cordoned.delete(name);
      });
      n.state = 'failed';
      const why =
        err instanceof ActivityFailure && err.cause
          ? err.cause.message
          : err instanceof Error
            ? err.message
            : String(err);
      n.detail = `${why}${installing ? (n.rolledBack ? `; rolled back to ${from}` : `; rollback to ${from} FAILED`) : ''}`;
      // An activity's failure arrives wrapped (ActivityFailure → its ApplicationFailure): keep its type.
      const cause = err instanceof ActivityFailure ? err.cause : err;
      throw cause instanceof ApplicationFailure
        ? ApplicationFailure.create({
            type: cause.type ?? 'UpgradeFailed',
            nonRetryable: true,
            message: n.detail,
            details: [
              { node: name, rolledBack: n.rolledBack ?? false, runs: n.rolledBack || !installing ? from : 'unknown' },
            ],
          })
        : err;
    }
  }
}

/** Every finding at once, as one PreflightFailed; records current versions and the disruption report. */
async function preflight(
  spec: ClusterSpec,
  plan: UpgradePlan,
  self: string,
  report: Omit<UpgradeReport, 'state' | 'durationMs'>,
  nodes: Map<string, UpgradeNodeReport>,
): Promise<string> {
  const cluster = spec.name;
  const [observed, conflicts, disruption] = await Promise.all([
    short.observeUpgradeNodes.executeWithOptions(opts('observe nodes'), [{ cluster }]),
    short.upgradeRunConflicts.executeWithOptions(opts('runs of this cluster'), [{ cluster, self }]),
    steady.upgradeDisruption.executeWithOptions(opts('drain disruption report'), [{ cluster }]),
  ]);
  const findings: string[] = [];
  for (const o of observed) {
    nodes.get(o.name)!.from = o.version;
    if (!o.registered) findings.push(`${o.name}: not registered in the cluster`);
    else if (!o.ready) findings.push(`${o.name}: not Ready (${o.readyDetail})`);
    if (o.unschedulable && o.cordonedBy === undefined) findings.push(`${o.name}: cordoned by someone else`);
    if (o.version !== plan.targetVersion) {
      const why = versionPathRefusal(o.version, plan.targetVersion);
      if (why) findings.push(`${o.name}: ${why}`);
    }
  }
  for (const r of conflicts.parked) findings.push(`run ${r.workflowId} is parked in needs-attention: resolve it first`);
  for (const r of conflicts.mutating) findings.push(`run ${r.workflowId} (${r.operation}) is running on this cluster`);
  for (const b of disruption.blocking)
    findings.push(
      `PodDisruptionBudget ${b.pdb} cannot be satisfied with one node out (${b.detail}); drains of ${b.nodes.join(', ')} would block`,
    );
  report.disruption = disruption.nodes.map((d) => ({
    node: d.node,
    evict: d.evict.length,
    skipped: d.skipped.daemonset + d.skipped.mirror,
    pdbs: [...new Set(d.evict.flatMap((e) => e.pdbs))],
  }));
  if (findings.length > 0)
    throw ApplicationFailure.create({
      type: 'PreflightFailed',
      nonRetryable: true,
      message: `upgrade preflight failed: ${findings.join('; ')}`,
      details: [{ findings }],
    });
  const versions = observed.map((o) => `${o.name} ${o.version}`).join(', ');
  const drains = report.disruption
    .map(
      (d) =>
        `${d.node}: ${d.evict} pods evicted${d.pdbs.length ? ` under ${d.pdbs.join(', ')}` : ''}, ${d.skipped} kept`,
    )
    .join('; ');
  return `${versions} → ${plan.targetVersion}; ${drains}`;
}
