// Messages shared by workflows, the API and the CLI: progress query and operator updates.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

export type StepState =
  | 'pending'
  | 'running'
  | 'succeeded'
  | 'satisfied'
  | 'skipped'
  | 'failed'
  | 'needs-attention'
  | 'blocked'
  | 'cancelled';
export type RunState =
  'running' | 'needs-attention' | 'succeeded' | 'partial' | 'failed' | 'cancelled' | 'waiting-approval';

export interface StepProgress {
  id: string;
  phase: string;
  title: string;
  state: StepState;
  attempts: number;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  lastError?: { type?: string; message: string };
  /** What the step observed ("already satisfied", versions, counts): never secret values. */
  detail?: string;
  dependsOn?: string[];
}

/** One step or run transition; `seq` is gap-free and doubles as the SSE event id. */
export interface ProgressEvent {
  seq: number;
  at: string;
  kind: 'step' | 'phase' | 'run';
  step?: string;
  state?: string;
  phase?: string;
  detail?: string;
  error?: string;
}

export interface Progress {
  workflow: string;
  cluster: string;
  state: RunState;
  phase: string;
  startedAt: string;
  updatedAt: string;
  steps: StepProgress[];
  /** Monotonic counter of step transitions; the SSE stream uses it as the event id. */
  seq: number;
}

export type ResolveAction = 'retry' | 'skip' | 'abort';
export interface ResolveStepInput {
  step: string;
  action: ResolveAction;
  by?: string;
  note?: string;
}
export interface ResolveStepResult {
  accepted: boolean;
  reason?: string;
}

export const progressQuery = defineQuery<Progress>('progress');
/** Transitions after `afterSeq` (the SSE stream's Last-Event-ID). */
export const eventsQuery = defineQuery<ProgressEvent[], [number]>('events');
export const resolveStepUpdate = defineUpdate<ResolveStepResult, [ResolveStepInput]>('resolveStep');

export interface ApprovalInput {
  approved: boolean;
  by?: string;
  note?: string;
  /** A reconcile's approval names the drift report it approves (its driftId); a stale one is refused. */
  driftId?: string;
}
export const approveUpdate = defineUpdate<{ accepted: boolean; reason?: string }, [ApprovalInput]>('approve');

/** From the API's schedule watcher: scheduled drills were skipped (overlap SKIP) while this one ran. */
export interface DrillSkippedInput {
  /** Skipped since the last signal. */
  count: number;
  /** The schedule's numActionsSkippedOverlap now. */
  total: number;
}
export const drillSkippedSignal = defineSignal<[DrillSkippedInput]>('drillSkipped');
