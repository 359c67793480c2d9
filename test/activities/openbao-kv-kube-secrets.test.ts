// The rotation's OpenBAO and Kubernetes hops called directly against the built lab: check-and-set
// against a writer that always wins (gives up retryably, never overwrites), a writer that wrote the
// same value (re-decided: nothing to write), Secret apply idempotency, and restart idempotency for
// one restart value (a retried activity never restarts twice).
import { interceptVaultWrites } from '../helpers/lab-deps.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import type { VaultClient } from '../../activities/openbao/client.js';
import { syncOnePasswordToOpenBao } from '../../activities/openbao/sync.js';
import { applyKubeSecret } from '../../activities/kube/secrets.js';
import { restartConsumer } from '../../activities/kube/restart.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';

let r: RotationLab;
let intercept: ((write: VaultClient['write'], path: string) => Promise<void>) | undefined;
let deps: ActivityDeps;

beforeAll(async () => {
  r = await startRotationLab();
  deps = interceptVaultWrites(r.deps, async (write, path) => {
    if (intercept && path.includes('/data/')) await intercept(write, path);
  });
});

afterAll(async () => {
  await r?.stop();
});

describe('syncOnePasswordToOpenBao check-and-set', () => {
  test('a writer that always wins: re-read each time, then a retryable Conflict; its data is never overwritten', async () => {
    await r.changeValues(['github']);
    let n = 0;
    intercept = async (write, path) => {
      const cur = await r.bao('eleduck-analytics/github');
      await write(path, { options: { cas: cur.version }, data: { token: `other-writer-${++n}` } });
    };
    try {
      const err = await syncOnePasswordToOpenBao(deps, {
        cluster: 'lab',
        entryIds: ['github'],
        rotationId: 'kv-1',
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).type).toBe('Conflict');
      expect((err as ApplicationFailure).nonRetryable).toBe(false);
    } finally {
      intercept = undefined;
    }
    expect(n).toBe(5);
    expect((await r.bao('eleduck-analytics/github')).data).toEqual({ token: 'other-writer-5' });
    // Once the other writer stops, the next attempt writes with the right cas.
    const ok = await syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['github'], rotationId: 'kv-2' });
    expect(ok.entries[0]).toMatchObject({ outcome: 'written', casRetries: 0 });
  });

  test('a writer that wrote the same value first: re-decided as unchanged, no second write', async () => {
    await r.changeValues(['tailscale-oauth']);
    const before = await r.bao('infra/tailscale-operator');
    let wanted: unknown;
    intercept = async (write, path) => {
      intercept = undefined;
      await write(path, { options: { cas: before.version }, data: wanted });
    };
    // Learn the value the activity will write by letting the interceptor see the body it carries.
    const real = deps.openbao;
    deps = {
      ...deps,
      openbao: (spec, token) => {
        const c = real(spec, token);
        const w = c.write.bind(c);
        c.write = (async (path: string, data: { data?: unknown }, o?: unknown) => {
          if (path.includes('/data/')) wanted = data.data;
          return w(path, data, o as never);
        }) as VaultClient['write'];
        return c;
      },
    };
    try {
      const res = await syncOnePasswordToOpenBao(deps, {
        cluster: 'lab',
        entryIds: ['tailscale-oauth'],
        rotationId: 'kv-3',
      });
      expect(res.entries[0]).toMatchObject({ outcome: 'unchanged', casRetries: 1, version: before.version + 1 });
    } finally {
      deps = { ...deps, openbao: real };
      intercept = undefined;
    }
  });
});

describe('applyKubeSecret and restartConsumer', () => {
  test('the Secret is written once for a version; a repeat writes nothing', async () => {
    const v = (await r.bao('infra/tailscale-operator')).version;
    const first = await applyKubeSecret(r.deps, {
      cluster: 'lab',
      entryId: 'tailscale-oauth',
      version: v,
      rotationId: 'ks-1',
    });
    expect(first).toMatchObject({ dataChanged: true, written: true });
    r.lab.resetCounters();
    const again = await applyKubeSecret(r.deps, {
      cluster: 'lab',
      entryId: 'tailscale-oauth',
      version: v,
      rotationId: 'ks-2',
    });
    expect(again).toMatchObject({ dataChanged: false, written: false, fingerprint: first.fingerprint });
    expect(r.lab.counters().kube.writes).toEqual({});
    expect(await r.secretData('tailscale', 'operator-oauth')).toEqual(
      (await r.bao('infra/tailscale-operator', v)).data,
    );
    await expect(
      applyKubeSecret(r.deps, { cluster: 'lab', entryId: 'github', version: 1, rotationId: 'ks-3' }),
    ).rejects.toThrow(/no Kubernetes Secret mapping/);
    await expect(
      applyKubeSecret(r.deps, { cluster: 'lab', entryId: 'tailscale-oauth', version: 99, rotationId: 'ks-4' }),
    ).rejects.toThrow(/version 99 holds no data/);
  });

  test('one restart value restarts once even when the activity runs twice; a missing workload is reported', async () => {
    r.lab.resetCounters();
    const input = {
      cluster: 'lab',
      workload: { kind: 'Deployment' as const, namespace: 'eleduck-analytics', name: 'metabase' },
      restartedAt: '2026-01-01T00:00:00.123Z/rot',
      rotationId: 'rot',
      timeoutSeconds: 20,
      pollMs: 100,
    };
    const a = await restartConsumer(r.deps, input);
    const b = await restartConsumer(r.deps, input);
    expect(a).toMatchObject({ patched: true, outcome: 'complete' });
    expect(b).toMatchObject({ patched: false, outcome: 'complete' });
    expect(r.lab.counters().kube.restarts).toEqual({ 'eleduck-analytics/Deployment/metabase': 1 });
    const missing = await restartConsumer(r.deps, { ...input, workload: { ...input.workload, name: 'nope' } });
    expect(missing).toMatchObject({ outcome: 'missing', patched: false });
  });
});
