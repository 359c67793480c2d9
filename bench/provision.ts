// npm run bench:provision — builds the lab once through provisionCluster on a private Temporal dev
// server and prints how close the build came to its DAG's limits. Ratios only, never pass/fail:
//   wall / critical path  (goal <= 1.15): time lost to orchestration beyond the longest dependency chain
//   sequential / wall     (goal >= 2):    what running every step one after another (the old CLI) would take
// Step durations are the workflow's own measurements (progress query); JSON goes to bench/results/.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { freePort, startDevServer } from '../scripts/temporal-server.js';
import { startLab } from '../test/lab/index.js';
import { ClusterRegistry } from '../config/registry.js';
import { defaultDeps } from '../activities/deps.js';
import { createWorker } from '../worker/create-worker.js';
import { buildProvisionPlan } from '../workflows/provision-plan.js';
import { criticalPath } from '../workflows/dag.js';
import { progressQuery } from '../workflows/messages.js';
import type { ProvisionReport } from '../workflows/provision-cluster.js';

const quiet = { info() {}, warn() {}, error() {} };

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const server = await startDevServer({ port: await freePort(), headless: true });
  const lab = await startLab({ log: () => undefined });
  const dir = mkdtempSync(join(tmpdir(), 'bench-provision-'));
  try {
    mkdirSync(join(dir, 'clusters'));
    copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
    const deps = defaultDeps({ dataDir: dir, log: quiet, clusters: new ClusterRegistry(join(dir, 'clusters')) });
    const native = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    const taskQueue = 'bench-provision';
    const worker = await createWorker({
      connection: native,
      namespace: 'default',
      taskQueue,
      deps,
      shutdownGraceTime: '1s',
    });
    const running = worker.run();
    const t0 = performance.now();
    const handle = await client.workflow.start('provisionCluster', {
      taskQueue,
      workflowId: 'provision/lab-bench',
      args: [{ cluster: 'lab' }],
    });
    const report = (await handle.result()) as ProvisionReport;
    const wallMs = performance.now() - t0;
    const progress = await handle.query(progressQuery);
    worker.shutdown();
    await running;
    await native.close();
    await connection.close();

    const plan = buildProvisionPlan(lab.spec);
    const dur = new Map(progress.steps.map((s) => [s.id, s.durationMs ?? 0]));
    const criticalMs = criticalPath(plan.steps, (id) => dur.get(id) ?? 0);
    const sequentialMs = [...dur.values()].reduce((a, b) => a + b, 0);
    const result = {
      at: new Date().toISOString(),
      cluster: 'lab',
      state: report.state,
      steps: progress.steps.length,
      components: report.components.length,
      parallelism: lab.spec.parallelism,
      wallMs: Math.round(wallMs),
      criticalPathMs: Math.round(criticalMs),
      sequentialMs: Math.round(sequentialMs),
      wallOverCriticalPath: +(wallMs / criticalMs).toFixed(3),
      sequentialOverWall: +(sequentialMs / wallMs).toFixed(3),
      goals: { wallOverCriticalPath: '<= 1.15', sequentialOverWall: '>= 2' },
    };
    console.log(
      `lab build: ${result.state}, ${result.steps} steps, ${result.components} components, parallelism ${result.parallelism}`,
    );
    console.log(`wall time            ${result.wallMs} ms`);
    console.log(
      `DAG critical path    ${result.criticalPathMs} ms   wall / critical path = ${result.wallOverCriticalPath} (goal <= 1.15)`,
    );
    console.log(
      `sequential order     ${result.sequentialMs} ms   sequential / wall    = ${result.sequentialOverWall} (goal >= 2)`,
    );
    const out = join(
      dirname(fileURLToPath(import.meta.url)),
      'results',
      `provision-${result.at.replace(/[:.]/g, '-')}.json`,
    );
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ ...result, stepDurationsMs: Object.fromEntries(dur) }, null, 2)}\n`);
    console.log(`written ${out}`);
  } finally {
    await lab.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
