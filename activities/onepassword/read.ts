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

export interface MissingItems {
  /** Per entry id: the references whose vault or item does not exist (or is not shared with the account). */
  entries: { id: string; missing: { ref: string; reason: string }[] }[];
  itemsListCalls: number;
}

/**
 * Which referenced 1Password items exist, without reading a single secret value: one vaults.list and
 * one items.list per vault (titles and ids, as references match them: case-insensitive, ids exact).
 * Used before any write (rotation preflight) and by `config:check --onepassword`.
 */
export async function findMissingItems(
  op: OnePasswordPort,
  entries: { id: string; refs: string[] }[],
): Promise<MissingItems> {
  let vaults;
  try {
    vaults = await op.vaults.list();
  } catch (err) {
    throw classifyOpError(err, 'listing vaults');
  }
  const lists = new Map<string, { titles: Set<string>; ids: Set<string> } | undefined>();
  let itemsListCalls = 0;
  const out: MissingItems['entries'] = [];
  for (const e of entries) {
    const missing: { ref: string; reason: string }[] = [];
    for (const ref of new Set(e.refs)) {
      const { vault, item } = parseOpRef(ref);
      const key = vault.toLowerCase();
      if (!lists.has(key)) {
        const v = vaults.filter((x) => x.id === vault || x.title.toLowerCase() === key);
        if (v.length !== 1) lists.set(key, undefined);
        else {
          let items;
          try {
            items = await op.items.list(v[0].id);
          } catch (err) {
            throw classifyOpError(err, `listing items of vault ${vault}`);
          }
          itemsListCalls += 1;
          lists.set(key, {
            titles: new Set(items.map((i) => i.title.toLowerCase())),
            ids: new Set(items.map((i) => i.id)),
          });
        }
      }
      const l = lists.get(key);
      if (!l) missing.push({ ref, reason: `vault ${vault} not found or not shared with the service account` });
      else if (!l.ids.has(item) && !l.titles.has(item.toLowerCase()))
        missing.push({ ref, reason: `item ${item} not found in vault ${vault}` });
    }
    if (missing.length) out.push({ id: e.id, missing });
  }
  return { entries: out, itemsListCalls };
}
