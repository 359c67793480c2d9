// The human diff of a drift report: findings grouped by node, component, then the rest, each as
// `- want` / `+ have` lines (the shape of `omnictl apply --dry-run` and `diff -u`), then what a
// reconcile would do. Pure, so tests render the same text the CLI prints.
import type { DriftFinding } from '../../workflows/drift-types.js';

interface Report {
  cluster: string;
  checkedAt: string;
  driftId: string;
  total: number;
  checked?: number;
  findings: DriftFinding[];
}

const rank = (g: string) => (g.startsWith('node ') ? 0 : g.startsWith('component ') ? 1 : 2);
const lines = (prefix: string, text: string) =>
  text
    .split('\n')
    .map((l) => `      ${prefix} ${l}`)
    .join('\n');

export function driftView(r: Report): string {
  const head = `drift of ${r.cluster} at ${r.checkedAt}: ${r.total} finding${r.total === 1 ? '' : 's'}${r.checked !== undefined ? ` (${r.checked} objects compared)` : ''}, drift ${r.driftId}`;
  if (r.total === 0) return `${head}\nno drift: the cluster is as its config says`;
  const groups = new Map<string, DriftFinding[]>();
  for (const f of r.findings) groups.set(f.group, [...(groups.get(f.group) ?? []), f]);
  const order = [...groups.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const out = [head, ''];
  for (const g of order) {
    out.push(`${g}`);
    for (const f of groups.get(g)!) {
      out.push(`  ${f.kind}  ${f.object}`);
      out.push(lines('-', f.want));
      out.push(lines('+', f.have));
      out.push(`      → ${f.action}`);
    }
    out.push('');
  }
  out.push(`- is what the config wants, + what the cluster has. Repair: pedro-ops reconcile ${r.cluster}`);
  return out.join('\n');
}
