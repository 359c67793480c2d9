// bootstrapOpenBao against a built lab: a re-run changes nothing; a sealed OpenBAO is unsealed from the
// 1Password item; a missing item is UnsealKeysMissing and never a re-init.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import { openbaoBootstrapActivities } from '../../activities/openbao/bootstrap.js';
import { startLab, type Lab } from '../lab/index.js';
import { createLabOnePasswordClient } from '../lab/onepassword/index.js';
import { randomBytes } from 'node:crypto';
import { memoryLogger } from '../helpers/temporal.js';
import { accessVariants, describeAccessPreflight } from './openbao-access.js';

let lab: Lab;
let dir: string;
const log = memoryLogger();
let acts: ReturnType<typeof openbaoBootstrapActivities>;
let deps: ActivityDeps;

beforeAll(async () => {
  lab = await startLab({ built: true, log: () => undefined });
  dir = mkdtempSync(join(tmpdir(), 'bao-bootstrap-'));
  mkdirSync(join(dir, 'clusters'));
  copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
  // A second cluster file pointing at the same OpenBAO but an unsealItem that does not exist.
  const text = readFileSync(lab.clusterFile, 'utf8')
    .replace(/^name: lab$/m, 'name: lab-nokeys')
    .replace(/unsealItem: openbao-unseal/, 'unsealItem: openbao-unseal-gone');
  writeFileSync(join(dir, 'clusters', 'lab-nokeys.yaml'), text);
  writeFileSync(
    join(dir, 'clusters', 'lab-wrongkeys.yaml'),
    text.replace(/^name: lab-nokeys$/m, 'name: lab-wrongkeys').replace(/openbao-unseal-gone/, 'openbao-unseal-wrong'),
  );
  await writeAccessVariants();
  deps = defaultDeps({ dataDir: dir, log, clusters: new ClusterRegistry(join(dir, 'clusters')) });
  acts = openbaoBootstrapActivities(deps);
});
const writeAccessVariants = () => accessVariants(lab, join(dir, 'clusters'));

afterAll(async () => {
  await lab?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('bootstrapOpenBao', () => {
  test('an initialised, unsealed OpenBAO with its KV mount is already satisfied and nothing is written', async () => {
    lab.resetCounters();
    const r = await acts.bootstrapOpenBao({ cluster: 'lab' });
    expect(r).toMatchObject({
      initialized: 'before',
      unsealed: 'before',
      kvMount: 'present',
      satisfied: true,
      unsealItemRef: 'op://pedro/openbao-unseal',
    });
    expect(lab.counters().onepassword.itemsPut).toBe(0);
    expect(lab.counters().openbao.byPath['write:sys/init'] ?? 0).toBe(0);
    // The counter is live: an init attempt over HTTP (refused, already initialised) is counted.
    const again = await fetch(`${lab.openbao.url}/v1/sys/init`, {
      method: 'PUT',
      body: JSON.stringify({ secret_shares: 1, secret_threshold: 1 }),
    });
    expect(again.status).toBe(400);
    expect(lab.counters().openbao.byPath['write:sys/init']).toBe(1);
    lab.resetCounters();
  });

  test('sealed: unsealed with the keys from 1Password, no re-init', async () => {
    lab.faults.openbao.seal();
    const r = await acts.bootstrapOpenBao({ cluster: 'lab' });
    expect(r).toMatchObject({ initialized: 'before', unsealed: 'now', satisfied: false });
    const again = await acts.bootstrapOpenBao({ cluster: 'lab' });
    expect(again.satisfied).toBe(true);
  });

  test('initialised but the 1Password item is missing: UnsealKeysMissing, never a re-init', async () => {
    lab.resetCounters();
    const err = await acts.bootstrapOpenBao({ cluster: 'lab-nokeys' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('UnsealKeysMissing');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).message).toContain('op://pedro/openbao-unseal-gone is missing');
    expect(lab.counters().openbao.byPath['write:sys/init'] ?? 0).toBe(0);
    const secrets = lab.secretValues().filter((s) => s.length >= 8);
    expect(
      secrets.filter((s) => log.lines.join('\n').includes(s) || String((err as Error).message).includes(s)),
    ).toEqual([]);
  });
});

describe('bootstrapOpenBao on a fresh OpenBAO', () => {
  test('wrong unseal keys in the 1Password item: OpenBao answers 400 and the finding names the item', async () => {
    const op = createLabOnePasswordClient(lab.onepassword.url);
    const vaultId = (await op.vaults.list()).find((v) => v.title === 'pedro')!.id;
    const real = await op.items.get(
      vaultId,
      (await op.items.list(vaultId)).find((i) => i.title === 'openbao-unseal')!.id,
    );
    // Valid-length shares that are not this OpenBao's: accepted one by one, refused at the threshold.
    const wrong = await op.items.create({
      vaultId,
      title: 'openbao-unseal-wrong',
      category: real.category,
      sections: real.sections,
      fields: real.fields.map((f) =>
        f.title.startsWith('unseal-key-') ? { ...f, value: randomBytes(33).toString('hex') } : f,
      ),
    });
    try {
      lab.faults.openbao.seal();
      const err = await acts.bootstrapOpenBao({ cluster: 'lab-wrongkeys' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).type).toBe('UnsealKeysMissing');
      expect((err as ApplicationFailure).nonRetryable).toBe(true);
      expect((err as ApplicationFailure).message).toContain(
        'the 1Password item op://pedro/openbao-unseal-wrong holds the wrong keys',
      );
      expect((err as ApplicationFailure).message).toContain('HTTP 400');
      // The right item still unseals it.
      expect((await acts.bootstrapOpenBao({ cluster: 'lab' })).unsealed).toBe('now');
    } finally {
      await op.items.delete(vaultId, wrong.id);
    }
  });

  test('a 1Password failure right after init is retried inside the activity: the keys are stored, never lost', async () => {
    // What bootstrap meets in a provision: k3s and the chart installed, OpenBAO uninitialised and sealed.
    const fresh = await startLab({ built: true, openbaoFresh: true, log: () => undefined });
    const freshDir = mkdtempSync(join(tmpdir(), 'bao-fresh-'));
    try {
      mkdirSync(join(freshDir, 'clusters'));
      copyFileSync(fresh.clusterFile, join(freshDir, 'clusters', 'lab.yaml'));
      const freshLog = memoryLogger();
      const real = defaultDeps({
        dataDir: freshDir,
        log: freshLog,
        clusters: new ClusterRegistry(join(freshDir, 'clusters')),
      });
      let failures = 2;
      const { RateLimitExceededError } = await import('@1password/sdk');
      const flaky = {
        ...real,
        async onepassword(spec: Parameters<typeof real.onepassword>[0]) {
          const op = await real.onepassword(spec);
          return {
            ...op,
            items: {
              ...op.items,
              list: op.items.list.bind(op.items),
              get: op.items.get.bind(op.items),
              put: op.items.put.bind(op.items),
              async create(params: Parameters<typeof op.items.create>[0]) {
                if (failures-- > 0) throw new RateLimitExceededError('rate limit exceeded');
                return op.items.create(params);
              },
            },
          };
        },
      };
      const r = await openbaoBootstrapActivities(flaky).bootstrapOpenBao({ cluster: 'lab' });
      expect(r).toMatchObject({ initialized: 'now', unsealed: 'now', kvMount: 'enabled' });
      // The new KV v2 mount answered 400 "Upgrading from non-versioned to versioned data" for a moment
      // (OpenBao kv/upgrade.go); bootstrap returns only once the mount serves.
      const root = await createLabOnePasswordClient(fresh.onepassword.url).secrets.resolve(
        'op://pedro/openbao-unseal/root-token',
      );
      const kv = await fetch(`${fresh.openbao.url}/v1/secret/config`, { headers: { 'X-Vault-Token': root } });
      expect(kv.status).toBe(200);
      expect(failures).toBe(-1); // two refused writes, the third stored the keys
      expect(freshLog.lines.filter((l) => l.includes('retrying inside the activity'))).toHaveLength(2);
      // The stored keys are the real ones: a sealed OpenBAO unseals from them.
      fresh.faults.openbao.seal();
      expect((await openbaoBootstrapActivities(real).bootstrapOpenBao({ cluster: 'lab' })).unsealed).toBe('now');
      const secrets = fresh.secretValues().filter((s) => s.length >= 8);
      expect(secrets.filter((s) => freshLog.lines.join('\n').includes(s))).toEqual([]);
    } finally {
      await fresh.stop();
      rmSync(freshDir, { recursive: true, force: true });
    }
  });
});

describeAccessPreflight(() => ({ lab, acts, deps }));
