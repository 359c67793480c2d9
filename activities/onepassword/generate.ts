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
import { classifyOpError, parseOpRef } from './read.js';

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
  const sections = parts.section
    ? item.sections.filter((s) => same(s.id, parts.section!) || same(s.title, parts.section!)).map((s) => s.id)
    : undefined;
  const fields = item.fields.filter(
    (f) =>
      (same(f.id, parts.field) || same(f.title, parts.field)) &&
      (!sections || (f.sectionId !== undefined && sections.includes(f.sectionId))),
  );
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
