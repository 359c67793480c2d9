// A drill's cleanup, in the order Velero needs (issue 14 items 16 and 18):
// 1. Let a still-running Restore end (its results exist only once it is terminal).
// 2. Keep its results: deleting the Restore deletes its log and results from the bucket
//    (velero pkg/controller/restore_controller.go deleteExternalResources).
// 3. Delete the Restore and wait until it is gone. Velero does not cancel a running restore: its
//    finalizer is released only when the restore has run to its end, and until then Velero re-creates
//    any namespace it restores into (pkg/util/kube/utils.go EnsureNamespaceExistsAndIsReady). A gone
//    Restore means nothing writes into the scratch namespaces any more.
// 4. Only then delete the scratch namespaces; report any that stay, with their conditions.
// Every step is an attempt: cleanup never parks (steps.ts attempt). Not a workflow: verifyBackup's finish().
import type { DrillReport } from './verify-backup.js';
import type { StepRunner } from './steps.js';
import { acts, waits, waitUpTo, type RestoreTimeouts } from './restore-checks.js';

export async function cleanupAfterRestore(
  runner: StepRunner,
  report: DrillReport,
  r: {
    cluster: string;
    /** The Restore's name once the drill chose it (it may not have been created). */
    name?: string;
    created: boolean;
    terminal: boolean;
    timeouts: Required<RestoreTimeouts>;
  },
): Promise<void> {
  const { cluster, name, timeouts } = r;
  let terminal = r.terminal;
  let lastPhase: string | undefined;
  if (name && !terminal) {
    const settled = await runner.attempt('settle-restore', 'cleanup', `Let restore ${name} finish before cleanup`, () =>
      waits.veleroWaitRestore.executeWithOptions(waitUpTo(timeouts.settleSeconds), [
        { cluster, name, timeoutSeconds: timeouts.settleSeconds },
      ]),
    );
    if (settled.error && !r.created) runner.mark('settle-restore', 'skipped', `restore ${name} was never created`);
    terminal = Boolean(settled.value && !settled.value.timedOut);
    lastPhase = settled.value?.phase;
  }

  if (name && terminal) {
    const res = await runner.attempt(
      'restore-results',
      'cleanup',
      `Keep the errors and warnings of restore ${name}`,
      () =>
        waits.veleroRestoreResults.executeWithOptions(waitUpTo(timeouts.downloadSeconds), [
          { cluster, name, timeoutSeconds: timeouts.downloadSeconds },
        ]),
      {
        describe: (s) => ({
          detail: s.unavailable ?? `${s.errors.total} errors, ${s.warnings.total} warnings`,
        }),
      },
    );
    if (res.value) {
      report.restoreResults = res.value;
      for (const [kind, c] of [
        ['errors', res.value.errors],
        ['warnings', res.value.warnings],
      ] as const) {
        for (const [where, v] of Object.entries(c.by))
          report.warnings.push(`restore ${kind} in ${where} (${v.count}): ${v.messages.join('; ')}`);
      }
      if (res.value.unavailable) report.warnings.push(`restore results unavailable: ${res.value.unavailable}`);
    }
  }

  let gone = !name;
  if (name) {
    const del = await runner.attempt(
      'delete-restore',
      'cleanup',
      `Delete restore ${name} and wait until Velero releases it`,
      () =>
        waits.veleroDeleteRestoreAndWait.executeWithOptions(waitUpTo(timeouts.cleanupSeconds), [
          { cluster, name, timeoutSeconds: timeouts.cleanupSeconds },
        ]),
      { describe: (d) => ({ detail: d.gone ? 'gone' : `still ${d.phase ?? 'present'}` }) },
    );
    gone = Boolean(del.value?.gone);
    lastPhase = del.value?.phase ?? lastPhase;
  }

  const scratch = report.namespaces.map((n) => n.scratch);
  if (report.restoreAttempted && scratch.length > 0) {
    if (!terminal && !gone) {
      // Deleting now would only be undone: Velero re-creates the namespaces it is still restoring into.
      runner.plan('cleanup', 'cleanup', `Delete scratch namespaces ${scratch.join(', ')}`);
      runner.mark('cleanup', 'failed', `restore ${name} is still running`);
      report.cleanup = { deleted: [], remaining: scratch };
      report.reasons.push(
        `CleanupIncomplete: restore ${name} is still ${lastPhase ?? 'running'} after cleanup waited ${timeouts.settleSeconds + timeouts.cleanupSeconds}s; Velero would re-create the scratch namespaces, so ${scratch.join(', ')} are left: delete them once the restore has ended`,
      );
      report.result = 'failed';
    } else {
      const res = await runner.attempt(
        'cleanup',
        'cleanup',
        `Delete scratch namespaces ${scratch.join(', ')}`,
        () =>
          waits.veleroDeleteNamespaces.executeWithOptions(waitUpTo(timeouts.cleanupSeconds), [
            { cluster, namespaces: scratch, timeoutSeconds: timeouts.cleanupSeconds },
          ]),
        { describe: (x) => ({ detail: `${x.deleted.length} deleted, ${x.remaining.length} remaining` }) },
      );
      report.cleanup = res.value ?? { deleted: [], remaining: scratch };
      if (report.cleanup.remaining.length > 0) {
        const why = (report.cleanup.stuck ?? []).map(
          (s) =>
            `${s.namespace} ${s.terminating ? s.phase : 'present again'}${s.conditions.length ? ` [${s.conditions.join('; ')}]` : ''}`,
        );
        report.reasons.push(
          `CleanupIncomplete: scratch namespaces still present: ${why.length ? why.join(', ') : report.cleanup.remaining.join(', ')}${res.error ? ` (${res.error})` : ''}`,
        );
        report.result = 'failed';
      }
    }
  }
  if (report.sandbox)
    await runner.attempt('sandbox-config', 'cleanup', `Delete resource modifiers ${report.sandbox.configMap}`, () =>
      acts.veleroDeleteSandboxConfig({ cluster, configMap: report.sandbox!.configMap }),
    );
}
