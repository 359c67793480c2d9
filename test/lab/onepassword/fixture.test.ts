// The fixture holds the owner's items (REFERENCE.md) that the pedro-ops secret map and Tailscale refs
// point at, nothing the build is supposed to create itself, and none of the items the owner does not
// have (the map marks the entries that read those as pendingSource).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { fixtureSecretValues, readVaultFile } from './fixture.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/onepassword.json', import.meta.url));
const SPEC = fileURLToPath(new URL('../../../config/clusters/pedro-ops.yaml', import.meta.url));

describe('1Password fixture', () => {
  const vaults = readVaultFile(FIXTURE).vaults;
  const spec = parse(readFileSync(SPEC, 'utf8')) as {
    secrets: { entries: { fields: Record<string, string>; pendingSource?: string }[] };
    tailscale: { oauthClientIdRef: string; oauthClientSecretRef: string };
    openbao: { unsealItem: string };
  };

  it('has vault pedro with an ID and every referenced item/field', () => {
    const pedro = vaults.find((v) => v.title === 'pedro');
    expect(pedro?.id).toMatch(/^[a-z0-9]{26}$/);
    const refs = [
      ...spec.secrets.entries.filter((e) => !e.pendingSource).flatMap((e) => Object.values(e.fields)),
      spec.tailscale.oauthClientIdRef,
      spec.tailscale.oauthClientSecretRef,
    ];
    for (const ref of refs) {
      const [vault, item, field] = ref.replace('op://', '').split('/');
      expect(vault).toBe('pedro');
      const found = pedro!.items.find((i) => i.title === item);
      expect(found, ref).toBeDefined();
      expect(
        found!.fields.some((f) => f.title === field || f.id === field),
        ref,
      ).toBe(true);
    }
    expect(pedro!.items.some((i) => i.title === spec.openbao.unsealItem)).toBe(false);
    const pendingItems = new Set(
      spec.secrets.entries
        .filter((e) => e.pendingSource)
        .flatMap((e) => Object.values(e.fields).map((ref) => ref.split('/')[3])),
    );
    expect([...pendingItems].sort()).toEqual(['MOTHERDUCK_TOKEN', 'SUPABASE_DIRECT']);
    for (const item of pendingItems)
      expect(
        pedro!.items.some((i) => i.title === item),
        item,
      ).toBe(false);
  });

  it('lists unique, recognisable fake values of at least 16 characters', () => {
    const values = fixtureSecretValues(FIXTURE);
    const fieldCount = vaults.flatMap((v) => v.items.flatMap((i) => i.fields)).length;
    expect(values).toHaveLength(fieldCount);
    expect(new Set(values).size).toBe(values.length);
    for (const v of values) {
      expect(v.length).toBeGreaterThanOrEqual(16);
      expect(v).toMatch(/^lab-secret-[a-z0-9-]+-[0-9a-f]{12}$/);
    }
    expect(() => fixtureSecretValues('/nonexistent/fixture.json')).toThrow();
  });
});
