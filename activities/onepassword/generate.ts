// Generate mode: a fresh value from 1Password's own generator (Secrets.generatePassword), written to
// the source item first so 1Password stays the source of truth; the normal rotation then carries it
// to OpenBAO and Kubernetes. Writes to one vault are sequential (1Password answers concurrent writes
// with "data conflict"). The value exists only inside this activity.
import { Secrets, type Item } from '@1password/sdk';
import type { SecretEntrySpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { selectEntries } from '../openbao/sync.js';
import { vaultIdByName, type OnePasswordPort } from './client.js';
import { classifyOpError, parseOpRef, type OpRefParts } from './read.js';

export interface GenerateInput {
  cluster: string;
  entryIds: string[];
  rotationId: string;
}

export interface GeneratedField {
  entryId: string;
  ref: string;
  itemId: string;
  itemVersion: number;
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The 1Password reference the entry's generate.field feeds from. */
export function generatedRef(entry: SecretEntrySpec): string {
  if (!entry.generate) throw nonRetryable(ErrorType.BadConfig, `entry ${entry.id} has no generate recipe`);
  const ref = entry.fields[entry.generate.field];
  if (!ref)
    throw nonRetryable(
      ErrorType.BadConfig,
      `entry ${entry.id}: generate.field "${entry.generate.field}" is not one of its fields (${Object.keys(entry.fields).join(', ')})`,
    );
  return ref;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw classifyOpError(err, what);
  }
}

/** Exact ID matches win; otherwise IDs and titles compare case-insensitively (as references resolve). */
function pick<T extends { id: string; title: string }>(list: T[], query: string): T[] {
  const byId = list.filter((x) => x.id === query);
  return byId.length ? byId : list.filter((x) => same(x.id, query) || same(x.title, query));
}

/**
 * The field a secret reference names, as @1password/sdk resolves it (client/release/RELEASE-NOTES of
 * onepassword-sdk-js): v0.1.6 "retrieving a field from the item's default field section is now
 * possible even if there is an identically named field in one of the item's named sections"; v0.3.0
 * "when multiple sections match a section query, the SDK looks through the fields in all sections".
 * The default section holds the fields without a section and the untitled section into which the SDK
 * files custom fields that came without one (v0.3.0). Writing a different field than the one a
 * rotation later reads would rotate nothing.
 */
export function matchFields(item: Item, parts: OpRefParts): Item['fields'] {
  if (parts.section) {
    const ids = new Set(pick(item.sections, parts.section).map((s) => s.id));
    return pick(
      item.fields.filter((f) => f.sectionId !== undefined && ids.has(f.sectionId)),
      parts.field,
    );
  }
  const fields = pick(item.fields, parts.field);
  if (fields.length <= 1) return fields;
  const inDefault = fields.filter(
    (f) => !f.sectionId || item.sections.some((s) => s.id === f.sectionId && s.title === ''),
  );
  return inDefault.length === 1 ? inDefault : fields;
}

async function writeOne(
  op: OnePasswordPort,
  vaultId: string,
  entry: SecretEntrySpec,
  itemIds: Map<string, string>,
): Promise<GeneratedField> {
  const ref = generatedRef(entry);
  const parts = parseOpRef(ref);
  const itemId = itemIds.get(parts.item.toLowerCase()) ?? parts.item;
  const item: Item = await call(`reading item for ${ref}`, () => op.items.get(vaultId, itemId));
  const fields = matchFields(item, parts);
  if (fields.length !== 1)
    throw nonRetryable(
      ErrorType.SecretMissing,
      `${ref}: ${fields.length === 0 ? 'field not found' : 'more than one field matched'} in item ${item.title}`,
    );
  const g = entry.generate!;
  const { password } = Secrets.generatePassword({
    type: 'Random',
    parameters: { length: g.length, includeDigits: g.digits ?? true, includeSymbols: g.symbols ?? false },
  });
  const next: Item = { ...item, fields: item.fields.map((f) => (f === fields[0] ? { ...f, value: password } : f)) };
  const saved = await call(`writing generated value for ${ref}`, () => op.items.put(next));
  return { entryId: entry.id, ref, itemId: saved.id, itemVersion: saved.version };
}

export async function generateIntoOnePassword(deps: ActivityDeps, input: GenerateInput): Promise<GeneratedField[]> {
  const spec = clusterOrFail(deps, input.cluster);
  const entries = selectEntries(spec, input.entryIds).filter((e) => e.generate);
  const op = await deps.onepassword(spec);
  const byVault = new Map<string, SecretEntrySpec[]>();
  for (const e of entries) {
    const vault = parseOpRef(generatedRef(e)).vault.toLowerCase();
    byVault.set(vault, [...(byVault.get(vault) ?? []), e]);
  }
  const out: GeneratedField[] = [];
  for (const [vaultName, list] of byVault) {
    const vaultId = await call(`listing vaults`, () => vaultIdByName(op, vaultName));
    const overviews = await call(`listing items of ${vaultName}`, () => op.items.list(vaultId));
    const itemIds = new Map<string, string>();
    for (const o of overviews) {
      itemIds.set(o.title.toLowerCase(), o.id);
      itemIds.set(o.id.toLowerCase(), o.id);
    }
    // Sequential on purpose: concurrent writes to one vault conflict.
    for (const e of list) {
      const r = await writeOne(op, vaultId, e, itemIds);
      deps.log.info(
        { entry: e.id, ref: r.ref, itemVersion: r.itemVersion, rotationId: input.rotationId },
        'generated a new value in 1Password',
      );
      out.push(r);
    }
  }
  return out;
}
