// rotateSecrets: 1Password -> OpenBAO -> Kubernetes Secret -> consumers restarted once -> verified ->
// rolled back per entry on failure. The workflow only decides; every hop is an activity and values
// never enter history: inputs and results carry references, versions and HMAC fingerprints.
// One file on purpose (DESIGN: one file per workflow, "what happens when rotation fails?" is
// answered here): the per-entry rollback and grouped restarts are this workflow's own compensation
// and fan-out, share its activity proxies and report, and are what its replay histories record.
import {
  ApplicationFailure,
  defineQuery,
  patched,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { ClusterSpec, SecretEntrySpec, WorkloadRef } from '../config/schema.js';
import { ErrorType } from './failures.js';
import { shortActivities, steadyActivities, waitActivities, waitUpTo } from './activity-options.js';
import { RequestedBy } from './search-attributes.js';
import { AbortRequested, StepRunner } from './steps.js';
import { probeSeconds } from './probe-timeouts.js';

export interface RotateSecretsInput {
  cluster: string;
  /** Entry ids (default: the whole map). */
  entries?: string[];
  /** Drift check: compare 1Password, OpenBAO and Kubernetes by fingerprint; change nothing. */
  dryRun?: boolean;
  /** Generate new values for entries with a `generate` recipe (true: all selected ones; or a list of ids). */
  generate?: boolean | string[];
  requestId?: string;
  requestedBy?: string;
  /** How long one consumer's rollout may take before the entry is rolled back. */
  rolloutTimeoutSeconds?: number;
}

export type EntryStatus = 'pending' | 'unchanged' | 'rotated' | 'failed' | 'rolled-back' | 'in-sync' | 'drift';
export type RotationState = 'running' | 'ok' | 'partial' | 'failed' | 'drift';

export interface EntryReport {
  id: string;
  status: EntryStatus;
  reason?: string;
  openbao: { path: string; version?: number; previousVersion?: number; written?: boolean; casRetries?: number };
  fingerprint?: string;
  kubernetes?: { secret: string; written: boolean; version?: number };
  consumers: string[];
  generated?: boolean;
  /** toVersion: whose data is served again; restoredAs: the new OpenBAO version that holds it. */
  rollback?: { toVersion: number; restoredAs?: number; rollouts: string[] };
  findings?: string[];
}

export interface RestartReport {
  workload: string;
  purpose: 'rotation' | 'rollback';
  restartedAt: string;
  outcome: string;
  message: string;
  entries: string[];
}

export interface RotationReport {
  rotationId: string;
  cluster: string;
  dryRun: boolean;
  state: RotationState;
  entries: EntryReport[];
  restarts: RestartReport[];
  onepassword?: { resolveAllCalls: number; itemsListCalls?: number };
  /** Entries of the map left out of this run, and why (pendingSource: their 1Password items do not exist yet). */
  skipped?: { id: string; reason: string }[];
}

export const rotationStatusQuery = defineQuery<RotationReport>('rotationStatus');

export function rotateSecretsWorkflowId(cluster: string, requestId: string): string {
  return `rotate-secrets/${cluster}/${requestId}`;
}

// Timeouts per kind of activity: workflows/activity-options.ts.
const short = shortActivities();
const steady = steadyActivities();
const waits = waitActivities();

const workloadKey = (w: WorkloadRef, entry: SecretEntrySpec) =>
  `${w.namespace ?? entry.kubernetes?.namespace ?? 'default'}/${w.kind}/${w.name}`;

/** What an operator's abort has to undo, filled in as the rotation goes. */
interface AbortContext {
  runner?: StepRunner;
  report?: RotationReport;
  spec?: ClusterSpec;
  rep?: Map<string, EntryReport>;
  /** Entries whose OpenBAO value this run wrote. */
  written: SecretEntrySpec[];
  rollingBack?: boolean;
}

export async function rotateSecrets(input: RotateSecretsInput): Promise<RotationReport> {
  const ctx: AbortContext = { written: [] };
  try {
    return await rotate(input, ctx);
  } catch (err) {
    if (!(err instanceof AbortRequested) || !ctx.runner || !ctx.report) throw err;
    return compensate(ctx as Required<Pick<AbortContext, 'runner' | 'report'>> & AbortContext, err, input);
  }
}

/**
 * Abort (DESIGN rule 4): the operator stopped the run at a parked step. Every entry this run wrote to
 * OpenBAO goes back to its previous version (Secret re-applied from it, the new version marked rolled
 * back, consumers restarted), the rest is reported failed with the reason. An abort during that
 * rollback itself stops there: the report says which entries were left.
 */
async function compensate(
  ctx: AbortContext & { runner: StepRunner; report: RotationReport },
  err: AbortRequested,
  input: RotateSecretsInput,
): Promise<RotationReport> {
  const { runner, report } = ctx;
  const reason = `aborted by operator at step ${err.step}${err.by ? ` (${err.by})` : ''}`;
  for (const r of report.entries) {
    if (r.status !== 'pending') continue;
    r.status = 'failed';
    r.reason = reason;
    runner.mark(`entry:${r.id}`, 'failed', reason);
  }
  const toRollBack = ctx.written.filter((e) => ctx.rep?.get(e.id)?.status === 'failed');
  if (ctx.rollingBack || !ctx.spec || !ctx.rep || toRollBack.length === 0) {
    if (ctx.rollingBack)
      for (const e of toRollBack) ctx.rep!.get(e.id)!.reason = `${ctx.rep!.get(e.id)!.reason}; rollback ${reason}`;
    return finish(runner, report, 'failed');
  }
  try {
    await rollBack(runner, report, ctx.spec, toRollBack, ctx.rep, report.rotationId, input);
  } catch (again) {
    if (!(again instanceof AbortRequested)) throw again;
    for (const e of toRollBack) {
      const r = ctx.rep.get(e.id)!;
      if (r.status !== 'rolled-back') r.reason = `${r.reason}; rollback aborted by operator at step ${again.step}`;
    }
  }
  return finish(runner, report, 'failed');
}

async function rotate(input: RotateSecretsInput, ctx: AbortContext): Promise<RotationReport> {
  const { cluster } = input;
  const rotationId = input.requestId ?? uuid4();
  const runner = new StepRunner('rotateSecrets', cluster, input.dryRun ? 'drift-check' : 'rotate-secrets');
  ctx.runner = runner;
  if (input.requestedBy) upsertSearchAttributes([{ key: RequestedBy, value: input.requestedBy }]);
  const report: RotationReport = {
    rotationId,
    cluster,
    dryRun: Boolean(input.dryRun),
    state: 'running',
    entries: [],
    restarts: [],
  };
  setHandler(rotationStatusQuery, () => report);
  ctx.report = report;

  const spec = await runner.run<ClusterSpec>('load-spec', 'plan', 'Load the cluster definition', () =>
    short.loadClusterSpec(cluster),
  );
  if (!spec) return finish(runner, report, 'failed');
  const selected = selectEntries(spec, input.entries);
  // Entries whose 1Password items do not exist yet are explicit in the config (pendingSource): the
  // whole map leaves them out (named in the report); naming one fails it with what to create.
  const pending = selected.filter((e) => e.pendingSource);
  if (!input.entries && pending.length)
    report.skipped = pending.map((e) => ({ id: e.id, reason: `pending source: ${e.pendingSource}` }));
  const entries = input.entries ? selected : selected.filter((e) => !e.pendingSource);
  const byId = new Map(entries.map((e) => [e.id, e]));
  const rep = new Map<string, EntryReport>();
  for (const e of entries) {
    const r: EntryReport = { id: e.id, status: 'pending', openbao: { path: e.openbaoPath }, consumers: [] };
    if (e.kubernetes) r.kubernetes = { secret: `${e.kubernetes.namespace}/${e.kubernetes.name}`, written: false };
    rep.set(e.id, r);
    report.entries.push(r);
    runner.plan(
      `entry:${e.id}`,
      'entries',
      `${e.id} -> ${e.openbaoPath}${e.kubernetes ? ` -> Secret ${e.kubernetes.namespace}/${e.kubernetes.name}` : ''}`,
    );
  }
  const fail = (id: string, reason: string) => {
    const r = rep.get(id)!;
    r.status = 'failed';
    r.reason = reason;
    runner.mark(`entry:${id}`, 'failed', reason);
  };

  for (const e of entries.filter((x) => x.pendingSource))
    fail(e.id, `SecretMissing: the 1Password source of this entry does not exist yet: ${e.pendingSource}`);
  const live = entries.filter((e) => !e.pendingSource);

  // Before any write (generate included): every referenced 1Password item of every entry exists. One
  // items.list per vault, no values read; every missing item is named, per entry, and nothing is written.
  if (!input.dryRun && live.length && patched('rotation-preflight')) {
    runner.setPhase('preflight');
    const pre = await runner.run(
      'preflight',
      'preflight',
      'Every 1Password item of the selected entries exists (no values read)',
      () => steady.rotationPreflight({ cluster, entryIds: live.map((e) => e.id) }),
      {
        describe: (p) => ({
          detail: p.entries.length
            ? `${p.entries.length} entr${p.entries.length === 1 ? 'y' : 'ies'} with missing items`
            : 'all items present',
        }),
      },
    );
    if (pre && pre.entries.length) {
      for (const m of pre.entries)
        fail(
          m.id,
          `SecretMissing: 1Password items missing: ${m.missing.map((x) => `${x.ref} (${x.reason})`).join('; ')}`,
        );
      runner.mark('preflight', 'failed', pre.entries.map((m) => m.id).join(', '));
      for (const r of report.entries)
        if (r.status === 'pending') {
          r.status = 'unchanged';
          r.reason = 'not attempted: the preflight found missing 1Password items';
          runner.mark(`entry:${r.id}`, 'skipped', r.reason);
        }
      return finish(runner, report, 'failed');
    }
  }
  if (entries.some((e) => e.pendingSource) && live.length === 0) return finish(runner, report, 'failed');

  if (input.dryRun) {
    runner.setPhase('drift-check');
    const drift = await runner.run(
      'drift-check',
      'drift-check',
      'Compare 1Password, OpenBAO and Kubernetes fingerprints',
      () => steady.rotationDriftCheck({ cluster, entryIds: live.map((e) => e.id) }),
    );
    for (const d of drift?.entries ?? []) {
      const r = rep.get(d.id)!;
      Object.assign(r, { status: d.inSync ? 'in-sync' : 'drift', findings: d.findings, fingerprint: d.onepassword });
      r.openbao.version = d.openbao?.version;
      runner.mark(`entry:${d.id}`, d.inSync ? 'satisfied' : 'failed', d.inSync ? 'in sync' : d.findings.join('; '));
    }
    if (drift) report.onepassword = { resolveAllCalls: drift.resolveAllCalls };
    return finish(runner, report, !drift ? 'failed' : drift.entries.every((d) => d.inSync) ? 'ok' : 'drift');
  }

  const generateIds =
    input.generate === true
      ? live.filter((e) => e.generate).map((e) => e.id)
      : Array.isArray(input.generate)
        ? input.generate
        : [];
  const noRecipe = generateIds.filter((id) => !byId.get(id)?.generate);
  if (noRecipe.length)
    throw ApplicationFailure.nonRetryable(
      `generate requested for entries without a generate recipe (or not selected): ${noRecipe.join(', ')}`,
      ErrorType.BadConfig,
    );
  if (generateIds.length) {
    runner.setPhase('generate');
    const gen = await runner.run(
      'generate',
      'generate',
      `Generate new values in 1Password for ${generateIds.join(', ')}`,
      () => steady.rotationGenerate({ cluster, entryIds: generateIds, rotationId }),
    );
    for (const g of gen ?? []) rep.get(g.entryId)!.generated = true;
  }

  runner.setPhase('openbao');
  const sync = await runner.run(
    'openbao',
    'openbao',
    'Read 1Password (one resolveAll per vault) and write OpenBAO with check-and-set',
    () => steady.rotationSyncOpenBao({ cluster, entryIds: live.map((e) => e.id), rotationId }),
    {
      describe: (s) => ({
        detail: `${s.entries.filter((e) => e.outcome === 'written').length} written, ${s.onepassword.resolveAllCalls} resolveAll call(s)`,
      }),
    },
  );
  if (!sync) return finish(runner, report, 'failed');
  report.onepassword = {
    resolveAllCalls: sync.onepassword.resolveAllCalls,
    itemsListCalls: sync.onepassword.itemsListCalls,
  };
  const changed = new Set<string>();
  for (const s of sync.entries) {
    const r = rep.get(s.id)!;
    Object.assign(r.openbao, {
      version: s.version,
      previousVersion: s.previousVersion,
      written: s.outcome === 'written',
      casRetries: s.casRetries,
    });
    r.fingerprint = s.fingerprint;
    if (s.outcome === 'failed') fail(s.id, `${s.error?.type}: ${s.error?.message}`);
    else if (s.outcome === 'written') changed.add(s.id);
  }
  Object.assign(ctx, {
    spec,
    rep,
    written: sync.entries.filter((s) => s.outcome === 'written').map((s) => byId.get(s.id)!),
  });

  runner.setPhase('kubernetes');
  await Promise.all(
    sync.entries
      .filter((s) => s.outcome !== 'failed' && byId.get(s.id)!.kubernetes && s.version)
      .map(async (s) => {
        const e = byId.get(s.id)!;
        const res = await runner.run(
          `secret:${s.id}`,
          'kubernetes',
          `Secret ${e.kubernetes!.namespace}/${e.kubernetes!.name} <- OpenBAO v${s.version}`,
          () => steady.rotationApplySecret({ cluster, entryId: s.id, version: s.version!, rotationId }),
          {
            describe: (a) => ({
              satisfied: !a.written,
              detail: a.dataChanged ? 'data updated' : a.written ? 'annotations updated' : 'already current',
            }),
          },
        );
        if (!res) return fail(s.id, 'Secret update skipped by operator');
        rep.get(s.id)!.kubernetes = {
          secret: `${e.kubernetes!.namespace}/${e.kubernetes!.name}`,
          written: res.dataChanged,
          version: s.version,
        };
        if (res.dataChanged) changed.add(s.id);
      }),
  );

  runner.setPhase('restart');
  const rollouts = await restartGrouped(
    runner,
    report,
    spec,
    [...changed].filter((id) => rep.get(id)!.status === 'pending').map((id) => byId.get(id)!),
    'rotation',
    rotationId,
    input,
  );
  for (const id of changed) {
    const r = rep.get(id)!;
    if (r.status !== 'pending') continue;
    const e = byId.get(id)!;
    r.consumers = e.consumers.map((w) => workloadKey(w, e));
    const bad = r.consumers.map((k) => rollouts.get(k)).filter((x) => x && x.outcome !== 'complete');
    if (bad.length)
      fail(id, `rollout failed: ${bad.map((b) => `${b!.workload}: ${b!.outcome}: ${b!.message}`).join('; ')}`);
  }

  runner.setPhase('verify');
  await Promise.all(
    [...changed]
      .filter((id) => rep.get(id)!.status === 'pending' && byId.get(id)!.verify)
      .map(async (id) => {
        const probe = byId.get(id)!.verify!;
        const res = await runner.run(
          `verify:${id}`,
          'verify',
          `Verify ${id} (${probe.type} probe)`,
          () =>
            waits.rotationProbe.executeWithOptions(waitUpTo(probeSeconds(probe)), [
              { cluster, probe, label: `${id}-${rotationId.slice(0, 8)}` },
            ]),
          {
            describe: (p) => ({ detail: p.message }),
          },
        );
        if (res && !res.ok) {
          runner.mark(`verify:${id}`, 'failed', res.message);
          fail(id, `verification failed: ${res.message}`);
        }
      }),
  );

  // Roll back what changed in this run and then failed; everything else keeps its new values.
  const toRollBack = [...changed].filter((id) => rep.get(id)!.status === 'failed');
  ctx.rollingBack = true;
  if (toRollBack.length)
    await rollBack(
      runner,
      report,
      spec,
      toRollBack.map((id) => byId.get(id)!),
      rep,
      rotationId,
      input,
    );

  for (const r of report.entries) {
    if (r.status !== 'pending') continue;
    r.status = changed.has(r.id) ? 'rotated' : 'unchanged';
    runner.mark(`entry:${r.id}`, changed.has(r.id) ? 'succeeded' : 'satisfied', r.status);
  }
  const ok = report.entries.filter((r) => r.status === 'rotated' || r.status === 'unchanged').length;
  return finish(
    runner,
    report,
    ok === report.entries.length ? 'ok' : ok === 0 && report.entries.length > 0 ? 'failed' : 'partial',
  );
}

async function rollBack(
  runner: StepRunner,
  report: RotationReport,
  spec: ClusterSpec,
  entries: SecretEntrySpec[],
  rep: Map<string, EntryReport>,
  rotationId: string,
  input: RotateSecretsInput,
) {
  runner.setPhase('rollback');
  // KV v2 reads serve current_version: rolling back only the Secret left OpenBAO serving the rejected
  // value. Histories from before this change marked the version instead (their commands replay as they were).
  const asNewVersion = patched('rollback-openbao-as-new-version');
  const restored: SecretEntrySpec[] = [];
  const restoredAs = new Map<string, number>();
  await Promise.all(
    entries.map(async (e) => {
      const r = rep.get(e.id)!;
      const prev = r.openbao.previousVersion;
      if (!prev) {
        r.reason = `${r.reason}; no previous OpenBAO version to roll back to`;
        return;
      }
      let serve = prev;
      if (asNewVersion && r.openbao.written && r.openbao.version) {
        const rejected = r.openbao.version;
        const res = await runner.run(
          `restore:${e.id}`,
          'rollback',
          `OpenBAO ${e.openbaoPath}: v${prev}'s data written again as a new version (check-and-set on the rejected v${rejected})`,
          () =>
            steady.rotationRestoreOpenBao({
              cluster: spec.name,
              entryId: e.id,
              rejectedVersion: rejected,
              toVersion: prev,
              rotationId,
            }),
          { describe: (x) => ({ detail: x.message }) },
        );
        if (!res) return;
        if (res.outcome !== 'superseded') {
          serve = res.version;
          restoredAs.set(e.id, res.version);
        }
      }
      if (e.kubernetes) {
        const res = await runner.run(
          `rollback:${e.id}`,
          'rollback',
          `Secret ${e.kubernetes.namespace}/${e.kubernetes.name} back to OpenBAO v${serve}${serve !== prev ? ` (= v${prev}'s data)` : ''}`,
          () => steady.rotationApplySecret({ cluster: spec.name, entryId: e.id, version: serve, rotationId }),
        );
        if (!res) return;
        r.kubernetes = {
          secret: `${e.kubernetes.namespace}/${e.kubernetes.name}`,
          written: res.dataChanged,
          version: serve,
        };
      }
      if (!asNewVersion && r.openbao.written && r.openbao.version) {
        await runner.run(
          `mark:${e.id}`,
          'rollback',
          `Mark OpenBAO ${e.openbaoPath} v${r.openbao.version} rolled back`,
          () =>
            steady.rotationMarkRolledBack({
              cluster: spec.name,
              entryId: e.id,
              version: r.openbao.version!,
              servingVersion: prev,
              rotationId,
            }),
        );
      }
      restored.push(e);
    }),
  );
  const rollouts = await restartGrouped(runner, report, spec, restored, 'rollback', rotationId, input);
  for (const e of restored) {
    const r = rep.get(e.id)!;
    r.status = 'rolled-back';
    r.rollback = {
      toVersion: r.openbao.previousVersion!,
      ...(restoredAs.has(e.id) ? { restoredAs: restoredAs.get(e.id) } : {}),
      rollouts: e.consumers
        .map((w) => workloadKey(w, e))
        .map((k) => `${k}: ${rollouts.get(k)?.outcome ?? 'not restarted'}`),
    };
    const as = restoredAs.get(e.id);
    runner.mark(
      `entry:${e.id}`,
      'failed',
      `rolled back to v${r.openbao.previousVersion}${as ? ` (restored as OpenBAO v${as})` : ''}: ${r.reason}`,
    );
  }
}

/** Restarts every consumer of `entries` once (grouped by workload), `parallelism` at a time, and waits for each rollout. */
async function restartGrouped(
  runner: StepRunner,
  report: RotationReport,
  spec: ClusterSpec,
  entries: SecretEntrySpec[],
  purpose: 'rotation' | 'rollback',
  rotationId: string,
  input: RotateSecretsInput,
) {
  const groups = new Map<string, { workload: WorkloadRef & { namespace: string }; entries: string[] }>();
  for (const e of entries) {
    for (const w of e.consumers) {
      const key = workloadKey(w, e);
      const g = groups.get(key) ?? { workload: { ...w, namespace: key.split('/')[0] }, entries: [] };
      g.entries.push(e.id);
      groups.set(key, g);
    }
  }
  // Millisecond workflow time plus the rotation id: two rotations in the same second still differ.
  const restartedAt = `${new Date().toISOString()}/${rotationId}${purpose === 'rollback' ? '/rollback' : ''}`;
  const results = new Map<string, RestartReport>();
  const queue = [...groups.entries()];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [key, g] = next;
      const res = await runner.run(
        `${purpose === 'rollback' ? 'rollback-restart' : 'restart'}:${key}`,
        purpose === 'rollback' ? 'rollback' : 'restart',
        `Restart ${key} (for ${g.entries.join(', ')}) and wait for the rollout`,
        () =>
          waits.rotationRestartConsumer.executeWithOptions(waitUpTo(input.rolloutTimeoutSeconds ?? 600), [
            {
              cluster: spec.name,
              workload: g.workload,
              restartedAt,
              rotationId,
              timeoutSeconds: input.rolloutTimeoutSeconds ?? 600,
            },
          ]),
        { describe: (r) => ({ detail: `${r.outcome}: ${r.message}` }) },
      );
      const rr: RestartReport = {
        workload: key,
        purpose,
        restartedAt,
        outcome: res?.outcome ?? 'skipped',
        message: res?.message ?? 'skipped by operator',
        entries: g.entries,
      };
      if (res && res.outcome !== 'complete')
        runner.mark(
          `${purpose === 'rollback' ? 'rollback-restart' : 'restart'}:${key}`,
          'failed',
          `${res.outcome}: ${res.message}`,
        );
      results.set(key, rr);
      report.restarts.push(rr);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(spec.parallelism, groups.size)) }, worker));
  return results;
}

function selectEntries(spec: ClusterSpec, ids?: string[]): SecretEntrySpec[] {
  if (!ids) return spec.secrets.entries;
  const unknown = ids.filter((id) => !spec.secrets.entries.some((e) => e.id === id));
  if (unknown.length)
    throw ApplicationFailure.nonRetryable(`unknown secret entries: ${unknown.join(', ')}`, ErrorType.BadConfig);
  return spec.secrets.entries.filter((e) => ids.includes(e.id));
}

function finish(runner: StepRunner, report: RotationReport, state: Exclude<RotationState, 'running'>): RotationReport {
  report.state = state;
  runner.setPhase('done');
  runner.setState(state === 'ok' ? 'succeeded' : state === 'failed' ? 'failed' : 'partial');
  upsertMemo({ rotationState: state, rotationId: report.rotationId, workflowId: workflowInfo().workflowId });
  return report;
}
