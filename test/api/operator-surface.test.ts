// The operator surface end to end against the built lab: a real listening API with auth, a real
// worker exporting Prometheus metrics, the SSE stream (read, dropped mid-run, resumed with
// Last-Event-ID: every transition exactly once, in order), /metrics, and the pedro-ops CLI.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, parseTokens } from '../../api/auth.js';
import { freePort } from '../../scripts/temporal-server.js';
import { installRuntime } from '../../worker/runtime.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { runCli } from '../helpers/cli.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';
import type { ProgressEvent } from '../../workflows/messages.js';

const OPERATOR = 'operator-surface-token-0123456789';
let t: TestTemporal;
let rl: RotationLab;
let app: FastifyInstance;
let url: string;
let metricsUrl: string;

beforeAll(async () => {
  const port = await freePort();
  metricsUrl = installRuntime({ metricsAddress: `127.0.0.1:${port}`, logLevel: 'WARN' }).metricsUrl!;
  t = await testTemporal({ taskQueuePrefix: 'operator-surface' });
  rl = await startRotationLab();
  await t.startWorker(rl.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: rl.deps.clusters,
    auth: { tokens: parseTokens(`ops:operator:${hashToken(OPERATOR)}`) },
    codec: testCodec,
    workerMetricsUrls: [metricsUrl],
  });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
}, 180_000);
afterAll(async () => {
  await app?.close();
  await t?.close();
  await rl?.stop();
});

const auth = { authorization: `Bearer ${OPERATOR}` };

/** Reads SSE messages until `stopAfter` step events or the result; returns what it saw. */
async function readSse(workflowId: string, lastEventId?: number, stopAfter = Infinity) {
  const ctrl = new AbortController();
  const res = await fetch(`${url}/workflows/${encodeURIComponent(workflowId)}/events`, {
    headers: { ...auth, accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': String(lastEventId) } : {}) },
    signal: ctrl.signal,
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const events: ProgressEvent[] = [];
  let result: { status: string; result?: { state: string } } | undefined;
  let buf = '';
  const dec = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!data) continue;
        if (event === 'result') result = JSON.parse(data);
        else events.push(JSON.parse(data));
        if (result || events.length >= stopAfter) {
          ctrl.abort();
          return { events, result };
        }
      }
    }
  } catch (err) {
    if (!ctrl.signal.aborted) throw err;
  }
  return { events, result };
}

describe('operator surface', () => {
  it('SSE sends every step transition in order; a reconnect with Last-Event-ID misses nothing', async () => {
    await rl.changeValues();
    const start = await app.inject({
      method: 'POST',
      url: '/clusters/lab/secrets/rotate',
      headers: auth,
      payload: { requestId: 'sse-1' },
    });
    expect(start.statusCode).toBe(202);
    const { workflowId } = start.json();
    const first = await readSse(workflowId, undefined, 5);
    expect(first.events.length).toBe(5);
    const resumed = await readSse(workflowId, first.events.at(-1)!.seq);
    expect(resumed.result?.status).toBe('COMPLETED');
    expect(resumed.result?.result?.state).toBe('ok');
    const seqs = [...first.events, ...resumed.events].map((e) => e.seq);
    // gap-free and duplicate-free from 1: every transition exactly once, in order
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    const steps = [...first.events, ...resumed.events].filter((e) => e.kind === 'step');
    expect(steps.some((e) => e.state === 'running')).toBe(true);
    expect(steps.some((e) => e.state === 'succeeded')).toBe(true);
    // a fresh client after completion replays the whole log then the result
    const replay = await readSse(workflowId);
    expect(replay.events.map((e) => e.seq)).toEqual(seqs);
  });

  it('unknown workflow: 404 JSON, not a hanging stream', async () => {
    const r = await app.inject({
      method: 'GET',
      url: `/workflows/${encodeURIComponent('provision/nope')}/events`,
      headers: auth,
    });
    expect(r.statusCode).toBe(404);
    expect(r.json().error).toBe('NotFound');
  });

  it('/metrics shows API request counts, worker SDK metrics and domain metrics', async () => {
    let text = '';
    for (let i = 0; i < 20; i++) {
      text = (await app.inject({ method: 'GET', url: '/metrics', headers: auth })).body;
      if (/pedro_ops_runs/.test(text)) break;
      await new Promise((r) => setTimeout(r, 500)); // the SDK exports on an interval
    }
    expect(text).toMatch(
      /pedro_ops_api_requests_total\{method="POST",route="\/clusters\/:name\/secrets\/rotate",status="202"\} \d+/,
    );
    expect(text).toMatch(/pedro_ops_api_request_duration_seconds_bucket/);
    expect(text).toMatch(/^temporal_\w+/m); // the SDK's own worker metrics
    expect(text).toMatch(/pedro_ops_steps\{[^}]*outcome="succeeded"/);
    expect(text).toMatch(/pedro_ops_runs\{[^}]*outcome="succeeded"/);
  });

  const cli = (args: string[]) => runCli(args, { url, token: OPERATOR });

  it('CLI: rotate and drift with --json print only parseable JSON and exit 0', async () => {
    await rl.changeValues(['github']);
    const rot = await cli(['rotate', 'lab', '--entry', 'github', '--json']);
    expect(rot.code).toBe(0);
    const out = JSON.parse(rot.stdout);
    expect(out).toMatchObject({ status: 'COMPLETED', result: { state: 'ok' } });
    expect(out.result.entries.find((e: { id: string }) => e.id === 'github').status).toBe('rotated');
    const drift = await cli(['rotate', 'lab', '--dry-run', '--json']);
    expect(drift.code).toBe(0);
    expect(JSON.parse(drift.stdout).result.dryRun).toBe(true);
    const clusters = await cli(['clusters', '--json']);
    expect(JSON.parse(clusters.stdout).clusters.map((c: { name: string }) => c.name)).toContain('lab');
  });

  it('CLI: a failed entry exits non-zero with the reason; bad usage exits 2', async () => {
    await rl.changeValues(['tailscale-oauth']);
    rl.lab.faults.rollouts.stall('tailscale', 'Deployment', 'operator');
    try {
      const r = await cli(['rotate', 'lab', '--entry', 'tailscale-oauth', '--rollout-timeout', '5']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/FAILED: (partial|failed)/);
      expect(r.stderr).toMatch(/entry:tailscale-oauth +failed +rolled back/); // live progress names the step and the reason
    } finally {
      await rl.lab.faults.clear();
    }
    const usage = await cli(['rotate']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('usage: pedro-ops');
    const unauth = await new Promise<number>((resolve) => {
      const p = spawn(process.execPath, ['api/cli/pedro-ops.mjs', 'clusters', '--url', url, '--token', 'wrong'], {
        stdio: 'ignore',
      });
      p.on('exit', (c) => resolve(c ?? -1));
    });
    expect(unauth).toBe(1);
    // The real Deployment controller reports ProgressDeadlineExceeded only after 600 s: the stalled
    // restart and the rollback's restart each run to the (short) rollout timeout.
  }, 120_000);
});
