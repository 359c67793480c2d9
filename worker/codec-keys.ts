/**
 * Where the payload codec's keys come from. Order: PEDRO_OPS_CODEC_KEYS (env), then
 * PEDRO_OPS_CODEC_KEY_FILE (JSON, owner-only permissions), then - dev mode only - a key generated
 * once under the data dir. Outside dev mode there is no fallback: running unencrypted is not an
 * option, so a missing key is a startup error that says how to provide one.
 *
 * Every error names the env var / file and the key id; none ever contains key material.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { KEY_BYTES, KEY_ID_PATTERN, validateKeyRing, type CodecKey } from './codec.js';

export { createCodec, dataConverterFor, AesGcmCodec, PayloadCodecError } from './codec.js';

export const ENV_KEYS = 'PEDRO_OPS_CODEC_KEYS';
export const ENV_KEY_FILE = 'PEDRO_OPS_CODEC_KEY_FILE';
export const DEV_KEY_FILENAME = 'codec-keys.json';

export type CodecKeySource = 'env' | 'file' | 'dev';

export interface LoadedCodecKeys {
  keys: CodecKey[];
  activeId: string;
  source: CodecKeySource;
  /** The file read (source 'file' or 'dev'). */
  path?: string;
}

export interface CodecKeyLog {
  warn(msg: string): void;
  info?(msg: string): void;
}

export interface LoadCodecKeysOptions {
  env?: Record<string, string | undefined>;
  /** Required in dev mode: where the generated dev key lives. */
  dataDir?: string;
  devMode: boolean;
  log?: CodecKeyLog;
}

/** The JSON key file: `{ "activeId": "k2", "keys": { "k2": "<base64>", "k1": "<base64>" } }`. */
export interface CodecKeyFile {
  activeId: string;
  keys: Record<string, string>;
}

export class CodecKeyConfigError extends Error {
  override name = 'CodecKeyConfigError';
}

const HOW_TO =
  `Provide a 32-byte key: ${ENV_KEYS}="<id>:<base64 key>[,<older id>:<base64 key>...]" ` +
  `(first is active; generate one with \`openssl rand -base64 32\`), or ${ENV_KEY_FILE}=/path/outside/repo/keys.json ` +
  `containing {"activeId":"<id>","keys":{"<id>":"<base64 key>"}} with mode 0600.`;

// Strict: Buffer.from(s, 'base64') silently skips junk, which would turn a typo into a short key.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeKey(where: string, id: string, b64: unknown): Buffer {
  if (typeof b64 !== 'string' || !BASE64.test(b64.trim())) {
    throw new CodecKeyConfigError(`${where}: key "${id}" is not valid base64. ${HOW_TO}`);
  }
  const key = Buffer.from(b64.trim(), 'base64');
  if (key.length !== KEY_BYTES) {
    throw new CodecKeyConfigError(
      `${where}: key "${id}" is ${key.length} bytes; AES-256 needs ${KEY_BYTES}. ${HOW_TO}`,
    );
  }
  return key;
}

function checkId(where: string, id: string, seen: Set<string>): void {
  if (!KEY_ID_PATTERN.test(id)) {
    // The id is shown only when it looks like an id; a mangled entry could be a pasted key.
    throw new CodecKeyConfigError(`${where}: key id must be 1-64 of [A-Za-z0-9._-] (got ${id.length} chars)`);
  }
  if (seen.has(id)) throw new CodecKeyConfigError(`${where}: key id "${id}" appears twice`);
  seen.add(id);
}

export function parseKeysEnv(value: string): { keys: CodecKey[]; activeId: string } {
  const seen = new Set<string>();
  const keys: CodecKey[] = [];
  const entries = value.split(',').map((e) => e.trim());
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon <= 0) {
      throw new CodecKeyConfigError(`${ENV_KEYS}: entry #${i + 1} is not "<id>:<base64 key>". ${HOW_TO}`);
    }
    const id = entry.slice(0, colon).trim();
    checkId(ENV_KEYS, id, seen);
    keys.push({ id, key: decodeKey(ENV_KEYS, id, entry.slice(colon + 1)) });
  });
  return { keys, activeId: keys[0].id };
}

function parseKeyFile(file: string, text: string): { keys: CodecKey[]; activeId: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the offending text, which may be key material.
    throw new CodecKeyConfigError(`${file}: not valid JSON. ${HOW_TO}`);
  }
  const { activeId, keys: map } = (doc ?? {}) as Partial<CodecKeyFile>;
  if (typeof activeId !== 'string' || typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new CodecKeyConfigError(`${file}: expected {"activeId": string, "keys": {id: base64}}. ${HOW_TO}`);
  }
  const seen = new Set<string>();
  const keys: CodecKey[] = [];
  for (const [id, b64] of Object.entries(map)) {
    checkId(file, id, seen);
    keys.push({ id, key: decodeKey(file, id, b64) });
  }
  const active = keys.find((k) => k.id === activeId);
  if (!active) {
    const shown = KEY_ID_PATTERN.test(activeId) ? `"${activeId}"` : '(invalid id)';
    throw new CodecKeyConfigError(`${file}: activeId ${shown} is not one of its keys`);
  }
  return { keys: [active, ...keys.filter((k) => k !== active)], activeId };
}

/** Like ssh with private keys: a key file others can read (or write) is refused outright. */
async function readPrivateFile(file: string): Promise<string> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CodecKeyConfigError(`codec key file ${file} cannot be read (${code ?? 'error'})`);
  }
  if (!st.isFile()) throw new CodecKeyConfigError(`codec key file ${file} is not a regular file`);
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    throw new CodecKeyConfigError(
      `codec key file ${file} has permissions 0${mode.toString(8)}, which are too open: ` +
        `it must not be accessible by group or others (run: chmod 600 ${file})`,
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new CodecKeyConfigError(
      `codec key file ${file} is owned by uid ${st.uid}, not by this user (${uid}) or root`,
    );
  }
  return fs.readFile(file, 'utf8');
}

async function insideGitWorkTree(file: string): Promise<boolean> {
  let dir = path.dirname(path.resolve(file));
  for (;;) {
    if (
      await fs.stat(path.join(dir, '.git')).then(
        () => true,
        () => false,
      )
    )
      return true;
    const up = path.dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
}

/**
 * Creates the dev key file exactly once even when worker and API start together: the key is
 * written to a temp file and hard-linked into place, which fails if another process won the race,
 * so nobody ever reads a half-written file.
 */
async function ensureDevKeyFile(file: string): Promise<boolean> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const id = `dev-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`;
  const doc: CodecKeyFile = { activeId: id, keys: { [id]: randomBytes(KEY_BYTES).toString('base64') } };
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
}

export async function loadCodecKeys(opts: LoadCodecKeysOptions): Promise<LoadedCodecKeys> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? console;
  let loaded: LoadedCodecKeys;

  const envKeys = env[ENV_KEYS]?.trim();
  const keyFile = env[ENV_KEY_FILE]?.trim();
  if (envKeys) {
    loaded = { ...parseKeysEnv(envKeys), source: 'env' };
  } else if (keyFile) {
    const file = path.resolve(keyFile);
    loaded = { ...parseKeyFile(file, await readPrivateFile(file)), source: 'file', path: file };
    if (await insideGitWorkTree(file)) {
      log.warn(`codec key file ${file} is inside a git work tree; keep keys outside the repository`);
    }
  } else if (opts.devMode) {
    if (!opts.dataDir) throw new CodecKeyConfigError(`dev mode needs a dataDir for the generated codec key. ${HOW_TO}`);
    const file = path.resolve(opts.dataDir, DEV_KEY_FILENAME);
    const created = await ensureDevKeyFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new CodecKeyConfigError(`cannot create dev codec key file ${file} (${err.code ?? err.message})`);
    });
    loaded = { ...parseKeyFile(file, await readPrivateFile(file)), source: 'dev', path: file };
    log.warn(
      `codec: ${created ? 'generated' : 'using'} a LOCAL DEV payload key (id "${loaded.activeId}") at ${file}; ` +
        `payloads are encrypted but the key sits beside the data. Outside dev mode set ${ENV_KEYS} or ${ENV_KEY_FILE}.`,
    );
  } else {
    throw new CodecKeyConfigError(`no payload codec key configured (not in dev mode, so none is generated). ${HOW_TO}`);
  }

  validateKeyRing(loaded);
  log.info?.(
    `codec: ${loaded.keys.length} key(s) from ${loaded.source}${loaded.path ? ` (${loaded.path})` : ''}, active "${loaded.activeId}"`,
  );
  return loaded;
}
