// Drives a scenario: runs until at least `kills` SIGKILLs have landed (more runs when one finishes
// first), or restarts the Temporal dev server in the middle of one run. Returns what the report needs.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { tsToMs } from '@temporalio/common';
import { eventsQuery } from '../../workflows/messages.js';
import { awaitResult, runWithKills, type KillRecord, type Rng } from './chaos-runner.js';
import type { Check, Scenario } from './scenarios.js';
import { WorkerSupervisor } from './supervisor.js';

export interface RunOutcome {
  workflowId: string;
  durationMs: number;
  kills: number;
  check: Check;
}

export interface WorkflowChaos {
  workflow: string;
  runs: RunOutcome[];
  kills: KillRecord[];
  coldStartsMs: number[];
  /** Set when a run did not finish (stuck, parked, crashed harness). */
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function chaosWorkflow(o: {
  client: Client;
  address: string;
  taskQueue: string;
  scenario: Scenario;
  rng: Rng;
  kills: number;
  standbys?: number;
  log?: (l: string) => void;
}): Promise<WorkflowChaos> {
  const supervisor = new WorkerSupervisor(
    { address: o.address, taskQueue: o.taskQueue, dataDir: o.scenario.dataDir },
    o.scenario.workflow,
    o.standbys ?? 2,
  );
  const out: WorkflowChaos = { workflow: o.scenario.workflow, runs: [], kills: [], coldStartsMs: [] };
  try {
    await supervisor.start();
    await supervisor.standbyWarm();
    while (out.kills.length < o.kills && out.runs.length < 8) {
      const h = await o.scenario.start(o.client, o.taskQueue);
      const run = await runWithKills(h, {
        client: o.client,
        supervisor,
        rng: o.rng,
        workflow: o.scenario.workflow,
        kills: o.kills - out.kills.length,
        maxDelayMs: o.scenario.maxDelayMs,
        log: o.log,
        onKill: (k) => out.kills.push(k),
      });
      const check = await o.scenario.check(run.result);
      out.runs.push({
        workflowId: h.workflowId,
        durationMs: run.finishedAt - run.startedAt,
        kills: run.kills.length,
        check,
      });
      o.log?.(
        `[chaos] ${o.scenario.workflow} run ${h.workflowId} done in ${run.finishedAt - run.startedAt} ms with ${run.kills.length} kills; problems: ${JSON.stringify(check.problems)}, repeated: ${JSON.stringify(check.repeated)}`,
      );
    }
  } catch (err) {
    out.error = err instanceof Error ? err.message : String(err);
    o.log?.(`[chaos] ${o.scenario.workflow}: ${out.error}`);
  } finally {
    out.coldStartsMs = supervisor.coldStarts();
    await supervisor.stopAll();
  }
  return out;
}

export interface ServerRestart {
  workflow: string;
  workflowId: string;
  /** Run start -> server stop. */
  stoppedAfterMs: number;
  stepAtStop?: string;
  downMs: number;
  /** Stop (SIGTERM) + start with the same SQLite file until it answers again. */
  restartMs: number;
  workerSurvived: boolean;
  workerFatal?: string;
  /** Server answering again -> first task any worker started. */
  resumeMs?: number;
  /** Server answering again -> the next step turning running. */
  nextStepMs?: number;
  nextStep?: string;
  durationMs: number;
  check: Check;
}

/** Retries a client call through the outage (the connection reconnects on its own). */
async function patiently<T>(fn: () => Promise<T>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(250);
    }
  }
}

export async function serverRestartRun(o: {
  client: Client;
  address: string;
  taskQueue: string;
  scenario: Scenario;
  rng: Rng;
  /** Stops the server (by pid) and starts it again on the same port and SQLite file. */
  restartServer: (downMs: number) => Promise<{ restartMs: number; upAt: number }>;
  log?: (l: string) => void;
}): Promise<ServerRestart> {
  const supervisor = new WorkerSupervisor(
    { address: o.address, taskQueue: o.taskQueue, dataDir: o.scenario.dataDir },
    `${o.scenario.workflow}-srv`,
    0,
  );
  try {
    const worker = await supervisor.start();
    const startedAt = Date.now();
    const h: WorkflowHandle = await o.scenario.start(o.client, o.taskQueue);
    // A random point after the run got going, while activities are in flight.
    await sleep(o.rng.int(600, o.scenario.maxDelayMs * 3));
    const before = (await h.fetchHistory()).events?.length ?? 0;
    const stoppedAfterMs = Date.now() - startedAt;
    const downMs = o.rng.int(1000, 3000);
    const { restartMs, upAt } = await o.restartServer(downMs);
    o.log?.(
      `[chaos] dev server restarted ${stoppedAfterMs} ms into ${h.workflowId} (${before} events), down ${downMs} ms`,
    );
    // The worker should reconnect by itself; if it gave up, start another (and say so).
    await sleep(3000);
    const workerSurvived = worker.alive;
    if (!workerSurvived) await supervisor.start();
    const result = await patiently(() => awaitResult(h), 240_000);
    const durationMs = Date.now() - startedAt;
    const events = (await patiently(() => h.fetchHistory())).events ?? [];
    const after = events
      .slice(before)
      .find(
        (e) =>
          (e.workflowTaskStartedEventAttributes ?? e.activityTaskStartedEventAttributes) &&
          tsToMs(e.eventTime as never) >= upAt,
      );
    const progress = await patiently(() => h.query(eventsQuery, 0));
    const stepAtStop = [...progress]
      .reverse()
      .find((p) => p.kind === 'step' && p.state === 'running' && Date.parse(p.at) <= upAt - restartMs)?.step;
    const next = progress.find((p) => p.kind === 'step' && p.state === 'running' && Date.parse(p.at) >= upAt);
    return {
      workflow: o.scenario.workflow,
      workflowId: h.workflowId,
      stoppedAfterMs,
      stepAtStop,
      downMs,
      restartMs,
      workerSurvived,
      workerFatal: worker.fatal,
      resumeMs: after ? tsToMs(after.eventTime) - upAt : undefined,
      nextStepMs: next ? Date.parse(next.at) - upAt : undefined,
      nextStep: next?.step,
      durationMs,
      check: await o.scenario.check(result),
    };
  } finally {
    await supervisor.stopAll();
  }
}
