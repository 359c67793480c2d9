// A small sample of the chaos suite (npm run test:chaos) inside npm test: the drill with its worker
// process SIGKILLed at 3 seeded random points and a new worker started each time. The run must pass
// with one Backup and one Restore created and no scratch namespace left. Crash detection is natural
// (the server's own timeouts; test/chaos/README.md), so each kill costs seconds, not a harness call.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { rng } from '../chaos/chaos-runner.js';
import { chaosWorkflow } from '../chaos/drive.js';
import { drillScenario, type Scenario } from '../chaos/scenarios.js';

let t: TestTemporal;
let scenario: Scenario;

beforeAll(async () => {
  [t, scenario] = await Promise.all([testTemporal({ taskQueuePrefix: 'chaos-sample' }), drillScenario()]);
});

afterAll(async () => {
  await t?.close();
  await scenario?.stop();
});

test('the drill survives 3 worker SIGKILLs with the right result and no repeated side effect', async () => {
  const w = await chaosWorkflow({
    client: t.client,
    address: t.address,
    taskQueue: t.taskQueue,
    scenario,
    rng: rng(Number(process.env.CHAOS_SEED ?? 7)),
    kills: 3,
    standbys: 1,
  });
  expect(w.error).toBeUndefined();
  expect(w.kills.length).toBeGreaterThanOrEqual(3);
  // Every kill took a real worker process down and a different one picked the run up.
  for (const k of w.kills) {
    expect(k.newWorker).not.toBe(k.killedWorker);
    expect(k.resumeMs, `kill ${k.index} (${k.trigger}) never resumed`).toBeDefined();
  }
  expect(w.runs.flatMap((r) => r.check.repeated)).toEqual([]);
  expect(w.runs.flatMap((r) => r.check.problems)).toEqual([]);
  expect(w.runs.every((r) => r.check.counts['create:Restore'][1] === 1)).toBe(true);
}, 300_000);
