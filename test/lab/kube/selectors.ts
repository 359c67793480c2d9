// labelSelector / fieldSelector query parameters, with the apiserver's syntax:
// `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, comma = AND.
import { badRequest } from './errors.js';
import type { KObj } from './util.js';

type Requirement = (labels: Record<string, string>) => boolean;

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  return parts.map((p) => p.trim()).filter(Boolean);
}

export function parseLabelSelector(s: string | null): Requirement {
  if (!s) return () => true;
  const reqs = splitTopLevel(s).map((term): Requirement => {
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m) {
      const [, k, op, list] = m;
      const values = list
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
      return op === 'in' ? (l) => k in l && values.includes(l[k]) : (l) => !(k in l) || !values.includes(l[k]);
    }
    m = /^([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)$/.exec(term);
    if (m) {
      const [, k, op, v] = m;
      return op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v;
    }
    m = /^(!?)([\w./-]+)$/.exec(term);
    if (m) {
      const [, not, k] = m;
      return not ? (l) => !(k in l) : (l) => k in l;
    }
    throw badRequest(`unable to parse requirement: ${JSON.stringify(term)}`);
  });
  return (labels) => reqs.every((r) => r(labels));
}

/** Field selectors over dotted paths (metadata.name, metadata.namespace, status.phase, spec.nodeName). */
export function parseFieldSelector(s: string | null): (o: KObj) => boolean {
  if (!s) return () => true;
  const reqs = splitTopLevel(s).map((term) => {
    const m = /^([\w.]+)\s*(!=|==|=)\s*(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid selector: '${term}'; can't understand '${term}'`);
    const [, path, op, v] = m;
    return (o: KObj) => {
      const actual = path.split('.').reduce<unknown>((acc, p) => (acc as Record<string, unknown> | undefined)?.[p], o);
      const str = actual === undefined || actual === null ? '' : String(actual);
      return op === '!=' ? str !== v : str === v;
    };
  });
  return (o) => reqs.every((r) => r(o));
}
