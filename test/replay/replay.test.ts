// Every committed history (test/replay/histories, written by `npm run histories:capture`) replays
// against today's workflow code with one prebuilt bundle. A failure here means a workflow change
// would break runs already in flight: put it behind patched() or, if intended, refresh the histories.
import { describe, expect, test } from 'vitest';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { Worker, type ReplayResult } from '@temporalio/worker';
import { workflowBundle } from '../../worker/create-worker.js';
import { testDataConverter } from '../helpers/temporal.js';
import { loadHistories, quietRuntime } from './history-files.js';
import { SCENARIOS } from './scenarios.js';

describe('replay of committed histories', () => {
  test('every history replays on the current workflow code without a determinism error', async () => {
    quietRuntime();
    const histories = loadHistories();
    expect(histories.length).toBeGreaterThanOrEqual(8);
    // One file per capture scenario: none missing (not captured yet), none stale (scenario removed).
    expect(histories.map((h) => h.file).sort()).toEqual(SCENARIOS.map((s) => `${s.name}.json`).sort());
    // Each workflow type has at least one recorded run.
    expect([...new Set(histories.map((h) => h.type))].sort()).toEqual([
      'checkDrift',
      'drRestore',
      'provisionCluster',
      'reconcile',
      'recoverControlPlane',
      'rotateSecrets',
      'upgradeCluster',
      'verifyBackup',
    ]);

    const t0 = performance.now();
    const bundle = await workflowBundle();
    const bundleMs = performance.now() - t0;
    // Replay pulls the next history only after the previous one finished, so the time between
    // handing a history out and getting its result is that history's replay cost.
    const pulledAt: number[] = [];
    function* feed(): Generator<HistoryAndWorkflowId> {
      for (const h of histories) {
        pulledAt.push(performance.now());
        yield { workflowId: h.workflowId, history: h.history };
      }
    }
    const results: (ReplayResult & { ms: number })[] = [];
    const started = performance.now();
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: bundle, dataConverter: testDataConverter, replayName: 'committed-histories' },
      feed(),
    )) {
      results.push({ ...r, ms: performance.now() - pulledAt[results.length] });
    }
    const totalMs = performance.now() - started;

    const rows = histories.map((h, i) => ({
      file: h.file,
      events: (h.history as { events: unknown[] }).events.length,
      kB: Math.round(Buffer.byteLength(JSON.stringify(h.history)) / 1024),
      ms: Number(results[i]?.ms.toFixed(1)),
      error: results[i]?.error ? `${results[i].error.name}: ${results[i].error.message}` : '',
    }));
    // The first history also pays for the workflow sandbox's warm-up; the rest show the steady cost.
    const warm = results
      .slice(1)
      .map((r) => r.ms)
      .sort((a, b) => a - b);
    console.log(
      `replay: bundle ${bundleMs.toFixed(0)} ms, worker start ${(pulledAt[0] - started).toFixed(0)} ms, ${results.length} histories in ${totalMs.toFixed(0)} ms ` +
        `(first ${results[0]?.ms.toFixed(0)} ms incl. warm-up; then median ${warm[Math.floor(warm.length / 2)]?.toFixed(0)} ms, max ${warm.at(-1)?.toFixed(0)} ms)`,
    );
    console.table(rows);

    expect(results.length).toBe(histories.length);
    expect(rows.filter((r) => r.error).map((r) => `${r.file}: ${r.error}`)).toEqual([]);
    expect(results.map((r) => r.workflowId)).toEqual(histories.map((h) => h.workflowId));
  });
});
