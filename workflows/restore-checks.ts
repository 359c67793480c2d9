// Shared by verifyBackup and drRestore (not a workflow itself, so not re-exported by index.ts):
// the post-restore checks, naming rules and activity proxies.
import { patched } from '@temporalio/workflow';
import type { NamespaceVolumeData, ProbeSpec } from '../config/schema.js';
import type { CompareResult, ProbeResult, RestoreInfo, VolumeDataResult } from '../activities/velero/types.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import type { StepRunner } from './steps.js';
import { checkVolumeData } from './volume-checks.js';

// Timeouts per kind of activity: workflows/activity-options.ts.
export const acts = shortActivities();
export const steady = steadyActivities();
/** Waits poll and heartbeat; a cancelled workflow reaches them within a heartbeat. */
export const waits = waitActivities();
export { waitUpTo };

export interface RestoreTimeouts {
  backupSeconds?: number;
  restoreSeconds?: number;
  workloadsSeconds?: number;
  downloadSeconds?: number;
  cleanupSeconds?: number;
  /** How long cleanup lets a Restore that is still running finish before it deletes it. */
  settleSeconds?: number;
}

export const DEFAULT_TIMEOUTS: Required<RestoreTimeouts> = {
  backupSeconds: 1800,
  restoreSeconds: 1800,
  workloadsSeconds: 600,
  downloadSeconds: 60,
  cleanupSeconds: 300,
  settleSeconds: 120,
};

/** DNS-1123 label: lowercase, at most 63 characters, no dash at either end. */
export function label(s: string, max = 63): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, max)
    .replace(/^-+|-+$/g, '');
}

/** `drill-<ns>-<short id>`, shortening the namespace part so the whole stays a valid label. */
export function scratchNamespace(ns: string, shortId: string): string {
  return `${label(`drill-${ns}`, 62 - shortId.length)}-${shortId}`;
}

/** Why a restore's terminal phase is not success, in Velero's own words. */
export function restoreProblem(r: RestoreInfo, timeoutSeconds: number): string | undefined {
  if (r.timedOut) return `restore ${r.name} did not finish within ${timeoutSeconds}s (last phase ${r.phase ?? 'New'})`;
  if (r.phase === 'Completed' && r.errors === 0) return undefined;
  const why = r.failureReason ?? r.validationErrors?.join('; ') ?? `${r.errors} errors`;
  return `restore ${r.name} ended ${r.phase}: ${why}`;
}

export interface CheckOutcome {
  reasons: string[];
  counts: CompareResult['counts'];
  verification?: CompareResult['method'];
  probes: ProbeResult[];
  /** Per restored namespace, the PVCs and the data they got back (histories before volume checks: none). */
  volumes?: VolumeDataResult[];
}

/**
 * Restored objects against the backup's resource list (counts per kind when the list cannot be
 * had), workloads available, data probes passed. Every problem becomes a reason; nothing throws
 * for a failed check.
 */
export async function checkRestored(
  runner: StepRunner,
  input: {
    cluster: string;
    backup: string;
    mapping: Record<string, string>;
    probes: ProbeSpec[];
    runId: string;
    timeouts: Required<RestoreTimeouts>;
    /** The Restore whose PodVolumeRestores and DataDownloads are read; its VolumeSnapshots' new names. */
    restore?: string;
    volumeData?: Record<string, NamespaceVolumeData>;
  },
): Promise<CheckOutcome> {
  const out: CheckOutcome = { reasons: [], counts: {}, probes: [] };
  const { cluster, mapping, timeouts } = input;
  const list = await runner.run(
    'resource-list',
    'verify',
    `Fetch the resource list of backup ${input.backup}`,
    () =>
      waits.veleroBackupResourceList.executeWithOptions(waitUpTo(timeouts.downloadSeconds), [
        { cluster, backup: input.backup, timeoutSeconds: timeouts.downloadSeconds },
      ]),
    {
      describe: (r) => ({
        detail: r.list
          ? `${Object.values(r.list).reduce((n, v) => n + v.length, 0)} items`
          : `unavailable: ${r.unavailable}`,
      }),
    },
  );

  const cmp = await runner.run(
    'compare',
    'verify',
    'Compare restored objects with the backup',
    () => steady.veleroCompareRestored({ cluster, mapping, resourceList: list?.list, restore: input.restore }),
    {
      describe: (c) => ({
        detail: `${c.method}: ${Object.values(c.counts).reduce((n, k) => n + k.restored, 0)} restored, ${c.missing.length} missing`,
      }),
    },
  );
  if (cmp) {
    out.counts = cmp.counts;
    out.verification = cmp.method;
    if (cmp.missingNamespaces.length > 0)
      out.reasons.push(`namespaces missing after restore: ${cmp.missingNamespaces.join(', ')}`);
    if (cmp.missing.length > 0)
      out.reasons.push(
        `${cmp.missing.length} backed-up objects missing after restore: ${cmp.missing.slice(0, 10).join(', ')}${cmp.missing.length > 10 ? ', …' : ''}`,
      );
    if (cmp.missing.length > 0) runner.mark('compare', 'failed');
  }

  // Versioned: histories from before the volume check have no such activity.
  if (input.restore && patched('volume-data')) {
    const vol = await checkVolumeData(runner, {
      cluster,
      restore: input.restore,
      mapping,
      config: input.volumeData,
    });
    out.volumes = vol.volumes;
    out.reasons.push(...vol.reasons);
  }

  const wl = await runner.run(
    'workloads',
    'verify',
    'Wait for restored workloads to become available',
    () =>
      waits.veleroWaitWorkloads.executeWithOptions(waitUpTo(timeouts.workloadsSeconds), [
        { cluster, namespaces: Object.values(mapping), timeoutSeconds: timeouts.workloadsSeconds },
      ]),
    { describe: (w) => ({ detail: `${w.ready.length} available, ${w.notReady.length} not` }) },
  );
  if (wl && wl.notReady.length > 0) {
    out.reasons.push(
      `workloads not available within ${timeouts.workloadsSeconds}s: ${wl.notReady.map((w) => `${w.workload} (${w.message})`).join(', ')}`,
    );
    runner.mark('workloads', 'failed');
  }

  if (input.probes.length > 0) {
    const pr = await runner.run(
      'probes',
      'verify',
      `Run ${input.probes.length} data probes`,
      () =>
        waits.veleroRunProbes.executeWithOptions(
          // Each job probe runs up to its own timeout (300 s by default), one after the other.
          waitUpTo(input.probes.reduce((n, p) => n + (p.type === 'job' ? (p.timeoutSeconds ?? 300) + 30 : 0), 0)),
          [{ cluster, mapping, probes: input.probes, runId: input.runId }],
        ),
      {
        describe: (p) => ({
          detail: `${p.filter((x) => x.passed && !x.skipped).length} passed, ${p.filter((x) => !x.passed).length} failed, ${p.filter((x) => x.skipped).length} skipped`,
        }),
      },
    );
    out.probes = pr ?? [];
    const failed = out.probes.filter((p) => !p.passed);
    if (failed.length > 0) {
      out.reasons.push(...failed.map((p) => `probe ${p.namespace}/${p.name} failed: ${p.message}`));
      runner.mark('probes', 'failed');
    }
  }
  return out;
}
