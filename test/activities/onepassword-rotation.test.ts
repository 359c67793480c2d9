// 1Password reading for rotation against the lab's double: one resolveAll per vault, per-reference
// errors kept per reference (naming it), the SDK's rate-limit error turned into a retryable failure,
// bad references refused; and fingerprints stable per key, different across keys.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import {
  startOnePasswordDouble,
  createLabOnePasswordClient,
  type OnePasswordDouble,
} from '../lab/onepassword/index.js';
import { FIXTURE_PATH } from '../lab/index.js';
import { groupByVault, parseOpRef, resolveBatched } from '../../activities/onepassword/read.js';
import { onePasswordForCluster, type OnePasswordPort } from '../../activities/onepassword/client.js';
import type { ClusterSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { generateIntoOnePassword } from '../../activities/onepassword/generate.js';
import { memoryLogger } from '../helpers/temporal.js';
import { fingerprint, fingerprintKey } from '../../activities/openbao/fingerprint.js';

let dir: string;
let double: OnePasswordDouble;
let op: OnePasswordPort;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'op-rotation-'));
  double = await startOnePasswordDouble({
    host: '127.0.0.1',
    fixturePath: FIXTURE_PATH,
    statePath: join(dir, 'state.json'),
  });
  op = createLabOnePasswordClient(double.url);
});

afterAll(async () => {
  await double?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('resolveBatched', () => {
  test('one resolveAll for a vault; a missing item fails only its reference, naming it', async () => {
    const before = double.counters().resolveAll;
    const stats = { resolveAllCalls: 0, vaults: 0 };
    const refs = [
      'op://pedro/GITHUB_PAT/credential',
      'op://Pedro/TWITCH_ID/credential',
      'op://pedro/NO_SUCH_ITEM/credential',
      'op://pedro/GITHUB_PAT/nofield',
    ];
    const out = await resolveBatched(op, refs, stats);
    expect(double.counters().resolveAll - before).toBe(1);
    expect(stats.resolveAllCalls).toBe(1);
    expect(out.get(refs[0])).toMatchObject({ ok: true, value: expect.stringMatching(/^lab-secret-/) });
    expect(out.get(refs[1])?.ok).toBe(true);
    expect(out.get(refs[2])).toEqual({ ok: false, message: 'op://pedro/NO_SUCH_ITEM/credential: item not found' });
    expect(out.get(refs[3])).toEqual({ ok: false, message: 'op://pedro/GITHUB_PAT/nofield: field not found' });
  });

  test('a rate limit becomes a retryable RateLimited failure without values in the message', async () => {
    double.faults.rateLimit(1);
    const err = await resolveBatched(op, ['op://pedro/GITHUB_PAT/credential']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('RateLimited');
    expect((err as ApplicationFailure).nonRetryable).toBe(false);
    const ok = await resolveBatched(op, ['op://pedro/GITHUB_PAT/credential']);
    expect(ok.get('op://pedro/GITHUB_PAT/credential')?.ok).toBe(true);
  });

  test('an expired 1Password session: the cached client is dropped and the next call builds a new one', async () => {
    const spec = { onepassword: { vault: 'pedro', tokenEnv: 'OP_TOKEN_UNUSED', labUrl: double.url } } as ClusterSpec;
    const ref = 'op://pedro/GITHUB_PAT/credential';
    const first = await onePasswordForCluster(spec);
    expect((await resolveBatched(first, [ref])).get(ref)?.ok).toBe(true);
    double.faults.expireAuth();
    const err = await resolveBatched(first, [ref]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(false);
    expect((err as ApplicationFailure).message).toContain('1Password authentication expired');
    // The retry (a new activity attempt) asks for the client again: a new one, with a new session.
    const second = await onePasswordForCluster(spec);
    expect(second).not.toBe(first);
    expect((await resolveBatched(second, [ref])).get(ref)?.ok).toBe(true);
    expect(await onePasswordForCluster(spec)).toBe(second);
    double.faults.clear();
  });

  test('references group by vault case-insensitively; malformed references are refused as BadConfig', () => {
    expect([...groupByVault(['op://pedro/A/x', 'op://Pedro/B/y', 'op://other/C/s/z']).entries()]).toEqual([
      ['pedro', ['op://pedro/A/x', 'op://Pedro/B/y']],
      ['other', ['op://other/C/s/z']],
    ]);
    expect(parseOpRef('op://v/i/s/f')).toEqual({ vault: 'v', item: 'i', section: 's', field: 'f' });
    expect(() => parseOpRef('op://only-vault')).toThrow(/not a 1Password secret reference/);
  });
});

describe('generateIntoOnePassword', () => {
  test('a reference without a section writes the default-section field, as the SDK resolves it', async () => {
    const vaultId = (await op.vaults.list()).find((v) => v.title === 'pedro')!.id;
    const created = await op.items.create({
      vaultId,
      title: 'GENERATED_KEY',
      category: 'ApiCredentials' as never,
      sections: [{ id: 'old', title: 'Old' }],
      fields: [
        { id: 'credential', title: 'credential', fieldType: 'Concealed' as never, value: 'lab-generated-before-01' },
        {
          id: 'o1',
          title: 'credential',
          fieldType: 'Concealed' as never,
          value: 'lab-kept-in-section-01',
          sectionId: 'old',
        },
      ],
    });
    const ref = 'op://pedro/GENERATED_KEY/credential';
    const spec = {
      name: 'gen',
      onepassword: { vault: 'pedro', tokenEnv: 'OP_TOKEN_UNUSED' },
      secrets: {
        entries: [
          {
            id: 'gen',
            openbaoPath: 'apps/gen',
            fields: { key: ref },
            consumers: [],
            generate: { field: 'key', length: 32 },
          },
        ],
      },
    } as unknown as ClusterSpec;
    const deps = {
      clusters: { get: () => spec },
      onepassword: async () => op,
      log: memoryLogger(),
    } as unknown as ActivityDeps;
    try {
      const [r] = await generateIntoOnePassword(deps, { cluster: 'gen', entryIds: ['gen'], rotationId: 'g-1' });
      expect(r).toMatchObject({ entryId: 'gen', ref, itemId: created.id, itemVersion: 2 });
      const after = await op.items.get(vaultId, created.id);
      const now = await op.secrets.resolve(ref);
      expect(now).not.toBe('lab-generated-before-01');
      expect(now).toHaveLength(32);
      expect(after.fields.find((f) => f.id === 'credential')!.value).toBe(now);
      expect(after.fields.find((f) => f.id === 'o1')!.value).toBe('lab-kept-in-section-01');
    } finally {
      await (op as unknown as { items: { delete(v: string, i: string): Promise<void> } }).items.delete(
        vaultId,
        created.id,
      );
    }
  });
});

describe('fingerprints', () => {
  test('stable for equal maps in any key order, different for other values and other keys; key file 0600', () => {
    const k = fingerprintKey(dir, {});
    expect(statSync(join(dir, 'fingerprint.key')).mode & 0o777).toBe(0o600);
    expect(fingerprintKey(dir, {})).toEqual(k);
    const a = fingerprint(k, { user: 'u', pass: 'p' });
    expect(fingerprint(k, { pass: 'p', user: 'u' })).toBe(a);
    expect(fingerprint(k, { user: 'u', pass: 'q' })).not.toBe(a);
    expect(fingerprint(k, { a: 'bc' })).not.toBe(fingerprint(k, { ab: 'c' }));
    const other = fingerprintKey(mkdtempSync(join(dir, 'x-')), {});
    expect(fingerprint(other, { user: 'u', pass: 'p' })).not.toBe(a);
    expect(a).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(() => fingerprintKey(dir, { PEDRO_OPS_FINGERPRINT_KEY: 'abcd' })).toThrow(/at least 32 bytes/);
  });
});
