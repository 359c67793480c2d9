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
import type { OnePasswordPort } from '../../activities/onepassword/client.js';
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

  test('references group by vault case-insensitively; malformed references are refused as BadConfig', () => {
    expect([...groupByVault(['op://pedro/A/x', 'op://Pedro/B/y', 'op://other/C/s/z']).entries()]).toEqual([
      ['pedro', ['op://pedro/A/x', 'op://Pedro/B/y']],
      ['other', ['op://other/C/s/z']],
    ]);
    expect(parseOpRef('op://v/i/s/f')).toEqual({ vault: 'v', item: 'i', section: 's', field: 'f' });
    expect(() => parseOpRef('op://only-vault')).toThrow(/not a 1Password secret reference/);
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
