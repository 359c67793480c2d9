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
      openbao: async (spec, token) => {
        const c = await real(spec, token);
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

type Meta = {
  name?: string;
  uid?: string;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  managedFields?: { manager?: string; operation?: string }[];
};
type Obj = { metadata: Meta; data?: Record<string, string>; immutable?: boolean } & Record<string, unknown>;
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

// issue 14 item 8: a rotation writes only what it builds (server-side apply, field manager pedro-ops).
describe('applyKubeSecret on a Secret others also own', () => {
  const ns = 'eleduck-analytics';
  const name = 'podcast-scraper-credentials';
  const rotate = async (rotationId: string) => {
    await r.changeValues(['podcast-scraper']);
    const synced = await syncOnePasswordToOpenBao(r.deps, {
      cluster: 'lab',
      entryIds: ['podcast-scraper'],
      rotationId,
    });
    const version = synced.entries[0].version!;
    return {
      version,
      apply: () => applyKubeSecret(r.deps, { cluster: 'lab', entryId: 'podcast-scraper', version, rotationId }),
    };
  };

  test('ownerReferences, finalizers, foreign labels and unmapped keys survive a rotation', async () => {
    const owner = await r.kube.create<Obj>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'scraper-owner', namespace: ns },
      data: {},
    });
    const ownerRef = { apiVersion: 'v1', kind: 'ConfigMap', name: 'scraper-owner', uid: owner.metadata.uid! };
    await r.kube.patch(
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name,
          namespace: ns,
          ownerReferences: [ownerRef],
          finalizers: ['example.com/keep'],
          labels: { team: 'scrapers' },
        },
        data: { 'extra-key': b64('kept by another tool') },
      },
      'merge',
    );
    try {
      const { version, apply } = await rotate('own-1');
      expect(await apply()).toMatchObject({ dataChanged: true, written: true, created: false });
      const s = (await r.kube.read<Obj>('v1', 'Secret', name, ns))!;
      expect(s.metadata.ownerReferences?.map((o) => o.uid)).toEqual([owner.metadata.uid]);
      expect(s.metadata.finalizers).toContain('example.com/keep');
      expect(s.metadata.labels).toMatchObject({
        team: 'scrapers',
        'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator',
      });
      expect(s.metadata.annotations?.['pedro-ops.io/openbao-version']).toBe(String(version));
      const data = (await r.secretData(ns, name))!;
      expect(data['extra-key']).toBe('kept by another tool');
      const entry = r.spec.secrets.entries.find((e) => e.id === 'podcast-scraper')!;
      const source = (await r.bao('eleduck-analytics/podcast-scraper', version)).data!;
      for (const [k, baoKey] of Object.entries(entry.kubernetes!.keys)) expect(data[k]).toBe(source[baoKey]);
      expect(s.metadata.managedFields?.some((f) => f.manager === 'pedro-ops' && f.operation === 'Apply')).toBe(true);
      // The unmapped key is not ours: it never makes the Secret look changed.
      r.lab.resetCounters();
      expect(await apply()).toMatchObject({ dataChanged: false, written: false });
      expect(r.lab.counters().kube.writes).toEqual({});
    } finally {
      await r.kube.patch(
        { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns, finalizers: [] } },
        'merge',
      );
    }
  });

  test('an immutable Secret: a clear non-retryable finding, and the Secret is left as it was', async () => {
    await r.kube.patch(
      { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, immutable: true },
      'merge',
    );
    const before = await r.secretData(ns, name);
    const { apply } = await rotate('imm-1');
    const err = await apply().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).type).toBe('BadConfig');
    expect((err as ApplicationFailure).message).toContain(`Secret ${ns}/${name} (entry podcast-scraper) is immutable`);
    expect(await r.secretData(ns, name)).toEqual(before);
  });
});

// issue 14 item 3 for DaemonSets: an OnDelete DaemonSet's pods carry its *template* generation.
describe('restartConsumer on an OnDelete DaemonSet', () => {
  test('a spec edit outside the template (generation != template generation) still rolls every pod once', async () => {
    const ns = 'ds-ondelete';
    await r.kube.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    const labels = { app: 'agent' };
    await r.kube.create({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'agent', namespace: ns },
      spec: {
        selector: { matchLabels: labels },
        updateStrategy: { type: 'OnDelete' },
        template: { metadata: { labels }, spec: { containers: [{ name: 'a', image: 'agent:1' }] } },
      },
    });
    type Ds = Obj & { status?: { desiredNumberScheduled?: number; numberAvailable?: number } };
    const until = async (what: string, ok: () => Promise<boolean>) => {
      const deadline = Date.now() + 30_000;
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    };
    const ds = () => r.kube.read<Ds>('apps/v1', 'DaemonSet', 'agent', ns);
    await until('pods available', async () => {
      const s = (await ds())?.status;
      return (s?.desiredNumberScheduled ?? 0) > 0 && s?.numberAvailable === s?.desiredNumberScheduled;
    });
    // Not a template change: generation 2, template generation stays 1 (daemonset strategy.go).
    await r.kube.patch(
      {
        apiVersion: 'apps/v1',
        kind: 'DaemonSet',
        metadata: { name: 'agent', namespace: ns },
        spec: { revisionHistoryLimit: 5 },
      },
      'merge',
    );
    const podNames = async () =>
      (await r.kube.list<Obj>('v1', 'Pod', ns, 'app=agent')).map((p) => p.metadata.name!).sort();
    const before = await podNames();
    const res = await restartConsumer(r.deps, {
      cluster: 'lab',
      workload: { kind: 'DaemonSet', namespace: ns, name: 'agent' },
      restartedAt: '2026-01-02T00:00:00.456Z/ds',
      rotationId: 'ds',
      timeoutSeconds: 40,
      pollMs: 100,
    });
    expect(res).toMatchObject({ patched: true, outcome: 'complete' });
    const cur = (await ds())!;
    expect(cur.metadata.annotations?.['deprecated.daemonset.template.generation']).toBe('2');
    const pods = await r.kube.list<Obj>('v1', 'Pod', ns, 'app=agent');
    expect(pods).toHaveLength(before.length);
    expect(pods.every((p) => p.metadata.labels?.['pod-template-generation'] === '2')).toBe(true);
    expect((await podNames()).filter((n) => before.includes(n))).toEqual([]);
  });
});

// Items 1–3 through item 2's path: the replaced OpenBAO pod (OnDelete) comes back sealed at a new pod IP,
// and is unsealed through the API proxy (the Service publishes it while it is NotReady).
describe('restartConsumer on the OpenBAO StatefulSet', () => {
  test('the pod is replaced, found sealed through services/proxy, unsealed from 1Password, and Ready', async () => {
    const pod = () => r.kube.read<Obj & { status?: { podIP?: string } }>('v1', 'Pod', 'openbao-0', 'openbao-system');
    const before = (await pod())!;
    const unsealed = () => r.lab.pieces.openbao.counters().byPath['unsealed:sys/unseal'] ?? 0;
    const unsealedBefore = unsealed();
    const res = await restartConsumer(r.deps, {
      cluster: 'lab',
      workload: { kind: 'StatefulSet', namespace: 'openbao-system', name: 'openbao' },
      restartedAt: '2026-01-03T00:00:00.789Z/bao',
      rotationId: 'bao',
      timeoutSeconds: 60,
      pollMs: 200,
    });
    expect(res).toMatchObject({ patched: true, outcome: 'complete' });
    const after = (await pod())!;
    expect(after.metadata.uid).not.toBe(before.metadata.uid);
    // State, not a log line: the new pod resealed the double, and exactly one unseal opened it again.
    expect(unsealed() - unsealedBefore).toBe(1);
    const health = await fetch(`${r.lab.openbao.url}/v1/sys/health`);
    expect(health.status).toBe(200);
  });
});
