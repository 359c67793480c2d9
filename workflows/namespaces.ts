// Which namespaces a Velero Backup (or Restore) covers, by Velero's own rule, so a drill and a DR plan
// judge coverage as Velero will restore it. Pure: used by workflows and activities alike.
// Velero pkg/util/collections/includes_excludes.go, IncludesExcludes.ShouldInclude:
//   if excludes.match(s) { return false }
//   return includes.Len() == 0 || includes.Has("*") || includes.match(s)
// where match() compiles every entry with github.com/gobwas/glob (no separators): `*` any run of
// characters, `?` one character, `[abc]`/`[a-z]`/`[!abc]` classes, `{a,b}` alternatives, `\` escapes.

const cache = new Map<string, RegExp>();

/** A gobwas/glob pattern (compiled without separators) as an anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  const hit = cache.get(pattern);
  if (hit) return hit;
  let out = '';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) out += escape(pattern[++i]);
    else if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, (m) => `\\${m}`)}]`;
      i = end;
    } else if (c === '{') {
      depth++;
      out += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      out += ')';
    } else if (c === ',' && depth > 0) out += '|';
    else out += escape(c);
  }
  const re = new RegExp(`^${out}${')'.repeat(depth)}$`);
  cache.set(pattern, re);
  return re;
}

const escape = (c: string) => c.replace(/[.*+?^${}()|[\]\\/-]/g, (m) => `\\${m}`);

const matches = (patterns: string[], ns: string) =>
  patterns.some((p) => {
    try {
      return globToRegExp(p).test(ns);
    } catch {
      return false; // Velero: a pattern that does not compile matches nothing
    }
  });

/** Velero's ShouldInclude for one namespace. */
export function namespaceIncluded(ns: string, included: string[] = [], excluded: string[] = []): boolean {
  if (matches(excluded, ns)) return false;
  return included.length === 0 || included.includes('*') || matches(included, ns);
}

/** The namespaces of `want` that a backup with these includes/excludes does not hold. */
export function namespacesNotCovered(
  b: { includedNamespaces: string[]; excludedNamespaces?: string[] },
  want: string[],
): string[] {
  return want.filter((ns) => !namespaceIncluded(ns, b.includedNamespaces, b.excludedNamespaces ?? []));
}
