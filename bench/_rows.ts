// Table rows from a benchmark's result JSON. A result with a `summary` array (bench/_shared.ts
// SummaryRow) speaks for itself; provision and rotation write their own shapes, read here; anything
// else shows its top-level numbers.
import { round, type SummaryRow } from './_shared.js';

type Json = Record<string, unknown>;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

const adapters: Record<string, (r: Json) => SummaryRow[]> = {
  provision(r) {
    const wall = num(r.wallMs);
    const critical = num(r.criticalPathMs);
    const sequential = num(r.sequentialMs);
    const rows: SummaryRow[] = [];
    if (wall !== undefined)
      rows.push({
        metric: 'lab build wall time',
        value: wall,
        unit: 'ms',
        note: `${String(r.state)}, ${String(r.steps)} steps, ${String(r.components)} components, parallelism ${String(r.parallelism)}`,
      });
    if (wall !== undefined && critical !== undefined) {
      rows.push({
        metric: 'wall time vs DAG critical path',
        value: wall,
        unit: 'ms',
        baseline: { label: 'critical path', value: critical },
        ratio: num(r.wallOverCriticalPath) ?? round(wall / critical, 3),
        goal: '<= 1.15',
      });
    }
    if (wall !== undefined && sequential !== undefined) {
      rows.push({
        metric: 'sequential order (Foundry) vs wall time',
        value: sequential,
        unit: 'ms',
        baseline: { label: 'wall', value: wall },
        ratio: num(r.sequentialOverWall) ?? round(sequential / wall, 3),
        goal: '>= 2',
      });
    }
    return rows;
  },
  rotation(r) {
    const rows: SummaryRow[] = [];
    const calls = num(r.onepasswordCallsFullMap);
    if (calls !== undefined)
      rows.push({
        metric: '1Password calls, full seed map, all changed',
        value: calls,
        note: `${String(r.seedEntries)} entries, ${String(r.seedReferences)} references, ${String(r.vaults)} vault(s)`,
      });
    const unchanged = num(r.onepasswordCallsFullMapUnchanged);
    if (unchanged !== undefined) rows.push({ metric: '1Password calls, full seed map, unchanged', value: unchanged });
    const perVault = num(r.resolveAllPerVault);
    if (perVault !== undefined) rows.push({ metric: 'resolveAll calls per vault', value: perVault, goal: '1' });
    const written = num(r.msPer100Written);
    const same = num(r.msPer100Unchanged);
    if (written !== undefined)
      rows.push({ metric: '1Password -> OpenBAO, per 100 entries written', value: written, unit: 'ms' });
    if (same !== undefined) {
      rows.push({
        metric: '1Password -> OpenBAO, per 100 entries unchanged',
        value: same,
        unit: 'ms',
        ...(written ? { baseline: { label: 'written', value: written }, ratio: round(same / written) } : {}),
      });
    }
    return rows;
  },
};

export function rowsFor(name: string, result: unknown): SummaryRow[] {
  if (!result || typeof result !== 'object') return [];
  const r = result as Json;
  if (Array.isArray(r.summary)) return r.summary as SummaryRow[];
  const adapted = adapters[name]?.(r);
  if (adapted?.length) return adapted;
  return Object.entries(r)
    .filter(([, v]) => num(v) !== undefined)
    .map(([k, v]) => ({ metric: k, value: v as number }));
}
