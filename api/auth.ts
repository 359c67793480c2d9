// API authentication: bearer tokens stored only as SHA-256 hashes, two roles. `viewer` may read,
// `operator` may also start, resolve, approve and encode. /healthz and /readyz stay open, and so do
// the API docs (they describe routes, not data). The requester's identity goes into every started
// workflow's memo (audit).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError, documentErrors } from './errors.js';

export type Role = 'viewer' | 'operator';
export interface ApiToken {
  name: string;
  role: Role;
  /** hex SHA-256 of the token */
  sha256: string;
}
export interface AuthConfig {
  tokens: ApiToken[];
  /** Dev only: Temporal Web on an allowed origin may decode without a token (the embedded UI has no login). */
  anonymousCodecDecodeFromUi?: boolean;
}
export interface Identity {
  name: string;
  role: Role;
}

declare module 'fastify' {
  interface FastifyRequest {
    identity?: Identity;
  }
  interface FastifyContextConfig {
    /** Minimum role for the route; default: viewer for GET/HEAD, operator otherwise. 'public' = no token. */
    role?: Role | 'public';
  }
}

const ROLE_RANK: Record<Role, number> = { viewer: 1, operator: 2 };
export const PUBLIC_PATHS = ['/healthz', '/readyz', '/openapi.json', '/docs'];

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** "alice:operator:<sha256 hex>,bob:viewer:<sha256 hex>" */
export function parseTokens(value: string): ApiToken[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const [name, role, sha] = entry.split(':');
      if (!name || !/^[a-z0-9._-]{1,64}$/i.test(name)) throw new Error(`PEDRO_OPS_API_TOKENS entry ${i + 1}: bad name`);
      if (role !== 'viewer' && role !== 'operator')
        throw new Error(`PEDRO_OPS_API_TOKENS entry ${i + 1} (${name}): role must be viewer or operator`);
      if (!sha || !/^[0-9a-f]{64}$/.test(sha))
        throw new Error(`PEDRO_OPS_API_TOKENS entry ${i + 1} (${name}): third part must be the token's SHA-256 in hex`);
      return { name, role, sha256: sha };
    });
}

/**
 * Tokens from PEDRO_OPS_API_TOKENS, or PEDRO_OPS_API_TOKENS_FILE (same format). In dev mode without
 * either, a viewer and an operator token are generated once into <dataDir>/api-tokens.json (0600)
 * for the local operator; outside dev mode the API refuses to start.
 */
export function loadAuthConfig(opts: {
  env: NodeJS.ProcessEnv;
  dataDir: string;
  devMode: boolean;
  log?: { warn(m: string): void };
}): AuthConfig {
  const { env } = opts;
  // Temporal Web without SSO sends no token to the codec endpoint; an operator may allow decode from
  // the allow-listed UI origins explicitly (loopback/VPN-only deployments). Encode never.
  const uiDecode = env.PEDRO_OPS_CODEC_UI_ANONYMOUS_DECODE === 'true';
  if (env.PEDRO_OPS_API_TOKENS)
    return { tokens: parseTokens(env.PEDRO_OPS_API_TOKENS), anonymousCodecDecodeFromUi: uiDecode };
  if (env.PEDRO_OPS_API_TOKENS_FILE)
    return {
      tokens: parseTokens(readFileSync(env.PEDRO_OPS_API_TOKENS_FILE, 'utf8')),
      anonymousCodecDecodeFromUi: uiDecode,
    };
  if (!opts.devMode)
    throw new Error(
      'no API tokens: set PEDRO_OPS_API_TOKENS="name:operator:<sha256 of token>,…" (or PEDRO_OPS_API_TOKENS_FILE)',
    );
  const file = join(opts.dataDir, 'api-tokens.json');
  let plain: { operator: string; viewer: string };
  if (existsSync(file)) {
    plain = JSON.parse(readFileSync(file, 'utf8')) as typeof plain;
  } else {
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    plain = {
      operator: `po_${randomBytes(24).toString('base64url')}`,
      viewer: `pv_${randomBytes(24).toString('base64url')}`,
    };
    writeFileSync(file, JSON.stringify(plain, null, 2), { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  opts.log?.warn(`dev mode: API tokens for local use are in ${file} (use: Authorization: Bearer <operator>)`);
  return {
    tokens: [
      { name: 'dev-operator', role: 'operator', sha256: hashToken(plain.operator) },
      { name: 'dev-viewer', role: 'viewer', sha256: hashToken(plain.viewer) },
    ],
    anonymousCodecDecodeFromUi: true,
  };
}

export function authenticate(cfg: AuthConfig, header: string | undefined): Identity | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const h = Buffer.from(hashToken(m[1]), 'hex');
  for (const t of cfg.tokens) {
    const want = Buffer.from(t.sha256, 'hex');
    if (want.length === h.length && timingSafeEqual(want, h)) return { name: t.name, role: t.role };
  }
  return undefined;
}

export function requiredRole(req: FastifyRequest): Role | 'public' {
  return roleFor(req.method, req.url.split('?')[0], req.routeOptions.config?.role);
}

function roleFor(method: string, path: string, configured?: Role | 'public'): Role | 'public' {
  if (configured) return configured;
  // The codec plugin authorizes its own routes (decode: viewer, encode: operator) after its CORS check.
  if (path.startsWith('/codec/')) return 'public';
  if (PUBLIC_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) return 'public';
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'operator';
}

export function checkRole(identity: Identity | undefined, need: Role, what: string): void {
  if (!identity) throw new HttpError(401, 'Unauthorized', 'missing or unknown bearer token', { required: need });
  if (ROLE_RANK[identity.role] < ROLE_RANK[need]) {
    throw new HttpError(
      403,
      'Forbidden',
      `${what} needs role ${need}; token "${identity.name}" has role ${identity.role}`,
      { required: need, role: identity.role },
    );
  }
}

/** Installs the auth hook on the whole app (before routes are registered). */
export function installAuth(app: FastifyInstance, cfg: AuthConfig): void {
  // The OpenAPI document shows each route's auth: bearer required or not, and its 401/403.
  app.addHook('onRoute', (route) => {
    const method = [route.method].flat()[0];
    const need = roleFor(method, route.url, route.config?.role);
    const codec = route.url.startsWith('/codec/');
    if (route.schema?.hide || (need === 'public' && !codec)) {
      if (route.schema && !route.schema.hide) route.schema.security = [];
      return;
    }
    route.schema = { ...route.schema, security: [{ bearer: [] }] };
    documentErrors(route, need === 'operator' || codec ? [401, 403] : [401]);
  });
  app.addHook('onRequest', async (req) => {
    // Node keeps the first of repeated Authorization headers, a proxy in front may keep the last:
    // ambiguous credentials authenticate no one.
    const repeated = req.raw.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization').length > 1;
    req.identity = repeated ? undefined : authenticate(cfg, req.headers.authorization);
    if (req.method === 'OPTIONS') return; // CORS preflight carries no credentials by design
    const need = requiredRole(req);
    if (need === 'public') return;
    if (repeated) throw new HttpError(401, 'Unauthorized', 'more than one Authorization header', { required: need });
    // Unknown routes answer 404 to anyone holding a valid token; without one they are 401 like every other route.
    checkRole(req.identity, need, `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`);
  });
}

/** The codec endpoint's authorize hook: decode needs viewer, encode operator (dev: the Web UI may decode). */
export function codecAuthorizer(cfg: AuthConfig) {
  return (req: FastifyRequest, action: 'decode' | 'encode'): void => {
    if (action === 'decode' && !req.identity && cfg.anonymousCodecDecodeFromUi && req.headers.origin) return; // origin already allow-listed
    checkRole(req.identity, action === 'encode' ? 'operator' : 'viewer', `codec ${action}`);
  };
}
