// Helpers shared by the benchmark scripts (files starting with "_" are not benchmarks: bench/run.ts
// skips them). A benchmark writes one JSON file under bench/results/ whose `summary` rows the runner
// prints; numbers are reported with ratios to a baseline, never judged pass/fail on wall time.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** One printed line: a measured value, optionally beside the baseline it is compared with. */
export interface SummaryRow {
  metric: string;
  value: number | string;
  unit?: string;
  /** What `value` is compared with, e.g. { label: 'raw describe+query p50', value: 4.1 }. */
  baseline?: { label: string; value: number };
  /** value / baseline.value (or a ratio the benchmark computes itself). */
  ratio?: number;
  /** The goal the issue names, as text ("<= 1.15"); shown, never enforced. */
  goal?: string;
  note?: string;
}

export const quietLog = { info() {}, warn() {}, error() {} };

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));

/** Nearest-rank percentile of unsorted samples (p in 0..100). */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function writeResult(name: string, result: object): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  return out;
}

/** Runs `main`, always runs `cleanup` (servers, workers, temp dirs) once, exits 0/1 without hanging on handles. */
export function runBench(name: string, main: (cleanup: (fn: () => unknown) => void) => Promise<void>): void {
  const cleanups: (() => unknown)[] = [];
  let finishing: Promise<void> | undefined;
  const finish = (code: number) => {
    // A signal, a crash and main's own rejection may all arrive: clean up once, exit with the first code.
    finishing ??= (async () => {
      for (const fn of [...cleanups].reverse()) {
        try {
          await fn();
        } catch (err) {
          console.error(`[${name}] cleanup: ${(err as Error).message}`);
        }
      }
      process.exit(code);
    })();
    return finishing;
  };
  // The runner stops an overrunning benchmark with SIGTERM: still stop what it started.
  process.once('SIGTERM', () => void finish(143));
  process.once('SIGINT', () => void finish(130));
  process.on('uncaughtException', (err) => {
    console.error(`[${name}] uncaught: ${err.stack ?? err.message}`);
    void finish(1);
  });
  process.on('unhandledRejection', (err) => {
    if (finishing) return; // in-flight requests failing while their servers stop
    console.error(`[${name}] unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    void finish(1);
  });
  main((fn) => cleanups.push(fn)).then(
    () => finish(0),
    (err: unknown) => {
      if (!finishing)
        console.error(`[${name}] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      void finish(1);
    },
  );
}
