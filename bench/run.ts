// npm run bench [-- name...] — runs every benchmark in bench/ one after another, each in its own
// process (a cold start must be cold, and a crashed benchmark must not take the others with it),
// reads the JSON each writes under bench/results/, prints one table and writes everything plus the
// machine's state to bench/results/bench-<ISO date>.json. Numbers come with ratios to a baseline;
// nothing passes or fails on wall time (the exit code only says whether every benchmark ran).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism, cpus, freemem, loadavg, release, totalmem, type } from 'node:os';
import { basename, join } from 'node:path';
import { resolveTemporalCli } from '../scripts/temporal-server.js';
import { REPO_ROOT } from '../worker/settings.js';
import { RESULTS_DIR, round, writeResult, type SummaryRow } from './_shared.js';
import { rowsFor } from './_rows.js';

const BENCH_DIR = join(REPO_ROOT, 'bench');
// Longest first is not the point: the lab-heavy ones first, while the machine is as quiet as it gets.
const ORDER = ['lab-control-plane', 'provision', 'rotation', 'api-status', 'worker-start'];
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 150_000);

interface BenchRun {
  name: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  wallMs: number;
  loadBefore: number[];
  resultFile?: string;
  rows: SummaryRow[];
  result?: unknown;
  error?: string;
}

function sh(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function machineState() {
  return {
    at: new Date().toISOString(),
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model,
    totalMemoryMiB: Math.round(totalmem() / 2 ** 20),
    freeMemoryMiB: Math.round(freemem() / 2 ** 20),
    loadAverage: loadavg().map((n) => round(n)),
  };
}

function staticState() {
  let temporalCli: string | undefined;
  try {
    const cli = resolveTemporalCli();
    // A source build reports 0.0.0-DEV; its cache path names the release it was built from.
    temporalCli = `${sh(cli, ['--version'])} [${cli}]`;
  } catch (err) {
    temporalCli = `unavailable: ${(err as Error).message}`;
  }
  const dirty = sh('git', ['status', '--porcelain']);
  return {
    node: process.version,
    os: `${type()} ${release()}`,
    temporalCli,
    gitCommit: sh('git', ['rev-parse', 'HEAD']),
    // The lead commits later: results measured on uncommitted work say so.
    gitUncommittedChanges: dirty === undefined ? undefined : dirty.split('\n').filter(Boolean).length,
  };
}

function benchmarks(only: string[]): string[] {
  const names = readdirSync(BENCH_DIR)
    .filter((f) => f.endsWith('.ts') && !f.startsWith('_') && f !== 'run.ts' && !f.endsWith('.test.ts'))
    .map((f) => basename(f, '.ts'));
  const unknown = only.filter((n) => !names.includes(n));
  if (unknown.length) throw new Error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${names.join(', ')}`);
  const rank = (n: string) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
  return names
    .filter((n) => only.length === 0 || only.includes(n))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The newest <name>.json or <name>-<stamp>.json written since `since`. */
function freshResult(name: string, since: number): string | undefined {
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(-[^/]*)?\\.json$`);
  return readdirSync(RESULTS_DIR)
    .filter((f) => pattern.test(f) && !f.startsWith('bench-'))
    .map((f) => ({ f, mtime: statSync(join(RESULTS_DIR, f)).mtimeMs }))
    .filter((x) => x.mtime >= since - 1000)
    .sort((a, b) => b.mtime - a.mtime)[0]?.f;
}

let current: ChildProcess | undefined;

/** Kills what is still running in the benchmark's process group (pgid = its pid) and names it. */
function stopGroup(pgid: number): string[] {
  try {
    process.kill(-pgid, 0);
  } catch {
    return []; // group empty: everything it started, it stopped
  }
  // Zombies (state Z: exited, not yet reaped by their dead parent, e.g. tsx's esbuild helper) run nothing.
  const members = (sh('ps', ['-eo', 'pid=,pgid=,stat=,args=']) ?? '')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === String(pgid) && !f[2]?.startsWith('Z'))
    .map((f) => `${f[0]} ${f.slice(3).join(' ').slice(0, 100)}`);
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // exited between the check and the kill
  }
  return members;
}

// Ctrl-C reaches only the runner (the benchmark has its own process group): pass it on, wait for its cleanup.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    const child = current;
    if (!child) process.exit(130);
    child.once('exit', () => {
      stopGroup(child.pid!);
      process.exit(130);
    });
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
  });
}

async function runOne(name: string): Promise<BenchRun> {
  const loadBefore = loadavg().map((n) => round(n));
  const started = Date.now();
  const t0 = performance.now();
  // node --import tsx: the benchmark is this pid itself (no wrapper), so stopping it is exact. Its own
  // process group (detached) lets the runner find anything it left running once it has exited.
  const child = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, `${name}.ts`)], {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEDRO_OPS_BENCH: '1' },
  });
  current = child;
  const prefix = (stream: NodeJS.WritableStream) => {
    let partial = '';
    return (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) stream.write(`  [${name}] ${l}\n`);
    };
  };
  child.stdout.on('data', prefix(process.stdout));
  child.stderr.on('data', prefix(process.stderr));
  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGTERM'); // the benchmark's own handler stops its servers and labs
    killTimer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  }, TIMEOUT_MS);
  const [exitCode, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.once('exit', (code, sig) => resolve([code, sig])),
  );
  clearTimeout(timer);
  clearTimeout(killTimer);
  current = undefined;
  const wallMs = Math.round(performance.now() - t0);
  await new Promise((r) => setTimeout(r, 500)); // children exiting with their parent get to finish
  const leftBehind = stopGroup(child.pid!);
  const run: BenchRun = { name, exitCode, signal, timedOut, wallMs, loadBefore, rows: [] };
  const file = freshResult(name, started);
  if (exitCode !== 0) run.error = timedOut ? `stopped after ${TIMEOUT_MS} ms` : `exited with ${exitCode ?? signal}`;
  if (leftBehind.length)
    run.error = [run.error, `left processes running, killed by process group: ${leftBehind.join(', ')}`]
      .filter(Boolean)
      .join('; ');
  if (!file) {
    run.error = [run.error, 'wrote no result file'].filter(Boolean).join('; ');
    return run;
  }
  run.resultFile = `bench/results/${file}`;
  try {
    run.result = JSON.parse(readFileSync(join(RESULTS_DIR, file), 'utf8'));
    run.rows = rowsFor(name, run.result);
  } catch (err) {
    run.error = [run.error, `unreadable result ${file}: ${(err as Error).message}`].filter(Boolean).join('; ');
  }
  return run;
}

function printTable(runs: BenchRun[]): void {
  const head = ['benchmark', 'metric', 'value', 'baseline', 'ratio', 'goal / note'];
  const fmt = (v: number | string, unit?: string) =>
    typeof v === 'number' ? `${v}${unit ? ` ${unit}` : ''}` : unit && /^[\d.]/.test(v) ? `${v} ${unit}` : v;
  const lines: string[][] = [];
  for (const r of runs) {
    if (r.error)
      lines.push([
        r.name,
        r.exitCode === 0 && r.rows.length ? '(completed with a warning)' : '(benchmark did not complete)',
        '',
        '',
        '',
        r.error,
      ]);
    for (const row of r.rows) {
      lines.push([
        r.name,
        row.metric,
        fmt(row.value, row.unit),
        row.baseline ? `${row.baseline.label} ${fmt(row.baseline.value, row.unit)}` : '',
        row.ratio === undefined ? '' : `${row.ratio}`,
        [row.goal ? `goal ${row.goal}` : '', row.note ?? ''].filter(Boolean).join('; '),
      ]);
    }
  }
  const widths = head.map((h, i) => Math.min(i === 5 ? 60 : 56, Math.max(h.length, ...lines.map((l) => l[i].length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 4 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join(' | ')
      .trimEnd();
  console.log(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('-+-')}`);
  let last = '';
  for (const l of lines) {
    console.log(line([l[0] === last ? '' : l[0], ...l.slice(1)]));
    last = l[0];
  }
}

async function main(): Promise<number> {
  const only = process.argv.slice(2).filter((a) => a !== '--');
  const names = benchmarks(only);
  const t0 = Date.now();
  const stat = staticState();
  const start = machineState();
  console.log(`bench: ${names.join(', ')}`);
  console.log(
    `machine: ${start.nproc} cpus (${start.cpuModel}), ${start.totalMemoryMiB} MiB, load ${start.loadAverage.join(' ')}; node ${stat.node}; ${stat.temporalCli}; commit ${stat.gitCommit?.slice(0, 12)}${stat.gitUncommittedChanges ? ` + ${stat.gitUncommittedChanges} uncommitted` : ''}`,
  );
  const runs: BenchRun[] = [];
  for (const n of names) {
    console.log(`\n== ${n}`);
    runs.push(await runOne(n));
  }
  const end = machineState();
  printTable(runs);
  const at = new Date(t0).toISOString();
  const out = writeResult(`bench-${at.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}`, {
    at,
    wallMs: Date.now() - t0,
    machine: { ...stat, start, end },
    benches: runs,
  });
  console.log(
    `\nload average start ${start.loadAverage.join(' ')} -> end ${end.loadAverage.join(' ')}; total ${Math.round((Date.now() - t0) / 1000)} s`,
  );
  console.log(`-> ${out}`);
  const failed = runs.filter((r) => r.error);
  if (failed.length)
    console.error(
      `${failed.length} benchmark(s) did not complete: ${failed.map((r) => `${r.name} (${r.error})`).join(', ')}`,
    );
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
