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

const SEED = [
  'eleduck-database',
  'eleduck-database-direct',
  'motherduck',
  'podcast-scraper',
  'twitch',
  'discord',
  'supabase',
  'github',
  'tailscale-oauth',
];
const CONSUMERS = [
  'eleduck-analytics/Deployment/airbyte-server',
  'eleduck-analytics/Deployment/airbyte-worker',
  'eleduck-analytics/Deployment/metabase',
  'eleduck-analytics/CronJob/sqlmesh',
  'eleduck-analytics/CronJob/podcast-scraper',
  'tailscale/Deployment/operator',
];

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
    }),
  ]);
  const realOpenbao = r.deps.openbao;
  const openbao = (spec: Parameters<typeof realOpenbao>[0], token?: string): VaultClient => {
    const client = realOpenbao(spec, token);
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
    const before = await r.bao('eleduck-analytics/database-direct');
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

    const now = await r.bao('eleduck-analytics/database-direct');
    expect(now.version).toBe(before.version + 1);
    expect(now.custom).toMatchObject({
      rotation_id: rep.rotationId,
      fingerprint: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/),
      written_version: String(now.version),
      previous_version: String(before.version),
    });
    expect(now.custom.source_item_version).toMatch(/@\d{4}-/);
    const secret = await r.secretData('eleduck-analytics', 'supabase-credentials');
    expect(secret).toEqual({
      DATABASE_USER: now.data!.username,
      DATABASE_PASSWORD: now.data!.password,
      DATABASE_HOST: now.data!.host,
      DATABASE_PORT: now.data!.port,
      DATABASE_NAME: now.data!.dbname,
    });
    expect(secret!.DATABASE_PASSWORD).toMatch(/^lab-rotated-/);
    const obj = await r.kube.read<{ metadata: { annotations: Record<string, string> } } & Record<string, unknown>>(
      'v1',
      'Secret',
      'supabase-credentials',
      'eleduck-analytics',
    );
    expect(obj!.metadata.annotations).toMatchObject({
      'pedro-ops.io/openbao-path': 'secret/eleduck-analytics/database-direct',
      'pedro-ops.io/openbao-version': String(now.version),
    });
    const dep = await r.kube.read<
      { spec: { template: { metadata: { annotations: Record<string, string> } } } } & Record<string, unknown>
    >('apps/v1', 'Deployment', 'metabase', 'eleduck-analytics');
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
      const rep = await rotate({ entries: ['tailscale-oauth', 'github', 'motherduck'] });
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
      expect(e.motherduck.status).toBe('unchanged');
      expect(await r.secretData('tailscale', 'operator-oauth')).toEqual(prev.data);
      expect(r.lab.counters().kube.restarts).toEqual({ 'tailscale/Deployment/operator': 2 });
      const after = await r.bao('infra/tailscale-operator');
      expect(after.version).toBe(prev.version + 1);
      expect(after.custom).toMatchObject({
        rolled_back_version: String(after.version),
        serving_version: String(prev.version),
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

  test('a missing 1Password field fails that entry loudly with the reference; the run ends partial', async () => {
    const rep = await rotate({ entries: ['broken', 'github'] });
    expect(rep.state).toBe('partial');
    const e = byId(rep);
    expect(e.broken.status).toBe('failed');
    expect(e.broken.reason).toMatch(/^SecretMissing: .*op:\/\/pedro\/NO_SUCH_ITEM\/credential: item not found/);
    expect(e.github.status).toBe('unchanged');
  });

  test('dryRun reports drift per entry by fingerprint and changes nothing', async () => {
    await r.changeValues(['supabase']);
    r.lab.resetCounters();
    const rep = await rotate({ dryRun: true, entries: ['supabase', 'github', 'eleduck-database-direct'] });
    const e = byId(rep);
    expect(rep.state).toBe('drift');
    expect(e.supabase.status).toBe('drift');
    expect(e.supabase.findings?.join()).toMatch(/apps\/supabase v\d+ differs from 1Password/);
    expect(e.github.status).toBe('in-sync');
    expect(e['eleduck-database-direct'].status).toBe('in-sync');
    const c = r.lab.counters();
    expect(c.openbao.writes).toBe(0);
    expect(c.kube.writes).toEqual({});
    expect(c.onepassword.resolveAll).toBe(1);
  });
});
