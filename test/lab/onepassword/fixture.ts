// The on-disk shape of the 1Password double's vaults (fixture and persisted state share it) and
// the helper leak tests use to know every secret value the lab can hand out.
import { readFileSync } from 'node:fs';
import type { ItemCategory, ItemFieldType } from '@1password/sdk';

export interface StoredField {
  id: string;
  title: string;
  fieldType: ItemFieldType | `${ItemFieldType}`;
  value: string;
  sectionId?: string;
}
export interface StoredItem {
  id: string;
  title: string;
  category: ItemCategory | `${ItemCategory}`;
  vaultId?: string; // implied by the enclosing vault on disk
  fields: StoredField[];
  sections: { id: string; title: string }[];
  notes: string;
  tags: string[];
  websites: unknown[];
  files: unknown[];
  version: number;
  createdAt: string; // ISO; the client revives it to Date like the SDK
  updatedAt: string;
  state?: 'active' | 'archived';
}
export interface StoredVault {
  id: string;
  title: string;
  description?: string;
  createdAt: string;
  updatedAt: string;
  contentVersion?: number;
  attributeVersion?: number;
  items: StoredItem[];
}
export interface VaultFile {
  vaults: StoredVault[];
}

export function readVaultFile(path: string): VaultFile {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as VaultFile;
  if (!parsed || !Array.isArray(parsed.vaults)) throw new Error(`${path}: expected {"vaults": [...]}`);
  return parsed;
}

/** Every field value in the fixture, for scanning histories, logs and API output for leaks. */
export function fixtureSecretValues(fixturePath: string): string[] {
  const values = new Set<string>();
  for (const vault of readVaultFile(fixturePath).vaults) {
    for (const item of vault.items) for (const field of item.fields) if (field.value) values.add(field.value);
  }
  return [...values];
}
