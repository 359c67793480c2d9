// verifyBackup: prove a Velero backup restores. Pick (or make) a backup, restore it into scratch
// namespaces, check what came back, measure the RTO, and always delete the scratch namespaces —
// also when the drill fails or is cancelled. A failed drill is a finding, not a crashed run: the
// workflow completes with result "failed" and its reasons (result, memo, search attributes).
import {
  CancellationScope,
  isCancellation,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { BackupInfo } from '../activities/velero/types.js';
import type { ProbeResult } from '../activities/velero/types.js';
import { AbortRequested, StepRunner } from './steps.js';
import { DrillResult, RequestedBy, RtoSeconds } from './search-attributes.js';
import { recordDrill } from './metrics.js';
import {
  acts,
  checkRestored,
  DEFAULT_TIMEOUTS,
  label,
  restoreProblem,
  scratchNamespace,
  waits,
  waitUpTo,
  type RestoreTimeouts,
} from './restore-checks.js';

export interface VerifyBackupInput {
  cluster: string;
  /** Verify this Backup by name. */
  backup?: string;
  /** The newest Completed backup of a Velero Schedule (true: the config's schedule). The default. */
  latestFromSchedule?: boolean | string;
  /** Take an on-demand Backup of the namespaces first and verify that. */
  createNew?: boolean;
  /** Namespaces to restore (default: backups.drill.namespaces). */
  namespaces?: string[];
  requestId?: string;
  requestedBy?: string;
  timeouts?: RestoreTimeouts;
}

export interface DrillReport {
  result: 'passed' | 'failed';
  cluster: string;
  backup?: string;
  backupPhase?: string;
  backupWarnings?: number;
  restore?: string;
  restoreAttempted: boolean;
  namespaces: { source: string; scratch: string }[];
  reasons: string[];
  warnings: string[];
  /** Restore start → all checks passed, in workflow time; only for a passed drill. */
  rtoSeconds?: number;
  rtoMs?: number;
  verification?: 'resource-list' | 'counts';
  counts: Record<string, { expected?: number; restored: number }>;
  probes: ProbeResult[];
  cleanup: { deleted: string[]; remaining: string[] };
}

export async function verifyBackup(input: VerifyBackupInput): Promise<DrillReport> {
  const { cluster } = input;
  const runner = new StepRunner('verifyBackup', cluster, 'verify-backup');
  // Run ids are UUIDv7 (time first): the random tail tells runs apart.
  const shortId = workflowInfo().runId.replace(/-/g, '').slice(-6);
  const timeouts = { ...DEFAULT_TIMEOUTS, ...input.timeouts };
  const report: DrillReport = {
    result: 'failed',
    cluster,
    restoreAttempted: false,
    namespaces: [],
    reasons: [],
    warnings: [],
    counts: {},
    probes: [],
    cleanup: { deleted: [], remaining: [] },
  };
  if (input.requestedBy) upsertSearchAttributes([{ key: RequestedBy, value: input.requestedBy }]);
  let restoreName: string | undefined;
  let restoreTerminal = false;
  let cancelled: unknown;

  try {
    const spec = await runner.run('load-spec', 'prepare', 'Load the cluster definition', () =>
      acts.loadClusterSpec(cluster),
    );
    if (!spec) throw new AbortRequested('load-spec');
    const namespaces = input.namespaces?.length ? input.namespaces : spec.backups.drill.namespaces;
    report.namespaces = namespaces.map((ns) => ({ source: ns, scratch: scratchNamespace(ns, shortId) }));

    runner.setPhase('backup');
    const bsl = await runner.run(
      'storage-location',
      'backup',
      `BackupStorageLocation ${spec.backups.storageLocation} is Available`,
      () => acts.veleroStorageLocation({ cluster }),
      { describe: (b) => ({ detail: b.phase ?? b.message }) },
    );
    if (bsl && !bsl.available) {
      runner.mark('storage-location', 'failed');
      return await finish(
        `BackupNotUsable: backup storage location ${bsl.name} is ${bsl.phase ?? 'missing'}${bsl.message ? `: ${bsl.message}` : ''}`,
      );
    }

    const backup = await pickBackup(
      runner,
      input,
      spec.backups.schedule.name,
      namespaces,
      shortId,
      timeouts.backupSeconds,
    );
    if (typeof backup === 'string') return await finish(backup);
    report.backup = backup.name;
    report.backupPhase = backup.phase;
    report.backupWarnings = backup.warnings;
    if (backup.warnings > 0) report.warnings.push(`backup ${backup.name} has ${backup.warnings} warnings`);
    const unusable = backupProblem(backup, namespaces, timeouts.backupSeconds);
    if (unusable) {
      runner.mark('pick-backup', 'failed', unusable);
      return await finish(`BackupNotUsable: ${unusable}`);
    }

    runner.setPhase('restore');
    const mapping = Object.fromEntries(report.namespaces.map((n) => [n.source, n.scratch]));
    restoreName = label(`drill-${shortId}-${backup.name}`);
    const name = restoreName;
    const restoreStart = Date.now();
    report.restore = name;
    report.restoreAttempted = true;
    await runner.run('restore', 'restore', `Restore ${backup.name} into ${Object.values(mapping).join(', ')}`, () =>
      acts.veleroEnsureRestore({
        cluster,
        name,
        backup: backup.name,
        includedNamespaces: namespaces,
        namespaceMapping: mapping,
        labels: { 'pedro-ops/drill': shortId },
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
    restoreTerminal = Boolean(restored && !restored.timedOut);
    if (restored) {
      const problem = restoreProblem(restored, timeouts.restoreSeconds);
      if (restored.warnings > 0) report.warnings.push(`restore ${name} has ${restored.warnings} warnings`);
      if (problem) {
        runner.mark('wait-restore', 'failed', problem);
        return await finish(`RestoreFailed: ${problem}`);
      }
    }

    runner.setPhase('verify');
    const checks = await checkRestored(runner, {
      cluster,
      backup: backup.name,
      mapping,
      probes: spec.backups.drill.probes ?? [],
      runId: shortId,
      timeouts,
    });
    report.counts = checks.counts;
    report.verification = checks.verification;
    report.probes = checks.probes;
    if (checks.reasons.length > 0) return await finish(...checks.reasons.map((r) => `VerificationFailed: ${r}`));
    report.rtoMs = Date.now() - restoreStart;
    report.rtoSeconds = Math.max(1, Math.ceil(report.rtoMs / 1000));
    report.result = 'passed';
    return await finish();
  } catch (err) {
    if (isCancellation(err)) {
      cancelled = err;
      report.reasons.push('Cancelled: the drill was cancelled');
    } else if (err instanceof AbortRequested) {
      report.reasons.push(`Aborted: ${err.message}`);
    } else {
      throw err;
    }
    return await finish();
  }

  async function finish(...reasons: string[]): Promise<DrillReport> {
    report.reasons.push(...reasons);
    if (reasons.length > 0) report.result = 'failed';
    // Cleanup must run even when the workflow is being cancelled: a non-cancellable scope.
    await CancellationScope.nonCancellable(async () => {
      runner.setPhase('cleanup');
      const name = restoreName;
      if (name && !restoreTerminal) {
        // Velero would keep writing into the scratch namespaces; let it reach a terminal phase first.
        await runner
          .run('settle-restore', 'cleanup', `Let restore ${name} finish before cleanup`, () =>
            waits.veleroWaitRestore.executeWithOptions(waitUpTo(120), [{ cluster, name, timeoutSeconds: 120 }]),
          )
          .catch(() => undefined);
      }
      const scratch = report.namespaces.map((n) => n.scratch);
      if (report.restoreAttempted && scratch.length > 0) {
        const res = await runner
          .run(
            'cleanup',
            'cleanup',
            `Delete scratch namespaces ${scratch.join(', ')}`,
            () =>
              waits.veleroDeleteNamespaces.executeWithOptions(waitUpTo(DEFAULT_TIMEOUTS.cleanupSeconds), [
                { cluster, namespaces: scratch, timeoutSeconds: DEFAULT_TIMEOUTS.cleanupSeconds },
              ]),
            { describe: (r) => ({ detail: `${r.deleted.length} deleted, ${r.remaining.length} remaining` }) },
          )
          .catch(() => undefined);
        report.cleanup = res ?? { deleted: [], remaining: scratch };
        if (report.cleanup.remaining.length > 0) {
          report.reasons.push(
            `CleanupIncomplete: scratch namespaces still present: ${report.cleanup.remaining.join(', ')}`,
          );
          report.result = 'failed';
        }
      }
      if (name) await acts.veleroDeleteRestore({ cluster, name }).catch(() => undefined);
    });
    if (report.result === 'failed') report.rtoSeconds = undefined;
    upsertSearchAttributes([
      { key: DrillResult, value: cancelled ? 'cancelled' : report.result },
      ...(report.rtoSeconds !== undefined ? [{ key: RtoSeconds, value: report.rtoSeconds }] : []),
    ]);
    recordDrill(cluster, cancelled ? 'cancelled' : report.result, report.rtoSeconds);
    upsertMemo({
      report: {
        result: cancelled ? 'cancelled' : report.result,
        reasons: report.reasons,
        rtoSeconds: report.rtoSeconds ?? null,
        backup: report.backup ?? null,
      },
    });
    runner.setState(cancelled ? 'cancelled' : report.result === 'passed' ? 'succeeded' : 'failed');
    runner.setPhase('done');
    if (cancelled) throw cancelled;
    return report;
  }
}

async function pickBackup(
  runner: StepRunner,
  input: VerifyBackupInput,
  defaultSchedule: string,
  namespaces: string[],
  shortId: string,
  timeoutSeconds: number,
): Promise<BackupInfo | string> {
  const { cluster } = input;
  if (input.createNew) {
    const name = label(`verify-${cluster}-${shortId}`);
    await runner.run('create-backup', 'backup', `Create on-demand backup ${name} of ${namespaces.join(', ')}`, () =>
      acts.veleroEnsureBackup({ cluster, name, namespaces, labels: { 'pedro-ops/drill': shortId } }),
    );
    const b = await runner.run(
      'pick-backup',
      'backup',
      `Wait for backup ${name}`,
      () => waits.veleroWaitBackup.executeWithOptions(waitUpTo(timeoutSeconds), [{ cluster, name, timeoutSeconds }]),
      { describe: (x) => ({ detail: `${x.phase}, ${x.errors} errors, ${x.warnings} warnings` }) },
    );
    return b ?? `backup ${name} was skipped by an operator`;
  }
  const schedule = typeof input.latestFromSchedule === 'string' ? input.latestFromSchedule : defaultSchedule;
  const title = input.backup ? `Read backup ${input.backup}` : `Newest Completed backup of schedule ${schedule}`;
  const found = await runner.run(
    'pick-backup',
    'backup',
    title,
    () => acts.veleroFindBackup({ cluster, name: input.backup, schedule }),
    { describe: (f) => ({ detail: f.backup ? `${f.backup.name}: ${f.backup.phase}` : f.reason }) },
  );
  if (!found) return 'backup selection was skipped by an operator';
  if (!found.backup) {
    runner.mark('pick-backup', 'failed');
    return `BackupNotUsable: ${found.reason}`;
  }
  return found.backup;
}

/** Completed with zero errors and holding every namespace to restore; otherwise why not. */
function backupProblem(b: BackupInfo, namespaces: string[], timeoutSeconds: number): string | undefined {
  if (b.timedOut) return `backup ${b.name} did not finish within ${timeoutSeconds}s (last phase ${b.phase ?? 'New'})`;
  if (b.phase !== 'Completed' || b.errors > 0) {
    const why = b.failureReason ?? b.validationErrors?.join('; ');
    return `backup ${b.name} is ${b.phase ?? 'New'} with ${b.errors} errors${why ? `: ${why}` : ''}`;
  }
  const inc = b.includedNamespaces;
  const missing = inc.length === 0 || inc.includes('*') ? [] : namespaces.filter((ns) => !inc.includes(ns));
  if (missing.length > 0) return `backup ${b.name} does not include namespaces ${missing.join(', ')}`;
  return undefined;
}
