// Summary table and bench/results/chaos-<date>.json for the chaos suite.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowChaos, ServerRestart } from './drive.js';

export interface Stats {
  n: number;
  min?: number;
  median?: number;
  max?: number;
}

export function stats(xs: Array<number | undefined>): Stats {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { n: 0 };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : Math.round((v[mid - 1] + v[mid]) / 2);
  return { n: v.length, min: v[0], median, max: v[v.length - 1] };
}

const fmt = (s: Stats) => (s.n ? `${s.min} / ${s.median} / ${s.max}` : 'n/a');

export function summarize(workflows: WorkflowChaos[], restarts: ServerRestart[]) {
  return {
    workflows: workflows.map((w) => ({
      workflow: w.workflow,
      error: w.error,
      runs: w.runs.length,
      completions: w.runs.filter((r) => r.check.problems.length === 0).length,
      kills: w.kills.length,
      killsByMode: w.kills.reduce<Record<string, number>>((m, k) => ((m[k.mode] = (m[k.mode] ?? 0) + 1), m), {}),
      killsDuringActivity: w.kills.filter((k) => k.orphaned.length > 0).length,
      killsDuringWorkflowTask: w.kills.filter((k) => k.workflowTaskInFlight).length,
      /** The replacement was killed too before any next step: no next-step time for that kill. */
      interrupted: w.kills.filter((k) => k.interrupted).length,
      repeated: w.runs.flatMap((r) => r.check.repeated),
      problems: w.runs.flatMap((r) => r.check.problems),
      resumeMs: stats(w.kills.map((k) => k.resumeMs)),
      nextStepMs: stats(w.kills.map((k) => k.nextStepMs)),
      newWorkerStartMs: stats(w.kills.map((k) => k.newWorkerStartMs)),
      coldStartMs: stats(w.coldStartsMs),
      naturalBoundS: stats(w.kills.map((k) => k.naturalBoundS)),
    })),
    serverRestarts: restarts.map((r) => ({ ...r, repeated: r.check.repeated, problems: r.check.problems })),
  };
}

export function printTable(
  workflows: WorkflowChaos[],
  restarts: ServerRestart[],
  log: (l: string) => void = (l) => process.stdout.write(`${l}\n`),
) {
  const s = summarize(workflows, restarts);
  log('');
  log('chaos: worker SIGKILLs (times in ms: min / median / max)');
  log(
    'workflow          runs  ok  kills  in-activity  repeated  kill->polling  polling->resume  polling->next step  cold start   server would wait (s)',
  );
  for (const w of s.workflows) {
    log(
      `${w.workflow.padEnd(17)} ${String(w.runs).padStart(4)} ${String(w.completions).padStart(3)} ${String(w.kills).padStart(6)} ${String(w.killsDuringActivity).padStart(12)} ${String(w.repeated.length).padStart(9)}  ${fmt(w.newWorkerStartMs).padEnd(14)} ${fmt(w.resumeMs).padEnd(16)} ${fmt(w.nextStepMs).padEnd(19)} ${fmt(w.coldStartMs).padEnd(12)} ${fmt(w.naturalBoundS)}`,
    );
  }
  const all = workflows.flatMap((w) => w.kills);
  log(
    `total kills ${all.length}; resume ${fmt(stats(all.map((k) => k.resumeMs)))} ms; next step ${fmt(stats(all.map((k) => k.nextStepMs)))} ms; ${all.filter((k) => k.interrupted).length} kills hit the replacement before any next step (no next-step time)`,
  );
  for (const r of restarts) {
    log(
      `server restart during ${r.workflow} (${r.stoppedAfterMs} ms in, step ${r.stepAtStop ?? '?'}): down ${r.downMs} ms, stop+start ${r.restartMs} ms, worker ${r.workerSurvived ? 'reconnected' : `restarted (${r.workerFatal ?? 'exited'})`}, ` +
        `resume ${r.resumeMs ?? 'n/a'} ms, next step ${r.nextStepMs ?? 'n/a'} ms (${r.nextStep ?? '-'}), run ${r.durationMs} ms, problems ${r.check.problems.length}, repeated ${r.check.repeated.length}`,
    );
  }
}

/** Writes bench/results/chaos-<YYYY-MM-DD><suffix>.json and returns its path. */
export function writeResults(
  workflows: WorkflowChaos[],
  restarts: ServerRestart[],
  meta: Record<string, unknown>,
  suffix = '',
): string {
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `chaos-${new Date().toISOString().slice(0, 10)}${suffix}.json`);
  const body = {
    generatedAt: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memGiB: Math.round(totalmem() / 2 ** 30),
      loadavg: loadavg(),
      node: process.version,
    },
    ...meta,
    summary: summarize(workflows, restarts),
    kills: workflows.flatMap((w) => w.kills),
    runs: workflows.flatMap((w) => w.runs.map((r) => ({ workflow: w.workflow, ...r }))),
  };
  writeFileSync(path, `${JSON.stringify(body, null, 2)}\n`);
  return path;
}
