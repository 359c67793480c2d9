// DESIGN rule 1, checked end to end: run rotations through the API (rotate, unchanged, generate,
// a missing 1Password field, a failed verification rolled back, a drift check), then search every
// workflow history of this task queue (raw payload bytes, no codec), the worker's log lines and the
// API's responses and logs for every secret value the lab holds (fixture + values written since).
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { decodedPayloads, rawStrings } from '../helpers/history-text.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';
import type { RotationReport } from '../../workflows/rotate-secrets.js';

let t: TestTemporal;
let r: RotationLab;
let app: FastifyInstance;
const apiLogs: string[] = [];
const apiResponses: string[] = [];

beforeAll(async () => {
  [t, r] = await Promise.all([
    // The suite's payload codec, as everywhere: the scan decodes every payload with it, so it proves
    // the first line of defence (no value ever handed to Temporal), not only the encryption.
    testTemporal({ taskQueuePrefix: 'leak-scan' }),
    startRotationLab((spec) => {
      spec.secrets.entries.push({
        id: 'broken',
        openbaoPath: 'apps/broken',
        fields: { token: 'op://pedro/NO_SUCH_ITEM/credential' },
        consumers: [],
      });
      const twitch = spec.secrets.entries.find((e) => e.id === 'twitch')!;
      twitch.generate = { field: 'client_secret', length: 40, digits: true, symbols: true };
      // A probe that cannot pass: the entry is rolled back, exercising the failure paths' messages.
      spec.secrets.entries.find((e) => e.id === 'github')!.verify = { type: 'tcp', host: '127.0.0.1', port: 1 };
    }),
  ]);
  await t.startWorker(r.deps);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      apiLogs.push(String(chunk));
      cb();
    },
  });
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: r.deps.clusters,
    logger: pino({ level: 'debug' }, sink),
  });
});

afterAll(async () => {
  await app?.close();
  await t?.close();
  await r?.stop();
});

async function call(method: 'GET' | 'POST', url: string, payload?: object) {
  const res = await app.inject({ method, url, payload });
  apiResponses.push(res.payload);
  return res;
}

async function rotateViaApi(body: object): Promise<RotationReport> {
  const started = await call('POST', '/clusters/lab/secrets/rotate', body);
  expect(started.statusCode).toBe(202);
  await t.client.workflow.getHandle(started.json().workflowId).result();
  const status = await call('GET', started.json().statusUrl);
  return status.json<RotationReport>();
}

/** Histories as text with every payload's bytes decoded (what a Temporal operator could read without the codec). */
async function historiesText(): Promise<{ text: string; count: number }> {
  const parts: string[] = [];
  let count = 0;
  for await (const wf of t.client.workflow.list({ query: `TaskQueue = "${t.taskQueue}"` })) {
    const history = await t.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    count++;
    parts.push(...rawStrings(history));
    parts.push(...(await decodedPayloads(history)));
  }
  return { text: parts.join('\n'), count };
}

function hits(haystack: string, values: string[]): string[] {
  return values.filter((v) => haystack.includes(v) || haystack.includes(Buffer.from(v).toString('base64')));
}

test('no secret value appears in workflow histories, worker logs, API responses or API logs', async () => {
  await r.changeValues();
  // A missing 1Password item stops its run in the preflight, before any write: its own run.
  const broken = await rotateViaApi({ entries: ['broken'] });
  expect(broken.entries[0]?.status).toBe('failed');
  const live = r.spec.secrets.entries.filter((e) => !e.pendingSource && e.id !== 'broken').map((e) => e.id);
  const first = await rotateViaApi({ entries: live });
  expect(first.entries.find((e) => e.id === 'github')?.status).toBe('rolled-back');
  expect(first.entries.find((e) => e.id === 'tailscale-oauth')?.status).toBe('rotated');
  const generated = await rotateViaApi({ entries: ['twitch'], generate: ['twitch'] });
  expect(generated.entries[0]).toMatchObject({ status: 'rotated', generated: true });
  const again = await rotateViaApi({ entries: ['twitch', 'supabase'] });
  expect(again.entries.map((e) => e.status)).toEqual(['unchanged', 'unchanged']);
  const drift = await rotateViaApi({ dryRun: true });
  expect(drift.entries.find((e) => e.id === 'twitch')?.status).toBe('in-sync');

  const values = r.lab.secretValues();
  // The generated value and the rotated ones are in the double's state file, so the list covers them.
  expect(values.length).toBeGreaterThan(40);
  const twitchNow = (await r.bao('apps/twitch')).data!.client_secret;
  expect(values).toContain(twitchNow);
  expect(twitchNow).toHaveLength(40);

  const { text, count } = await historiesText();
  expect(count).toBeGreaterThanOrEqual(4);
  // The scan can see what is there: references and fingerprints are in the histories.
  expect(text).toContain('op://pedro/NO_SUCH_ITEM/credential');
  expect(text).toMatch(/hmac-sha256:[0-9a-f]{64}/);
  expect(hits(text, values)).toEqual([]);
  expect(r.log.lines.length).toBeGreaterThan(5);
  expect(hits(r.log.lines.join('\n'), values)).toEqual([]);
  expect(apiResponses.length).toBeGreaterThanOrEqual(8);
  expect(hits(apiResponses.join('\n'), values)).toEqual([]);
  expect(apiLogs.length).toBeGreaterThan(0);
  expect(hits(apiLogs.join('\n'), values)).toEqual([]);
});

test('the scanner finds a planted value (so zero hits means something)', () => {
  const values = r.lab.secretValues();
  expect(hits(`x ${values[3]} y`, values)).toEqual([values[3]]);
  expect(hits(Buffer.from(values[5]).toString('base64'), values)).toEqual([values[5]]);
});
