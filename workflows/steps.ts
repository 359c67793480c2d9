// Step bookkeeping shared by every long workflow: the `progress` query, search attributes, and
// DESIGN rule 4 — a step that fails non-retryably parks in needs-attention and waits for an
// operator's `resolveStep` update (retry | skip | abort) instead of failing the run or hanging silently.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  isCancellation,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import {
  eventsQuery,
  progressQuery,
  resolveStepUpdate,
  type ProgressEvent,
  type Progress,
  type ResolveAction,
  type ResolveStepInput,
  type RunState,
  type StepProgress,
  type StepState,
} from './messages.js';
import { ClusterName, Operation, Phase, State } from './search-attributes.js';
import { recordRunOutcome, recordStepOutcome } from './metrics.js';

const TERMINAL_STEP = new Set<StepState>([
  'succeeded',
  'satisfied',
  'skipped',
  'failed',
  'needs-attention',
  'cancelled',
]);
const TERMINAL_RUN = new Set<RunState>(['succeeded', 'partial', 'failed', 'cancelled']);

export class AbortRequested extends Error {
  constructor(
    readonly step: string,
    readonly by?: string,
  ) {
    super(`aborted by operator at step ${step}`);
    this.name = 'AbortRequested';
  }
}

export interface StepOptions<T> {
  dependsOn?: string[];
  /** Why skip is refused (e.g. "grafana depends on it"); undefined means skip is allowed. */
  skipRefusal?: () => string | undefined;
  /** Turn a result into the step's visible state/detail. */
  describe?: (result: T) => { satisfied?: boolean; detail?: string };
}

function errorInfo(err: unknown): { type?: string; message: string } {
  let e: unknown = err;
  if (e instanceof ActivityFailure && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return { type: e.type ?? undefined, message: e.message };
  if (e instanceof Error) return { type: e.name, message: e.message };
  return { message: String(e) };
}

export class StepRunner {
  readonly progress: Progress;
  private readonly events: ProgressEvent[] = [];
  private readonly resolutions = new Map<string, ResolveStepInput>();
  private readonly skipRules = new Map<string, () => string | undefined>();

  constructor(workflow: string, cluster: string, operation: string) {
    const now = new Date().toISOString();
    this.progress = {
      workflow,
      cluster,
      state: 'running',
      phase: 'starting',
      startedAt: now,
      updatedAt: now,
      steps: [],
      seq: 0,
    };
    setHandler(progressQuery, () => this.progress);
    setHandler(eventsQuery, (afterSeq) => this.events.filter((e) => e.seq > (afterSeq ?? 0)));
    setHandler(
      resolveStepUpdate,
      (input) => {
        this.resolutions.set(input.step, input);
        return { accepted: true };
      },
      { validator: (input: ResolveStepInput) => this.validateResolution(input) },
    );
    upsertSearchAttributes([
      { key: ClusterName, value: cluster },
      { key: Operation, value: operation },
      { key: Phase, value: 'starting' },
      { key: State, value: 'running' },
    ]);
  }

  private validateResolution(input: ResolveStepInput): void {
    const step = this.progress.steps.find((s) => s.id === input.step);
    if (!step) throw new Error(`no step "${input.step}"`);
    if (step.state !== 'needs-attention') throw new Error(`step "${input.step}" is ${step.state}, not needs-attention`);
    if (!['retry', 'skip', 'abort'].includes(input.action)) throw new Error(`unknown action "${input.action}"`);
    if (input.action === 'skip') {
      const refusal = this.skipRules.get(input.step)?.();
      if (refusal) throw new Error(`skip refused for "${input.step}": ${refusal}`);
    }
  }

  private touch(event?: Omit<ProgressEvent, 'seq' | 'at'>): void {
    this.progress.seq += 1;
    this.progress.updatedAt = new Date().toISOString();
    if (event) this.events.push({ seq: this.progress.seq, at: this.progress.updatedAt, ...event });
  }

  private stepEvent(step: StepProgress): Omit<ProgressEvent, 'seq' | 'at'> {
    if (TERMINAL_STEP.has(step.state)) recordStepOutcome(this.progress.workflow, step.phase, step.state);
    return {
      kind: 'step',
      step: step.id,
      state: step.state,
      phase: step.phase,
      detail: step.detail,
      error: step.lastError?.message,
    };
  }

  setPhase(phase: string): void {
    this.progress.phase = phase;
    this.touch({ kind: 'phase', phase });
    upsertSearchAttributes([{ key: Phase, value: phase }]);
  }

  setState(state: RunState): void {
    if (this.progress.state === state) return;
    this.progress.state = state;
    this.touch({ kind: 'run', state });
    if (TERMINAL_RUN.has(state)) recordRunOutcome(this.progress.workflow, this.progress.cluster, state);
    upsertSearchAttributes([{ key: State, value: state }]);
  }

  /** Adds a step in `pending` so the plan is visible before it runs. */
  plan(id: string, phase: string, title: string, dependsOn?: string[]): StepProgress {
    let step = this.progress.steps.find((s) => s.id === id);
    if (!step) {
      step = { id, phase, title, state: 'pending', attempts: 0, dependsOn };
      this.progress.steps.push(step);
      this.touch(this.stepEvent(step));
    }
    return step;
  }

  mark(id: string, state: StepState, detail?: string): void {
    const step = this.progress.steps.find((s) => s.id === id);
    if (!step) return;
    step.state = state;
    if (detail !== undefined) step.detail = detail;
    this.touch(this.stepEvent(step));
  }

  step(id: string): StepProgress | undefined {
    return this.progress.steps.find((s) => s.id === id);
  }

  private refreshRunState(): void {
    if (this.progress.state === 'running' || this.progress.state === 'needs-attention') {
      this.setState(this.progress.steps.some((s) => s.state === 'needs-attention') ? 'needs-attention' : 'running');
    }
  }

  /**
   * Runs `fn` once as step `id` and never parks: a failure marks the step failed and returns
   * `{error}`. For cleanups and compensations, which must always reach their end (DESIGN rule 11):
   * a parked cleanup would hold the run, and a drill schedule with overlap SKIP behind it, forever.
   */
  async attempt<T>(
    id: string,
    phase: string,
    title: string,
    fn: () => Promise<T>,
    opts: StepOptions<T> = {},
  ): Promise<{ value?: T; error?: string }> {
    const step = this.plan(id, phase, title, opts.dependsOn);
    step.attempts += 1;
    step.state = 'running';
    step.startedAt = new Date().toISOString();
    step.finishedAt = undefined;
    this.touch(this.stepEvent(step));
    try {
      const value = await fn();
      const d = opts.describe?.(value) ?? {};
      step.state = d.satisfied ? 'satisfied' : 'succeeded';
      step.detail = d.detail ?? step.detail;
      return { value };
    } catch (err) {
      step.lastError = errorInfo(err);
      step.state = isCancellation(err) ? 'cancelled' : 'failed';
      step.detail = step.lastError.message;
      return { error: step.lastError.message };
    } finally {
      step.finishedAt = new Date().toISOString();
      step.durationMs = Date.parse(step.finishedAt) - Date.parse(step.startedAt);
      this.touch(this.stepEvent(step));
    }
  }

  /**
   * Runs `fn` as step `id`. Retryable failures were already retried by the activity's policy; what
   * arrives here parks the step until an operator resolves it. Returns undefined when skipped.
   * Throws AbortRequested on abort and rethrows cancellation.
   */
  async run<T>(
    id: string,
    phase: string,
    title: string,
    fn: () => Promise<T>,
    opts: StepOptions<T> = {},
  ): Promise<T | undefined> {
    const step = this.plan(id, phase, title, opts.dependsOn);
    if (opts.skipRefusal) this.skipRules.set(id, opts.skipRefusal);
    for (;;) {
      step.attempts += 1;
      step.state = 'running';
      step.startedAt = new Date().toISOString();
      step.finishedAt = undefined;
      this.touch(this.stepEvent(step));
      this.refreshRunState(); // a retried step is running again: the run is no longer parked on it
      try {
        const result = await fn();
        const d = opts.describe?.(result) ?? {};
        step.state = d.satisfied ? 'satisfied' : 'succeeded';
        step.detail = d.detail ?? step.detail;
        step.lastError = undefined;
        step.finishedAt = new Date().toISOString();
        step.durationMs = Date.parse(step.finishedAt) - Date.parse(step.startedAt);
        this.touch(this.stepEvent(step));
        return result;
      } catch (err) {
        if (isCancellation(err)) {
          step.state = 'cancelled';
          this.touch(this.stepEvent(step));
          throw err;
        }
        step.lastError = errorInfo(err);
        step.state = 'needs-attention';
        step.finishedAt = new Date().toISOString();
        step.durationMs = Date.parse(step.finishedAt) - Date.parse(step.startedAt);
        this.resolutions.delete(id);
        this.touch(this.stepEvent(step));
        this.refreshRunState();
        await condition(() => this.resolutions.has(id));
        const resolution = this.resolutions.get(id)!;
        this.resolutions.delete(id);
        const action: ResolveAction = resolution.action;
        step.detail = `operator ${action}${resolution.by ? ` by ${resolution.by}` : ''}${resolution.note ? `: ${resolution.note}` : ''}`;
        if (action === 'skip') {
          step.state = 'skipped';
          this.touch(this.stepEvent(step));
          this.refreshRunState();
          return undefined;
        }
        if (action === 'abort') {
          step.state = 'failed';
          this.touch(this.stepEvent(step));
          this.refreshRunState();
          throw new AbortRequested(id, resolution.by);
        }
        // retry: loop (the run state is refreshed once the step runs again)
      }
    }
  }
}
