// The committed replay histories (written by scripts/capture-histories.ts) and how tests load them.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';

export const HISTORY_DIR = fileURLToPath(new URL('./histories/', import.meta.url));

export interface StoredHistory extends HistoryAndWorkflowId {
  file: string;
  /** Workflow type of the recorded run. */
  type: string;
}

/** Every history file, parsed as JSON; workflowId is the one the run was recorded under. */
export function loadHistories(dir = HISTORY_DIR): StoredHistory[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const history = JSON.parse(readFileSync(`${dir}${file}`, 'utf8'));
      const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
      if (!started) throw new Error(`${file}: not a workflow history (no WorkflowExecutionStarted first event)`);
      return { file, workflowId: started.workflowId ?? file, type: started.workflowType.name, history };
    });
}

/** Replay workers log through the runtime and core; keep test output to errors (a failed replay is asserted, not logged). */
export function quietRuntime(): void {
  try {
    Runtime.install({
      logger: new DefaultLogger('ERROR'),
      telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
    });
  } catch {
    // another helper in this process installed it first
  }
}
