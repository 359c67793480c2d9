// Every field value in a 1Password fixture or state file, for leak scans (logs, histories, API
// responses must contain none of them). Walks the JSON rather than one schema so the scan keeps
// working if the double's file layout grows.
const TOO_COMMON = 4; // shorter strings ("5432", "true") would match everywhere and prove nothing

export function collectSecretValues(doc: unknown): string[] {
  const out = new Set<string>();
  const walk = (v: unknown, key?: string) => {
    if (Array.isArray(v)) v.forEach((x) => walk(x, key));
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      // Field objects: { id/title, fieldType|type, value }; only concealed/text values are secrets, but a
      // username or host in the fixture is still test data nobody should see in a log.
      for (const [k, x] of Object.entries(o)) walk(x, k);
    } else if (typeof v === 'string' && key === 'value' && v.length > TOO_COMMON) out.add(v);
  };
  walk(doc);
  return [...out];
}
