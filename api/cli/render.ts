// Live progress for a running workflow: one bar per phase with the current step and elapsed time
// (redrawn in place on a terminal, one line per transition otherwise).
import type { ProgressEvent } from '../../workflows/messages.js';

const DONE = new Set(['succeeded', 'satisfied', 'skipped']);
const BAD = new Set(['failed', 'needs-attention', 'cancelled']);

export class ProgressView {
  private readonly steps = new Map<
    string,
    { phase: string; state: string; since: number; detail?: string; error?: string }
  >();
  private readonly phases: string[] = [];
  private runState = 'running';
  private lines = 0;
  private readonly started = Date.now();

  /** Without an output stream it only tracks state (--json mode). */
  constructor(
    private readonly out?: NodeJS.WriteStream,
    private readonly tty = Boolean(out?.isTTY),
  ) {}

  apply(e: ProgressEvent): void {
    if (e.kind === 'run' && e.state) this.runState = e.state;
    if (e.kind === 'step' && e.step) {
      const phase = e.phase ?? 'steps';
      if (!this.phases.includes(phase)) this.phases.push(phase);
      this.steps.set(e.step, {
        phase,
        state: e.state ?? 'pending',
        since: Date.now(),
        detail: e.detail,
        error: e.error,
      });
    }
    if (!this.out) return;
    if (this.tty) this.redraw();
    else if (e.kind === 'step' && e.state !== 'pending')
      this.out.write(
        `${this.elapsed()}  ${(e.phase ?? '').padEnd(12)} ${e.step?.padEnd(28)} ${e.state}${e.error ? `  ${e.error}` : e.detail ? `  ${e.detail}` : ''}\n`,
      );
    else if (e.kind === 'run') this.out.write(`${this.elapsed()}  run ${e.state}\n`);
  }

  private elapsed(): string {
    return `${((Date.now() - this.started) / 1000).toFixed(1)}s`.padStart(7);
  }

  private redraw(): void {
    const rows: string[] = [`pedro-ops  ${this.runState}  ${this.elapsed().trim()}`];
    for (const phase of this.phases) {
      const steps = [...this.steps.entries()].filter(([, s]) => s.phase === phase);
      const done = steps.filter(([, s]) => DONE.has(s.state)).length;
      const width = 20;
      const filled = steps.length ? Math.round((done / steps.length) * width) : 0;
      const current = steps.find(([, s]) => s.state === 'running' || BAD.has(s.state));
      const cur = current
        ? `${current[0]} ${current[1].state}${current[1].state === 'running' ? ` ${((Date.now() - current[1].since) / 1000).toFixed(1)}s` : ''}`
        : done === steps.length
          ? 'done'
          : '';
      rows.push(
        `  ${phase.padEnd(12)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(done).padStart(2)}/${steps.length}  ${cur}`,
      );
    }
    for (const [id, s] of this.steps)
      if (BAD.has(s.state)) rows.push(`  ! ${id}: ${s.state}${s.error ? ` - ${s.error}` : ''}`);
    if (this.lines > 0) this.out!.write(`\x1b[${this.lines}A\x1b[0J`);
    this.out!.write(`${rows.join('\n')}\n`);
    this.lines = rows.length;
  }

  /** Steps waiting for an operator, with their errors. */
  attention(): { step: string; error?: string }[] {
    return [...this.steps.entries()]
      .filter(([, s]) => s.state === 'needs-attention')
      .map(([step, s]) => ({ step, error: s.error }));
  }
}

/** Whether a workflow result counts as success for the exit code. */
export function resultOk(result: unknown): boolean {
  if (!result || typeof result !== 'object') return result !== undefined;
  const r = result as { state?: string; result?: string };
  const verdict = r.state ?? r.result;
  if (verdict === undefined) return true;
  return ['succeeded', 'ok', 'passed', 'restored', 'in-sync'].includes(verdict);
}
