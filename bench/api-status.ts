// npm run bench (or: npx tsx bench/api-status.ts) — what the API's status routes cost over asking
// Temporal directly. A real provisionCluster run is parked in needs-attention (preflight cannot read
// the SSH key, a non-retryable BadConfig), so it stays RUNNING with its full plan in `progress`.
// Then, at the same fixed concurrency, the same number of requests go to:
//   raw describe          handle.describe()
//   raw describe+query    handle.describe() + handle.query(progressQuery)  (what both routes do)
//   API GET /workflows/:id                 (real listening server, bearer tokens, rate limit on)
//   API GET /clusters/:name/provision
// The modes run interleaved in rounds so load drift on a shared machine hits them alike.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { buildApp } from '../api/app.js';
import { hashToken } from '../api/auth.js';
import { defaultDeps } from '../activities/deps.js';
import { ClusterRegistry } from '../config/registry.js';
import { freePort, startDevServer } from '../scripts/temporal-server.js';
import { createCodec, dataConverterFor } from '../worker/codec.js';
import { createWorker } from '../worker/create-worker.js';
import { REPO_ROOT, temporalSettings } from '../worker/settings.js';
import { progressQuery, type Progress } from '../workflows/messages.js';
import { percentile, quietLog, round, runBench, writeResult, type SummaryRow } from './_shared.js';

const CONCURRENCY = Number(process.env.BENCH_API_CONCURRENCY ?? 8);
const REQUESTS = Number(process.env.BENCH_API_REQUESTS ?? 400);
const WARMUP = 40;
const ROUNDS = 4;
const CLUSTER = 'pedro-ops';

type Mode = 'raw describe' | 'raw describe+query' | 'API GET /workflows/:id' | 'API GET /clusters/:name/provision';

runBench('api-status', async (cleanup) => {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const server = await startDevServer({ port: await freePort(), headless: true });
  cleanup(() => server.stop());
  console.log(`dev server ${server.address} (pid ${server.pid})`);
  const dir = mkdtempSync(join(tmpdir(), 'bench-api-'));
  cleanup(() => rmSync(dir, { recursive: true, force: true }));

  // The owner's real cluster config, with an SSH key path that cannot exist: preflight fails with a
  // non-retryable BadConfig before any connection is tried, and the run parks waiting for a human.
  const spec = parse(readFileSync(join(REPO_ROOT, 'config', 'clusters', `${CLUSTER}.yaml`), 'utf8')) as {
    ssh: { privateKey: string };
  };
  spec.ssh.privateKey = join(dir, 'no-such-key');
  mkdirSync(join(dir, 'clusters'));
  writeFileSync(join(dir, 'clusters', `${CLUSTER}.yaml`), stringify(spec, { lineWidth: 0 }));
  const clusters = new ClusterRegistry(join(dir, 'clusters'));

  const dataConverter = dataConverterFor(
    createCodec({ keys: [{ id: 'bench', key: randomBytes(32) }], activeId: 'bench' }),
  );
  const taskQueue = 'bench-api-status';
  const native = await NativeConnection.connect({ address: server.address });
  cleanup(() => native.close());
  const worker = await createWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    deps: defaultDeps({ dataDir: dir, log: quietLog, clusters }),
    dataConverter,
    shutdownGraceTime: '1s',
  });
  const running = worker.run();
  cleanup(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running.catch(() => undefined);
  });
  const connection = await Connection.connect({ address: server.address });
  cleanup(() => connection.close());
  const client = new Client({ connection, dataConverter });

  // One operator (starts the run) and one viewer per concurrent client, so the per-identity rate
  // limit (1200 GET/min) is never what is measured.
  const plain = (role: string, i: number) => `bench_${role}_${i}_${randomBytes(12).toString('hex')}`;
  const operator = plain('operator', 0);
  const viewers = Array.from({ length: CONCURRENCY }, (_, i) => plain('viewer', i));
  const auth = {
    tokens: [
      { name: 'bench-operator', role: 'operator' as const, sha256: hashToken(operator) },
      ...viewers.map((t, i) => ({ name: `bench-viewer-${i}`, role: 'viewer' as const, sha256: hashToken(t) })),
    ],
  };
  const settings = { ...temporalSettings({}), address: server.address, taskQueue };
  const app = await buildApp({ client, settings, clusters, auth, logger: false });
  cleanup(() => app.close());
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  cleanup(() => agent.destroy());

  const http = (method: string, path: string, token: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${base}${path}`,
        {
          method,
          agent,
          headers: {
            authorization: `Bearer ${token}`,
            ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(method === 'POST' ? '{}' : undefined);
    });

  const started = await http('POST', `/clusters/${CLUSTER}/provision`, operator);
  if (started.status !== 202) throw new Error(`POST provision answered ${started.status}: ${started.body}`);
  const { workflowId } = JSON.parse(started.body) as { workflowId: string };
  const handle = client.workflow.getHandle(workflowId);
  cleanup(() => handle.terminate('benchmark finished').catch(() => undefined));

  let parked: Progress | undefined;
  for (const deadline = Date.now() + 60_000; !parked; await sleep(200)) {
    if (Date.now() > deadline) throw new Error(`provision ${workflowId} did not reach needs-attention within 60 s`);
    const p = await handle.query(progressQuery).catch(() => undefined);
    if (p?.steps.some((s) => s.state === 'needs-attention')) parked = p;
  }
  const parkedStep = parked.steps.find((s) => s.state === 'needs-attention')!;
  console.log(
    `workflow ${workflowId} parked: step ${parkedStep.id} (${parkedStep.lastError?.type}); ${parked.steps.length} steps in progress`,
  );

  const wfPath = `/workflows/${encodeURIComponent(workflowId)}`;
  const provisionPath = `/clusters/${CLUSTER}/provision`;
  const sizes: Partial<Record<Mode, number>> = {};
  const call: Record<Mode, (client: number) => Promise<void>> = {
    'raw describe': async () => {
      await handle.describe();
    },
    'raw describe+query': async () => {
      await handle.describe();
      await handle.query(progressQuery);
    },
    'API GET /workflows/:id': async (c) => {
      const r = await http('GET', wfPath, viewers[c]);
      if (r.status !== 200) throw new Error(`GET ${wfPath} answered ${r.status}: ${r.body.slice(0, 200)}`);
      sizes['API GET /workflows/:id'] = r.body.length;
    },
    'API GET /clusters/:name/provision': async (c) => {
      const r = await http('GET', provisionPath, viewers[c]);
      if (r.status !== 200) throw new Error(`GET ${provisionPath} answered ${r.status}: ${r.body.slice(0, 200)}`);
      sizes['API GET /clusters/:name/provision'] = r.body.length;
    },
  };

  // CONCURRENCY clients, each sending its next request as soon as its previous one answered.
  const load = async (mode: Mode, total: number) => {
    const samples: number[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, c) => {
        while (next < total) {
          next++;
          const t = performance.now();
          await call[mode](c);
          samples.push(performance.now() - t);
        }
      }),
    );
    return { samples, ms: performance.now() - t0 };
  };

  const modes = Object.keys(call) as Mode[];
  for (const m of modes) await load(m, WARMUP);
  const results = new Map<Mode, { samples: number[]; ms: number }>(modes.map((m) => [m, { samples: [], ms: 0 }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of modes) {
      const got = await load(m, REQUESTS / ROUNDS);
      results.get(m)!.samples.push(...got.samples);
      results.get(m)!.ms += got.ms;
    }
  }

  const stats = Object.fromEntries(
    modes.map((m) => {
      const { samples, ms } = results.get(m)!;
      return [
        m,
        {
          requests: samples.length,
          p50Ms: round(percentile(samples, 50)),
          p99Ms: round(percentile(samples, 99)),
          maxMs: round(Math.max(...samples)),
          throughputPerSec: round((samples.length / ms) * 1000, 1),
          responseBytes: sizes[m],
        },
      ];
    }),
  ) as Record<
    Mode,
    { requests: number; p50Ms: number; p99Ms: number; maxMs: number; throughputPerSec: number; responseBytes?: number }
  >;

  const raw = stats['raw describe+query'];
  const summary: SummaryRow[] = [
    {
      metric: 'raw describe p50 / p99',
      value: `${stats['raw describe'].p50Ms} / ${stats['raw describe'].p99Ms}`,
      unit: 'ms',
    },
    { metric: 'raw describe+query p50 / p99', value: `${raw.p50Ms} / ${raw.p99Ms}`, unit: 'ms' },
  ];
  for (const m of ['API GET /workflows/:id', 'API GET /clusters/:name/provision'] as const) {
    const s = stats[m];
    summary.push({
      metric: `${m} p50`,
      value: s.p50Ms,
      unit: 'ms',
      baseline: { label: 'raw describe+query p50', value: raw.p50Ms },
      ratio: round(s.p50Ms / raw.p50Ms),
    });
    summary.push({
      metric: `${m} p99`,
      value: s.p99Ms,
      unit: 'ms',
      baseline: { label: 'raw describe+query p99', value: raw.p99Ms },
      ratio: round(s.p99Ms / raw.p99Ms),
    });
  }
  const result = {
    at: new Date().toISOString(),
    bench: 'api-status',
    setup: {
      concurrency: CONCURRENCY,
      requestsPerMode: REQUESTS,
      warmupPerMode: WARMUP,
      rounds: ROUNDS,
      workflow: {
        type: 'provisionCluster',
        workflowId,
        status: 'RUNNING',
        parkedStep: parkedStep.id,
        parkedOn: parkedStep.lastError?.type,
        progressSteps: parked.steps.length,
      },
      server:
        'Fastify app.listen on 127.0.0.1, bearer auth + rate limit, keep-alive HTTP clients; API, worker and load generator share one Node process',
      payloadCodec: 'AES-GCM (same data converter for API and raw)',
    },
    stats,
    summary,
  };
  const out = writeResult('api-status', result);
  for (const m of modes) {
    const s = stats[m];
    console.log(
      `${m.padEnd(36)} p50 ${String(s.p50Ms).padStart(7)} ms  p99 ${String(s.p99Ms).padStart(7)} ms  ${String(s.throughputPerSec).padStart(7)} req/s`,
    );
  }
  for (const row of summary.filter((r) => r.ratio !== undefined))
    console.log(`${row.metric.padEnd(40)} API/raw = ${row.ratio}`);
  console.log(`-> ${out}`);
});
