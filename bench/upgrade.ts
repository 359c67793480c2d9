// npx tsx bench/upgrade.ts — one rolling k3s upgrade of the built lab (v1.31.4+k3s1 → v1.31.5+k3s1)
// through upgradeCluster on a private Temporal dev server, and where each node's time goes: its wall
// time (the workflow's node step, cordon to uncordon) against drain + install + ready (the parts the
// activities measure). The rest is orchestration: cordon, uncordon, an OpenBAO unseal after its pod
// moved, workflow tasks. Ratios only, never pass/fail. JSON goes to bench/results/upgrade.json.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UpgradeReport } from '../workflows/upgrade-cluster.js';
import { round, runBench, writeResult, type SummaryRow } from './_shared.js';

const FROM = 'v1.31.4+k3s1';
const TO = 'v1.31.5+k3s1';

runBench('upgrade', async (cleanup) => {
  const { Client, Connection } = await import('@temporalio/client');
  const { NativeConnection, Runtime, DefaultLogger } = await import('@temporalio/worker');
  const { freePort, startDevServer } = await import('../scripts/temporal-server.js');
  const { startLab } = await import('../test/lab/index.js');
  const { orchestratorForLab } = await import('../test/helpers/lab-deps.js');
  const { createWorker } = await import('../worker/create-worker.js');
  const { progressQuery } = await import('../workflows/messages.js');
  const { upgradeWorkflowId } = await import('../workflows/upgrade-plan.js');
  Runtime.install({ logger: new DefaultLogger('ERROR') });

  const server = await startDevServer({ port: await freePort(), headless: true });
  cleanup(() => server.stop());
  const lab = await startLab({ built: true, log: () => undefined });
  cleanup(() => lab.stop());
  const o = orchestratorForLab(lab, {
    prefix: 'bench-upgrade',
    patch: (spec) => {
      spec.name = 'upgrade-bench';
      spec.upgrade = { concurrency: 1, drainTimeoutSeconds: 60, nodeReadyTimeoutSeconds: 60 };
    },
  });
  cleanup(() => rmSync(o.dataDir, { recursive: true, force: true }));
  const file = join(o.dataDir, 'clusters', 'upgrade-bench.yaml');
  writeFileSync(file, readFileSync(file, 'utf8').replace(`version: ${FROM}`, `version: ${TO}`));

  const native = await NativeConnection.connect({ address: server.address });
  cleanup(() => native.close());
  const connection = await Connection.connect({ address: server.address });
  cleanup(() => connection.close());
  const client = new Client({ connection });
  const taskQueue = 'bench-upgrade';
  const worker = await createWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    deps: o.deps,
    shutdownGraceTime: '1s',
  });
  const running = worker.run();
  cleanup(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
  });

  const t0 = performance.now();
  const h = await client.workflow.start('upgradeCluster', {
    taskQueue,
    workflowId: upgradeWorkflowId('upgrade-bench'),
    args: [{ cluster: 'upgrade-bench', requestedBy: 'bench' }],
  });
  const report = (await h.result()) as UpgradeReport;
  const wallMs = performance.now() - t0;
  const progress = await h.query(progressQuery);
  if (report.state !== 'succeeded') throw new Error(`upgrade ${report.state}: ${JSON.stringify(report.nodes)}`);

  const nodes = report.nodes.map((n) => {
    const step = progress.steps.find((s) => s.id === `node/${n.name}`);
    const stepMs = step?.durationMs ?? n.totalMs ?? 0;
    const partsMs = (n.drainMs ?? 0) + (n.installMs ?? 0) + (n.readyMs ?? 0);
    return {
      node: n.name,
      role: n.role,
      wallMs: stepMs,
      drainMs: n.drainMs ?? 0,
      installMs: n.installMs ?? 0,
      readyMs: n.readyMs ?? 0,
      partsMs,
      overheadMs: stepMs - partsMs,
      wallOverParts: partsMs ? round(stepMs / partsMs, 3) : Number.NaN,
    };
  });
  const nodesMs = nodes.reduce((a, n) => a + n.wallMs, 0);
  console.log(`upgrade ${FROM} → ${TO} of ${nodes.length} nodes: ${report.state} in ${Math.round(wallMs)} ms`);
  console.log('node            wall ms   drain  install   ready   parts  overhead  wall/parts');
  for (const n of nodes)
    console.log(
      `${n.node.padEnd(14)} ${String(n.wallMs).padStart(8)} ${String(n.drainMs).padStart(7)} ${String(n.installMs).padStart(8)} ${String(n.readyMs).padStart(7)} ${String(n.partsMs).padStart(7)} ${String(n.overheadMs).padStart(9)} ${String(n.wallOverParts).padStart(11)}`,
    );
  const summary: SummaryRow[] = [
    { metric: 'upgrade wall time', value: Math.round(wallMs), unit: 'ms' },
    {
      metric: '  of which node steps',
      value: nodesMs,
      unit: 'ms',
      baseline: { label: 'upgrade wall', value: Math.round(wallMs) },
      ratio: round(nodesMs / wallMs),
    },
    ...nodes.map((n) => ({
      metric: `${n.node} wall / (drain+install+ready)`,
      value: n.wallMs,
      unit: 'ms',
      baseline: { label: 'drain+install+ready', value: n.partsMs },
      ratio: n.wallOverParts,
    })),
  ];
  const out = writeResult('upgrade', {
    at: new Date().toISOString(),
    bench: 'upgrade',
    from: FROM,
    to: TO,
    wallMs: Math.round(wallMs),
    snapshot: report.snapshot?.file,
    chartsMs: progress.steps.filter((s) => s.id.startsWith('chart/')).reduce((a, s) => a + (s.durationMs ?? 0), 0),
    nodes,
    summary,
  });
  console.log(`-> ${out}`);
});
