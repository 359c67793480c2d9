// HMAC-SHA256 fingerprints of secret values: what workflows, histories, annotations and API answers
// carry instead of values (DESIGN rule 1). Keyed so a fingerprint cannot be brute-forced offline from
// a low-entropy value; the key is stable per worker data dir so equal values give equal
// fingerprints across runs ("unchanged" is detectable) and across worker restarts.
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const FINGERPRINT_KEY_ENV = 'PEDRO_OPS_FINGERPRINT_KEY';
const keys = new Map<string, Buffer>();

/** The key from the env (hex or base64, >= 32 bytes) or `<dataDir>/fingerprint.key` (created 0600 once). */
export function fingerprintKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env[FINGERPRINT_KEY_ENV];
  if (fromEnv) {
    const key = /^[0-9a-f]+$/i.test(fromEnv) ? Buffer.from(fromEnv, 'hex') : Buffer.from(fromEnv, 'base64');
    if (key.length < 32) throw new Error(`${FINGERPRINT_KEY_ENV} must hold at least 32 bytes`);
    return key;
  }
  const file = join(dataDir, 'fingerprint.key');
  const cached = keys.get(file);
  if (cached) return cached;
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    try {
      // 'wx': two workers racing on one data dir keep the first key.
      writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
  keys.set(file, key);
  return key;
}

/** Order-independent fingerprint of a key -> value map ("hmac-sha256:<hex>"). */
export function fingerprint(key: Buffer, values: Record<string, string>): string {
  const h = createHmac('sha256', key);
  for (const k of Object.keys(values).sort()) {
    // Length-prefixed so {"a":"bc"} and {"ab":"c"} cannot collide.
    h.update(`${k.length}:${k}${Buffer.byteLength(values[k])}:`);
    h.update(values[k]);
  }
  return `hmac-sha256:${h.digest('hex')}`;
}
