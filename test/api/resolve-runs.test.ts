// Parked runs of every long workflow resolved from the front door, through the pedro-ops CLI against
// a real listening API, a real worker and the built lab: the faults are the one a newcomer met (the
// cluster's kubeconfig is missing, so every Kubernetes step parks non-retryably) and, for rotations,
// Secret writes denied by an admission webhook (the rotation needs the API for OpenBAO), the CLI's hint names
// the exact `pedro-ops resolve <workflow-id> <step>` command, `runs --state needs-attention` and the
// pedro_ops_parked_runs gauge show the run, and retry (after the fault clears), skip and abort (with
// the workflow's compensation) each end the run as documented. Also the route's 400/404/409 and auth.
import { existsSync, renameSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Context } from '@temporalio/activity';
import { buildApp } from '../../api/app.js';
import { hashToken, parseTokens } from '../../api/auth.js';
import { temporalSettings } from '../../worker/settings.js';
import { createActivities } from '../../activities/index.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { runCli } from '../helpers/cli.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';

const OPERATOR = 'resolve-runs-operator-0123456789';
const VIEWER = 'resolve-runs-viewer-0123456789';
let t: TestTemporal;
let rl: RotationLab;
let app: FastifyInstance;
let url: string;
let kubeconfig: string;
/** While set, the drill's wait for its restore fails non-retryably (after the restore was created). */
let failRestoreWait = false;

beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'resolve-runs' });
  rl = await startRotationLab();
  kubeconfig = rl.spec.kubernetes!.kubeconfigPath!;
  expect(existsSync(kubeconfig)).toBe(true); // the built lab wrote it, as a provision would
  const real = createActivities(rl.deps);
  await t.startWorker(rl.deps, {
    activities: {
      async veleroWaitRestore(input: Parameters<typeof real.veleroWaitRestore>[0]) {
        if (failRestoreWait) {
          Context.current().heartbeat('lab fault');
          throw nonRetryable(ErrorType.RestoreFailed, 'lab fault: restore status unreadable');
        }
        return real.veleroWaitRestore(input);
      },
    },
  });
  app = await buildApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: rl.deps.clusters,
    auth: { tokens: parseTokens(`ops:operator:${hashToken(OPERATOR)},watcher:viewer:${hashToken(VIEWER)}`) },
    codec: testCodec,
  });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
}, 180_000);
afterAll(async () => {
  restoreKubeconfig();
  await app?.close();
  await t?.close();
  await rl?.stop();
});

const cli = (...args: string[]) => runCli(args, { url, token: OPERATOR });
const removeKubeconfig = () => renameSync(kubeconfig, `${kubeconfig}.away`);
// A rotation reaches OpenBAO through the Kubernetes API (openbao.access api-proxy), so without a
// kubeconfig it parks at its preflight; a rotation parked at its Secret step needs the API up and
// only the Secret writes refused: a validating webhook that denies them (the apiserver answers 403).
const denySecretWrites = () => rl.lab.faults.kube.rejectWrites('secrets', 'lab: secret writes denied');
function restoreKubeconfig() {
  if (existsSync(`${kubeconfig}.away`)) renameSync(`${kubeconfig}.away`, kubeconfig);
}

/** Runs a CLI command that must park; returns the workflow id and step from its hint. */
async function parks(args: string[], step: string) {
  const r = await cli(...args);
  expect(r.code, r.stderr).toBe(3);
  expect(r.stderr).toContain(`NEEDS ATTENTION: ${step}`);
  const hint = new RegExp(
    `pedro-ops resolve (\\S+) ${step.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} retry\\|skip\\|abort`,
  ).exec(r.stderr);
  expect(hint, r.stderr).not.toBeNull();
  return hint![1];
}

async function parkedList(): Promise<{ workflowId: string; parked: { step: string }[]; operation: string }[]> {
  const r = await cli('runs', 'lab', '--state', 'needs-attention', '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).runs;
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('rotation parked at a Kubernetes step', () => {
  it('without a kubeconfig the rotation parks at its preflight, naming the missing file', async () => {
    removeKubeconfig();
    try {
      const id = await parks(['rotate', 'lab', '--entry', 'tailscale-oauth'], 'preflight');
      const status = await cli('status', id, '--no-follow');
      expect(status.stdout).toMatch(/preflight\s+needs-attention\s+1\s+\S+\s+BadConfig: no kubeconfig/);
      expect((await cli('resolve', id, 'preflight', 'abort')).code).toBe(0);
    } finally {
      restoreKubeconfig();
    }
  });

  it('retry after the fault clears: the rotation completes; runs, status and the gauge showed it parked', async () => {
    await rl.changeValues(['tailscale-oauth']);
    await denySecretWrites();
    let id: string;
    try {
      id = await parks(['rotate', 'lab', '--entry', 'tailscale-oauth'], 'secret:tailscale-oauth');
      expect(id).toMatch(/^rotate-secrets\/lab\//);
      // what needs me now: the list (visibility is eventually consistent) and the gauge
      const listed = await eventually('run listed as parked', async () =>
        (await parkedList()).find((x) => x.workflowId === id),
      );
      expect(listed).toMatchObject({ operation: 'rotate-secrets', parked: [{ step: 'secret:tailscale-oauth' }] });
      const everywhere = await cli('runs', '--state', 'needs-attention', '--json'); // every cluster: GET /workflows
      expect(JSON.parse(everywhere.stdout).runs.map((x: { workflowId: string }) => x.workflowId)).toContain(id);
      const human = await cli('runs', 'lab', '--state', 'needs-attention');
      expect(human.stdout).toContain(`pedro-ops resolve ${id} secret:tailscale-oauth retry|skip|abort`);
      const metrics = (await app.inject({ method: 'GET', url: '/metrics', headers: auth(OPERATOR) })).body;
      const n = Number(/pedro_ops_parked_runs\{cluster="lab",operation="rotate-secrets"\} (\d+)/.exec(metrics)?.[1]);
      expect(n).toBeGreaterThanOrEqual(1);
      const status = await cli('status', id, '--no-follow');
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/STEP\s+STATE\s+ATTEMPTS\s+DURATION\s+ERROR/);
      expect(status.stdout).toMatch(
        /secret:tailscale-oauth\s+needs-attention\s+1\s+\S+\s+AuthDenied: patch Secret operator-oauth: HTTP 403: admission webhook/,
      );

      // resolving a step that is not parked is refused, and a viewer may not resolve at all
      const notParked = await cli('resolve', id, 'openbao', 'retry', '--json');
      expect(notParked.code).toBe(1);
      expect(JSON.parse(notParked.stdout).error).toMatchObject({ error: 'Conflict' });
      expect((await runCli(['resolve', id, 'secret:tailscale-oauth', 'retry'], { url, token: VIEWER })).stderr).toMatch(
        /403/,
      );
    } finally {
      await rl.lab.faults.clear();
    }
    const retry = await cli('resolve', id, 'secret:tailscale-oauth', 'retry', '--note', 'webhook fixed');
    expect(retry.code, retry.stderr).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code, done.stderr).toBe(0);
    const out = JSON.parse(done.stdout);
    expect(out.result.state).toBe('ok');
    expect(out.result.entries[0]).toMatchObject({ id: 'tailscale-oauth', status: 'rotated' });
    // a finished run has nothing to resolve: 404
    const late = await cli('resolve', id, 'secret:tailscale-oauth', 'retry', '--json');
    expect(late.code).toBe(1);
    expect(JSON.parse(late.stdout).error).toMatchObject({ error: 'NotFound' });
    const st = await cli('status', id);
    expect(st.stdout).toMatch(/secret:tailscale-oauth\s+succeeded\s+2\s/); // the table: two attempts
  });

  it('skip of the Secret update: the entry is rolled back to its previous OpenBAO version, the run exits 1', async () => {
    await rl.changeValues(['tailscale-oauth']);
    const before = await rl.secretData('tailscale', 'operator-oauth');
    expect(before).toBeDefined();
    await denySecretWrites();
    let id: string;
    try {
      id = await parks(['rotate', 'lab', '--entry', 'tailscale-oauth'], 'secret:tailscale-oauth');
    } finally {
      await rl.lab.faults.clear(); // writes are allowed again before the operator decides; the rollback needs them
    }
    const skip = await cli('resolve', id, 'secret:tailscale-oauth', 'skip');
    expect(skip.code, skip.stderr).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code, done.stdout).toBe(1);
    const entry = JSON.parse(done.stdout).result.entries[0];
    expect(entry).toMatchObject({
      id: 'tailscale-oauth',
      status: 'rolled-back',
      reason: 'Secret update skipped by operator',
    });
    expect(await rl.secretData('tailscale', 'operator-oauth')).toEqual(before);
  });

  it('abort: the compensation rolls OpenBAO and the Secret back to the previous version', async () => {
    await rl.changeValues(['podcast-scraper']);
    const entry = rl.spec.secrets.entries.find((e) => e.id === 'podcast-scraper')!;
    const baoBefore = await rl.bao(entry.openbaoPath);
    const secretBefore = await rl.secretData('eleduck-analytics', 'podcast-scraper-credentials');
    expect(secretBefore?.YOUTUBE_API_KEY).toBe(baoBefore.data?.YOUTUBE_API_KEY);
    await denySecretWrites();
    let id: string;
    try {
      id = await parks(['rotate', 'lab', '--entry', 'podcast-scraper'], 'secret:podcast-scraper');
      expect((await rl.bao(entry.openbaoPath)).version).toBe(baoBefore.version + 1); // the new value was written
    } finally {
      await rl.lab.faults.clear(); // the operator fixed access but decides to stop this rotation anyway
    }
    const abort = await cli('resolve', id, 'secret:podcast-scraper', 'abort', '--note', 'wrong value in 1Password');
    expect(abort.code, abort.stderr).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code).toBe(1);
    const report = JSON.parse(done.stdout).result;
    expect(report.state).toBe('failed');
    expect(report.entries[0]).toMatchObject({ id: 'podcast-scraper', status: 'rolled-back' });
    expect(report.entries[0].reason).toMatch(/aborted by operator at step secret:podcast-scraper \(ops\)/);
    expect(report.entries[0].rollback.toVersion).toBe(baoBefore.version);
    // OpenBAO serves the previous data again, written as a new version (issue 14 item 6: KV v2 reads
    // serve current_version, so marking the rejected one would leave readers on it).
    const after = await rl.bao(entry.openbaoPath);
    expect(after.version).toBe(baoBefore.version + 2);
    expect(after.data).toEqual(baoBefore.data);
    expect(after.custom).toMatchObject({
      rolled_back_version: String(baoBefore.version + 1),
      serving_version: String(after.version),
    });
    // the Secret serves the previous OpenBAO version, as before the run
    expect(await rl.secretData('eleduck-analytics', 'podcast-scraper-credentials')).toEqual(secretBefore);
  });
});

describe('drill (verify-backup) parked', () => {
  it('retry after the fault clears: the drill passes', async () => {
    removeKubeconfig();
    let id: string;
    try {
      id = await parks(['verify-backup', 'lab'], 'storage-location');
      expect(id).toMatch(/^verify-backup\/lab\//);
    } finally {
      restoreKubeconfig();
    }
    expect((await cli('resolve', id, 'storage-location', 'retry')).code).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code, done.stdout).toBe(0);
    expect(JSON.parse(done.stdout).result.result).toBe('passed');
  });

  it('skip (allowed for the storage-location check): the drill goes on and passes', async () => {
    removeKubeconfig();
    let id: string;
    try {
      id = await parks(['verify-backup', 'lab'], 'storage-location');
    } finally {
      restoreKubeconfig();
    }
    expect((await cli('resolve', id, 'storage-location', 'skip')).code).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code, done.stdout).toBe(0);
    expect(JSON.parse(done.stdout).result.result).toBe('passed');
  });

  it('abort mid-restore: the cleanup deletes the scratch namespaces and the drill fails with the reason', async () => {
    failRestoreWait = true;
    let id: string;
    try {
      id = await parks(['verify-backup', 'lab'], 'wait-restore');
    } finally {
      failRestoreWait = false;
    }
    const abort = await cli('resolve', id, 'wait-restore', 'abort');
    expect(abort.code, abort.stderr).toBe(0);
    const done = await cli('status', id, '--json');
    expect(done.code).toBe(1);
    const report = JSON.parse(done.stdout).result;
    expect(report.result).toBe('failed');
    expect(report.restoreAttempted).toBe(true);
    expect(report.reasons).toEqual([expect.stringMatching(/^Aborted: aborted by operator at step wait-restore/)]);
    expect(report.cleanup.remaining).toEqual([]);
    const ns = (await rl.kube.list('v1', 'Namespace'))
      .map((n) => n.metadata!.name!)
      .filter((n) => n.startsWith('drill-'));
    expect(ns).toEqual([]);
  });
});

describe('DR restore parked before approval', () => {
  it('abort ends the run failed with the reason (nothing was restored)', async () => {
    removeKubeconfig();
    let id: string;
    try {
      const planned = await cli('dr-restore', 'lab', '--backup', 'any', '--namespace', 'eleduck-analytics', '--json');
      expect(planned.code, planned.stderr).toBe(0);
      id = JSON.parse(planned.stdout).workflowId;
      const listed = await eventually('dr-restore listed as parked', async () =>
        (await parkedList()).find((x) => x.workflowId === id),
      );
      expect(listed).toMatchObject({ operation: 'dr-restore', parked: [{ step: 'storage-location' }] });
    } finally {
      restoreKubeconfig();
    }
    expect((await cli('resolve', id, 'storage-location', 'abort')).code).toBe(0);
    const done = await eventually('dr-restore closed', async () => {
      const r = await cli('status', id, '--no-follow', '--json');
      return JSON.parse(r.stdout).status === 'RUNNING' ? undefined : r;
    });
    expect(done.code).toBe(1);
    expect(JSON.parse(done.stdout)).toMatchObject({ status: 'FAILED', progress: { state: 'failed' } });
  });
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

describe('POST /workflows/:id/steps/:step validation', () => {
  it('400 names the field, 404 for an unknown workflow, 401 without a token', async () => {
    const path = `/workflows/${encodeURIComponent('rotate-secrets/lab/nope')}/steps/secret:tailscale-oauth`;
    const bad = await app.inject({ method: 'POST', url: path, headers: auth(OPERATOR), payload: { action: 'redo' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ field: 'body.action' });
    const extra = await app.inject({
      method: 'POST',
      url: path,
      headers: auth(OPERATOR),
      payload: { action: 'retry', by: 'someone-else' },
    });
    expect(extra.statusCode).toBe(400);
    expect(extra.json()).toMatchObject({ field: 'body.by' });
    const unknown = await app.inject({
      method: 'POST',
      url: path,
      headers: auth(OPERATOR),
      payload: { action: 'retry' },
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().workflowId).toBe('rotate-secrets/lab/nope');
    const anon = await app.inject({ method: 'POST', url: path, payload: { action: 'retry' } });
    expect(anon.statusCode).toBe(401);
    const runs = await app.inject({ method: 'GET', url: '/clusters/lab/runs?state=stuck', headers: auth(VIEWER) });
    expect(runs.statusCode).toBe(400);
    expect(runs.json().field).toBe('querystring.state');
    expect((await app.inject({ method: 'GET', url: '/clusters/nope/runs', headers: auth(VIEWER) })).statusCode).toBe(
      404,
    );
  });
});

describe('CLI conventions', () => {
  it('--help and help print the usage on stdout with exit 0; an unknown flag is a usage error (2)', async () => {
    for (const args of [['--help'], ['help'], ['-h']]) {
      const r = await cli(...args);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('usage: pedro-ops');
      expect(r.stdout).toContain('resolve <workflow-id> <step> retry|skip|abort');
      expect(r.stderr).toBe('');
    }
    const bad = await cli('runs', '--frobnicate');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('usage: pedro-ops');
  });

  it('provision --dry-run prints a phase tree with the critical path; --json stays pure JSON', async () => {
    const human = await cli('provision', 'lab', '--dry-run');
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^├─ preflight \(1\)$/m);
    expect(human.stdout).toMatch(/│ {2}└─ \* preflight/);
    expect(human.stdout).toMatch(/critical path \(\*\), about .* at most:\n {2}preflight → prepare\/\S+ → k3s/);
    const json = await cli('provision', 'lab', '--dry-run', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ dryRun: true, cluster: 'lab' });
  });
});
