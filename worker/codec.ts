/**
 * AES-256-GCM payload codec: the second line of defence behind "no secret values in history".
 * Every payload leaving the worker or client is sealed whole (metadata + data), so the Temporal
 * server and its database only ever see `binary/encrypted` blobs plus the id of the key used.
 *
 * Wire format of `data`: nonce (12 bytes) || ciphertext || GCM tag (16 bytes), the same layout as
 * Temporal's encryption samples, so a codec in another SDK holding the same key can read it.
 *
 * Runs in the worker/client main thread (node:crypto), never inside workflow code.
 */
import { fileURLToPath } from 'node:url';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  METADATA_ENCODING_KEY,
  ValueError,
  type DataConverter,
  type Payload,
  type PayloadCodec,
} from '@temporalio/common';
// Default import: the package is CommonJS and Node's ESM loader cannot see its named exports.
import proto, { type temporal } from '@temporalio/proto';

export const ENCODING_ENCRYPTED = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';
export const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const CIPHER = 'aes-256-gcm';

/** Key ids travel in every payload's metadata and in log lines, so keep them boring. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface CodecKey {
  id: string;
  key: Buffer;
}

export interface CodecKeyRing {
  keys: CodecKey[];
  /** Id of the key that encrypts; every other key only decrypts (rotation). */
  activeId: string;
}

/** Codec failure. Messages name key ids and payload facts, never key material. */
export class PayloadCodecError extends ValueError {
  constructor(
    message: string,
    readonly keyId?: string,
    cause?: unknown,
  ) {
    super(message, cause);
  }
}
// ValueError's `name` is a read-only prototype property (Temporal's instanceof marker).
Object.defineProperty(PayloadCodecError.prototype, 'name', { value: 'PayloadCodecError', enumerable: true });

/** Throws if the ring is unusable; messages name ids only. */
export function validateKeyRing(ring: CodecKeyRing): void {
  if (!Array.isArray(ring.keys) || ring.keys.length === 0) {
    throw new PayloadCodecError('codec key ring is empty');
  }
  const seen = new Set<string>();
  for (const { id, key } of ring.keys) {
    if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) {
      throw new PayloadCodecError(
        `codec key id ${JSON.stringify(String(id).slice(0, 64))} is invalid: use 1-64 of [A-Za-z0-9._-]`,
      );
    }
    if (seen.has(id)) throw new PayloadCodecError(`codec key id "${id}" appears twice`, id);
    seen.add(id);
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
      const len = Buffer.isBuffer(key) ? key.length : 0;
      throw new PayloadCodecError(`codec key "${id}" is ${len} bytes; AES-256 needs ${KEY_BYTES}`, id);
    }
  }
  if (!seen.has(ring.activeId)) {
    throw new PayloadCodecError(`active codec key id "${ring.activeId}" is not in the key ring`, ring.activeId);
  }
}

const utf8 = (bytes: Uint8Array | null | undefined): string | undefined =>
  bytes == null ? undefined : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');

export class AesGcmCodec implements PayloadCodec {
  // Private fields keep key bytes out of util.inspect / JSON.stringify of the codec.
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #activeKey: Buffer;
  readonly activeId: string;

  constructor(ring: CodecKeyRing) {
    validateKeyRing(ring);
    // Copies: later mutation (or zeroing) of the caller's buffers must not change the ring.
    this.#keys = new Map(ring.keys.map(({ id, key }) => [id, Buffer.from(key)]));
    this.activeId = ring.activeId;
    this.#activeKey = this.#keys.get(ring.activeId)!;
  }

  /** Ids this codec can decrypt, active first. */
  get keyIds(): string[] {
    return [this.activeId, ...[...this.#keys.keys()].filter((id) => id !== this.activeId)];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keyId = Buffer.from(this.activeId, 'utf8');
    return payloads.map((payload) => {
      const plain = proto.temporal.api.common.v1.Payload.encode(payload).finish();
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv(CIPHER, this.#activeKey, nonce);
      const sealed = Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: {
          [METADATA_ENCODING_KEY]: Buffer.from(ENCODING_ENCRYPTED, 'utf8'),
          [METADATA_KEY_ID]: keyId,
        },
        data: sealed,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.#decodeOne(payload));
  }

  #decodeOne(payload: Payload): Payload {
    // Anything we did not seal (history from before the codec, other codecs) is left untouched.
    if (utf8(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCODING_ENCRYPTED) return payload;

    const keyId = utf8(payload.metadata?.[METADATA_KEY_ID]);
    if (!keyId) throw new PayloadCodecError(`encrypted payload has no "${METADATA_KEY_ID}" metadata`);
    const key = this.#keys.get(keyId);
    if (!key) {
      throw new PayloadCodecError(
        `unknown encryption key id "${keyId.slice(0, 64)}" (this codec knows: ${this.keyIds.join(', ')})`,
        keyId,
      );
    }
    const data = payload.data ?? new Uint8Array(0);
    if (data.byteLength < NONCE_BYTES + TAG_BYTES) {
      throw new PayloadCodecError(
        `encrypted payload (key id "${keyId}") is truncated: ${data.byteLength} bytes`,
        keyId,
      );
    }
    const sealed = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let plain: Buffer;
    try {
      const decipher = createDecipheriv(CIPHER, key, sealed.subarray(0, NONCE_BYTES));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      plain = Buffer.concat([
        decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch (err) {
      throw new PayloadCodecError(
        `encrypted payload failed authentication with key id "${keyId}": it was tampered with or sealed with a different key`,
        keyId,
        err,
      );
    }
    let inner: temporal.api.common.v1.Payload;
    try {
      inner = proto.temporal.api.common.v1.Payload.decode(plain);
    } catch (err) {
      throw new PayloadCodecError(`decrypted payload (key id "${keyId}") is not a Payload message`, keyId, err);
    }
    // Plain object of plain Uint8Arrays (protobufjs hands out Buffers), so callers get back
    // exactly the shape the payload converter produced.
    const view = (b: Uint8Array) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    const metadata = Object.fromEntries(Object.entries(inner.metadata).map(([k, v]) => [k, view(v)]));
    const out: Payload = { metadata, data: view(inner.data) };
    if (inner.externalPayloads?.length) out.externalPayloads = inner.externalPayloads;
    return out;
  }
}

export function createCodec(loaded: CodecKeyRing): AesGcmCodec {
  return new AesGcmCodec(loaded);
}

/** Failure messages and stack traces become an encoded (hence encrypted) payload; see the file. */
export const FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/** For `Worker.create({ dataConverter })`, `new Client({ dataConverter })` and friends. */
export function dataConverterFor(codec: PayloadCodec): DataConverter & { payloadCodecs: PayloadCodec[] } {
  return { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH };
}
