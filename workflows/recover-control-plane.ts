// recoverControlPlane: restore the single k3s server from an off-node etcd snapshot, gated by a human
// as drRestore is. Plan first (which snapshot, which node, what happens to the agents: visible in the
// progress query), wait for the `approve` update; a rejection or no decision before the timeout ends
// the run having changed nothing. Then: preflight the node, write its k3s config (S3 keys included),
// cluster-reset from the snapshot and start k3s, wait until every node is Ready, unseal OpenBAO if it
// restarted sealed, run the secret sync (child rotateSecrets) and a full drift check (child checkDrift),
// and report the measured RTO (approval → every node Ready), the RPO (the snapshot's age when the plan
// was made) and the drift found after the recovery (zero for a clean one).
// The server recovered onto is the cluster's server: the same machine (datastore lost, k3s still
// installed), or a replacement machine whose address the operator put in the cluster file (same node
// name, new address, empty disk). For a replacement the steps also install k3s at the pinned version
// without starting it, write the server token back from its 1Password copy (k3s.tokenItem, kept by the
// first server's install), and, after the reset, deploy the VIP provider on the new server and wait
// for the VIP. Agents need no new join: they joined through the VIP, and an agent's client-side load
// balancer appends its default server (the VIP of K3S_URL) after the server addresses it learned, and
// fails over through that list when a dial fails (k3s-io/k3s pkg/agent/loadbalancer/servers.go
// setServers, loadbalancer.go dialContext); the restored CA and node passwords are the same ones.
// The step checks each agent's k3s-agent runs at the pinned version (joinK3sAgent: unchanged when it
// does, started or reinstalled when not). Refused: a token gone from the disk with no copy in 1Password.
import {
  ApplicationFailure,
  condition,
  executeChild,
  patched,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { ErrorType } from './failures.js';
import { approveUpdate, type ApprovalInput } from './messages.js';
import { AbortRequested, StepRunner } from './steps.js';
import { RequestedBy } from './search-attributes.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import type { rotateSecrets, RotationReport } from './rotate-secrets.js';
import type { checkDrift, DriftReport } from './check-drift.js';
import type { ClusterSpec } from '../config/schema.js';

const acts = shortActivities();
const steady = steadyActivities();
const waits = waitActivities();

export interface RecoverControlPlaneInput {
  cluster: string;
  /** The server to recover onto (default: the cluster's server). */
  node?: string;
  /** S3 snapshot name (default: the newest). */
  snapshot?: string;
  approvalTimeout?: Duration;
  /** Bound of the wait for every node Ready (default 600 s). */
  readySeconds?: number;
  requestId?: string;
  requestedBy?: string;
}

export interface RecoverPlan {
  node: string;
  snapshot: string;
  snapshotCreatedAt: string;
  /** Snapshot age when planned: what the cluster loses (RPO). */
  rpoSeconds: number;
  /** unchanged: same server address; re-point: the server moved, agents reach it through the VIP. */
  agents: { name: string; action: 'unchanged' | 're-point' }[];
  /** A new machine under the server's name: what the recovery installs and where the token comes from. */
  replacement?: { address: string; install: string; tokenRef: string };
  /** Where the server token for the reset comes from (reference only). */
  token?: { from: 'node' | '1password'; ref: string };
  summary: string;
}

export interface RecoverReport {
  result: 'recovered' | 'rejected' | 'cancelled';
  cluster: string;
  plan: RecoverPlan;
  approval?: ApprovalInput;
  /** Approval → every node Ready, in workflow time. */
  rtoSeconds?: number;
  rpoSeconds: number;
  nodesReady?: string[];
  /** Replacement: per agent, what the re-point step found (joinK3sAgent's action). */
  agents?: { name: string; action: string }[];
  /** OpenBAO after the restore: 'unsealed' when it had restarted sealed and was unsealed from 1Password. */
  openbao?: 'already-unsealed' | 'unsealed';
  /** The secret sync (child rotateSecrets) after the restore: entries synced, entries rewritten. */
  secretSync?: { workflowId: string; entries: number; written: number };
  /** The full drift check (child checkDrift) after the sync: zero findings is a clean recovery. */
  drift?: { workflowId: string; driftId: string; total: number };
  reasons: string[];
}

export async function recoverControlPlane(input: RecoverControlPlaneInput): Promise<RecoverReport> {
  const { cluster } = input;
  const runner = new StepRunner('recoverControlPlane', cluster, 'recover-control-plane');
  if (input.requestedBy) upsertSearchAttributes([{ key: RequestedBy, value: input.requestedBy }]);
  let decision: ApprovalInput | undefined;
  let waiting = false;
  setHandler(
    approveUpdate,
    (a) => {
      decision = { approved: a.approved, by: a.by, note: a.note };
      return { accepted: true };
    },
    {
      validator: (a: ApprovalInput | undefined) => {
        if (typeof a?.approved !== 'boolean') throw new Error('approved must be true or false');
        if (decision) throw new Error(`already ${decision.approved ? 'approved' : 'rejected'}`);
        if (!waiting) throw new Error('this recovery is not waiting for approval');
      },
    },
  );

  const spec = await runner.run('load-spec', 'plan', 'Load the cluster definition', () =>
    acts.loadClusterSpec(cluster),
  );
  if (!spec) throw new AbortRequested('load-spec');
  runner.setPhase('plan');
  // Runs from here on recover onto a replacement machine and take the token from 1Password (issue 20).
  const replacements = patched('recover-onto-replacement');
  const server = spec.nodes.find((n) => n.role === 'server');
  const target = input.node ?? server?.name ?? '';
  const refusals: string[] = [];
  if (!spec.k3s.etcdSnapshots) refusals.push(`cluster ${cluster} configures no etcd snapshots (k3s.etcdSnapshots)`);
  if (!server) refusals.push(`cluster ${cluster} has no server node`);
  else if (target !== server.name)
    refusals.push(
      replacements
        ? `recovering onto ${target} instead of ${server.name}: for a replacement machine, give ${server.name} its address in the cluster file`
        : `recovering onto ${target} instead of ${server.name} (a new address) is not supported yet`,
    );
  if (refusals.length > 0) refuse(refusals);

  const site = await runner.run('target', 'plan', `k3s and its server token on ${target}`, () =>
    steady.observeRestoreTarget({ cluster, node: target }),
  );
  if (!site) throw new AbortRequested('target');
  let replacement: RecoverPlan['replacement'];
  let token: RecoverPlan['token'];
  // The token k3s needs for a restore (docs.k3s.io/datastore/backup-restore): activities/k3s/server-token.ts.
  if (replacements) {
    const copy = await runner.run(
      'token-copy',
      'plan',
      'The k3s server token kept in 1Password',
      () => steady.observeServerTokenCopy({ cluster }),
      { describe: (c) => ({ detail: c.fingerprint ? `copy at ${c.ref}` : `no copy at ${c.ref}` }) },
    );
    if (!copy) throw new AbortRequested('token-copy');
    if (site.tokenPresent) token = { from: 'node', ref: copy.ref };
    else if (copy.fingerprint) token = { from: '1password', ref: copy.ref };
    else
      refusals.push(
        `the k3s server token (/var/lib/rancher/k3s/server/token) is gone from ${target} and 1Password holds no copy (${copy.ref}): the snapshot is unusable without it`,
      );
    if (!site.k3sVersion && token)
      replacement = { address: server!.address, install: spec.k3s.version, tokenRef: copy.ref };
  } else {
    if (!site.tokenPresent)
      refusals.push(
        `the k3s server token (/var/lib/rancher/k3s/server/token) is gone from ${target} and no copy is kept off-node: the snapshot is unusable without it`,
      );
    if (!site.k3sVersion)
      refusals.push(
        `k3s is not installed on ${target}: this workflow restores an installed server, it does not reinstall`,
      );
  }
  if (refusals.length > 0) refuse(refusals);

  const chosen = replacement ? namedSnapshot(input.snapshot, target) : await listedSnapshot();
  const rpoSeconds = Math.max(0, Math.floor((Date.now() - Date.parse(chosen.createdAt)) / 1000));
  const agents = spec.nodes
    .filter((n) => n.role === 'agent')
    .map((n) => ({ name: n.name, action: replacement ? ('re-point' as const) : ('unchanged' as const) }));
  const names = agents.map((a) => a.name).join(', ') || 'none';
  const plan: RecoverPlan = {
    node: target,
    snapshot: chosen.name,
    snapshotCreatedAt: chosen.createdAt,
    rpoSeconds,
    agents,
    ...(replacement ? { replacement } : {}),
    ...(token ? { token } : {}),
    summary: replacement
      ? `restore ${target} onto a replacement machine at ${replacement.address} (no k3s, no server token on its disk) from ${chosen.name} (${chosen.createdAt}, ${rpoSeconds}s of changes lost): install k3s ${replacement.install} without starting it, write the server token from ${replacement.tokenRef}, cluster-reset, start, deploy the VIP provider; agents ${names} re-point to the new server through the VIP`
      : `restore ${target} from ${chosen.name} (${chosen.createdAt}, ${rpoSeconds}s of changes lost)${token?.from === '1password' ? `, server token written back from ${token.ref}` : ''}; agents ${names} keep the same server address`,
  };
  upsertMemo({ plan: { summary: plan.summary } });

  runner.setPhase('approve');
  runner.plan('approval', 'approve', `Approve: ${plan.summary}`);
  runner.mark('approval', 'pending', plan.summary);
  runner.setState('waiting-approval');
  waiting = true;
  const report: RecoverReport = { result: 'cancelled', cluster, plan, rpoSeconds, reasons: [] };
  const timeout = input.approvalTimeout ?? '24h';
  const decided = await condition(() => decision !== undefined, timeout);
  waiting = false;
  if (!decided || !decision!.approved) {
    const why = decided
      ? `rejected by ${decision!.by ?? 'unknown'}${decision!.note ? `: ${decision!.note}` : ''}`
      : `no approval within ${String(timeout)}`;
    runner.mark('approval', decided ? 'skipped' : 'cancelled', why);
    report.approval = decision;
    report.result = decided ? 'rejected' : 'cancelled';
    report.reasons.push(`${why}; nothing was changed`);
    runner.setState('cancelled');
    runner.setPhase('done');
    upsertMemo({ report: { result: report.result, reasons: report.reasons } });
    return report;
  }
  report.approval = decision;
  runner.mark('approval', 'succeeded', `approved by ${decision!.by ?? 'unknown'}`);
  runner.setState('running');
  const approvedAt = Date.now();

  runner.setPhase('restore');
  await runner.run('preflight', 'restore', `Preflight ${target}`, () =>
    steady.preflightNode({ cluster, node: target }),
  );
  await runner.run('prepare', 'restore', `Write the k3s config on ${target}`, () =>
    waits.prepareNode({ cluster, node: target }),
  );
  if (replacement)
    await runner.run(
      'install',
      'restore',
      `Install k3s ${replacement.install} on ${target} without starting it`,
      () =>
        waits.installRestoreTarget.executeWithOptions(waitUpTo((spec.k3s.startTimeoutSeconds ?? 300) + 60), [
          { cluster, node: target },
        ]),
      { describe: (r) => ({ satisfied: !r.installed, detail: r.detail ?? r.version }) },
    );
  if (replacement)
    await runner.run(
      'snapshot',
      'restore',
      `Snapshot ${chosen.name} in S3, seen from ${target}`,
      async () => {
        const c = await steady.verifyEtcdSnapshots({ cluster, node: target });
        if (!c.available.some((x) => x.name === chosen.name))
          throw ApplicationFailure.create({
            type: ErrorType.NotFound,
            nonRetryable: true,
            message: `snapshot ${chosen.name} is not in S3 (have ${c.available.map((x) => x.name).join(', ') || 'none'})`,
          });
        return c;
      },
      { describe: (c) => ({ detail: `${c.offNode} in S3, ${chosen.name} among them` }) },
    );
  if (token?.from === '1password')
    await runner.run(
      'token',
      'restore',
      `Write the server token on ${target} from ${token.ref}`,
      () => steady.restoreServerToken({ cluster, node: target }),
      { describe: (r) => ({ satisfied: r.action === 'unchanged', detail: `${r.action} from ${r.ref}` }) },
    );
  await runner.run(
    'cluster-reset',
    'restore',
    `k3s server --cluster-reset --cluster-reset-restore-path=${chosen.name}, then start k3s`,
    () =>
      waits.restoreEtcdSnapshot.executeWithOptions(waitUpTo((spec.k3s.startTimeoutSeconds ?? 300) + 300), [
        { cluster, node: target, snapshot: chosen.name, runId: workflowInfo().runId },
      ]),
    { describe: (r) => ({ detail: r.alreadyRestored ? 'reset done by an earlier attempt' : 'restored' }) },
  );
  if (replacement) await bringBackVipAndAgents(runner, spec, report);
  runner.setPhase('verify');
  const readySeconds = input.readySeconds ?? 600;
  const ready = await runner.run(
    'nodes-ready',
    'verify',
    'Every node Ready',
    () => waits.waitNodesReady.executeWithOptions(waitUpTo(readySeconds), [{ cluster, timeoutSeconds: readySeconds }]),
    { describe: (r) => ({ detail: `${r.nodes.length} nodes Ready` }) },
  );
  report.nodesReady = ready?.nodes.map((n) => n.name);
  report.rtoSeconds = Math.max(1, Math.ceil((Date.now() - approvedAt) / 1000));
  await afterRestore(runner, cluster, report, input.requestedBy);
  report.result = 'recovered';
  runner.setState('succeeded');
  runner.setPhase('done');
  upsertMemo({
    report: { result: 'recovered', rtoSeconds: report.rtoSeconds, rpoSeconds, drift: report.drift?.total },
  });
  return report;

  /** The snapshot chosen from `k3s etcd-snapshot ls` on the target (S3 entries only). */
  async function listedSnapshot(): Promise<{ name: string; createdAt: string }> {
    const check = await runner.run(
      'snapshots',
      'plan',
      `Off-node etcd snapshots visible from ${target}`,
      () => steady.verifyEtcdSnapshots({ cluster, node: target }),
      { describe: (c) => ({ detail: `${c.offNode} in S3${c.newest ? `, newest ${c.newest.name}` : ''}` }) },
    );
    if (!check) throw new AbortRequested('snapshots');
    const found = input.snapshot ? check.available.find((s) => s.name === input.snapshot) : check.available[0];
    if (!found)
      refuse([
        input.snapshot
          ? `snapshot ${input.snapshot} is not in S3 (have ${check.available.map((s) => s.name).join(', ') || 'none'})`
          : 'no etcd snapshot in S3',
      ]);
    return found;
  }

  /**
   * A replacement has no k3s yet to list S3 with, and nothing may change before the approval: the
   * operator names the snapshot (the drill report names the newest), its time is in its name
   * (`<name>-<node>-<unix seconds>`, k3s-io/k3s pkg/etcd/snapshot.go), and the 'snapshot' step checks
   * it is in S3 once k3s is installed.
   */
  function namedSnapshot(name: string | undefined, node: string): { name: string; createdAt: string } {
    const ts = /-(\d{9,11})$/.exec(name ?? '')?.[1];
    if (!name || !ts)
      refuse([
        name
          ? `snapshot ${name} does not end in k3s's -<unix seconds>: name an S3 snapshot as k3s etcd-snapshot ls shows it`
          : `${node} is a new machine without k3s, so the S3 snapshots cannot be listed before the approval: name one (--snapshot; the drill report shows the newest)`,
      ]);
    return { name, createdAt: new Date(Number(ts) * 1000).toISOString() };
  }

  function refuse(reasons: string[]): never {
    runner.plan('approval', 'approve', 'Operator approval');
    runner.mark('approval', 'blocked', `refused: ${reasons.join('; ')}`);
    runner.setState('failed');
    throw ApplicationFailure.create({
      type: ErrorType.BadConfig,
      nonRetryable: true,
      message: `control-plane recovery refused: ${reasons.join('; ')}`,
    });
  }
}

/**
 * A replacement server has no kube-vip manifest: write it (k3s applies it) and wait until the VIP
 * answers, since agents reach the new server only through it. Then every agent is checked at the
 * pinned version and running (joinK3sAgent: 'unchanged' is the expected answer, see the header).
 */
async function bringBackVipAndAgents(runner: StepRunner, spec: ClusterSpec, report: RecoverReport) {
  const cluster = spec.name;
  const timeoutSeconds = spec.vipProvider?.readyTimeoutSeconds ?? 180;
  await runner.run(
    'vip',
    'restore',
    `VIP provider on the new server, then wait for the VIP ${spec.vip}`,
    async () => {
      const deployed = await steady.deployVipProvider({ cluster });
      const ready = await waits.waitVipReady.executeWithOptions(waitUpTo(timeoutSeconds), [
        { cluster, timeoutSeconds },
      ]);
      return { deployed, ready };
    },
    {
      describe: ({ deployed, ready }) => ({
        detail: `${deployed.provider}${deployed.path ? ` ${deployed.changed ? 'written to' : 'unchanged at'} ${deployed.path}` : ''}; ${ready.url} answered`,
      }),
    },
  );
  report.agents = [];
  for (const n of spec.nodes.filter((x) => x.role === 'agent')) {
    const r = await runner.run(
      `agent/${n.name}`,
      'restore',
      `Re-point ${n.name} to the new server through the VIP`,
      () =>
        waits.joinK3sAgent.executeWithOptions(waitUpTo((spec.k3s.startTimeoutSeconds ?? 300) + 60), [
          { cluster, node: n.name },
        ]),
      {
        describe: (x) => ({
          satisfied: x.action === 'unchanged',
          detail:
            x.action === 'unchanged'
              ? `k3s-agent ${x.version} running; its load balancer falls back to the VIP`
              : (x.detail ?? `${x.action} ${x.version}`),
        }),
      },
    );
    report.agents.push({ name: n.name, action: r?.action ?? 'skipped' });
  }
}

/**
 * After every node is Ready: OpenBAO first (a pod that restarted with the control plane comes back
 * sealed, its keys live only in memory; bootstrapOpenBao unseals from 1Password and leaves an unsealed
 * one as it is, and refuses to re-initialise while the unseal item exists), because the secret sync
 * reads it. Then the sync (Secrets the snapshot rolled back are written again from 1Password) and a
 * full drift check whose result is the report's: zero findings is a clean recovery.
 */
async function afterRestore(runner: StepRunner, cluster: string, report: RecoverReport, requestedBy?: string) {
  const runId = workflowInfo().runId;
  const by = requestedBy ?? `recover-control-plane ${workflowInfo().workflowId}`;
  const bao = await runner.run(
    'unseal',
    'verify',
    'Unseal OpenBAO from 1Password if it restarted sealed',
    () => steady.bootstrapOpenBao({ cluster }),
    {
      describe: (r) => ({
        satisfied: r.unsealed === 'before',
        detail: `${r.unsealed === 'now' ? 'unsealed' : 'already unsealed'}; keys in ${r.unsealItemRef}`,
      }),
    },
  );
  if (bao) report.openbao = bao.unsealed === 'now' ? 'unsealed' : 'already-unsealed';

  const requestId = `recover-${runId}`;
  const syncId = `rotate-secrets/${cluster}/${requestId}`;
  const sync = await runner.run(
    'secret-sync',
    'verify',
    'Secret sync: 1Password -> OpenBAO -> Kubernetes',
    () =>
      executeChild<typeof rotateSecrets>('rotateSecrets', {
        workflowId: syncId,
        args: [{ cluster, requestId, requestedBy: by }],
        staticSummary: `secret sync after the control-plane recovery of ${cluster}`,
      }).then((r: RotationReport) => {
        const failed = r.entries.filter((e) => e.status === 'failed');
        if (r.state !== 'ok')
          throw ApplicationFailure.create({
            type: ErrorType.VerificationFailed,
            nonRetryable: true,
            message: `secret sync ended ${r.state}: ${failed.map((e) => `${e.id}: ${e.reason ?? 'failed'}`).join('; ')}`,
          });
        return r;
      }),
    { describe: (r) => ({ detail: `${r.entries.length} entries (child ${syncId})` }) },
  );
  if (sync)
    report.secretSync = {
      workflowId: syncId,
      entries: sync.entries.length,
      written: sync.entries.filter((e) => e.status === 'rotated').length,
    };

  const driftId = `drift-check/${cluster}/recover-${runId}`;
  const drift = await runner.run(
    'drift',
    'verify',
    'Full drift check',
    () => executeChild<typeof checkDrift>('checkDrift', { workflowId: driftId, args: [{ cluster, requestedBy: by }] }),
    { describe: (d: DriftReport) => ({ detail: `${d.total} findings (drift ${d.driftId})` }) },
  );
  if (drift) {
    report.drift = { workflowId: driftId, driftId: drift.driftId, total: drift.total };
    if (drift.total > 0)
      report.reasons.push(
        `${drift.total} drift findings after the restore (${driftId}); reconcile them: ${drift.findings
          .slice(0, 5)
          .map((f) => `${f.group}: ${f.object}`)
          .join(', ')}`,
      );
  }
}
