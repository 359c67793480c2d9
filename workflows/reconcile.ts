// reconcile: repair drift as a reviewed plan. A drift check (child checkDrift) gives the findings;
// the plan lists every change and which findings each fixes; nothing changes until the `approve`
// update names that plan's driftId. Before applying, the cluster is checked again: if the drift is
// no longer the one approved (a newer check found different drift), the approval is refused and the
// new plan waits for a new approval. Changes go through the existing idempotent steps (prepare,
// k3s install/restart, installComponent, split DNS, Velero, a rotation of the drifted entries); a
// failing step parks in needs-attention. A last check reports what is left.
import {
  ApplicationFailure,
  condition,
  executeChild,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { ClusterSpec } from '../config/schema.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import type { checkDrift, DriftReport } from './check-drift.js';
import { repairPlan, type RepairChange } from './drift-plan.js';
import { approveUpdate, type ApprovalInput } from './messages.js';
import type { rotateSecrets, RotationReport } from './rotate-secrets.js';
import { AbortRequested, StepRunner } from './steps.js';

export interface ReconcileInput {
  cluster: string;
  requestedBy?: string;
  /** How long to wait for an operator's decision (Temporal duration, default 24h). */
  approvalTimeout?: Duration;
}

export interface ReconcilePlan {
  driftId: string;
  /** The check the plan was computed from. */
  checkWorkflowId: string;
  findings: number;
  changes: RepairChange[];
  summary: string;
}

export interface ReconcileReport {
  cluster: string;
  result: 'nothing-to-do' | 'repaired' | 'partial' | 'rejected' | 'cancelled';
  plan?: ReconcilePlan;
  approval?: ApprovalInput;
  /** Approvals refused because the drift had changed since the plan they approved. */
  refused: { driftId: string; by?: string; reason: string }[];
  applied: { id: string; state: string; detail?: string }[];
  /** The last check after the repair. */
  after?: { driftId: string; total: number; workflowId: string };
}

const short = shortActivities();
const waits = waitActivities();
const steady = steadyActivities();

export async function reconcile(input: ReconcileInput): Promise<ReconcileReport> {
  const { cluster } = input;
  const runner = new StepRunner('reconcile', cluster, 'reconcile');
  const runId = workflowInfo().runId;
  const report: ReconcileReport = { cluster, result: 'cancelled', refused: [], applied: [] };
  let plan: ReconcilePlan | undefined;
  let decision: ApprovalInput | undefined;
  let waiting = false;
  setHandler(
    approveUpdate,
    (a) => {
      decision = { approved: a.approved, by: a.by, note: a.note, driftId: a.driftId };
      return { accepted: true };
    },
    {
      validator: (a: ApprovalInput | undefined) => {
        if (typeof a?.approved !== 'boolean') throw new Error('approved must be true or false');
        if (!waiting || !plan) throw new Error('this reconcile is not waiting for approval');
        if (decision) throw new Error(`already ${decision.approved ? 'approved' : 'rejected'}`);
        if (a.approved && a.driftId !== plan.driftId)
          throw new Error(
            `approval is for drift ${a.driftId ?? '(none given)'}, the plan waiting is for drift ${plan.driftId}: review the current plan`,
          );
      },
    },
  );

  const spec = await runner.run('load-spec', 'plan', 'Load the cluster definition', () =>
    short.loadClusterSpec(cluster),
  );
  if (!spec) throw new AbortRequested('load-spec');

  let checks = 0;
  const check = async (why: string): Promise<DriftReport> => {
    checks += 1;
    const id = `check-${checks}`;
    const r = await runner.run(
      id,
      'plan',
      `Drift check (${why})`,
      () =>
        executeChild<typeof checkDrift>('checkDrift', {
          workflowId: `drift-check/${cluster}/reconcile-${runId}-${checks}`,
          args: [{ cluster, requestedBy: `reconcile ${workflowInfo().workflowId}` }],
        }),
      { describe: (d) => ({ detail: `${d.total} findings (drift ${d.driftId})` }) },
    );
    if (!r) throw new AbortRequested(id);
    return r;
  };

  runner.setPhase('plan');
  let drift = await check('plan');
  for (;;) {
    if (drift.total === 0) {
      runner.setPhase('done');
      runner.setState('succeeded');
      report.result = 'nothing-to-do';
      report.after = { driftId: drift.driftId, total: 0, workflowId: drift.workflowId };
      upsertMemo({ report: { result: report.result } });
      return report;
    }
    plan = planOf(drift, spec);
    report.plan = plan;
    upsertMemo({ plan: { driftId: plan.driftId, summary: plan.summary } });
    runner.setPhase('approve');
    const stepId = `approval-${checks}`;
    runner.plan(stepId, 'approve', `Approve: ${plan.summary}`);
    runner.mark(stepId, 'pending', plan.summary);
    runner.setState('waiting-approval');
    decision = undefined;
    waiting = true;
    const timeout = input.approvalTimeout ?? '24h';
    const decided = await condition(() => decision !== undefined, timeout);
    waiting = false;
    if (!decided) {
      runner.mark(stepId, 'cancelled', `no decision within ${String(timeout)}; nothing was changed`);
      return end('cancelled', 'cancelled');
    }
    report.approval = decision;
    const who = `${decision!.by ?? 'unknown'}${decision!.note ? `: ${decision!.note}` : ''}`;
    if (!decision!.approved) {
      runner.mark(stepId, 'skipped', `rejected by ${who}; nothing was changed`);
      return end('rejected', 'cancelled');
    }
    runner.setState('running');
    // The approval is for the drift seen then: if the cluster has drifted differently since, the
    // approver has not seen what would be changed.
    const now = await check('confirm the approved drift is still the drift');
    if (now.driftId === plan.driftId) {
      runner.mark(stepId, 'succeeded', `approved by ${who}`);
      break;
    }
    const reason = `drift changed since the plan was approved (${plan.driftId} -> ${now.driftId}); approve the new plan`;
    report.refused.push({ driftId: plan.driftId, by: decision!.by, reason });
    runner.mark(stepId, 'blocked', `approval by ${who} refused: ${reason}`);
    drift = now;
  }

  runner.setPhase('repair');
  for (const change of plan.changes) {
    if (change.repair.step === 'manual') {
      runner.plan(change.id, 'repair', change.title);
      runner.mark(change.id, 'skipped', `needs a person: ${change.fixes.join('; ')}`);
      report.applied.push({ id: change.id, state: 'skipped', detail: change.fixes.join('; ') });
      continue;
    }
    await runner.run(
      change.id,
      'repair',
      `${change.title}: ${change.fixes.join('; ') || 'follows the step before'}`,
      () => apply(change, spec, runId),
    );
    const s = runner.step(change.id)!;
    report.applied.push({ id: change.id, state: s.state, detail: s.detail });
  }

  runner.setPhase('verify');
  const after = await check('after the repair');
  report.after = { driftId: after.driftId, total: after.total, workflowId: after.workflowId };
  return end(after.total === 0 ? 'repaired' : 'partial', after.total === 0 ? 'succeeded' : 'partial');

  function end(result: ReconcileReport['result'], state: 'succeeded' | 'partial' | 'cancelled'): ReconcileReport {
    report.result = result;
    runner.setPhase('done');
    runner.setState(state);
    upsertMemo({ report: { result, remaining: report.after?.total } });
    return report;
  }
}

function planOf(drift: DriftReport, spec: ClusterSpec): ReconcilePlan {
  const changes = repairPlan(drift.findings, spec);
  const auto = changes.filter((c) => c.repair.step !== 'manual');
  return {
    driftId: drift.driftId,
    checkWorkflowId: drift.workflowId,
    findings: drift.total,
    changes,
    // The approval step shows this: every change and what it fixes, and the drift id to approve.
    summary: `drift ${drift.driftId}: ${drift.total} findings, ${auto.length} changes: ${changes.map((c) => `${c.repair.step === 'manual' ? '(needs a person) ' : ''}${c.id} [${c.fixes.join('; ') || 'applies the change before'}]`).join(', ')}`,
  };
}

async function apply(change: RepairChange, spec: ClusterSpec, runId: string): Promise<unknown> {
  const cluster = spec.name;
  const r = change.repair;
  switch (r.step) {
    case 'prepare-node':
      return waits.prepareNode.executeWithOptions(waitUpTo(15 * 60), [{ cluster, node: r.node }]);
    case 'k3s': {
      const role = spec.nodes.find((n) => n.name === r.node)?.role;
      const act = role === 'server' ? waits.installK3sServer : waits.joinK3sAgent;
      return act.executeWithOptions(waitUpTo(15 * 60), [{ cluster, node: r.node }]);
    }
    case 'node-metadata':
      return short.repairNodeMetadata({ cluster, node: r.node });
    case 'component': {
      const c = spec.components.find((x) => x.name === r.component)!;
      return waits.installComponent.executeWithOptions(waitUpTo(c.timeoutSeconds), [{ cluster, component: c.name }]);
    }
    case 'vip': {
      const applied = await steady.applyVipProvider({ cluster });
      const ready = await waits.waitVipReady.executeWithOptions(
        waitUpTo(spec.vipProvider?.readyTimeoutSeconds ?? 180),
        [{ cluster }],
      );
      return { ...applied, ready };
    }
    case 'split-dns':
      return short.configureSplitDns({ cluster });
    case 'velero':
      return waits.configureVelero.executeWithOptions(waitUpTo(180), [{ cluster, timeoutSeconds: 120 }]);
    case 'secret-sync': {
      const requestId = `reconcile-${runId}-${r.entry}`;
      const rot: RotationReport = await executeChild<typeof rotateSecrets>('rotateSecrets', {
        workflowId: `rotate-secrets/${cluster}/${requestId}`,
        args: [{ cluster, entries: [r.entry], requestId, requestedBy: 'reconcile' }],
      });
      if (rot.state !== 'ok')
        throw ApplicationFailure.create({
          type: 'VerificationFailed',
          nonRetryable: true,
          message: `sync of ${r.entry} ended ${rot.state}`,
        });
      return rot;
    }
    case 'manual':
      return undefined;
  }
}
