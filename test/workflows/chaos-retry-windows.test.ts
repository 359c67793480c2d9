// The two crash windows of the rotation's OpenBAO hop that the chaos suite found by SIGKILL, replayed
// deterministically: an attempt that dies (1) after its data and metadata writes but before
// reporting, and (2) between the data write and the metadata write. The retry with the same rotation
// id must report the entry as written by this rotation — not "unchanged" — with the version served
// before it, and must not write the data again.
import { interceptVaultWrites } from '../helpers/lab-deps.js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { syncOnePasswordToOpenBao } from '../../activities/openbao/sync.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { startRotationLab, type RotationLab } from './rotate-secrets-lab.js';

let r: RotationLab;
let deps: ActivityDeps;
// While set, metadata writes fail like a process dying right before them.
let dieBeforeMetadata = false;

beforeAll(async () => {
  r = await startRotationLab();
  deps = interceptVaultWrites(r.deps, (_write, path) => {
    if (dieBeforeMetadata && path.includes('/metadata/')) throw new Error('worker killed (simulated)');
  });
  // A first rotation so the paths carry the orchestrator's bookkeeping, as in any cluster after day one.
  await r.changeValues(['twitch', 'discord']);
  await syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['twitch', 'discord'], rotationId: 'windows-0' });
});

afterAll(async () => {
  await r?.stop();
});

const dataWrites = (path: string) => r.lab.counters().openbao.byPath[`write:secret/data/${path}`] ?? 0;

test('killed after both writes, before reporting: the retry reports written, writes nothing', async () => {
  await r.changeValues(['twitch']);
  const before = await r.bao('apps/twitch');
  r.lab.resetCounters();
  const first = await syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['twitch'], rotationId: 'windows-1' });
  // The worker dies here: the result above never reaches Temporal, which retries the activity.
  const retry = await syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['twitch'], rotationId: 'windows-1' });
  expect(first.entries[0]).toMatchObject({
    outcome: 'written',
    version: before.version + 1,
    previousVersion: before.version,
  });
  expect(retry.entries[0]).toMatchObject({
    outcome: 'written',
    version: before.version + 1,
    previousVersion: before.version,
  });
  expect(dataWrites('apps/twitch')).toBe(1);
  // Another rotation with the same values still sees nothing to do.
  const other = await syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['twitch'], rotationId: 'windows-2' });
  expect(other.entries[0].outcome).toBe('unchanged');
  expect(dataWrites('apps/twitch')).toBe(1);
});

test('killed between the data write and the metadata write: the retry finishes the bookkeeping', async () => {
  await r.changeValues(['discord']);
  const before = await r.bao('apps/discord');
  r.lab.resetCounters();
  dieBeforeMetadata = true;
  try {
    await expect(
      syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: ['discord'], rotationId: 'windows-3' }),
    ).rejects.toThrow(/killed/);
  } finally {
    dieBeforeMetadata = false;
  }
  expect((await r.bao('apps/discord')).version).toBe(before.version + 1);
  const retry = await syncOnePasswordToOpenBao(deps, {
    cluster: 'lab',
    entryIds: ['discord'],
    rotationId: 'windows-3',
  });
  expect(retry.entries[0]).toMatchObject({
    outcome: 'written',
    version: before.version + 1,
    previousVersion: before.version,
  });
  expect(dataWrites('apps/discord')).toBe(1);
  const now = await r.bao('apps/discord');
  // A later rollback returns to the version Kubernetes served before this rotation, not an older one.
  expect(now.custom).toMatchObject({
    rotation_id: 'windows-3',
    written_version: String(before.version + 1),
    previous_version: String(before.version),
  });
});
