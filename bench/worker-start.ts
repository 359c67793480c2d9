// npm run bench (or: npx tsx bench/worker-start.ts) — worker cold start and replay cost.
//   cold start = bundleWorkflowCode (fresh, in a fresh process) + NativeConnection + Worker.create
//                until RUNNING; then until the first workflow task is answered (a provision of an
//                unknown cluster fails fast after one activity: the worker is serving).
//   second start in the same process: what part of the cold start is one-time process cost.
//   replay = Worker.runReplayHistories over every test/replay/histories/*.json with the cold
//            start's bundle, time per history.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { DataConverter } from '@temporalio/common';
import { REPO_ROOT } from '../worker/settings.js';
import { percentile, quietLog, round, runBench, writeResult, type SummaryRow } from './_shared.js';

const HISTORY_DIR = join(REPO_ROOT, 'test', 'replay', 'histories');
const quietBundler = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) };

runBench('worker-start', async (cleanup) => {
  const tImport = performance.now();
  const { bundleWorkflowCode, NativeConnection, Worker, Runtime, DefaultLogger } = await import('@temporalio/worker');
  const importMs = performance.now() - tImport;
  Runtime.install({ logger: new DefaultLogger('ERROR') });

  const { freePort, startDevServer } = await import('../scripts/temporal-server.js');
  const { createActivities } = await import('../activities/index.js');
  const { defaultDeps } = await import('../activities/deps.js');
  const { ClusterRegistry } = await import('../config/registry.js');
  const { WORKFLOWS_PATH } = await import('../worker/create-worker.js');
  const { createCodec, dataConverterFor } = await import('../worker/codec.js');
  const { Client, Connection, WorkflowFailedError } = await import('@temporalio/client');

  const tServer = performance.now();
  const server = await startDevServer({ port: await freePort(), headless: true });
  const devServerMs = performance.now() - tServer;
  cleanup(() => server.stop());
  console.log(`dev server ${server.address} (pid ${server.pid})`);
  const dir = mkdtempSync(join(tmpdir(), 'bench-worker-'));
  cleanup(() => rmSync(dir, { recursive: true, force: true }));
  const deps = defaultDeps({ dataDir: dir, log: quietLog, clusters: new ClusterRegistry(join(dir, 'clusters')) });
  const dataConverter = dataConverterFor(
    createCodec({ keys: [{ id: 'bench', key: randomBytes(32) }], activeId: 'bench' }),
  );
  const connection = await Connection.connect({ address: server.address });
  cleanup(() => connection.close());
  const client = new Client({ connection, dataConverter });

  const start = async (taskQueue: string) => {
    const t0 = performance.now();
    const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundler });
    const t1 = performance.now();
    const native = await NativeConnection.connect({ address: server.address });
    const t2 = performance.now();
    const worker = await Worker.create({
      connection: native,
      namespace: 'default',
      taskQueue,
      workflowBundle: bundle,
      activities: createActivities(deps),
      dataConverter,
      shutdownGraceTime: '1s',
    });
    const t3 = performance.now();
    const running = worker.run();
    while (worker.getState() !== 'RUNNING') await new Promise((r) => setTimeout(r, 1));
    const t4 = performance.now();
    // Served: one workflow task, one activity (NotFound, non-retryable), the failure recorded.
    const handle = await client.workflow.start('provisionCluster', {
      taskQueue,
      workflowId: `bench-first-task-${taskQueue}`,
      args: [{ cluster: 'no-such-cluster' }],
    });
    const outcome = await handle.result().then(
      () => 'completed (unexpected)',
      (err: unknown) =>
        err instanceof WorkflowFailedError ? 'failed as expected' : `error: ${(err as Error).message}`,
    );
    const t5 = performance.now();
    worker.shutdown();
    await running;
    await native.close();
    return {
      bundle,
      bundleBytes: bundle.code.length,
      bundleMs: round(t1 - t0),
      connectMs: round(t2 - t1),
      createMs: round(t3 - t2),
      toRunningMs: round(t4 - t3),
      coldStartMs: round(t4 - t0),
      firstWorkflowMs: round(t5 - t4),
      firstWorkflowOutcome: outcome,
    };
  };

  const cold = await start('bench-cold');
  const second = await start('bench-second');
  console.log(
    `import @temporalio/worker ${round(importMs)} ms; dev server start ${round(devServerMs)} ms (not part of cold start)`,
  );
  for (const [label, s] of [
    ['cold', cold],
    ['second', second],
  ] as const) {
    console.log(
      `${label.padEnd(6)} bundle ${s.bundleMs} ms + connect ${s.connectMs} ms + Worker.create ${s.createMs} ms + run ${s.toRunningMs} ms = ${s.coldStartMs} ms; first workflow served after ${s.firstWorkflowMs} ms (${s.firstWorkflowOutcome})`,
    );
  }

  const replay = await replayAll(cold.bundle, Worker);
  console.log(replay.note);

  const summary: SummaryRow[] = [
    { metric: 'worker cold start (bundle+connect+create+run)', value: cold.coldStartMs, unit: 'ms' },
    {
      metric: '  of which bundleWorkflowCode',
      value: cold.bundleMs,
      unit: 'ms',
      baseline: { label: 'cold start', value: cold.coldStartMs },
      ratio: round(cold.bundleMs / cold.coldStartMs),
    },
    {
      metric: '  of which NativeConnection + Worker.create',
      value: round(cold.connectMs + cold.createMs + cold.toRunningMs),
      unit: 'ms',
    },
    {
      metric: 'RUNNING -> first workflow served',
      value: cold.firstWorkflowMs,
      unit: 'ms',
      note: cold.firstWorkflowOutcome,
    },
    {
      metric: 'second start in same process',
      value: second.coldStartMs,
      unit: 'ms',
      baseline: { label: 'cold start', value: cold.coldStartMs },
      ratio: round(second.coldStartMs / cold.coldStartMs),
    },
    ...replay.rows,
  ];
  const strip = ({ bundle: _b, ...rest }: typeof cold) => rest;
  const out = writeResult('worker-start', {
    at: new Date().toISOString(),
    bench: 'worker-start',
    importWorkerMs: round(importMs),
    devServerStartMs: round(devServerMs),
    cold: strip(cold),
    second: strip(second),
    replay: replay.detail,
    summary,
  });
  console.log(`-> ${out}`);

  /** One replay worker, one bundle, every committed history; results arrive per history in order. */
  async function replayAll(bundle: Awaited<ReturnType<typeof bundleWorkflowCode>>, W: typeof Worker) {
    const files = existsSync(HISTORY_DIR)
      ? readdirSync(HISTORY_DIR)
          .filter((f) => f.endsWith('.json'))
          .sort()
      : [];
    if (files.length === 0)
      return {
        note: 'replay: no histories yet (test/replay/histories/*.json)',
        rows: [
          { metric: 'replay per history', value: 'no histories yet', note: 'test/replay/histories is empty' },
        ] as SummaryRow[],
        detail: { histories: 0 },
      };
    // The committed histories are encrypted with the suite's fixed test key (test/helpers/temporal.ts).
    let converter: DataConverter;
    try {
      converter = (await import('../test/helpers/temporal.js')).testDataConverter;
    } catch (err) {
      const why = `test codec not importable outside vitest: ${(err as Error).message.split('\n')[0]}`;
      return {
        note: `replay skipped: ${why}`,
        rows: [{ metric: 'replay per history', value: 'skipped', note: why }] as SummaryRow[],
        detail: { histories: files.length, skipped: why },
      };
    }
    const { historyFromJSON } = await import('@temporalio/common/lib/proto-utils.js');
    const tParse = performance.now();
    const unreadable: { history: string; error: string }[] = [];
    const histories = files.flatMap((f) => {
      try {
        return [
          {
            workflowId: basename(f, '.json'),
            history: historyFromJSON(JSON.parse(readFileSync(join(HISTORY_DIR, f), 'utf8'))),
          },
        ];
      } catch (err) {
        unreadable.push({ history: f, error: (err as Error).message });
        return [];
      }
    });
    const parseMs = performance.now() - tParse;
    if (histories.length === 0) throw new Error(`no readable history in ${HISTORY_DIR}: ${JSON.stringify(unreadable)}`);
    const events = histories.reduce((n, h) => n + (h.history.events?.length ?? 0), 0);
    const per: { history: string; ms: number; events: number; error?: string }[] = [];
    const t0 = performance.now();
    let t = t0;
    for await (const r of W.runReplayHistories(
      { workflowBundle: bundle, dataConverter: converter, replayName: 'bench' },
      histories,
    )) {
      const now = performance.now();
      per.push({
        history: r.workflowId,
        ms: round(now - t),
        events: histories.find((h) => h.workflowId === r.workflowId)?.history.events?.length ?? 0,
        ...(r.error ? { error: r.error.message.split('\n')[0] } : {}),
      });
      t = now;
    }
    const totalMs = performance.now() - t0;
    const failed = per.filter((p) => p.error);
    // The first result also carries the replay worker's creation; the median is the steady cost.
    const steady = per.slice(1).map((p) => p.ms);
    const rows: SummaryRow[] = [
      {
        metric: `replay ${per.length} histories (${events} events), one bundle`,
        value: round(totalMs),
        unit: 'ms',
        note: [
          failed.length ? `${failed.length} FAILED replay: ${failed.map((f) => f.history).join(', ')}` : 'all replayed',
          unreadable.length ? `${unreadable.length} unreadable: ${unreadable.map((u) => u.history).join(', ')}` : '',
        ]
          .filter(Boolean)
          .join('; '),
      },
      { metric: 'replay per history (mean, incl. worker setup)', value: round(totalMs / per.length), unit: 'ms' },
      ...(steady.length
        ? [{ metric: 'replay per history (median after the first)', value: round(percentile(steady, 50)), unit: 'ms' }]
        : []),
      { metric: 'replay per 1000 events', value: round((totalMs / Math.max(1, events)) * 1000), unit: 'ms' },
    ];
    return {
      note: `replay: ${per.length} histories, ${events} events in ${round(totalMs)} ms (+ ${round(parseMs)} ms to read/parse); ${failed.length} failed`,
      rows,
      detail: {
        histories: per.length,
        events,
        parseMs: round(parseMs),
        totalMs: round(totalMs),
        failed: failed.length,
        unreadable,
        perHistory: per,
      },
    };
  }
});
