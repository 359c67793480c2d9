// The 1Password double through its SDK-shaped client: reference resolution, items, versions,
// the SDK's error classes across the HTTP boundary, persistence and counters.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthExpiredError, ItemCategory, ItemFieldType, RateLimitExceededError, type Item } from '@1password/sdk';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createLabOnePasswordClient,
  startOnePasswordDouble,
  type LabOnePasswordClient,
  type OnePasswordDouble,
} from './index.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/onepassword.json', import.meta.url));

describe('1Password double', () => {
  let dir: string;
  let statePath: string;
  let op: OnePasswordDouble;
  let client: LabOnePasswordClient;
  let vaultId: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'op-double-'));
    statePath = join(dir, 'state.json');
    op = await startOnePasswordDouble({ host: '127.0.0.1', fixturePath: FIXTURE, statePath });
    client = createLabOnePasswordClient(op.url);
    vaultId = (await client.vaults.list()).find((v) => v.title === 'pedro')!.id;
  });
  afterAll(async () => {
    await op.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists vaults and items with the SDK shapes (Dates revived)', async () => {
    const [vault] = await client.vaults.list();
    expect(vault).toMatchObject({ title: 'pedro', vaultType: 'userCreated', activeItemCount: 21 });
    expect(vault.createdAt).toBeInstanceOf(Date);
    const items = await client.items.list(vaultId);
    expect(items).toHaveLength(21);
    const twitch = items.find((i) => i.title === 'TWITCH_ID')!;
    expect(twitch).toMatchObject({ vaultId, state: 'active', category: 'ApiCredentials' });
    expect(twitch.updatedAt).toBeInstanceOf(Date);
    expect(items.some((i) => i.title === 'openbao-unseal')).toBe(false);
  });

  it('resolveAll gives per-reference results and errors', async () => {
    const refs = [
      'op://pedro/POSTGRES_URL/username',
      'op://pedro/POSTGRES_URL/server',
      'op://pedro/TWITCH_ID/no-such-field',
      'op://pedro/NO_SUCH_ITEM/credential',
      'op://elsewhere/TWITCH_ID/credential',
      'op://pedro/TWITCH_ID',
      'https://pedro/TWITCH_ID/credential',
    ];
    const { individualResponses: r } = await client.secrets.resolveAll(refs);
    expect(Object.keys(r).sort()).toEqual([...refs].sort());
    expect(r[refs[0]].content).toMatchObject({
      vaultId,
      secret: expect.stringMatching(/^lab-secret-postgres-url-username-/),
    });
    expect(r[refs[1]].content!.secret).toMatch(/^lab-secret-postgres-url-/);
    expect(r[refs[2]]).toEqual({ error: { type: 'fieldNotFound' } });
    expect(r[refs[3]]).toEqual({ error: { type: 'itemNotFound' } });
    expect(r[refs[4]]).toEqual({ error: { type: 'vaultNotFound' } });
    expect(r[refs[5]].error).toMatchObject({ type: 'parsing', message: expect.stringContaining('invalid format') });
    expect(r[refs[6]].error).toEqual({ type: 'parsing', message: 'secret reference is not prefixed with "op://"' });
  });

  it('resolves case-insensitively by name or ID and throws the SDK messages', async () => {
    const exact = await client.secrets.resolve('op://pedro/TWITCH_ID/credential');
    expect(await client.secrets.resolve('op://PEDRO/twitch_id/CREDENTIAL')).toBe(exact);
    const item = (await client.items.list(vaultId)).find((i) => i.title === 'TWITCH_ID')!;
    expect(await client.secrets.resolve(`op://${vaultId}/${item.id}/credential`)).toBe(exact);
    // The Database items' "server" field has the ID "hostname": both name it.
    expect(await client.secrets.resolve('op://pedro/POSTGRES_URL/hostname')).toBe(
      await client.secrets.resolve('op://pedro/postgres_url/Server'),
    );
    await expect(client.secrets.resolve('op://pedro/TWITCH_ID/nope')).rejects.toThrow(
      'error resolving secret reference: the specified field cannot be found within the item',
    );
    await expect(client.secrets.resolve('op://pedro/TWITCH_ID')).rejects.toThrow(
      /^error resolving secret reference: the secret reference could not be parsed: secret reference has invalid format/,
    );
    const err = await client.secrets.resolve('op://pedro/NOPE/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(RateLimitExceededError);
  });

  it('covers every reference of the pedro-ops secret map with unique, long values', async () => {
    const spec = parse(
      readFileSync(fileURLToPath(new URL('../../../config/clusters/pedro-ops.yaml', import.meta.url)), 'utf8'),
    ) as {
      secrets: { entries: { fields: Record<string, string>; pendingSource?: string }[] };
    };
    // The fixture holds only the owner's items (REFERENCE.md); entries reading others are pendingSource.
    const live = spec.secrets.entries.filter((e) => !e.pendingSource);
    const refs = [...new Set(live.flatMap((e) => Object.values(e.fields)))];
    expect(refs.length).toBeGreaterThanOrEqual(23);
    const { individualResponses: r } = await client.secrets.resolveAll(refs);
    const values = refs.map((ref) => r[ref]?.content?.secret);
    expect(values.every((v) => typeof v === 'string' && v.length >= 16)).toBe(true);
    expect(new Set(values).size).toBe(refs.length);
    const pendingRefs = spec.secrets.entries.filter((e) => e.pendingSource).flatMap((e) => Object.values(e.fields));
    expect(pendingRefs.length).toBe(6);
    const { individualResponses: p } = await client.secrets.resolveAll(pendingRefs);
    expect(pendingRefs.every((ref) => p[ref]?.error?.type === 'itemNotFound')).toBe(true);
  });

  it('items.put bumps the version, persists, and rejects a stale version', async () => {
    const overview = (await client.items.list(vaultId)).find((i) => i.title === 'GITHUB_PAT')!;
    const item = await client.items.get(vaultId, overview.id);
    expect(item.version).toBe(1);
    expect(item.createdAt).toBeInstanceOf(Date);
    const rotated: Item = { ...item, fields: item.fields.map((f) => ({ ...f, value: 'lab-rotated-github-pat-0001' })) };
    const saved = await client.items.put(rotated);
    expect(saved.version).toBe(2);
    expect(saved.updatedAt.getTime()).toBeGreaterThanOrEqual(item.updatedAt.getTime());
    expect(await client.secrets.resolve('op://pedro/GITHUB_PAT/credential')).toBe('lab-rotated-github-pat-0001');
    await expect(client.items.put(rotated)).rejects.toThrow('data conflict occurred on the server');
    expect(readFileSync(statePath, 'utf8')).toContain('lab-rotated-github-pat-0001');
    // IDs only, as in the SDK: a title is not an item ID.
    await expect(client.items.get(vaultId, 'GITHUB_PAT')).rejects.toThrow('resource not found');
  });

  it('creates items with sections, validates them, and conflicts on concurrent writes to a vault', async () => {
    const created = await client.items.create({
      vaultId,
      title: 'openbao-unseal-test',
      category: ItemCategory.SecureNote,
      sections: [{ id: 'keys', title: 'Unseal keys' }],
      fields: [
        {
          id: 'key1',
          title: 'key 1',
          fieldType: ItemFieldType.Concealed,
          value: 'lab-unseal-key-one-0001',
          sectionId: 'keys',
        },
      ],
    });
    expect(created).toMatchObject({ version: 1, vaultId, title: 'openbao-unseal-test' });
    expect(await client.secrets.resolve('op://pedro/openbao-unseal-test/Unseal keys/key 1')).toBe(
      'lab-unseal-key-one-0001',
    );
    expect(
      (await client.secrets.resolveAll(['op://pedro/openbao-unseal-test/nope/key1'])).individualResponses[
        'op://pedro/openbao-unseal-test/nope/key1'
      ],
    ).toEqual({ error: { type: 'noMatchingSections' } });
    await expect(
      client.items.create({
        vaultId,
        title: 'dup',
        category: ItemCategory.Login,
        fields: [
          { id: 'a', title: 'a', fieldType: ItemFieldType.Text, value: 'x' },
          { id: 'a', title: 'b', fieldType: ItemFieldType.Text, value: 'y' },
        ],
      }),
    ).rejects.toThrow('duplicate field ids');
    await expect(client.items.create({ vaultId: 'nope', title: 't', category: ItemCategory.Login })).rejects.toThrow(
      'invalid vault id',
    );

    const results = await Promise.allSettled([
      client.items.put({ ...created, notes: 'first' }),
      client.items.put({ ...created, notes: 'second' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(String(rejected.reason.message)).toBe(
      'Server error: data conflict occurred on the server: performing a vault operation',
    );
    await client.items.delete(vaultId, created.id);
    expect((await client.items.list(vaultId)).some((i) => i.id === created.id)).toBe(false);
  });

  it('matches fields as the SDK does: custom fields get a section, the default section wins', async () => {
    const created = await client.items.create({
      vaultId,
      title: 'FIELD_MATCHING',
      category: ItemCategory.ApiCredentials,
      sections: [{ id: 'extra', title: 'Extra' }],
      fields: [
        { id: 'credential', title: 'credential', fieldType: ItemFieldType.Concealed, value: 'lab-default-section-01' },
        {
          id: 'x1',
          title: 'credential',
          fieldType: ItemFieldType.Concealed,
          value: 'lab-named-section-0001',
          sectionId: 'extra',
        },
        { id: 'note', title: 'note', fieldType: ItemFieldType.Text, value: 'lab-custom-field-00001' },
      ],
    });
    try {
      // SDK 0.3.0: a custom field without a section is filed in an empty (untitled) section.
      const note = created.fields.find((f) => f.id === 'note')!;
      expect(note.sectionId).toBeTruthy();
      expect(created.sections.find((x) => x.id === note.sectionId)?.title).toBe('');
      expect(created.fields.find((f) => f.id === 'credential')!.sectionId).toBeUndefined();
      // SDK 0.1.6: without a section in the reference, the default section's field wins.
      expect(await client.secrets.resolve('op://pedro/FIELD_MATCHING/credential')).toBe('lab-default-section-01');
      expect(await client.secrets.resolve('op://pedro/FIELD_MATCHING/Extra/credential')).toBe('lab-named-section-0001');
      expect(await client.secrets.resolve('op://pedro/FIELD_MATCHING/note')).toBe('lab-custom-field-00001');
    } finally {
      await client.items.delete(vaultId, created.id);
    }
  });

  it('throws the SDK error classes across the HTTP boundary', async () => {
    op.faults.rateLimit(2);
    const first = await client.secrets.resolve('op://pedro/TWITCH_ID/credential').catch((e: unknown) => e);
    expect(first).toBeInstanceOf(RateLimitExceededError);
    expect((first as Error).message).toBe('rate limit exceeded');
    await expect(client.vaults.list()).rejects.toBeInstanceOf(RateLimitExceededError);
    expect(await client.vaults.list()).toHaveLength(1);

    op.faults.expireAuth();
    await expect(client.secrets.resolveAll(['op://pedro/TWITCH_ID/credential'])).rejects.toBeInstanceOf(
      AuthExpiredError,
    );
    await expect(client.items.list(vaultId)).rejects.toBeInstanceOf(AuthExpiredError);
    // SDK 0.5 re-initialises only desktop sessions (core.js InnerClient.invoke): this client keeps
    // failing, while a client created now opens a new session and works.
    await expect(client.vaults.list()).rejects.toBeInstanceOf(AuthExpiredError);
    expect(await createLabOnePasswordClient(op.url).vaults.list()).toHaveLength(1);
    await expect(client.vaults.list()).rejects.toBeInstanceOf(AuthExpiredError);
    op.faults.clear();
    expect(await client.items.list(vaultId)).not.toHaveLength(0);
  });

  it('a second client sees the same data; counters count calls per method', async () => {
    const other = createLabOnePasswordClient(`${op.url}/`);
    const before = op.counters();
    expect(await other.secrets.resolve('op://pedro/GITHUB_PAT/credential')).toBe('lab-rotated-github-pat-0001');
    await other.secrets.resolveAll(['op://pedro/TWITCH_ID/credential', 'op://pedro/TWITCH_SECRET/credential']);
    await other.items.list(vaultId);
    const after = op.counters();
    expect(after.resolve - before.resolve).toBe(1);
    expect(after.resolveAll - before.resolveAll).toBe(1);
    expect(after.itemsList - before.itemsList).toBe(1);
    expect(after.itemsPut).toBeGreaterThanOrEqual(3);
    expect(after.itemsGet).toBeGreaterThanOrEqual(2);
    expect(after.vaultsList).toBeGreaterThanOrEqual(3);
  });

  it('never logs while handling values', async () => {
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m));
    try {
      await client.secrets.resolve('op://pedro/TWITCH_SECRET/credential');
      await client.secrets.resolve('op://pedro/TWITCH_SECRET/x').catch(() => undefined);
      for (const s of spies) expect(s).not.toHaveBeenCalled();
    } finally {
      for (const s of spies) s.mockRestore();
    }
  });

  it('works from another process: the worker sees the SDK class and the same data', async () => {
    op.faults.rateLimit(1);
    const script = `
      import { createLabOnePasswordClient } from ${JSON.stringify(fileURLToPath(new URL('./client.ts', import.meta.url)))};
      import { RateLimitExceededError } from '@1password/sdk';
      const c = createLabOnePasswordClient(process.argv[1]);
      const limited = await c.secrets.resolve('op://pedro/GITHUB_PAT/credential').then(() => false, (e) => e instanceof RateLimitExceededError);
      const value = await c.secrets.resolve('op://pedro/GITHUB_PAT/credential');
      process.stdout.write(JSON.stringify({ limited, rotated: value === 'lab-rotated-github-pat-0001' }));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, op.url],
      {
        cwd: fileURLToPath(new URL('../../..', import.meta.url)),
      },
    );
    expect(JSON.parse(stdout)).toEqual({ limited: true, rotated: true });
  });

  it('keeps written data across a restart of the double, and a fresh state starts from the fixture', async () => {
    await op.stop();
    op = await startOnePasswordDouble({ host: '127.0.0.1', fixturePath: FIXTURE, statePath });
    client = createLabOnePasswordClient(op.url);
    expect(await client.secrets.resolve('op://pedro/GITHUB_PAT/credential')).toBe('lab-rotated-github-pat-0001');
    expect(op.counters().resolve).toBe(1); // counters belong to the process, data to the state file

    const fresh = await startOnePasswordDouble({
      host: '127.0.0.1',
      fixturePath: FIXTURE,
      statePath: join(dir, 'fresh', 'state.json'),
    });
    try {
      const value = await createLabOnePasswordClient(fresh.url).secrets.resolve('op://pedro/GITHUB_PAT/credential');
      expect(value).toMatch(/^lab-secret-github-pat-credential-/);
    } finally {
      await fresh.stop();
    }
  });
});
