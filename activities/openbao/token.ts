// The orchestrator's OpenBAO token: read from 1Password (the unseal item's root-token field) unless
// PEDRO_OPS_OPENBAO_TOKEN names one, cached per cluster for a few minutes so a rotation costs one
// 1Password call at most (the sync batches the token's reference into its resolveAll).
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { resolveBatched, type Resolved } from '../onepassword/read.js';
import type { OnePasswordPort } from '../onepassword/client.js';
import type { VaultClient } from './client.js';
import { openbaoTarget } from './access.js';

export const OPENBAO_TOKEN_ENV = 'PEDRO_OPS_OPENBAO_TOKEN';
const TOKEN_TTL_MS = 10 * 60_000;
const tokens = new Map<string, { token: string; until: number }>();

/** Where the orchestrator's OpenBAO token lives: the unseal item's root-token field, unless the env names one. */
export function openbaoTokenRef(spec: ClusterSpec): string {
  return `op://${spec.onepassword.vault}/${spec.openbao.unsealItem}/root-token`;
}

const tokenKey = (spec: ClusterSpec) => `${spec.name}@${openbaoTarget(spec)}`;

export function cachedToken(spec: ClusterSpec): string | undefined {
  if (process.env[OPENBAO_TOKEN_ENV]) return process.env[OPENBAO_TOKEN_ENV];
  const t = tokens.get(tokenKey(spec));
  return t && t.until > Date.now() ? t.token : undefined;
}

export function rememberToken(spec: ClusterSpec, resolved: Resolved | undefined): string {
  if (!resolved?.ok)
    throw nonRetryable(
      ErrorType.SecretMissing,
      `OpenBAO token not readable from 1Password: ${resolved?.ok === false ? resolved.message : openbaoTokenRef(spec)}`,
    );
  tokens.set(tokenKey(spec), { token: resolved.value, until: Date.now() + TOKEN_TTL_MS });
  return resolved.value;
}

/** A token for OpenBAO; costs one 1Password call only when not cached (rotation batches it into resolveAll). */
export async function openbaoFor(deps: ActivityDeps, spec: ClusterSpec, op?: OnePasswordPort): Promise<VaultClient> {
  let token = cachedToken(spec);
  if (!token) {
    const ref = openbaoTokenRef(spec);
    const resolved = await resolveBatched(op ?? (await deps.onepassword(spec)), [ref]);
    token = rememberToken(spec, resolved.get(ref));
  }
  return deps.openbao(spec, token);
}
