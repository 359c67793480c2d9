// The chaos suite (npm run test:chaos): for every workflow type (the drill, provisioning, rotation, DR
// restore, upgrade, drift check, reconcile, control-plane recovery), SIGKILL the worker
// process at >= CHAOS_KILLS (default 10) seeded random points and start a new worker each time; then
// stop and restart the Temporal dev server (same port, same SQLite file) in the middle of a
// provision and of a rotation. Every run must end with the right result and no completed side
// effect repeated. Recovery times go to the printed table and bench/results/chaos-<date>.json.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer, type DevServer } from '../../scripts/temporal-server.js';
import { testDataConverter } from '../helpers/temporal.js';
import { rng } from './chaos-runner.js';
import { chaosWorkflow, serverRestartRun, type ServerRestart, type WorkflowChaos } from './drive.js';
import {
  drRestoreScenario,
  drillScenario,
  driftScenario,
  provisionScenario,
  reconcileScenario,
  recoverScenario,
  rotationScenario,
  upgradeScenario,
  type Scenario,
} from './scenarios.js';
import { printTable, writeResults } from './report.js';

const SEED = Number(process.env.CHAOS_SEED ?? 20261127);
const KILLS = Number(process.env.CHAOS_KILLS ?? 10);
const log = (l: string) => process.stderr.write(`${l}\n`);

let dir: string;
let port: number;
let server: DevServer;
let connection: Connection;
let client: Client;
const random = rng(SEED);
const workflows: WorkflowChaos[] = [];
const restarts: ServerRestart[] = [];
const t0 = Date.now();
// The machine is shared: the load when the run started goes into the results next to the one at the end.
const loadavgAtStart = loadavg();

const startServer = () =>
  startDevServer({ port, headless: true, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'temporal.log') });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pedro-ops-chaos-'));
  port = await freePort();
  server = await startServer();
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection, namespace: 'default', dataConverter: testDataConverter });
  log(
    `[chaos] seed ${SEED}, ${KILLS} kills per workflow, dev server ${server.address} (pid ${server.pid}, SQLite ${join(dir, 'temporal.db')})`,
  );
});

afterAll(async () => {
  if (workflows.length || restarts.length) {
    printTable(workflows, restarts, log);
    const path = writeResults(
      workflows,
      restarts,
      {
        seed: SEED,
        killsPerWorkflow: KILLS,
        detector: process.env.CHAOS_DETECTOR === '1',
        loadavgAtStart,
        wallMs: Date.now() - t0,
      },
      process.env.CHAOS_DETECTOR === '1' ? '-detector' : '',
    );
    log(`[chaos] results: ${path}`);
  }
  await connection?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function withScenario<T>(make: () => Promise<Scenario>, fn: (s: Scenario) => Promise<T>): Promise<T> {
  const s = await make();
  try {
    return await fn(s);
  } finally {
    await s.stop();
  }
}

function expectClean(w: { check: { problems: string[]; repeated: string[] } }[]) {
  expect(w.flatMap((r) => r.check.repeated)).toEqual([]);
  expect(w.flatMap((r) => r.check.problems)).toEqual([]);
}

describe.sequential('worker SIGKILLs', () => {
  const cases: Array<[string, () => Promise<Scenario>]> = [
    ['verifyBackup (the drill)', drillScenario],
    ['provisionCluster', provisionScenario],
    ['rotateSecrets', rotationScenario],
    ['drRestore', drRestoreScenario],
    ['upgradeCluster', upgradeScenario],
    ['checkDrift', driftScenario],
    ['reconcile', reconcileScenario],
    ['recoverControlPlane', recoverScenario],
  ];
  test.each(cases)('%s completes with the right result and no repeated side effect', async (_name, make) => {
    const w = await withScenario(make, (scenario) =>
      chaosWorkflow({
        client,
        address: server.address,
        taskQueue: `chaos-${randomUUID().slice(0, 8)}`,
        scenario,
        rng: random,
        kills: KILLS,
        log,
      }),
    );
    workflows.push(w);
    expect(w.error).toBeUndefined();
    expect(w.kills.length).toBeGreaterThanOrEqual(KILLS);
    expect(
      w.kills.filter((k) => k.orphaned.length > 0).length,
      'some kills land while an activity runs',
    ).toBeGreaterThan(0);
    expectClean(w.runs);
  });
});

describe.sequential('Temporal dev server restart (same SQLite file)', () => {
  const cases: Array<[string, () => Promise<Scenario>]> = [
    ['provisionCluster', provisionScenario],
    ['rotateSecrets', rotationScenario],
  ];
  test.each(cases)('%s survives a server stop/start mid-run', async (_name, make) => {
    const r = await withScenario(make, (scenario) =>
      serverRestartRun({
        client,
        address: server.address,
        taskQueue: `chaos-srv-${randomUUID().slice(0, 8)}`,
        scenario,
        rng: random,
        log,
        async restartServer(downMs) {
          const t = Date.now();
          await server.stop();
          await new Promise((res) => setTimeout(res, downMs));
          server = await startServer();
          return { restartMs: Date.now() - t - downMs, upAt: Date.now() };
        },
      }),
    );
    restarts.push(r);
    expectClean([r]);
  });
});
