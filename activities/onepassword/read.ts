// Reading 1Password for a rotation: every reference of the map resolved with as few calls as the
// SDK allows (one resolveAll per vault), per-reference errors kept per reference so one missing
// field fails only its entry, and the SDK's rate-limit / auth-expiry errors turned into retryable
// failures so Temporal backs off. Values stay in this process; only messages naming refs leave.
import { AuthExpiredError, RateLimitExceededError, type ResolveReferenceError } from '@1password/sdk';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { OnePasswordPort } from './client.js';

export interface OpRefParts {
  vault: string;
  item: string;
  section?: string;
  field: string;
}

export function parseOpRef(ref: string): OpRefParts {
  const m = /^op:\/\/([^/?]+)\/([^/?]+)(?:\/([^/?]+))?\/([^/?]+)$/.exec(ref);
  if (!m) throw nonRetryable(ErrorType.BadConfig, `not a 1Password secret reference: ${ref}`);
  return { vault: m[1], item: m[2], section: m[3], field: m[4] };
}

/** Refs grouped by vault name (case-insensitive, as 1Password matches names). */
export function groupByVault(refs: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const ref of new Set(refs)) {
    const vault = parseOpRef(ref).vault.toLowerCase();
    out.set(vault, [...(out.get(vault) ?? []), ref]);
  }
  return out;
}

export type Resolved = { ok: true; value: string; itemId: string; vaultId: string } | { ok: false; message: string };

const REASONS: Record<string, string> = {
  vaultNotFound: 'vault not found',
  tooManyVaults: 'more than one vault matched',
  itemNotFound: 'item not found',
  tooManyItems: 'more than one item matched',
  noMatchingSections: 'section not found',
  fieldNotFound: 'field not found',
  tooManyMatchingFields: 'more than one field matched',
};

function reason(err: ResolveReferenceError | undefined): string {
  if (!err) return 'no answer for this reference';
  if (err.type === 'parsing') return `reference could not be parsed: ${err.message}`;
  return REASONS[err.type] ?? err.type;
}

/** SDK errors to typed failures: rate limit and expired auth back off, anything else is transient. */
export function classifyOpError(err: unknown, what: string): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof RateLimitExceededError)
    return retryable(ErrorType.RateLimited, `${what}: 1Password rate limit exceeded`);
  if (err instanceof AuthExpiredError)
    return retryable(ErrorType.Transient, `${what}: 1Password authentication expired`);
  const msg = err instanceof Error ? err.message : String(err);
  if (/data conflict/i.test(msg)) return retryable(ErrorType.Conflict, `${what}: ${msg}`);
  if (/not found/i.test(msg)) return nonRetryable(ErrorType.NotFound, `${what}: ${msg}`);
  return retryable(ErrorType.Transient, `${what}: ${msg}`);
}

export interface ResolveStats {
  resolveAllCalls: number;
  vaults: number;
}

/** One resolveAll per vault; per-reference errors become `{ok:false}` entries, call errors throw typed. */
export async function resolveBatched(
  op: OnePasswordPort,
  refs: string[],
  stats?: ResolveStats,
): Promise<Map<string, Resolved>> {
  const out = new Map<string, Resolved>();
  for (const [vault, group] of groupByVault(refs)) {
    let res;
    try {
      res = await op.secrets.resolveAll(group);
    } catch (err) {
      throw classifyOpError(err, `resolving ${group.length} references in vault ${vault}`);
    }
    if (stats) {
      stats.resolveAllCalls += 1;
      stats.vaults += 1;
    }
    for (const ref of group) {
      const r = res.individualResponses[ref];
      if (r?.content)
        out.set(ref, { ok: true, value: r.content.secret, itemId: r.content.itemId, vaultId: r.content.vaultId });
      else out.set(ref, { ok: false, message: `${ref}: ${reason(r?.error)}` });
    }
  }
  return out;
}
