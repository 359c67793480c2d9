import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultPayloadConverter, METADATA_ENCODING_KEY, type Payload } from '@temporalio/common';
import {
  AesGcmCodec,
  ENCODING_ENCRYPTED,
  METADATA_KEY_ID,
  PayloadCodecError,
  createCodec,
  dataConverterFor,
} from '../../worker/codec.js';
import { DEV_KEY_FILENAME, loadCodecKeys, CodecKeyConfigError } from '../../worker/codec-keys.js';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };
const str = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString('utf8');
const b64 = (b: Buffer) => b.toString('base64');

describe('AesGcmCodec', () => {
  const values = [{ cluster: 'pedro-ops', ref: 'op://vault/item/field', n: 3 }, 'plain string', [1, 2, 3], null];

  it("round-trips JSON payloads through Temporal's own payload converter", async () => {
    const codec = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const plain = values.map((v) => defaultPayloadConverter.toPayload(v));
    const sealed = await codec.encode(plain);

    expect(sealed).toHaveLength(values.length);
    for (const p of sealed) {
      expect(Object.keys(p.metadata!).sort()).toEqual([METADATA_ENCODING_KEY, METADATA_KEY_ID].sort());
      expect(str(p.metadata![METADATA_ENCODING_KEY])).toBe(ENCODING_ENCRYPTED);
      expect(str(p.metadata![METADATA_KEY_ID])).toBe('k1');
      // Neither the value nor its original metadata survive in the clear.
      expect(Buffer.from(p.data!).includes('pedro-ops')).toBe(false);
      expect(Buffer.from(p.data!).includes('json/plain')).toBe(false);
    }
    const opened = await codec.decode(sealed);
    expect(opened).toEqual(plain);
    expect(opened.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual(values);
  });

  it('uses a fresh IV per payload, so equal inputs give different ciphertexts', async () => {
    const codec = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const p = defaultPayloadConverter.toPayload({ a: 1 });
    const [x, y] = await codec.encode([p, p]);
    expect(Buffer.from(x.data!).subarray(0, 12).equals(Buffer.from(y.data!).subarray(0, 12))).toBe(false);
    expect(Buffer.from(x.data!).equals(Buffer.from(y.data!))).toBe(false);
  });

  it('supports key rotation: old payloads still decrypt, new ones use the new active key', async () => {
    const before = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const old = await before.encode([defaultPayloadConverter.toPayload({ v: 'old' })]);

    const after = new AesGcmCodec({ keys: [k2, k1], activeId: 'k2' });
    expect(after.keyIds).toEqual(['k2', 'k1']);
    expect(defaultPayloadConverter.fromPayload((await after.decode(old))[0])).toEqual({ v: 'old' });

    const fresh = await after.encode([defaultPayloadConverter.toPayload({ v: 'new' })]);
    expect(str(fresh[0].metadata![METADATA_KEY_ID])).toBe('k2');
    // The pre-rotation codec cannot read post-rotation payloads.
    await expect(before.decode(fresh)).rejects.toThrow(/unknown encryption key id "k2"/);
  });

  it('detects tampering with the ciphertext, the tag and the IV', async () => {
    const codec = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const [sealed] = await codec.encode([defaultPayloadConverter.toPayload({ amount: 100 })]);
    for (const offset of [0, 20, Buffer.from(sealed.data!).length - 1]) {
      const data = Buffer.from(sealed.data!);
      data[offset] ^= 0x01;
      const err = await codec.decode([{ ...sealed, data }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PayloadCodecError);
      expect((err as Error).message).toMatch(/failed authentication with key id "k1"/);
    }
    const truncated = { ...sealed, data: Buffer.from(sealed.data!).subarray(0, 20) };
    await expect(codec.decode([truncated])).rejects.toThrow(/truncated/);
  });

  it('refuses a payload relabelled with another known key id', async () => {
    const codec = new AesGcmCodec({ keys: [k1, k2], activeId: 'k1' });
    const [sealed] = await codec.encode([defaultPayloadConverter.toPayload('x')]);
    const relabelled = { ...sealed, metadata: { ...sealed.metadata, [METADATA_KEY_ID]: Buffer.from('k2') } };
    await expect(codec.decode([relabelled])).rejects.toThrow(/failed authentication with key id "k2"/);
  });

  it('names an unknown key id without revealing any key', async () => {
    const writer = new AesGcmCodec({ keys: [{ id: 'gone-2024', key: randomBytes(32) }], activeId: 'gone-2024' });
    const sealed = await writer.encode([defaultPayloadConverter.toPayload(1)]);
    const reader = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const err = (await reader.decode(sealed).catch((e: unknown) => e)) as PayloadCodecError;
    expect(err).toBeInstanceOf(PayloadCodecError);
    expect(err.message).toContain('"gone-2024"');
    expect(err.keyId).toBe('gone-2024');
    expect(err.message).not.toContain(b64(k1.key));
    expect(err.message).not.toContain(k1.key.toString('hex'));
  });

  it('rejects an encrypted payload with no key id', async () => {
    const codec = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const bare: Payload = {
      metadata: { [METADATA_ENCODING_KEY]: Buffer.from(ENCODING_ENCRYPTED) },
      data: randomBytes(40),
    };
    await expect(codec.decode([bare])).rejects.toThrow(/no "encryption-key-id"/);
  });

  it('passes through payloads it did not encrypt (pre-codec history, other encodings)', async () => {
    const codec = new AesGcmCodec({ keys: [k1], activeId: 'k1' });
    const plain = [defaultPayloadConverter.toPayload({ a: 1 }), defaultPayloadConverter.toPayload(undefined), {}];
    const out = await codec.decode(plain);
    expect(out).toEqual(plain);
    expect(out[0]).toBe(plain[0]);
  });

  it('validates the key ring: size, duplicates, active id', () => {
    expect(() => new AesGcmCodec({ keys: [{ id: 'short', key: randomBytes(16) }], activeId: 'short' })).toThrow(
      /"short" is 16 bytes; AES-256 needs 32/,
    );
    expect(() => new AesGcmCodec({ keys: [k1, { ...k1 }], activeId: 'k1' })).toThrow(/"k1" appears twice/);
    expect(() => new AesGcmCodec({ keys: [k1], activeId: 'k2' })).toThrow(/"k2" is not in the key ring/);
    expect(() => new AesGcmCodec({ keys: [], activeId: 'k1' })).toThrow(/empty/);
    expect(() => new AesGcmCodec({ keys: [{ id: 'bad id', key: randomBytes(32) }], activeId: 'bad id' })).toThrow(
      /invalid/,
    );
  });

  it("keeps key bytes out of inspect/JSON and copies the caller's buffers", async () => {
    const key = randomBytes(32);
    const codec = createCodec({ keys: [{ id: 'c1', key }], activeId: 'c1' });
    const shown = inspect(codec, { depth: 5, showHidden: true }) + JSON.stringify(codec);
    expect(shown).not.toContain(key.toString('hex').slice(0, 16));
    const sealed = await codec.encode([defaultPayloadConverter.toPayload('still readable')]);
    key.fill(0);
    expect(defaultPayloadConverter.fromPayload((await codec.decode(sealed))[0])).toBe('still readable');
    expect(dataConverterFor(codec)).toEqual({
      payloadCodecs: [codec],
      failureConverterPath: expect.stringMatching(/failure-converter\.cjs$/),
    });
  });
});

describe('loadCodecKeys', () => {
  let dir: string;
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m) };
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'codec-keys-'));
    warnings.length = 0;
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  it('reads PEDRO_OPS_CODEC_KEYS, first entry active, and the ring works', async () => {
    const env = { PEDRO_OPS_CODEC_KEYS: ` k2:${b64(k2.key)} , k1:${b64(k1.key)}` };
    const loaded = await loadCodecKeys({ env, devMode: false, log });
    expect(loaded.source).toBe('env');
    expect(loaded.activeId).toBe('k2');
    expect(loaded.keys.map((k) => k.id)).toEqual(['k2', 'k1']);
    expect(loaded.keys[1].key.equals(k1.key)).toBe(true);
    const sealed = await createCodec(loaded).encode([defaultPayloadConverter.toPayload(5)]);
    expect(str(sealed[0].metadata![METADATA_KEY_ID])).toBe('k2');
  });

  it('rejects bad env values naming the id, never echoing key material', async () => {
    const short = b64(randomBytes(16));
    const cases: [string, RegExp][] = [
      [`k1:${short}`, /key "k1" is 16 bytes; AES-256 needs 32/],
      [`k1:${b64(k1.key)},k1:${b64(k2.key)}`, /"k1" appears twice/],
      [`k1:not*base64!`, /key "k1" is not valid base64/],
      [b64(k1.key), /entry #1 is not "<id>:<base64 key>"/],
      [`k1:${b64(k1.key)},`, /entry #2/],
    ];
    for (const [value, msg] of cases) {
      const err = (await loadCodecKeys({
        env: { PEDRO_OPS_CODEC_KEYS: value },
        devMode: true,
        dataDir: dir,
        log,
      }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(CodecKeyConfigError);
      expect(err.message).toMatch(msg);
      for (const secret of [short, b64(k1.key), b64(k2.key), 'not*base64!']) expect(err.message).not.toContain(secret);
    }
    // Env errors never fall back to a dev key.
    await expect(fs.stat(path.join(dir, DEV_KEY_FILENAME))).rejects.toThrow();
  });

  it('reads PEDRO_OPS_CODEC_KEY_FILE (active first) and refuses group/other permissions like ssh', async () => {
    const file = path.join(dir, 'keys.json');
    await fs.writeFile(file, JSON.stringify({ activeId: 'k2', keys: { k1: b64(k1.key), k2: b64(k2.key) } }), {
      mode: 0o600,
    });
    const env = { PEDRO_OPS_CODEC_KEY_FILE: file };
    const loaded = await loadCodecKeys({ env, devMode: false, log });
    expect(loaded).toMatchObject({ source: 'file', activeId: 'k2', path: file });
    expect(loaded.keys.map((k) => k.id)).toEqual(['k2', 'k1']);

    for (const mode of [0o640, 0o604, 0o644]) {
      await fs.chmod(file, mode);
      await expect(loadCodecKeys({ env, devMode: false, log })).rejects.toThrow(
        new RegExp(`permissions 0${mode.toString(8)}, which are too open.*chmod 600`),
      );
    }
    await fs.chmod(file, 0o400);
    expect((await loadCodecKeys({ env, devMode: false, log })).activeId).toBe('k2');
    expect(warnings).toEqual([]);

    // A key file inside a git work tree works but is called out.
    await fs.mkdir(path.join(dir, 'repo', '.git'), { recursive: true });
    const inRepo = path.join(dir, 'repo', 'config', 'keys.json');
    await fs.mkdir(path.dirname(inRepo));
    await fs.copyFile(file, inRepo);
    await fs.chmod(inRepo, 0o600);
    await loadCodecKeys({ env: { PEDRO_OPS_CODEC_KEY_FILE: inRepo }, devMode: false, log });
    expect(warnings).toEqual([expect.stringMatching(/inside a git work tree/)]);
  });

  it('rejects a malformed key file without echoing its contents', async () => {
    const file = path.join(dir, 'keys.json');
    const env = { PEDRO_OPS_CODEC_KEY_FILE: file };
    const bodies: [string, RegExp][] = [
      [`{"activeId":"k1","keys":{"k1":"${b64(k1.key)}"`, /not valid JSON/],
      [JSON.stringify({ activeId: 'k9', keys: { k1: b64(k1.key) } }), /activeId "k9" is not one of its keys/],
      [JSON.stringify({ activeId: 'k1', keys: { k1: b64(randomBytes(31)) } }), /key "k1" is 31 bytes/],
      [JSON.stringify({ keys: [] }), /expected \{"activeId"/],
    ];
    for (const [body, msg] of bodies) {
      await fs.writeFile(file, body, { mode: 0o600 });
      const err = (await loadCodecKeys({ env, devMode: true, dataDir: dir, log }).catch((e: unknown) => e)) as Error;
      expect(err.message).toMatch(msg);
      expect(err.message).not.toContain(b64(k1.key));
    }
    await expect(
      loadCodecKeys({ env: { PEDRO_OPS_CODEC_KEY_FILE: path.join(dir, 'missing.json') }, devMode: false, log }),
    ).rejects.toThrow(/cannot be read \(ENOENT\)/);
  });

  it('dev mode: generates one 0600 key file, warns, and reuses it on the next call', async () => {
    const dataDir = path.join(dir, 'data');
    const first = await loadCodecKeys({ env: {}, devMode: true, dataDir, log });
    const file = path.join(dataDir, DEV_KEY_FILENAME);
    expect(first).toMatchObject({ source: 'dev', path: file });
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/LOCAL DEV payload key/);
    expect(warnings[0]).not.toContain(b64(first.keys[0].key));

    const second = await loadCodecKeys({ env: {}, devMode: true, dataDir, log });
    expect(second.activeId).toBe(first.activeId);
    expect(second.keys[0].key.equals(first.keys[0].key)).toBe(true);
    // Payloads sealed by one process open in the next.
    const sealed = await createCodec(first).encode([defaultPayloadConverter.toPayload('dev')]);
    expect(defaultPayloadConverter.fromPayload((await createCodec(second).decode(sealed))[0])).toBe('dev');
    expect((await fs.readdir(dataDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('dev mode: concurrent first starts agree on one key', async () => {
    const dataDir = path.join(dir, 'race');
    const all = await Promise.all([1, 2, 3, 4].map(() => loadCodecKeys({ env: {}, devMode: true, dataDir, log })));
    expect(new Set(all.map((l) => b64(l.keys[0].key))).size).toBe(1);
  });

  it('env wins over the key file, which wins over the dev key', async () => {
    const file = path.join(dir, 'keys.json');
    await fs.writeFile(file, JSON.stringify({ activeId: 'f1', keys: { f1: b64(k1.key) } }), { mode: 0o600 });
    const both = { PEDRO_OPS_CODEC_KEYS: `e1:${b64(k2.key)}`, PEDRO_OPS_CODEC_KEY_FILE: file };
    expect((await loadCodecKeys({ env: both, devMode: true, dataDir: dir, log })).activeId).toBe('e1');
    expect(
      (await loadCodecKeys({ env: { PEDRO_OPS_CODEC_KEY_FILE: file }, devMode: true, dataDir: dir, log })).source,
    ).toBe('file');
    await expect(fs.stat(path.join(dir, DEV_KEY_FILENAME))).rejects.toThrow();
  });

  it('outside dev mode with no key: refuses and says how to provide one', async () => {
    const err = (await loadCodecKeys({ env: { PEDRO_OPS_CODEC_KEYS: '  ' }, devMode: false, dataDir: dir, log }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err).toBeInstanceOf(CodecKeyConfigError);
    expect(err.message).toMatch(/no payload codec key configured/);
    expect(err.message).toContain('PEDRO_OPS_CODEC_KEYS=');
    expect(err.message).toContain('PEDRO_OPS_CODEC_KEY_FILE=');
    expect(err.message).toContain('openssl rand -base64 32');
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
