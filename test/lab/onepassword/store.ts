// The 1Password double's vault contents and the SDK's semantics over them: secret-reference
// resolution (case-insensitive names or IDs, per-reference errors), item versions and validation.
// Messages are the SDK 0.5 core's own strings, because callers and tests match on them.
import { recordSecrets } from '../audit.js';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomInt } from 'node:crypto';
import type { ResolveReferenceError, ResolvedReference, Response } from '@1password/sdk';
import { readVaultFile, type StoredField, type StoredItem, type StoredVault, type VaultFile } from './fixture.js';

/** An error the server sends to the client; `name` is what the SDK's throwError() switches on. */
export class OpError extends Error {
  constructor(
    message: string,
    readonly sdkName: 'RateLimitExceeded' | 'AuthExpired' | 'Error' = 'Error',
    readonly status = 400,
  ) {
    super(message);
  }
}

export const CONFLICT_MESSAGE = 'Server error: data conflict occurred on the server: performing a vault operation';
const NOT_FOUND_MESSAGE = 'Server error: resource not found';
const INVALID_FORMAT =
  'secret reference has invalid format - must be "op://<vault>/<item>/[section/]field[?attribute=<attribute-value>]"';
const RESOLVE_MESSAGES: Record<string, string> = {
  vaultNotFound: 'no vault matched the secret reference query',
  tooManyVaults: 'more than one vault matched the secret reference query',
  itemNotFound: 'no item matched the secret reference query',
  tooManyItems: 'more than one item matched the secret reference query',
  noMatchingSections: 'no section matched the secret reference',
  fieldNotFound: 'the specified field cannot be found within the item',
  tooManyMatchingFields: 'more than one field matched the secret reference',
};
const ATTRIBUTES = ['value', 'id', 'type', 'title'];

export type ResolveResult = Response<ResolvedReference, ResolveReferenceError>;

/** The error message resolve() throws for a failed per-reference result. */
export function resolveErrorMessage(error: ResolveReferenceError): string {
  const detail =
    error.type === 'parsing'
      ? `the secret reference could not be parsed: ${error.message}`
      : (RESOLVE_MESSAGES[error.type] ?? error.type);
  return `error resolving secret reference: ${detail}`;
}

export function newId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from({ length: 26 }, () => alphabet[randomInt(alphabet.length)]).join('');
}

const same = (a: string, b: string): boolean => a.localeCompare(b, undefined, { sensitivity: 'accent' }) === 0;

/** Exact ID matches win; otherwise names and IDs compare case-insensitively. */
function pick<T extends { id: string; title: string }>(list: T[], query: string): T[] {
  const byId = list.filter((x) => x.id === query);
  return byId.length ? byId : list.filter((x) => same(x.id, query) || same(x.title, query));
}

function parseRef(ref: string): { parts: string[]; attribute: string } | { error: string } {
  if (typeof ref !== 'string' || !ref.startsWith('op://'))
    return { error: 'secret reference is not prefixed with "op://"' };
  const [path, query] = ref.slice(5).split('?', 2) as [string, string | undefined];
  const parts = path.split('/');
  if (parts.length < 3 || parts.length > 4 || parts.some((p) => p.trim() === '')) return { error: INVALID_FORMAT };
  if (parts.some((p) => !/^[\p{L}\p{N}_.\- ]+$/u.test(p))) {
    return {
      error:
        'invalid character in secret reference: secret references must only contain alphanumeric, _, . or - characters',
    };
  }
  let attribute = 'value';
  if (query !== undefined) {
    const params = new URLSearchParams(query);
    for (const [key, value] of params) {
      if (key !== 'attribute') return { error: 'secret reference has invalid query parameter key' };
      if (!ATTRIBUTES.includes(value.toLowerCase()))
        return { error: 'secret reference has invalid query parameter value' };
      attribute = value.toLowerCase();
    }
  }
  return { parts, attribute };
}

export class VaultStore {
  private constructor(
    private readonly data: VaultFile,
    private readonly statePath: string,
  ) {}

  /** A saved state wins over the fixture, so a restarted double keeps what was written. */
  static open(fixturePath: string, statePath: string): VaultStore {
    const fromState = existsSync(statePath);
    const store = new VaultStore(readVaultFile(fromState ? statePath : fixturePath), statePath);
    if (!fromState) store.persist();
    return store;
  }

  /** Every field value in every vault (for the leak audit). */
  private allFieldValues(): string[] {
    return this.data.vaults.flatMap((v) => v.items.flatMap((i) => (i.fields ?? []).map((f) => String(f.value ?? ''))));
  }

  persist(): void {
    recordSecrets(this.allFieldValues());
    mkdirSync(dirname(this.statePath), { recursive: true });
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data, null, 2), { mode: 0o600 });
    renameSync(tmp, this.statePath);
  }

  resolve(ref: string): ResolveResult {
    const parsed = parseRef(ref);
    if ('error' in parsed) return { error: { type: 'parsing', message: parsed.error } };
    const [vaultQ, itemQ, ...rest] = parsed.parts as [string, string, ...string[]];
    const fieldQ = rest[rest.length - 1];
    const sectionQ = rest.length === 2 ? rest[0] : undefined;
    const vaults = pick(this.data.vaults, vaultQ);
    if (vaults.length === 0) return { error: { type: 'vaultNotFound' } };
    if (vaults.length > 1) return { error: { type: 'tooManyVaults' } };
    const vault = vaults[0];
    const items = pick(
      vault.items.filter((i) => (i.state ?? 'active') === 'active'),
      itemQ,
    );
    if (items.length === 0) return { error: { type: 'itemNotFound' } };
    if (items.length > 1) return { error: { type: 'tooManyItems' } };
    const item = items[0];
    let candidates = item.fields;
    if (sectionQ !== undefined) {
      // SDK 0.3.0 release notes: several matching sections are searched together, not an error.
      const sections = pick(item.sections, sectionQ);
      if (sections.length === 0) return { error: { type: 'noMatchingSections' } };
      const ids = new Set(sections.map((s) => s.id));
      candidates = candidates.filter((f) => f.sectionId !== undefined && ids.has(f.sectionId));
    }
    let fields = pick(candidates, fieldQ);
    // SDK 0.1.6 release notes (onepassword-sdk-js client/release/RELEASE-NOTES): without a section in
    // the reference, a field of the item's default section wins over same-named fields of named sections.
    if (sectionQ === undefined && fields.length > 1) {
      const inDefault = fields.filter((f) => inDefaultSection(item, f));
      if (inDefault.length === 1) fields = inDefault;
    }
    if (fields.length === 0) return { error: { type: 'fieldNotFound' } };
    if (fields.length > 1) return { error: { type: 'tooManyMatchingFields' } };
    const f = fields[0];
    const secret =
      parsed.attribute === 'id'
        ? f.id
        : parsed.attribute === 'type'
          ? String(f.fieldType).toLowerCase()
          : parsed.attribute === 'title'
            ? f.title
            : f.value;
    return { content: { secret, itemId: item.id, vaultId: vault.id } };
  }

  vaultOverviews(): Record<string, unknown>[] {
    return this.data.vaults.map((v) => ({
      id: v.id,
      title: v.title,
      description: v.description ?? '',
      vaultType: 'userCreated',
      activeItemCount: v.items.filter((i) => (i.state ?? 'active') === 'active').length,
      contentVersion: v.contentVersion ?? 1,
      attributeVersion: v.attributeVersion ?? 1,
      createdAt: v.createdAt,
      updatedAt: v.updatedAt,
    }));
  }

  listItems(vaultId: string, includeArchived = false): Record<string, unknown>[] {
    return this.vault(vaultId)
      .items.filter((i) => includeArchived || (i.state ?? 'active') === 'active')
      .map((i) => ({
        id: i.id,
        title: i.title,
        category: i.category,
        vaultId,
        websites: i.websites ?? [],
        tags: i.tags ?? [],
        createdAt: i.createdAt,
        updatedAt: i.updatedAt,
        state: i.state ?? 'active',
      }));
  }

  getItem(vaultId: string, itemId: string): StoredItem {
    const item = this.vault(vaultId).items.find((i) => i.id === itemId);
    if (!item) throw new OpError(NOT_FOUND_MESSAGE);
    return view(item, vaultId);
  }

  vaultExists(vaultId: string): boolean {
    return this.data.vaults.some((v) => v.id === vaultId);
  }

  /** items.put: the caller's copy must carry the current version, as the SDK's does. */
  putItem(input: StoredItem): StoredItem {
    const vault = this.vault(String(input.vaultId ?? ''));
    const index = vault.items.findIndex((i) => i.id === input.id);
    if (index < 0) throw new OpError(NOT_FOUND_MESSAGE);
    const current = vault.items[index];
    if (input.version !== current.version) throw new OpError(CONFLICT_MESSAGE, 'Error', 409);
    const sectioned = sectionCustomFields(input);
    validateItem(sectioned);
    const stamp = new Date().toISOString();
    const next: StoredItem = {
      ...stripVault(sectioned),
      state: current.state ?? 'active',
      createdAt: current.createdAt,
      updatedAt: stamp,
      version: current.version + 1,
    };
    vault.items[index] = next;
    touch(vault, stamp);
    this.persist();
    return view(next, vault.id);
  }

  createItem(params: Partial<StoredItem> & { vaultId?: string }): StoredItem {
    if (!params.vaultId) throw new OpError('The vault ID was not specified');
    if (!this.vaultExists(params.vaultId))
      throw new OpError('The item creation parameters contained an invalid vault id');
    const stamp = new Date().toISOString();
    const item: StoredItem = sectionCustomFields({
      id: newId(),
      title: String(params.title ?? ''),
      category: params.category ?? 'Login',
      fields: params.fields ?? [],
      sections: params.sections ?? [],
      notes: params.notes ?? '',
      tags: params.tags ?? [],
      websites: params.websites ?? [],
      files: [],
      version: 1,
      createdAt: stamp,
      updatedAt: stamp,
      state: 'active',
    });
    validateItem(item);
    const vault = this.vault(params.vaultId);
    vault.items.push(item);
    touch(vault, stamp);
    this.persist();
    return view(item, vault.id);
  }

  deleteItem(vaultId: string, itemId: string): void {
    const vault = this.vault(vaultId);
    const index = vault.items.findIndex((i) => i.id === itemId);
    if (index < 0) throw new OpError(NOT_FOUND_MESSAGE);
    vault.items.splice(index, 1);
    touch(vault, new Date().toISOString());
    this.persist();
  }

  private vault(vaultId: string): StoredVault {
    const vault = this.data.vaults.find((v) => v.id === vaultId);
    if (!vault) throw new OpError(NOT_FOUND_MESSAGE);
    return vault;
  }
}

/** The default section: no section (built-in fields), or the untitled section the SDK files custom fields in. */
export function inDefaultSection(item: Pick<StoredItem, 'sections'>, f: StoredField): boolean {
  if (f.sectionId === undefined || f.sectionId === '') return true;
  return item.sections.some((s) => s.id === f.sectionId && s.title === '');
}

// Fields each category has without a section (1Password's item templates, `op item template get`).
// Every other field is a custom field, which must live in a section.
const BUILT_IN: Record<string, string[]> = {
  Login: ['username', 'password', 'notesPlain'],
  Password: ['password', 'notesPlain'],
  ApiCredentials: ['username', 'credential', 'type', 'filename', 'validFrom', 'expires', 'hostname', 'notesPlain'],
  Database: ['type', 'hostname', 'port', 'database', 'username', 'credential', 'password', 'sid', 'alias', 'options'],
  SecureNote: ['notesPlain'],
};

/**
 * SDK 0.3.0 release notes: "The SDK now automatically adds custom fields without a section to an empty
 * section within the item, creating it if necessary" (before, items.create/put refused them with
 * "custom field with id '…' must be part of a section", the core's op_sdk_core::model::item::
 * ensure_custom_fields_in_section).
 */
function sectionCustomFields(item: StoredItem): StoredItem {
  const builtIn = new Set(BUILT_IN[String(item.category)] ?? []);
  const loose = (item.fields ?? []).filter((f) => !f.sectionId && !builtIn.has(f.id));
  if (loose.length === 0) return item;
  const sections = [...(item.sections ?? [])];
  let empty = sections.find((s) => s.title === '');
  if (!empty) {
    empty = { id: `Section_${newId()}`, title: '' };
    sections.push(empty);
  }
  const id = empty.id;
  return {
    ...item,
    sections,
    fields: item.fields.map((f) => (loose.includes(f) ? { ...f, sectionId: id } : f)),
  };
}

function validateItem(item: StoredItem): void {
  const fields: StoredField[] = Array.isArray(item.fields) ? item.fields : [];
  const sections = Array.isArray(item.sections) ? item.sections : [];
  if (new Set(sections.map((s) => s.id)).size !== sections.length) {
    throw new OpError('item contained duplicate section ids. Make sure every id is unique.');
  }
  if (new Set(fields.map((f) => f.id)).size !== fields.length) {
    throw new OpError('item contained duplicate field ids. Make sure every id is unique.');
  }
  for (const f of fields) {
    if (typeof f.value !== 'string') throw new OpError(`field ${f.id} has no string value`);
    if (f.sectionId && !sections.some((s) => s.id === f.sectionId)) {
      throw new OpError(`field ${f.id} was linked to section id '${f.sectionId}', but no section with this id exists`);
    }
  }
}

function touch(vault: StoredVault, stamp: string): void {
  vault.contentVersion = (vault.contentVersion ?? 1) + 1;
  vault.updatedAt = stamp;
}

function stripVault(item: StoredItem): StoredItem {
  const { vaultId: _ignored, ...rest } = item;
  return rest;
}

function view(item: StoredItem, vaultId: string): StoredItem {
  const { state: _state, ...rest } = item;
  return { ...structuredClone(rest), vaultId };
}
