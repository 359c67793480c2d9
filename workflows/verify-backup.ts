// verifyBackup: prove a Velero backup restores. Pick (or make) a backup, restore it into scratch
// namespaces, check what came back, measure the RTO, and always delete the scratch namespaces —
// also when the drill fails or is cancelled. A failed drill is a finding, not a crashed run: the
// workflow completes with result "failed" and its reasons (result, memo, search attributes).
// One file per workflow (DESIGN): picking the backup and judging it are steps of this drill only;
// the restore checks it shares with drRestore are in restore-checks.ts.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import {
  CancellationScope,
  isCancellation,
  patched,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { BackupInfo, ProbeResult, StuckNamespace, VolumeDataResult } from '../activities/velero/types.js';
import type { SandboxInfo } from '../activities/velero/sandbox.js';
import type { RestoreResultsSummary } from '../activities/velero/evidence.js';
import { AbortRequested, StepRunner } from './steps.js';
import { DrillResult, DrillsSkipped, RequestedBy, RtoSeconds } from './search-attributes.js';
import { recordDrill, recordDrillsSkipped, recordEtcdSnapshotAge } from './metrics.js';
import { drillSkippedSignal } from './messages.js';
import { DRILL_DEADLINE_SECONDS } from './drill-limits.js';
import { namespacesNotCovered } from './namespaces.js';
import {
  acts,
  checkRestored,
  DEFAULT_TIMEOUTS,
  label,
  restoreProblem,
  scratchNamespace,
  steady,
  waits,
  type RestoreTimeouts,
} from './restore-checks.js';
import { cleanupAfterRestore } from './drill-cleanup.js';

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
  /**
   * With latestFromSchedule: verify the newest backup completed at or before this time. A run started
   * by the drill schedule (also a backfilled one) uses its scheduled start time.
   */
  asOf?: string;
  /**
   * The drill's own deadline: past it the work is cancelled, the drill fails with DrillTimeout and
   * cleanup still runs. The schedule's run timeout (worker/schedules.ts) is only a backstop above it.
   */
  deadlineSeconds?: number;
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
  /** Volume data per restored namespace: PVCs and what filled them (absent in runs before the check). */
  volumes?: VolumeDataResult[];
  cleanup: { deleted: string[]; remaining: string[]; stuck?: StuckNamespace[] };
  /** How the sandbox was kept off production (resource modifiers, isolation policy). */
  sandbox?: SandboxInfo & { rewritten?: string[] };
  /** Velero's errors and warnings of the restore, read before the Restore (and its files) went. */
  restoreResults?: RestoreResultsSummary;
  /** Scheduled drills the schedule skipped (overlap SKIP) while this one ran. */
  drillsSkipped?: number;
  /** The control plane's off-node etcd snapshot (k3s.etcdSnapshots configured, runs from the patch on). */
  etcdSnapshot?: {
    name?: string;
    /** Snapshot age when checked: the RPO a control-plane loss would have had. */
    ageSeconds?: number;
    rpoSeconds: number;
    sizeBytes?: number;
    offNode: number;
  };
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
  let restoreCreated = false;
  let cancelled: unknown;
  let skipped = 0;
  setHandler(drillSkippedSignal, ({ count }) => {
    if (!(count > 0)) return;
    skipped += count;
    report.drillsSkipped = skipped;
    upsertSearchAttributes([{ key: DrillsSkipped, value: skipped }]);
    recordDrillsSkipped(cluster, count);
  });
  // Versioned: histories from before the deadline have no timer (their commands replay unchanged).
  const deadlineSeconds = patched('drill-deadline') ? (input.deadlineSeconds ?? DRILL_DEADLINE_SECONDS) : undefined;
  const withDeadline = <T>(fn: () => Promise<T>): Promise<T> =>
    deadlineSeconds ? CancellationScope.withTimeout(deadlineSeconds * 1000, fn) : fn();
  // A stale or missing control-plane snapshot fails the drill, but the Velero drill still runs: both findings count.
  const snapshotReasons: string[] = [];

  try {
    return await withDeadline(async () => {
      const spec = await runner.run('load-spec', 'prepare', 'Load the cluster definition', () =>
        acts.loadClusterSpec(cluster),
      );
      if (!spec) throw new AbortRequested('load-spec');
      // Versioned: histories from before the control-plane check have no such activity.
      if (patched('etcd-snapshots') && spec.k3s.etcdSnapshots) {
        snapshotReasons.push(...(await checkEtcdSnapshots(runner, cluster, report)));
      }
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
      // Versioned: runs from before restored straight into namespaces Velero created.
      if (patched('drill-sandbox')) {
        report.sandbox = await runner.run(
          'sandbox',
          'restore',
          `Keep ${Object.values(mapping).join(', ')} off production (hosts, CronJobs, NodePorts, egress)`,
          () => steady.veleroPrepareSandbox({ cluster, runId: shortId, mapping }),
          {
            describe: (s) => ({ detail: `${s.rules} resource modifier rules, ${s.hosts.length} hosts moved` }),
            skipRefusal: () => 'without it the restored copy would claim production hosts and run its CronJobs',
          },
        );
      }
      const modifiers = report.sandbox?.configMap;
      await runner.run('restore', 'restore', `Restore ${backup.name} into ${Object.values(mapping).join(', ')}`, () =>
        acts.veleroEnsureRestore({
          cluster,
          name,
          backup: backup.name,
          includedNamespaces: namespaces,
          namespaceMapping: mapping,
          labels: { 'pedro-ops/drill': shortId },
          ...(modifiers ? { resourceModifierConfigMap: modifiers } : {}),
        }),
      );
      restoreCreated = true;
      const restored = await runner.run(
        'wait-restore',
        'restore',
        `Wait for restore ${name}`,
        () => waits.veleroWaitRestore({ cluster, name, timeoutSeconds: timeouts.restoreSeconds }),
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
      const sandbox = report.sandbox;
      if (sandbox) {
        const audit = await runner.run(
          'sandbox-audit',
          'verify',
          `No host outside ${sandbox.domain} in the sandbox`,
          () => steady.veleroAuditSandbox({ cluster, namespaces: sandbox.namespaces, domain: sandbox.domain }),
          { describe: (a) => ({ detail: `${a.rewritten.length} hosts rewritten after the restore` }) },
        );
        if (audit?.rewritten.length) {
          sandbox.rewritten = audit.rewritten;
          report.warnings.push(
            `sandbox: hosts the resource modifiers missed, rewritten: ${audit.rewritten.join(', ')}`,
          );
        }
        if (audit?.policyMissing.length)
          report.warnings.push(`sandbox: isolation policy was missing in ${audit.policyMissing.join(', ')}`);
      }
      const checks = await checkRestored(runner, {
        cluster,
        backup: backup.name,
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
      if (checks.reasons.length > 0) return await finish(...checks.reasons.map((r) => `VerificationFailed: ${r}`));
      report.rtoMs = Date.now() - restoreStart;
      report.rtoSeconds = Math.max(1, Math.ceil(report.rtoMs / 1000));
      report.result = 'passed';
      return await finish();
    });
  } catch (err) {
    if (isCancellation(err) && deadlineSeconds && !CancellationScope.current().consideredCancelled) {
      // Our own deadline cancelled the work, not an operator: a finding, and the run completes.
      report.reasons.push(`DrillTimeout: the drill did not finish within ${deadlineSeconds}s`);
      report.result = 'failed';
    } else if (isCancellation(err)) {
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
    report.reasons.push(...snapshotReasons.splice(0), ...reasons);
    if (report.reasons.length > 0) report.result = 'failed';
    // Cleanup must run even when the workflow is being cancelled: a non-cancellable scope.
    await CancellationScope.nonCancellable(async () => {
      runner.setPhase('cleanup');
      // Versioned: earlier runs deleted the namespaces after 120 s, then the Restore (and its evidence).
      if (patched('drill-cleanup-after-restore')) {
        await cleanupAfterRestore(runner, report, {
          cluster,
          name: restoreName,
          created: restoreCreated,
          terminal: restoreTerminal,
          timeouts,
        });
        return;
      }
      const name = restoreName;
      // Cleanup never parks (runner.attempt): a parked cleanup would hold this run, and with overlap
      // SKIP every later scheduled drill, forever. A Restore that was never created has nothing to settle.
      if (name && !restoreTerminal) {
        // Velero would keep writing into the scratch namespaces; let it reach a terminal phase first.
        // Cancelled while creating it, the Restore may or may not exist: a missing one fails fast (NotFound).
        const settled = await runner.attempt(
          'settle-restore',
          'cleanup',
          `Let restore ${name} finish before cleanup`,
          () => waits.veleroWaitRestore({ cluster, name, timeoutSeconds: timeouts.settleSeconds }),
        );
        if (settled.error && !restoreCreated)
          runner.mark('settle-restore', 'skipped', `restore ${name} was never created`);
      }
      const scratch = report.namespaces.map((n) => n.scratch);
      if (report.restoreAttempted && scratch.length > 0) {
        const res = await runner.attempt(
          'cleanup',
          'cleanup',
          `Delete scratch namespaces ${scratch.join(', ')}`,
          () =>
            waits.veleroDeleteNamespaces({
              cluster,
              namespaces: scratch,
              timeoutSeconds: DEFAULT_TIMEOUTS.cleanupSeconds,
            }),
          { describe: (r) => ({ detail: `${r.deleted.length} deleted, ${r.remaining.length} remaining` }) },
        );
        report.cleanup = res.value ?? { deleted: [], remaining: scratch };
        if (report.cleanup.remaining.length > 0) {
          report.reasons.push(
            `CleanupIncomplete: scratch namespaces still present: ${report.cleanup.remaining.join(', ')}${res.error ? ` (${res.error})` : ''}`,
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
    if (report.etcdSnapshot?.ageSeconds !== undefined) recordEtcdSnapshotAge(cluster, report.etcdSnapshot.ageSeconds);
    upsertMemo({
      report: {
        result: cancelled ? 'cancelled' : report.result,
        reasons: report.reasons,
        rtoSeconds: report.rtoSeconds ?? null,
        backup: report.backup ?? null,
        ...(report.etcdSnapshot ? { etcdSnapshotAgeSeconds: report.etcdSnapshot.ageSeconds ?? null } : {}),
      },
    });
    runner.setState(cancelled ? 'cancelled' : report.result === 'passed' ? 'succeeded' : 'failed');
    runner.setPhase('done');
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows the caught CancelledFailure itself: Temporal marks the run cancelled only for it
    if (cancelled) throw cancelled;
    return report;
  }
}

/** The control-plane part of the drill: the newest off-node etcd snapshot (activities/k3s/etcd-snapshots.ts). */
async function checkEtcdSnapshots(runner: StepRunner, cluster: string, report: DrillReport): Promise<string[]> {
  const check = await runner.run(
    'etcd-snapshots',
    'prepare',
    'Newest etcd snapshot is off the node and within the RPO',
    () => steady.verifyEtcdSnapshots({ cluster }),
    {
      describe: (c) => ({
        detail: c.newest ? `${c.newest.name}: ${c.ageSeconds}s old, ${c.newest.size} bytes` : c.problems.join('; '),
      }),
    },
  );
  if (!check) return [];
  report.etcdSnapshot = {
    name: check.newest?.name,
    ageSeconds: check.ageSeconds,
    rpoSeconds: check.rpoSeconds,
    sizeBytes: check.newest?.size,
    offNode: check.offNode,
  };
  if (check.problems.length === 0) return [];
  runner.mark('etcd-snapshots', 'failed', check.problems.join('; '));
  return check.problems.map((p) => `EtcdSnapshotNotUsable: ${p}`);
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
      () => waits.veleroWaitBackup({ cluster, name, timeoutSeconds }),
      { describe: (x) => ({ detail: `${x.phase}, ${x.errors} errors, ${x.warnings} warnings` }) },
    );
    return b ?? `backup ${name} was skipped by an operator`;
  }
  const schedule = typeof input.latestFromSchedule === 'string' ? input.latestFromSchedule : defaultSchedule;
  const notAfter = input.backup ? undefined : asOf(input);
  const title = input.backup
    ? `Read backup ${input.backup}`
    : `Newest Completed backup of schedule ${schedule}${notAfter ? ` at or before ${notAfter}` : ''}`;
  const found = await runner.run(
    'pick-backup',
    'backup',
    title,
    () => acts.veleroFindBackup({ cluster, name: input.backup, schedule, ...(notAfter ? { notAfter } : {}) }),
    { describe: (f) => ({ detail: f.backup ? `${f.backup.name}: ${f.backup.phase}` : f.reason }) },
  );
  if (!found) return 'backup selection was skipped by an operator';
  if (!found.backup) {
    runner.mark('pick-backup', 'failed');
    return `BackupNotUsable: ${found.reason}`;
  }
  return found.backup;
}

// Set by the Temporal server on every run a Schedule starts, backfilled ones included: the time the
// run was scheduled for (the backfilled time, not the time it actually started).
const ScheduledStartTime = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

/** The time whose backup this drill verifies: the input's asOf, or the schedule's start time. */
function asOf(input: VerifyBackupInput): string | undefined {
  if (input.asOf) return new Date(input.asOf).toISOString();
  const scheduled = workflowInfo().typedSearchAttributes.get(ScheduledStartTime);
  return scheduled ? scheduled.toISOString() : undefined;
}

/** Completed with zero errors and holding every namespace to restore; otherwise why not. */
function backupProblem(b: BackupInfo, namespaces: string[], timeoutSeconds: number): string | undefined {
  if (b.timedOut) return `backup ${b.name} did not finish within ${timeoutSeconds}s (last phase ${b.phase ?? 'New'})`;
  if (b.phase !== 'Completed' || b.errors > 0) {
    const why = b.failureReason ?? b.validationErrors?.join('; ');
    return `backup ${b.name} is ${b.phase ?? 'New'} with ${b.errors} errors${why ? `: ${why}` : ''}`;
  }
  const missing = namespacesNotCovered(b, namespaces);
  if (missing.length > 0) return `backup ${b.name} does not include namespaces ${missing.join(', ')}`;
  return undefined;
}
