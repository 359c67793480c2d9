// rotateSecrets against the built lab on the real Temporal dev server: the seed map rotated end to
// end (every consumer restarted exactly once), a second run that changes nothing, a stalled rollout
// rolled back for its entry only, a concurrent OpenBAO writer, a 1Password rate limit, a missing
// 1Password field, and the drift check.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import type { VaultClient } from '../../activities/openbao/client.js';
import {
  rotateSecretsWorkflowId,
  type RotateSecretsInput,
  type RotationReport,
} from '../../workflows/rotate-secrets.js';
import { startRotationLab, type RotationLab } from './rotate-secrets-lab.js';

let t: TestTemporal;
let r: RotationLab;
// Test hook: the next OpenBAO write to this path is preceded by another writer's write (stale cas for us).
let raceOn: { path: string; fired: boolean } | undefined;

// The seed map without the entries whose 1Password items the owner does not have (pendingSource).
const SEED = ['eleduck-database', 'podcast-scraper', 'twitch', 'discord', 'supabase', 'github', 'tailscale-oauth'];
const CONSUMERS = ['eleduck-analytics/CronJob/podcast-scraper', 'tailscale/Deployment/operator'];

beforeAll(async () => {
  [t, r] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'rotate-secrets' }),
    startRotationLab((spec) => {
      spec.secrets.entries.push({
        id: 'broken',
        openbaoPath: 'apps/broken',
        fields: { token: 'op://pedro/NO_SUCH_ITEM/credential', ok: 'op://pedro/GITHUB_PAT/credential' },
        consumers: [],
      });
      // A Job probe with the default timeout (300 s): it needs an activity that outlives it and heartbeats.
      spec.secrets.entries.find((e) => e.id === 'discord')!.verify = {
        type: 'job',
        namespace: 'eleduck-analytics',
        image: 'busybox:1.36',
        command: ['true'],
      };
    }),
  ]);
  const realOpenbao = r.deps.openbao;
  const openbao = async (spec: Parameters<typeof realOpenbao>[0], token?: string): Promise<VaultClient> => {
    const client = await realOpenbao(spec, token);
    const write = client.write.bind(client);
    client.write = (async (path: string, data: unknown, opts?: unknown) => {
      if (raceOn && !raceOn.fired && path === `${spec.openbao.kvMount}/data/${raceOn.path}`) {
        raceOn.fired = true;
        const cur = await r.bao(raceOn.path);
        await write(path, { options: { cas: cur.version }, data: { ...cur.data, note: 'written by someone else' } });
      }
      return write(path, data, opts as never);
    }) as VaultClient['write'];
    return client;
  };
  await t.startWorker({ ...r.deps, openbao });
});

afterAll(async () => {
  await t?.close();
  await r?.stop();
});

async function rotate(input: Omit<RotateSecretsInput, 'cluster'> = {}): Promise<RotationReport> {
  const requestId = input.requestId ?? randomUUID();
  const h = await t.client.workflow.start('rotateSecrets', {
    taskQueue: t.taskQueue,
    workflowId: rotateSecretsWorkflowId('lab', requestId),
    args: [{ cluster: 'lab', entries: SEED, rolloutTimeoutSeconds: 20, ...input, requestId }],
  });
  return (await h.result()) as RotationReport;
}

const byId = (rep: RotationReport) => Object.fromEntries(rep.entries.map((e) => [e.id, e]));

describe('rotateSecrets', () => {
  test('rotating the seed map writes new OpenBAO versions, updates Secrets and restarts every consumer exactly once', async () => {
    await r.changeValues(SEED);
    const before = await r.bao('infra/tailscale-operator');
    r.lab.resetCounters();
    const rep = await rotate();
    expect(rep.state).toBe('ok');
    expect(rep.entries.map((e) => [e.id, e.status])).toEqual(SEED.map((id) => [id, 'rotated']));
    const c = r.lab.counters();
    // One rotation, many entries sharing consumers (metabase, sqlmesh): each restarted once.
    expect(c.kube.restarts).toEqual(Object.fromEntries(CONSUMERS.map((k) => [k, 1])));
    expect(rep.restarts.every((x) => x.outcome === 'complete')).toBe(true);
    expect(c.onepassword.resolveAll).toBe(1);
    expect(rep.onepassword?.resolveAllCalls).toBe(1);

    const now = await r.bao('infra/tailscale-operator');
    expect(now.version).toBe(before.version + 1);
    expect(now.custom).toMatchObject({
      rotation_id: rep.rotationId,
      fingerprint: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/),
      written_version: String(now.version),
      previous_version: String(before.version),
    });
    expect(now.custom.source_item_version).toMatch(/@\d{4}-/);
    const secret = await r.secretData('tailscale', 'operator-oauth');
    expect(secret).toEqual({ client_id: now.data!.client_id, client_secret: now.data!.client_secret });
    expect(secret!.client_secret).toMatch(/^lab-rotated-/);
    const obj = await r.kube.read<{ metadata: { annotations: Record<string, string> } } & Record<string, unknown>>(
      'v1',
      'Secret',
      'operator-oauth',
      'tailscale',
    );
    expect(obj!.metadata.annotations).toMatchObject({
      'pedro-ops.io/openbao-path': 'secret/infra/tailscale-operator',
      'pedro-ops.io/openbao-version': String(now.version),
    });
    const dep = await r.kube.read<
      { spec: { template: { metadata: { annotations: Record<string, string> } } } } & Record<string, unknown>
    >('apps/v1', 'Deployment', 'operator', 'tailscale');
    expect(dep!.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt']).toMatch(
      new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z/${rep.rotationId}$`),
    );
  });

  test('a second run with nothing changed writes nothing and restarts nothing', async () => {
    r.lab.resetCounters();
    const rep = await rotate();
    expect(rep.state).toBe('ok');
    expect(rep.entries.every((e) => e.status === 'unchanged')).toBe(true);
    const c = r.lab.counters();
    expect(c.openbao.writes).toBe(0);
    expect(Object.keys(c.kube.writes).filter((k) => k.endsWith(':Secret'))).toEqual([]);
    expect(c.kube.restarts).toEqual({});
    expect(rep.restarts).toEqual([]);
  });

  test('a stalled rollout rolls back only its entry: Secret back to the previous version, consumer restarted again', async () => {
    await r.changeValues(['tailscale-oauth', 'github']);
    const prev = await r.bao('infra/tailscale-operator');
    r.lab.faults.rollouts.stall('tailscale', 'Deployment', 'operator');
    r.lab.resetCounters();
    try {
      const rep = await rotate({ entries: ['tailscale-oauth', 'github', 'supabase'] });
      const e = byId(rep);
      expect(rep.state).toBe('partial');
      expect(e['tailscale-oauth'].status).toBe('rolled-back');
      // The real Deployment controller reports ProgressDeadlineExceeded only after
      // progressDeadlineSeconds (600 by default): within the rotation's wait it is a timeout.
      expect(e['tailscale-oauth'].reason).toMatch(
        /tailscale\/Deployment\/operator.*(progress deadline|rollout not done)/,
      );
      expect(e['tailscale-oauth'].rollback?.toVersion).toBe(prev.version);
      expect(e.github.status).toBe('rotated');
      expect(e.supabase.status).toBe('unchanged');
      expect(await r.secretData('tailscale', 'operator-oauth')).toEqual(prev.data);
      expect(r.lab.counters().kube.restarts).toEqual({ 'tailscale/Deployment/operator': 2 });
      // OpenBAO itself serves the previous data again: written as a new version (KV v2 reads serve
      // current_version), with check-and-set, and recorded in the report and the metadata.
      const after = await r.bao('infra/tailscale-operator');
      expect(after.version).toBe(prev.version + 2);
      expect(after.data).toEqual(prev.data);
      expect(e['tailscale-oauth'].rollback?.restoredAs).toBe(after.version);
      expect(e['tailscale-oauth'].kubernetes?.version).toBe(after.version);
      expect(after.custom).toMatchObject({
        rolled_back_version: String(prev.version + 1),
        serving_version: String(after.version),
        rolled_back_by: rep.rotationId,
      });
      expect((await r.bao('eleduck-analytics/github')).data!.token).toMatch(/^lab-rotated-/);
    } finally {
      await r.lab.faults.clear();
    }
    // The failed value stays parked until 1Password changes: no write, no restart, a named reason.
    r.lab.resetCounters();
    const again = await rotate({ entries: ['tailscale-oauth'] });
    expect(again.entries[0]).toMatchObject({
      status: 'failed',
      reason: expect.stringMatching(/rolled back.*change it in 1Password/),
    });
    expect(r.lab.counters().openbao.writes).toBe(0);
    expect(r.lab.counters().kube.restarts).toEqual({});
    await r.changeValues(['tailscale-oauth']);
    const fixed = await rotate({ entries: ['tailscale-oauth'] });
    expect(fixed.entries[0].status).toBe('rotated');
    expect((await r.bao('infra/tailscale-operator')).custom.rolled_back_version).toBeUndefined();
  });

  test('a CronJob consumer is verified by a run of its Job template with the new Secret: a failing run rolls back', async () => {
    const failMark = (value: string | null) =>
      r.kube.patch(
        {
          apiVersion: 'batch/v1',
          kind: 'CronJob',
          metadata: { name: 'podcast-scraper', namespace: 'eleduck-analytics' },
          spec: {
            jobTemplate: { spec: { template: { metadata: { annotations: { 'lab.pedro-ops.io/outcome': value } } } } },
          },
        },
        'merge',
      );
    await r.changeValues(['podcast-scraper']);
    const prev = await r.bao('eleduck-analytics/podcast-scraper');
    await failMark('fail');
    try {
      const rep = await rotate({ entries: ['podcast-scraper'] });
      const e = rep.entries[0];
      expect(e.status).toBe('rolled-back');
      // A failing run fails the Job (or, retried up to its backoffLimit, outlasts the rollout timeout).
      expect(e.reason).toMatch(
        /eleduck-analytics\/CronJob\/podcast-scraper: (failed|timeout): Job eleduck-analytics\/podcast-scraper-rot-[a-z0-9]+ (failed|did not finish)/,
      );
      expect(await r.secretData('eleduck-analytics', 'podcast-scraper-credentials')).toEqual(prev.data);
      const jobs = (await r.kube.list('batch/v1', 'Job', 'eleduck-analytics')).filter((j) =>
        j.metadata!.name!.startsWith('podcast-scraper-rot-'),
      );
      expect(jobs.length).toBeGreaterThanOrEqual(1);
      // As `kubectl create job --from=cronjob/…` makes it: owned by the CronJob, marked manual.
      expect(jobs[0].metadata!.annotations?.['cronjob.kubernetes.io/instantiate']).toBe('manual');
      expect(jobs[0].metadata!.ownerReferences?.[0]).toMatchObject({ kind: 'CronJob', name: 'podcast-scraper' });
    } finally {
      await failMark(null);
    }
    await r.changeValues(['podcast-scraper']);
    const ok = await rotate({ entries: ['podcast-scraper'] });
    expect(ok.entries[0].status).toBe('rotated');
    expect(ok.restarts[0].message).toMatch(/Job eleduck-analytics\/podcast-scraper-rot-[a-z0-9]+ completed/);
  });

  test('a concurrent OpenBAO writer is detected by check-and-set and the entry re-read, not overwritten blindly', async () => {
    await r.changeValues(['twitch']);
    const before = await r.bao('apps/twitch');
    raceOn = { path: 'apps/twitch', fired: false };
    try {
      const rep = await rotate({ entries: ['twitch'] });
      expect(raceOn.fired).toBe(true);
      expect(rep.entries[0]).toMatchObject({
        status: 'rotated',
        openbao: { casRetries: 1, version: before.version + 2 },
      });
      const other = await r.bao('apps/twitch', before.version + 1);
      expect(other.data!.note).toBe('written by someone else');
      const now = await r.bao('apps/twitch');
      expect(now.data!.note).toBeUndefined();
      expect(now.data!.client_secret).toMatch(/^lab-rotated-/);
      expect(r.log.lines.some((l) => l.includes('check-and-set mismatch'))).toBe(true);
    } finally {
      raceOn = undefined;
    }
  });

  test('a 1Password rate limit backs off and the run completes', async () => {
    await r.changeValues(['discord']);
    r.lab.faults.onepassword.rateLimit(2);
    const requestId = randomUUID();
    const rep = await rotate({ entries: ['discord'], requestId });
    expect(rep.state).toBe('ok');
    expect(rep.entries[0].status).toBe('rotated');
    const history = await t.client.workflow.getHandle(rotateSecretsWorkflowId('lab', requestId)).fetchHistory();
    const attempts = (history.events ?? []).map((ev) => ev.activityTaskStartedEventAttributes?.attempt ?? 0);
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(3);
  });

  test('a Job probe runs in an activity sized to its timeout, with a heartbeat', async () => {
    await r.changeValues(['discord']);
    const requestId = randomUUID();
    const rep = await rotate({ entries: ['discord'], requestId });
    expect(rep.entries[0].status).toBe('rotated');
    const history = await t.client.workflow.getHandle(rotateSecretsWorkflowId('lab', requestId)).fetchHistory();
    const probe = (history.events ?? [])
      .map((ev) => ev.activityTaskScheduledEventAttributes)
      .find((a) => a?.activityType?.name === 'rotationProbe');
    expect(probe).toBeDefined();
    const seconds = (d: { seconds?: unknown } | null | undefined) => Number(d?.seconds ?? 0);
    expect(seconds(probe!.startToCloseTimeout)).toBeGreaterThan(300);
    expect(seconds(probe!.heartbeatTimeout)).toBeGreaterThan(0);
    expect(seconds(probe!.heartbeatTimeout)).toBeLessThanOrEqual(60);
  });

  test('missing 1Password items are named for every entry before any write; nothing is written', async () => {
    await r.changeValues(['github']);
    r.lab.resetCounters();
    const rep = await rotate({ entries: ['broken', 'github'] });
    expect(rep.state).toBe('failed');
    const e = byId(rep);
    expect(e.broken.status).toBe('failed');
    expect(e.broken.reason).toMatch(
      /^SecretMissing: 1Password items missing: op:\/\/pedro\/NO_SUCH_ITEM\/credential \(item NO_SUCH_ITEM not found in vault pedro\)/,
    );
    // github's items exist and its value changed, but the run stopped before any write.
    expect(e.github.status).toBe('unchanged');
    const c = r.lab.counters();
    expect(c.openbao.writes).toBe(0);
    expect(c.onepassword.resolveAll).toBe(0);
    expect(Object.keys(c.kube.writes).filter((k) => k.endsWith(':Secret'))).toEqual([]);
    await rotate({ entries: ['github'] }); // leave it rotated for the tests after this one
  });

  test('entries whose 1Password source is pending are left out of the whole map and refused when named', async () => {
    const whole = await rotate({ dryRun: true, entries: undefined });
    expect(whole.entries.map((x) => x.id)).not.toContain('motherduck');
    expect(whole.skipped?.map((x) => x.id).sort()).toEqual(['eleduck-database-direct', 'motherduck']);
    expect(whole.skipped?.find((x) => x.id === 'motherduck')?.reason).toMatch(/create 1Password item MOTHERDUCK_TOKEN/);
    r.lab.resetCounters();
    const named = await rotate({ entries: ['motherduck'] });
    expect(named.state).toBe('failed');
    expect(named.entries[0]).toMatchObject({
      id: 'motherduck',
      status: 'failed',
      reason: expect.stringMatching(
        /^SecretMissing: the 1Password source of this entry does not exist yet: create 1Password item MOTHERDUCK_TOKEN/,
      ),
    });
    expect(r.lab.counters().openbao.writes).toBe(0);
  });

  test('dryRun reports drift per entry by fingerprint and changes nothing', async () => {
    await r.changeValues(['supabase']);
    r.lab.resetCounters();
    const rep = await rotate({ dryRun: true, entries: ['supabase', 'github', 'eleduck-database'] });
    const e = byId(rep);
    expect(rep.state).toBe('drift');
    expect(e.supabase.status).toBe('drift');
    expect(e.supabase.findings?.join()).toMatch(/apps\/supabase v\d+ differs from 1Password/);
    expect(e.github.status).toBe('in-sync');
    expect(e['eleduck-database'].status).toBe('in-sync');
    const c = r.lab.counters();
    expect(c.openbao.writes).toBe(0);
    expect(c.kube.writes).toEqual({});
    expect(c.onepassword.resolveAll).toBe(1);
  });
});
