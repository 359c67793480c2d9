// The OpenBAO port: node-vault 0.12 with the error classification every activity shares.
// node-vault rejects with `.response.statusCode` and `.response.body`; health() resolves for any code.
import vault from 'node-vault';
import type { ApplicationFailure } from '@temporalio/common';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';

export type VaultClient = ReturnType<typeof vault>;

export function openbaoClient(spec: ClusterSpec, token?: string): VaultClient {
  return vault({ apiVersion: 'v1', endpoint: spec.openbao.address, token, noCustomHTTPVerbs: false });
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

export function classifyVaultError(err: unknown, what: string): ApplicationFailure {
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
