// provisionCluster: bare nodes to a verified platform (issue 4). The plan (provision-plan.ts) is the
// DAG; this file walks it: preflight -> prepare -> k3s servers -> workers + kubeconfig -> nodes Ready
// -> platform steps as a DAG with `parallelism` at a time. Every step goes through the StepRunner, so
// a non-retryable failure parks only that step (and, by waiting, its dependents) in needs-attention.
// One file on purpose (DESIGN: one file per workflow): the DAG walk (runDag) and the platform steps
// are this workflow's own phases, share its activity proxies and options, and are what its replay
// histories record; the pure planning lives in provision-plan.ts, the step machinery in steps.ts.
import {
  ApplicationFailure,
  condition,
  executeChild,
  patched,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { ClusterSpec } from '../config/schema.js';
import { readyNodes } from './dag.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import {
  buildProvisionPlan,
  componentStep,
  skipRefusal,
  vipTitle,
  type PlanStep,
  type ProvisionPlan,
} from './provision-plan.js';
import { AbortRequested, StepRunner } from './steps.js';
import type { rotateSecrets, RotationReport } from './rotate-secrets.js';

export interface ProvisionInput {
  cluster: string;
  /** Accept unpinned nodes' host keys in preflight and report them for the config. */
  allowTofu?: boolean;
  skipPreflight?: boolean;
  requestedBy?: string;
}

export interface ProvisionReport {
  cluster: string;
  state: 'succeeded' | 'partial';
  k3sVersion: string;
  nodes: { name: string; role: string; version?: string; installed: boolean }[];
  /** What answers on the VIP and whether the build saw it answer (absent in runs before the VIP step). */
  vip?: { address: string; provider: string; state: string; detail?: string };
  components: {
    name: string;
    version: string;
    state: string;
    action?: string;
    /** The objects of the deployed Helm release the install waited for (kind, namespace/name). */
    waitedFor?: string[];
    durationMs?: number;
    attempts: number;
  }[];
  steps: { id: string; state: string; detail?: string; durationMs?: number; attempts: number }[];
  durationMs: number;
}

// Timeouts per kind of activity: workflows/activity-options.ts.
const short = shortActivities();
const steady = steadyActivities();
const waits = waitActivities();

const opts = (summary: string, extra: ActivityOptions = {}): ActivityOptions => ({ ...extra, summary });

export async function provisionCluster(input: ProvisionInput): Promise<ProvisionReport> {
  const t0 = Date.now();
  const runner = new StepRunner('provisionCluster', input.cluster, 'provision');
  const spec: ClusterSpec = await short.loadClusterSpec.executeWithOptions(opts(`load cluster ${input.cluster}`), [
    input.cluster,
  ]);
  // k3s creates no VIP (issue 13): runs from here on deploy the VIP provider after the first server and
  // wait for the VIP before agents join it or the kubeconfig points at it. Recorded runs had no such step.
  const vipStep = patched('vip-provider');
  // Split DNS reads its upstream Service's ClusterIP: it waits for the component that creates it.
  // Recorded runs configured DNS right after the nodes were Ready (and retried until the Service came).
  const plan = buildProvisionPlan(spec, { vip: vipStep, dnsAfterService: patched('dns-after-its-service') });
  for (const s of plan.steps) runner.plan(s.id, s.phase, s.title, s.dependsOn);
  const refuse = (id: string) => () => skipRefusal(plan, id);
  const nodesInfo = new Map<string, { version?: string; installed: boolean }>();
  const componentActions = new Map<string, { action: string; waitedFor: string[] }>();
  const cluster = spec.name;

  try {
    // --- preflight: all nodes at once, every finding collected, one failure listing them all ---
    runner.setPhase('preflight');
    if (input.skipPreflight) {
      runner.mark('preflight', 'skipped', 'skipped on request (skipPreflight)');
    } else {
      await runner.run(
        'preflight',
        'preflight',
        plan.steps[0].title,
        async () => {
          const settled = await Promise.allSettled(
            spec.nodes.map((n) =>
              steady.preflightNode.executeWithOptions(opts(`preflight ${n.name}`), [
                { cluster, node: n.name, allowTofu: input.allowTofu },
              ]),
            ),
          );
          const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (rejected) throw rejected.reason;
          const results = settled.map(
            (r) => (r as PromiseFulfilledResult<Awaited<ReturnType<Activities['preflightNode']>>>).value,
          );
          const findings = results.flatMap((r) => r.findings.map((f) => `${r.node}: ${f}`));
          if (findings.length > 0) {
            throw ApplicationFailure.create({
              type: 'PreflightFailed',
              nonRetryable: true,
              message: `preflight failed on ${[...new Set(results.filter((r) => r.findings.length).map((r) => r.node))].join(', ')}: ${findings.join('; ')}`,
              details: [
                {
                  findings: results
                    .filter((r) => r.findings.length)
                    .map((r) => ({ node: r.node, findings: r.findings })),
                },
              ],
            });
          }
          return results;
        },
        {
          skipRefusal: refuse('preflight'),
          describe: (results) => {
            const fixable = results.flatMap((r) => r.fixable.map((f) => `${r.node}: ${f}`));
            const tofu = input.allowTofu
              ? results
                  .filter((r) => !spec.nodes.find((n) => n.name === r.node)?.hostKey)
                  .map((r) => `${r.node} presented ${r.hostKey}`)
              : [];
            const allUp = results.every((r) => r.k3sActive);
            // What k3s will see on each machine: its real hostname (node-name overrides it) and the
            // node-ip it gets; a discovered one is shown so it can be pinned in the config.
            const identity = results
              .filter((r) => r.hostname !== undefined || r.nodeIp !== undefined)
              .map(
                (r) =>
                  `${r.node}: hostname ${r.hostname ?? '?'}, node-ip ${r.nodeIp ?? '?'}${r.nodeIpSource && r.nodeIpSource !== 'config' ? ` (${r.nodeIpSource}; pin as nodeIp)` : ''}`,
              );
            // Warnings do not block (the VIP in a range ARP cannot reach, outside the interface's subnet):
            // the VIP step's bounded wait parks with the finding if it really does not answer.
            const warnings = [...new Set(results.flatMap((r) => (r.warnings ?? []).map((w) => `warning: ${w}`)))];
            return {
              satisfied: allUp,
              detail: [
                allUp ? 'already satisfied: all nodes run k3s' : `${results.length} nodes passed`,
                ...identity,
                ...fixable,
                ...tofu,
                ...warnings,
              ].join('; '),
            };
          },
        },
      );
    }

    // --- node preparation, in parallel ---
    runner.setPhase('prepare');
    await Promise.all(
      spec.nodes.map((n) =>
        runner.run(
          `prepare/${n.name}`,
          'prepare',
          `Prepare ${n.name}`,
          () =>
            waits.prepareNode.executeWithOptions(opts(`prepare ${n.name}`, waitUpTo(15 * 60)), [
              { cluster, node: n.name },
            ]),
          {
            skipRefusal: refuse(`prepare/${n.name}`),
            describe: (r) => ({
              satisfied: r.changed.length === 0,
              detail: r.changed.length === 0 ? 'already satisfied' : r.changed.join('; '),
            }),
          },
        ),
      ),
    );

    // --- k3s: servers one at a time, then workers in parallel with the kubeconfig fetch ---
    const installOpts = (what: string) => opts(what, waitUpTo(15 * 60));
    // A restart (config changed) or a start (service was stopped) is work done: not "satisfied".
    // Results recorded before `action` existed have none and read as before.
    const k3sDescribe = (r: { installed: boolean; version: string; action?: string; detail?: string }) => ({
      satisfied: !r.installed && (r.action === undefined || r.action === 'unchanged'),
      detail:
        r.action === 'restarted' || r.action === 'started'
          ? r.detail
          : r.installed
            ? `installed ${r.version}`
            : `already satisfied: ${r.version} active`,
    });
    runner.setPhase('k3s-servers');
    for (const n of spec.nodes.filter((x) => x.role === 'server')) {
      const r = await runner.run(
        `k3s/${n.name}`,
        'k3s-servers',
        plan.steps.find((s) => s.id === `k3s/${n.name}`)!.title,
        () =>
          waits.installK3sServer.executeWithOptions(installOpts(`install k3s server on ${n.name}`), [
            { cluster, node: n.name },
          ]),
        {
          skipRefusal: refuse(`k3s/${n.name}`),
          describe: k3sDescribe,
        },
      );
      nodesInfo.set(n.name, { version: r?.version, installed: r?.installed ?? false });
    }
    if (vipStep) await vipPhase(spec, runner, refuse);
    runner.setPhase('k3s-workers');
    await Promise.all([
      ...spec.nodes
        .filter((x) => x.role === 'agent')
        .map(async (n) => {
          const r = await runner.run(
            `k3s/${n.name}`,
            'k3s-workers',
            `Join worker ${n.name}`,
            () =>
              waits.joinK3sAgent.executeWithOptions(installOpts(`join k3s agent ${n.name}`), [
                { cluster, node: n.name },
              ]),
            {
              skipRefusal: refuse(`k3s/${n.name}`),
              describe: k3sDescribe,
            },
          );
          nodesInfo.set(n.name, { version: r?.version, installed: r?.installed ?? false });
        }),
      runner.run(
        'kubeconfig',
        'k3s-workers',
        'Fetch kubeconfig (rewritten to the VIP)',
        () => steady.fetchKubeconfig.executeWithOptions(opts('fetch kubeconfig'), [{ cluster }]),
        {
          skipRefusal: refuse('kubeconfig'),
          describe: (r) => ({
            satisfied: !r.changed,
            detail: `${r.changed ? 'written' : 'already satisfied'}: ${r.path} -> ${r.server}`,
          }),
        },
      ),
    ]);
    const ready = await runner.run(
      'nodes-ready',
      'k3s-workers',
      'Wait for every node Ready',
      () =>
        waits.waitNodesReady.executeWithOptions(opts('wait for nodes Ready', waitUpTo(300)), [
          { cluster, timeoutSeconds: 300 },
        ]),
      {
        skipRefusal: refuse('nodes-ready'),
        describe: (r) => ({
          satisfied: r.alreadyReady,
          detail: `${r.alreadyReady ? 'already satisfied: ' : ''}${r.nodes.length} nodes Ready${r.alreadyReady ? '' : ` after ${r.waitedMs} ms`}`,
        }),
      },
    );
    for (const n of ready?.nodes ?? [])
      nodesInfo.set(n.name, {
        ...(nodesInfo.get(n.name) ?? { installed: false }),
        version: n.version ?? nodesInfo.get(n.name)?.version,
      });

    // --- platform: components and wiring as a DAG, `parallelism` at a time ---
    runner.setPhase('platform');
    await runDag(plan, runner, (step) =>
      platformStep(step, spec, plan, runner, refuse, componentActions, input.requestedBy),
    );
  } catch (err) {
    if (err instanceof AbortRequested) {
      runner.setPhase('aborted');
      runner.setState('failed');
      // Nothing destructive runs on abort: what was installed stays, a later provision continues from it.
      throw ApplicationFailure.create({
        type: 'Aborted',
        nonRetryable: true,
        message: `${err.message}; nothing was rolled back (installs are kept, re-run provision to continue)`,
      });
    }
    throw err;
  }

  const steps = runner.progress.steps;
  const skipped = steps.some((s) => s.state === 'skipped' && s.id !== 'preflight');
  const vip = runner.step('vip');
  runner.setPhase('done');
  runner.setState(skipped ? 'partial' : 'succeeded');
  return {
    cluster,
    state: skipped ? 'partial' : 'succeeded',
    k3sVersion: spec.k3s.version,
    nodes: spec.nodes.map((n) => ({
      name: n.name,
      role: n.role,
      version: nodesInfo.get(n.name)?.version,
      installed: nodesInfo.get(n.name)?.installed ?? false,
    })),
    ...(vip && vipStep
      ? {
          vip: {
            address: spec.vip,
            provider: spec.vipProvider ? `${spec.vipProvider.kind} ${spec.vipProvider.version}` : 'external',
            state: vip.state,
            detail: vip.detail,
          },
        }
      : {}),
    components: spec.components.map((c) => {
      const s = runner.step(componentStep(c.name))!;
      return {
        name: c.name,
        version: c.version,
        state: s.state === 'succeeded' || s.state === 'satisfied' ? 'Ready' : s.state,
        action: componentActions.get(c.name)?.action,
        waitedFor: componentActions.get(c.name)?.waitedFor,
        durationMs: s.durationMs,
        attempts: s.attempts,
      };
    }),
    steps: steps.map((s) => ({
      id: s.id,
      state: s.state,
      detail: s.detail,
      durationMs: s.durationMs,
      attempts: s.attempts,
    })),
    durationMs: Date.now() - t0,
  };
}

/**
 * The VIP: the provider's manifest on the first server (k3s applies it), then a bounded wait until
 * https://<vip>:<port>/readyz answers. Agents join the VIP and the kubeconfig points at it, so both
 * come after this; a VIP that never answers parks here with the finding instead of in every join.
 */
async function vipPhase(spec: ClusterSpec, runner: StepRunner, refuse: (id: string) => () => string | undefined) {
  const cluster = spec.name;
  const timeoutSeconds = spec.vipProvider?.readyTimeoutSeconds ?? 180;
  runner.setPhase('vip');
  await runner.run(
    'vip',
    'vip',
    vipTitle(spec),
    async () => {
      const deployed = await steady.deployVipProvider.executeWithOptions(opts('deploy the VIP provider'), [
        { cluster },
      ]);
      const ready = await waits.waitVipReady.executeWithOptions(
        opts(`wait for the VIP ${spec.vip}`, waitUpTo(timeoutSeconds)),
        [{ cluster, timeoutSeconds }],
      );
      return { deployed, ready };
    },
    {
      skipRefusal: refuse('vip'),
      describe: ({ deployed, ready }) => {
        const satisfied = !deployed.changed && ready.alreadyReady;
        const what = deployed.path
          ? `${deployed.provider} ${deployed.changed ? 'manifest written to' : 'manifest unchanged at'} ${deployed.path}`
          : `${deployed.provider} provider`;
        return {
          satisfied,
          detail: `${satisfied ? 'already satisfied: ' : ''}${what}; ${ready.url} answered${ready.alreadyReady ? '' : ` after ${ready.waitedMs} ms`}`,
        };
      },
    },
  );
}

/**
 * Walks the platform DAG. A parked step (needs-attention) frees its slot, so parallelism counts only
 * steps actually working; its dependents simply never become ready until it is resolved.
 */
async function runDag(
  plan: ProvisionPlan,
  runner: StepRunner,
  exec: (step: PlanStep) => Promise<unknown>,
): Promise<void> {
  const nodes = plan.steps
    .filter((s) => plan.platform.includes(s.id))
    .map((s) => ({ ...s, dependsOn: s.dependsOn.filter((d) => plan.platform.includes(d)) }));
  const done = new Set<string>();
  const started = new Set<string>();
  let tick = 0;
  let failure: unknown;
  const working = () =>
    [...started].filter((id) => !done.has(id) && runner.step(id)?.state !== 'needs-attention').length;
  while (done.size < nodes.length) {
    const free = plan.parallelism - working();
    for (const id of readyNodes(nodes, done, started).slice(0, Math.max(0, free))) {
      started.add(id);
      exec(nodes.find((n) => n.id === id)!).then(
        () => {
          done.add(id);
          tick++;
        },
        (err) => {
          failure ??= err;
          tick++;
        },
      );
    }
    const seenTick = tick;
    const seenSeq = runner.progress.seq;
    await condition(() => tick !== seenTick || runner.progress.seq !== seenSeq);
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows a step's own failure unchanged (caught in the .then above), keeping its type for the caller
    if (failure !== undefined) throw failure;
  }
}

async function platformStep(
  step: PlanStep,
  spec: ClusterSpec,
  plan: ProvisionPlan,
  runner: StepRunner,
  refuse: (id: string) => () => string | undefined,
  actions: Map<string, { action: string; waitedFor: string[] }>,
  requestedBy?: string,
): Promise<unknown> {
  const cluster = spec.name;
  const common = { dependsOn: step.dependsOn, skipRefusal: refuse(step.id) };
  switch (step.kind) {
    case 'component': {
      const c = spec.components.find((x) => x.name === step.target)!;
      return runner.run(
        step.id,
        step.phase,
        step.title,
        () =>
          waits.installComponent.executeWithOptions(
            opts(`install ${c.name} ${c.version}`, waitUpTo(c.timeoutSeconds)),
            [{ cluster, component: c.name }],
          ),
        {
          ...common,
          describe: (r) => {
            const waitedFor = r.workloads.map((w) => `${w.kind} ${w.namespace ? `${w.namespace}/` : ''}${w.name}`);
            actions.set(c.name, { action: r.action, waitedFor });
            return {
              satisfied: r.satisfied,
              detail: r.satisfied
                ? 'already satisfied: chart unchanged, workloads ready'
                : `${r.action}; ready: ${waitedFor.join(', ') || 'nothing to wait for in the release'}`,
            };
          },
        },
      );
    }
    case 'dns':
      return runner.run(
        step.id,
        step.phase,
        step.title,
        () => short.configureSplitDns.executeWithOptions(opts('configure split DNS'), [{ cluster }]),
        {
          ...common,
          describe: (r) => ({
            satisfied: !r.changed,
            detail: `${r.changed ? 'Corefile updated' : 'already satisfied'}: ${r.domains.join(', ')}`,
          }),
        },
      );
    case 'tailscale':
      return runner.run(
        step.id,
        step.phase,
        step.title,
        () => steady.applyTailscaleOAuth.executeWithOptions(opts('Tailscale OAuth secret'), [{ cluster }]),
        {
          ...common,
          describe: (r) => ({
            satisfied: !r.changed,
            detail: `${r.changed ? 'written' : 'already satisfied'}: Secret ${r.secret}`,
          }),
        },
      );
    case 'openbao':
      return runner.run(
        step.id,
        step.phase,
        step.title,
        () => steady.bootstrapOpenBao.executeWithOptions(opts('bootstrap OpenBAO'), [{ cluster }]),
        {
          ...common,
          describe: (r) => ({
            satisfied: r.satisfied,
            detail: r.satisfied
              ? `already satisfied: initialised, unsealed, ${spec.openbao.kvMount}/ present`
              : `initialised ${r.initialized}, unsealed ${r.unsealed}, kv ${r.kvMount}; keys in ${r.unsealItemRef}`,
          }),
        },
      );
    case 'velero':
      return runner.run(
        step.id,
        step.phase,
        step.title,
        () =>
          waits.configureVelero.executeWithOptions(opts('Velero location + schedule', waitUpTo(180)), [
            { cluster, timeoutSeconds: 120 },
          ]),
        {
          ...common,
          describe: (r) => {
            const satisfied = !r.scheduleChanged && !r.locationCreated;
            return {
              satisfied,
              detail: `${satisfied ? 'already satisfied: ' : ''}${r.location} ${r.phase}; Schedule ${r.schedule}${r.scheduleChanged ? ' written' : ''}`,
            };
          },
        },
      );
    case 'secret-sync':
      return secretSync(step, runner, cluster, requestedBy);
    default:
      throw new Error(`unexpected platform step ${step.id} (${step.kind}) in ${plan.cluster}`);
  }
}

/** Initial sync through the secret-rotation workflow, as a child with a deterministic id per provision run. */
async function secretSync(step: PlanStep, runner: StepRunner, cluster: string, requestedBy?: string): Promise<unknown> {
  // Run ids are UUIDv7: their first 8 characters are a timestamp prefix shared by runs minutes apart,
  // which made two provisions' syncs look like one rotation. Whole run id from now on; old runs keep theirs.
  const runId = workflowInfo().runId;
  const requestId = patched('secret-sync-full-run-id') ? `provision-${runId}` : `provision-${runId.slice(0, 8)}`;
  return runner.run(
    step.id,
    step.phase,
    step.title,
    () =>
      executeChild<typeof rotateSecrets>('rotateSecrets', {
        workflowId: `rotate-secrets/${cluster}/${requestId}`,
        args: [{ cluster, requestId, requestedBy: requestedBy ?? 'provision' }],
        staticSummary: `initial secret sync for ${cluster}`,
      }).then((r: RotationReport) => {
        if (r.state !== 'ok')
          throw ApplicationFailure.create({
            type: 'VerificationFailed',
            nonRetryable: true,
            message: `secret sync ended ${r.state}: ${r.entries
              .filter((e) => e.status === 'failed')
              .map((e) => `${e.id}: ${e.reason ?? 'failed'}`)
              .join('; ')}`,
          });
        return r;
      }),
    {
      dependsOn: step.dependsOn,
      describe: (r) => {
        const changed = r.entries.filter((e) => e.status === 'rotated').length;
        return {
          satisfied: changed === 0,
          detail: `${changed === 0 ? 'already satisfied: ' : ''}${r.entries.length} entries, ${changed} written (child rotate-secrets/${cluster}/${requestId})`,
        };
      },
    },
  );
}
