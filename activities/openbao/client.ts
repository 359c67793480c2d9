// The OpenBAO port: node-vault 0.12 with the error classification every activity shares.
// node-vault rejects with `.response.statusCode` and `.response.body`; health() resolves for any code.
import vault from 'node-vault';
import type { ApplicationFailure } from '@temporalio/common';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { AccessPathError, openbaoAccess, vaultTransport } from './access.js';

export type VaultClient = ReturnType<typeof vault>;

/** A client over the spec's access path (openbao.access): the API proxy, or the address with its CA. */
export async function openbaoClient(spec: ClusterSpec, dataDir: string, token?: string): Promise<VaultClient> {
  const access = await openbaoAccess(spec, dataDir);
  return vault({
    apiVersion: 'v1',
    endpoint: access.endpoint,
    token,
    // LIST is not among the methods the API proxy forwards; OpenBao reads `GET ...?list=1` the same way.
    noCustomHTTPVerbs: true,
    'request-promise': vaultTransport(access),
  });
}

export function vaultStatus(err: unknown): number | undefined {
  return (err as { response?: { statusCode?: number } })?.response?.statusCode;
}

export function vaultErrors(err: unknown): string {
  const body = (err as { response?: { body?: { errors?: string[] } } })?.response?.body;
  return body?.errors?.join('; ') || (err as Error)?.message || String(err);
}

export const CAS_MISMATCH = 'check-and-set parameter did not match the current version';

// OpenBao internal/builtin/logical/kv/upgrade.go: a KV v2 mount answers 400 with this while it
// upgrades its storage right after being enabled; it resumes by itself, so it is retryable.
export const KV_UPGRADING = 'Upgrading from non-versioned to versioned data';
// OpenBao internal/http/sys_seal.go: unseal answers 400 for ErrInvalidKey ("invalid key: …", wrong
// share combination or a share under the minimum length, internal/vault/seal_manager.go).
export const INVALID_UNSEAL_KEY = /invalid key|failed to decrypt keys|'key' must be a valid/;

// Node's TLS verification codes (a private CA the client was not given, or a name the cert lacks).
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
]);

/** The path to OpenBAO failed before OpenBAO answered (the API proxy refused, TLS, DNS, nothing listening). */
export function classifyPathError(err: unknown, what: string): ApplicationFailure | undefined {
  if (err instanceof AccessPathError) {
    const msg = `${what}: ${err.message}`;
    if (err.status === 401 || err.status === 403) return nonRetryable(ErrorType.AuthDenied, msg);
    if (err.status === 404) return nonRetryable(ErrorType.NotFound, msg);
    // "no service port N found for service": the config names a port the Service does not have.
    if (/no service port/.test(err.detail)) return nonRetryable(ErrorType.BadConfig, msg);
    // No endpoints (a pod being replaced) or the pod did not answer: retried.
    return retryable(ErrorType.Transient, msg);
  }
  const code = (err as { code?: string })?.code;
  if (code && TLS_CODES.has(code))
    return nonRetryable(
      ErrorType.BadConfig,
      `${what}: TLS: ${code} (${(err as Error).message}): set openbao.access.caFile to the CA that signed OpenBAO's certificate`,
    );
  if (code === 'ENOTFOUND')
    return nonRetryable(ErrorType.BadConfig, `${what}: ${(err as Error).message}: the name has no DNS record`);
  return undefined;
}

export function classifyVaultError(err: unknown, what: string): ApplicationFailure {
  const path = classifyPathError(err, what);
  if (path) return path;
  const status = vaultStatus(err);
  const msg = `${what}: ${status ? `HTTP ${status}: ` : ''}${vaultErrors(err)}`;
  if (status === 400 && vaultErrors(err).includes('check-and-set')) return retryable(ErrorType.Conflict, msg);
  if (status === 400 && vaultErrors(err).includes(KV_UPGRADING)) return retryable(ErrorType.NotReady, msg);
  if (status === 503) return retryable(ErrorType.Sealed, msg);
  if (status === 401 || status === 403) return nonRetryable(ErrorType.AuthDenied, msg);
  if (status === 400 || status === 404)
    return nonRetryable(status === 404 ? ErrorType.NotFound : ErrorType.BadConfig, msg);
  return retryable(ErrorType.Transient, msg);
}
