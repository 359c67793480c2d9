// Shared harness for the provisioning tests: a lab, a cluster registry holding only its cluster file,
// activity deps over a temp data dir, a real worker on this file's task queue, and progress helpers.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import {
  progressQuery,
  resolveStepUpdate,
  type Progress,
  type ResolveAction,
  type StepProgress,
} from '../../workflows/messages.js';
import { startLab, type Lab, type StartLabOptions } from '../lab/index.js';
import { memoryLogger, testTemporal, type TestTemporal } from '../helpers/temporal.js';

export interface ProvisionHarness {
  lab: Lab;
  t: TestTemporal;
  deps: ActivityDeps;
  log: ReturnType<typeof memoryLogger>;
  dir: string;
  start(input?: Record<string, unknown>): Promise<WorkflowHandle>;
  stop(): Promise<void>;
}

/**
 * `cluster` renames the lab's cluster: API-level tests start the deterministic id provision/<cluster>
 * on the one shared dev server, so each such test file needs a cluster name of its own.
 */
export async function provisionHarness(
  labOpts: StartLabOptions = {},
  cluster = 'lab',
  /** Edits the orchestrator's copy of the cluster file (the lab itself is unchanged). */
  patch?: (spec: Record<string, any>) => void,
): Promise<ProvisionHarness> {
  const lab = await startLab({ log: () => undefined, ...labOpts });
  const dir = mkdtempSync(join(tmpdir(), 'provision-test-'));
  mkdirSync(join(dir, 'clusters'));
  const doc = { ...parse(readFileSync(lab.clusterFile, 'utf8')), name: cluster };
  patch?.(doc);
  writeFileSync(join(dir, 'clusters', `${cluster}.yaml`), stringify(doc, { lineWidth: 0 }));
  const log = memoryLogger();
  const deps = defaultDeps({ dataDir: dir, log, clusters: new ClusterRegistry(join(dir, 'clusters')) });
  const t = await testTemporal({ taskQueuePrefix: 'provision' });
  await t.startWorker(deps);
  return {
    lab,
    t,
    deps,
    log,
    dir,
    start: (input = {}) =>
      t.client.workflow.start('provisionCluster', {
        taskQueue: t.taskQueue,
        workflowId: `provision/${cluster}-${randomUUID().slice(0, 8)}`,
        args: [{ cluster, ...input }],
      }),
    async stop() {
      await t.close();
      await lab.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function progressOf(h: WorkflowHandle): Promise<Progress> {
  return h.query(progressQuery);
}

/** Polls the progress query until `pred` holds (the workflow is the source of truth, not timers). */
export async function until(
  h: WorkflowHandle,
  what: string,
  pred: (p: Progress) => boolean,
  ms = 60_000,
): Promise<Progress> {
  const end = Date.now() + ms;
  let last: Progress | undefined;
  for (;;) {
    last = await progressOf(h);
    if (pred(last)) return last;
    if (Date.now() > end) {
      const states = last.steps
        .map((s) => `${s.id}=${s.state}${s.lastError ? `(${s.lastError.type}: ${s.lastError.message})` : ''}`)
        .join(' ');
      throw new Error(`timed out waiting for ${what}; steps: ${states}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** The step, or a placeholder while the workflow has not planned it yet. */
export const stepOf = (p: Progress, id: string): StepProgress =>
  p.steps.find((s) => s.id === id) ?? {
    id,
    phase: '',
    title: '',
    state: 'pending',
    attempts: 0,
    detail: 'not planned yet',
  };

export function resolve(h: WorkflowHandle, step: string, action: ResolveAction) {
  return h.executeUpdate(resolveStepUpdate, { args: [{ step, action, by: 'test' }] });
}
