// drRestore: a real disaster-recovery restore, gated by a human. Plan first (what will be restored
// where, visible in the progress query), wait for the `approve` update, then restore, verify and
// report. No approval before the timeout: the run ends cancelled and restores nothing.
import {
  ApplicationFailure,
  condition,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { ProbeResult, VolumeDataResult } from '../activities/velero/types.js';
import { ErrorType } from './failures.js';
import { approveUpdate, type ApprovalInput } from './messages.js';
import { AbortRequested, StepRunner } from './steps.js';
import { RequestedBy } from './search-attributes.js';
import {
  acts,
  checkRestored,
  DEFAULT_TIMEOUTS,
  label,
  restoreProblem,
  waits,
  waitUpTo,
  type RestoreTimeouts,
} from './restore-checks.js';
import { namespacesNotCovered } from './namespaces.js';

export interface DrRestoreInput {
  cluster: string;
  backup: string;
  namespaces: string[];
  existingResourcePolicy?: 'none' | 'update';
  /** Namespace mapping source → target; unmapped namespaces restore in place. */
  target?: Record<string, string>;
  /** Restore even from an unavailable storage location or a backup that is not Completed. */
  force?: boolean;
  /** How long to wait for an operator's decision (Temporal duration, default 24h). */
  approvalTimeout?: Duration;
  requestId?: string;
  requestedBy?: string;
  timeouts?: RestoreTimeouts;
}

export interface DrPlan {
  backup: string;
  backupPhase?: string;
  backupErrors?: number;
  backupWarnings?: number;
  storageLocation: { name: string; phase?: string };
  restores: { from: string; to: string }[];
  existingResourcePolicy: 'none' | 'update';
  /** Problems `force` overrode; the approver sees them. */
  overridden: string[];
  summary: string;
}

export interface DrRestoreReport {
  result: 'restored' | 'rejected' | 'cancelled';
  cluster: string;
  plan: DrPlan;
  approval?: ApprovalInput;
  restore?: string;
  reasons: string[];
  warnings: string[];
  verification?: 'resource-list' | 'counts';
  counts: Record<string, { expected?: number; restored: number }>;
  probes: ProbeResult[];
  /** Volume data per restored namespace (absent in runs before the check). */
  volumes?: VolumeDataResult[];
  /** Approval → restored and verified, in workflow time. */
  durationSeconds?: number;
}

export async function drRestore(input: DrRestoreInput): Promise<DrRestoreReport> {
  const ctx: { runner?: StepRunner } = {};
  try {
    return await restore(input, ctx);
  } catch (err) {
    if (!(err instanceof AbortRequested) || !ctx.runner) throw err;
    // An operator's abort at a parked step ends the run as failed with the reason. Nothing is undone:
    // before approval nothing was restored, and a restore into live namespaces has no safe inverse.
    ctx.runner.setState('failed');
    ctx.runner.setPhase('done');
    upsertMemo({ report: { result: 'failed', reasons: [err.message] } });
    throw ApplicationFailure.create({ type: 'Aborted', nonRetryable: true, message: `DR restore ${err.message}` });
  }
}

async function restore(input: DrRestoreInput, ctx: { runner?: StepRunner }): Promise<DrRestoreReport> {
  const { cluster } = input;
  const runner = new StepRunner('drRestore', cluster, 'dr-restore');
  ctx.runner = runner;
  if (input.requestedBy) upsertSearchAttributes([{ key: RequestedBy, value: input.requestedBy }]);
  const timeouts = { ...DEFAULT_TIMEOUTS, ...input.timeouts };
  const shortId = workflowInfo().runId.replace(/-/g, '').slice(-6);
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
        if (decision)
          throw new Error(
            `already ${decision.approved ? 'approved' : 'rejected'}${decision.by ? ` by ${decision.by}` : ''}`,
          );
        if (!waiting) throw new Error('this restore is not waiting for approval');
      },
    },
  );

  const spec = await runner.run('load-spec', 'plan', 'Load the cluster definition', () =>
    acts.loadClusterSpec(cluster),
  );
  if (!spec) throw new AbortRequested('load-spec');
  runner.setPhase('plan');
  const bsl = await runner.run(
    'storage-location',
    'plan',
    `BackupStorageLocation ${spec.backups.storageLocation}`,
    () => acts.veleroStorageLocation({ cluster }),
    { describe: (b) => ({ detail: b.phase ?? b.message }) },
  );
  const backup = await runner.run(
    'backup',
    'plan',
    `Backup ${input.backup}`,
    () => acts.veleroGetBackup({ cluster, name: input.backup }),
    { describe: (b) => ({ detail: b ? `${b.phase}, ${b.errors} errors, ${b.warnings} warnings` : 'not found' }) },
  );

  const mapping = Object.fromEntries(input.namespaces.map((ns) => [ns, input.target?.[ns] ?? ns]));
  const hard: string[] = [];
  const soft: string[] = [];
  if (!backup) hard.push(`backup ${input.backup} does not exist`);
  else {
    if (backup.phase !== 'Completed' || backup.errors > 0)
      soft.push(
        `backup ${backup.name} is ${backup.phase ?? 'New'} with ${backup.errors} errors${backup.failureReason ? `: ${backup.failureReason}` : ''}`,
      );
    const lacking = namespacesNotCovered(backup, input.namespaces);
    if (lacking.length > 0) hard.push(`backup ${backup.name} does not include namespaces ${lacking.join(', ')}`);
  }
  const unmappedTargets = Object.keys(input.target ?? {}).filter((ns) => !input.namespaces.includes(ns));
  if (unmappedTargets.length > 0)
    hard.push(`target maps namespaces that are not restored: ${unmappedTargets.join(', ')}`);
  if (bsl && !bsl.available)
    soft.push(
      `backup storage location ${bsl.name} is ${bsl.phase ?? 'missing'}${bsl.message ? `: ${bsl.message}` : ''}`,
    );

  const policy = input.existingResourcePolicy ?? 'none';
  const plan: DrPlan = {
    backup: input.backup,
    backupPhase: backup?.phase,
    backupErrors: backup?.errors,
    backupWarnings: backup?.warnings,
    storageLocation: { name: spec.backups.storageLocation, phase: bsl?.phase },
    restores: Object.entries(mapping).map(([from, to]) => ({ from, to })),
    existingResourcePolicy: policy,
    overridden: input.force ? soft : [],
    summary: '',
  };
  plan.summary = `restore backup ${input.backup} (${backup?.phase ?? 'missing'}): ${plan.restores.map((r) => (r.from === r.to ? `${r.from} in place` : `${r.from} → ${r.to}`)).join(', ')}; existing resources: ${policy === 'update' ? 'updated' : 'kept'}${plan.overridden.length ? `; FORCED despite: ${plan.overridden.join('; ')}` : ''}`;
  upsertMemo({ plan: { summary: plan.summary } });

  const refusals = [...hard, ...(input.force ? [] : soft)];
  if (refusals.length > 0) {
    runner.plan('approval', 'approve', 'Operator approval');
    runner.mark('approval', 'blocked', `refused: ${refusals.join('; ')}`);
    runner.setState('failed');
    throw ApplicationFailure.create({
      type: ErrorType.BackupNotUsable,
      nonRetryable: true,
      message: `DR restore refused: ${refusals.join('; ')}${!input.force && hard.length === 0 ? ' (force overrides this)' : ''}`,
      details: [{ plan }],
    });
  }

  // The plan is what the operator approves: it sits in the progress query while we wait.
  runner.setPhase('approve');
  runner.plan('approval', 'approve', `Approve: ${plan.summary}`);
  runner.mark('approval', 'pending', plan.summary);
  runner.setState('waiting-approval');
  waiting = true;
  const report: DrRestoreReport = {
    result: 'cancelled',
    cluster,
    plan,
    reasons: [],
    warnings: [],
    counts: {},
    probes: [],
  };
  const timeout = input.approvalTimeout ?? '24h';
  const decided = await condition(() => decision !== undefined, timeout);
  waiting = false;
  if (!decided) {
    runner.mark('approval', 'cancelled', `no decision within ${String(timeout)}`);
    report.reasons.push(`no approval within ${String(timeout)}; nothing was restored`);
    return endCancelled(runner, report);
  }
  report.approval = decision;
  const who = `${decision!.by ?? 'unknown'}${decision!.note ? `: ${decision!.note}` : ''}`;
  if (!decision!.approved) {
    runner.mark('approval', 'skipped', `rejected by ${who}`);
    runner.setState('cancelled');
    runner.setPhase('done');
    report.result = 'rejected';
    report.reasons.push(`rejected by ${who}`);
    upsertMemo({ report: { result: 'rejected', reasons: report.reasons } });
    return report;
  }
  runner.mark('approval', 'succeeded', `approved by ${who}`);
  runner.setState('running');

  runner.setPhase('restore');
  const approvedAt = Date.now();
  const name = label(`dr-${shortId}-${input.backup}`);
  report.restore = name;
  await runner.run(
    'restore',
    'restore',
    `Restore ${input.backup}: ${plan.restores.map((r) => `${r.from} → ${r.to}`).join(', ')}`,
    () =>
      acts.veleroEnsureRestore({
        cluster,
        name,
        backup: input.backup,
        includedNamespaces: input.namespaces,
        namespaceMapping: Object.fromEntries(Object.entries(mapping).filter(([a, b]) => a !== b)),
        existingResourcePolicy: policy,
        labels: { 'pedro-ops/dr-restore': shortId },
      }),
  );
  const restored = await runner.run(
    'wait-restore',
    'restore',
    `Wait for restore ${name}`,
    () =>
      waits.veleroWaitRestore.executeWithOptions(waitUpTo(timeouts.restoreSeconds), [
        { cluster, name, timeoutSeconds: timeouts.restoreSeconds },
      ]),
    {
      describe: (r) => ({
        detail: `${r.phase}: ${r.itemsRestored ?? 0}/${r.totalItems ?? 0} items, ${r.warnings} warnings`,
      }),
    },
  );
  if (restored) {
    if (restored.warnings > 0)
      report.warnings.push(
        `restore ${name} has ${restored.warnings} warnings (existing objects are kept unless existingResourcePolicy is update)`,
      );
    const problem = restoreProblem(restored, timeouts.restoreSeconds);
    if (problem) return fail(ErrorType.RestoreFailed, [problem]);
  }

  runner.setPhase('verify');
  const checks = await checkRestored(runner, {
    cluster,
    backup: input.backup,
    mapping,
    probes: spec.backups.drill.probes ?? [],
    runId: shortId,
    timeouts,
    restore: name,
    volumeData: spec.backups.drill.volumeData,
  });
  report.counts = checks.counts;
  if (checks.volumes) report.volumes = checks.volumes;
  report.verification = checks.verification;
  report.probes = checks.probes;
  if (checks.reasons.length > 0) return fail(ErrorType.VerificationFailed, checks.reasons);
  report.result = 'restored';
  report.durationSeconds = Math.ceil((Date.now() - approvedAt) / 1000);
  runner.setState('succeeded');
  runner.setPhase('done');
  upsertMemo({ report: { result: 'restored', reasons: [], durationSeconds: report.durationSeconds } });
  return report;

  function fail(type: string, reasons: string[]): never {
    report.reasons.push(...reasons);
    runner.setState('failed');
    upsertMemo({ report: { result: 'failed', reasons: report.reasons } });
    throw ApplicationFailure.create({ type, nonRetryable: true, message: reasons.join('; '), details: [report] });
  }
}

/**
 * Ends the run with outcome "cancelled" (result, memo, State search attribute). Temporal refuses a
 * workflow's request to cancel itself ("not found"), so the run completes carrying that outcome.
 * Nothing has been restored at this point.
 */
function endCancelled(runner: StepRunner, report: DrRestoreReport): DrRestoreReport {
  runner.setState('cancelled');
  runner.setPhase('done');
  upsertMemo({ report: { result: 'cancelled', reasons: report.reasons } });
  return report;
}
