// What the CLI prints for a person (without --json): a table of steps, the provisioning plan as a
// phase tree with its critical path, and the runs list. Pure functions of the API's JSON.
import type { StepProgress } from '../../workflows/messages.js';

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function duration(ms?: number): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export const age = (seconds: number) => duration(seconds * 1000);

const oneLine = (s?: string, max = 80) => {
  const t = (s ?? '').replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
};

interface WorkflowView {
  workflowId: string;
  type?: string;
  status: string;
  result?: unknown;
  error?: string;
  temporalWebUrl?: string;
  progress?: { state: string; phase: string; steps: StepProgress[] };
}

const verdict = (r: unknown) => {
  const o = (r && typeof r === 'object' ? r : {}) as { state?: unknown; result?: unknown };
  return typeof o.state === 'string' ? o.state : typeof o.result === 'string' ? o.result : undefined;
};

/** `status`: the run, then one row per step (state, attempts, duration, error or detail). */
export function statusView(w: WorkflowView): string {
  const p = w.progress;
  const head = [
    `${w.workflowId}  ${w.type ?? ''}  ${w.status}${p ? `  state ${p.state}  phase ${p.phase}` : ''}`.replace(
      / {3,}/g,
      '  ',
    ),
    ...(w.temporalWebUrl ? [`Temporal Web: ${w.temporalWebUrl}`] : []),
    ...(w.error ? [`error: ${oneLine(w.error, 200)}`] : []),
    ...(verdict(w.result) ? [`result: ${verdict(w.result)}`] : []),
  ];
  if (!p) return `${head.join('\n')}\n(no progress: the run does not answer the progress query)`;
  const rows = p.steps.map((s) => [
    s.id,
    s.state,
    String(s.attempts),
    duration(s.durationMs),
    oneLine(s.lastError ? `${s.lastError.type ? `${s.lastError.type}: ` : ''}${s.lastError.message}` : s.detail),
  ]);
  return `${head.join('\n')}\n\n${table(['STEP', 'STATE', 'ATTEMPTS', 'DURATION', 'ERROR / DETAIL'], rows)}`;
}

interface PlanStepView {
  id: string;
  phase: string;
  title: string;
  dependsOn?: string[];
  budgetSeconds?: number;
}
interface PlanView {
  cluster: string;
  workflowId: string;
  parallelism: number;
  criticalPathSeconds: number;
  steps: PlanStepView[];
}

/** The longest chain by budget (what bounds the build's wall time however wide the parallelism). */
export function criticalChain(steps: PlanStepView[]): string[] {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const memo = new Map<string, { cost: number; chain: string[] }>();
  const best = (id: string): { cost: number; chain: string[] } => {
    const hit = memo.get(id);
    if (hit) return hit;
    const s = byId.get(id)!;
    let prev = { cost: 0, chain: [] as string[] };
    for (const d of s.dependsOn ?? []) {
      if (!byId.has(d)) continue;
      const b = best(d);
      if (b.cost > prev.cost) prev = b;
    }
    const r = { cost: prev.cost + (s.budgetSeconds ?? 0), chain: [...prev.chain, id] };
    memo.set(id, r);
    return r;
  };
  let top = { cost: -1, chain: [] as string[] };
  for (const s of steps) {
    const b = best(s.id);
    if (b.cost > top.cost) top = b;
  }
  return top.chain;
}

/** `provision --dry-run`: phases in order, their steps with what each waits for; `*` marks the critical path. */
export function planView(plan: PlanView): string {
  const critical = new Set(criticalChain(plan.steps));
  const phases: string[] = [];
  for (const s of plan.steps) if (!phases.includes(s.phase)) phases.push(s.phase);
  const out = [
    `plan for ${plan.cluster} (workflow ${plan.workflowId}; dry run, nothing started)`,
    `${plan.steps.length} steps in ${phases.length} phases, up to ${plan.parallelism} platform steps at a time`,
    '',
  ];
  phases.forEach((phase, pi) => {
    const steps = plan.steps.filter((s) => s.phase === phase);
    const lastPhase = pi === phases.length - 1;
    out.push(`${lastPhase ? '└─' : '├─'} ${phase} (${steps.length})`);
    steps.forEach((s, si) => {
      const branch = `${lastPhase ? '   ' : '│  '}${si === steps.length - 1 ? '└─' : '├─'}`;
      const after = (s.dependsOn ?? []).length ? `  after ${s.dependsOn!.join(', ')}` : '';
      out.push(`${branch} ${critical.has(s.id) ? '*' : ' '} ${s.id}  ${s.title}${after}`);
    });
  });
  const chain = criticalChain(plan.steps);
  out.push(
    '',
    `critical path (*), about ${duration(plan.criticalPathSeconds * 1000)} at most:`,
    `  ${chain.join(' → ')}`,
  );
  return out.join('\n');
}

interface RunView {
  workflowId: string;
  cluster?: string;
  operation?: string;
  state: string;
  phase?: string;
  parked: { step: string; error?: string }[];
  ageSeconds: number;
  temporalWebUrl: string;
}

/** `runs`: one row per run; a parked run also gets the exact command that resolves it. */
export function runsView(runs: RunView[]): string {
  if (runs.length === 0) return 'no runs';
  const rows = runs.map((r) => [
    r.workflowId,
    r.operation ?? '',
    r.state,
    r.phase ?? '',
    r.parked.map((p) => p.step).join(', '),
    age(r.ageSeconds),
    r.temporalWebUrl,
  ]);
  const hints = runs
    .filter((r) => r.parked.length > 0)
    .flatMap((r) =>
      r.parked.map((p) => `  ${resolveHint(r.workflowId, p.step)}${p.error ? `   # ${oneLine(p.error, 100)}` : ''}`),
    );
  return [
    table(['WORKFLOW', 'OPERATION', 'STATE', 'PHASE', 'PARKED STEP', 'AGE', 'TEMPORAL WEB'], rows),
    ...(hints.length ? ['', 'resolve with:', ...hints] : []),
  ].join('\n');
}

const shellWord = (s: string) => (/^[A-Za-z0-9/_.:@=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export function resolveHint(workflowId: string, step: string): string {
  return `pedro-ops resolve ${shellWord(workflowId)} ${shellWord(step)} retry|skip|abort`;
}

const scalar = (v: unknown): v is string | number | boolean => ['string', 'number', 'boolean'].includes(typeof v);
const cellOf = (v: unknown): string =>
  v === undefined || v === null
    ? ''
    : scalar(v)
      ? String(v)
      : Array.isArray(v) && v.every(scalar)
        ? v.join(', ')
        : oneLine(JSON.stringify(v), 60);

/**
 * A run's final report for a person: scalar fields as `key  value`, lists of records as tables. The
 * report shapes differ per workflow (provision, rotation, drill, restore), so this reads any of them.
 */
export function reportView(report: unknown): string {
  if (!report || typeof report !== 'object') return cellOf(report);
  const entries = Object.entries(report as Record<string, unknown>).filter(([, v]) => v !== undefined && v !== null);
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  const lines: string[] = [];
  const blocks: string[] = [];
  for (const [k, v] of entries) {
    if (Array.isArray(v) && v.length > 0 && v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      const rows = v as Record<string, unknown>[];
      const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))].slice(0, 8);
      blocks.push(
        `${k}:\n${table(
          cols.map((c) => c.toUpperCase()),
          rows.map((r) => cols.map((c) => cellOf(r[c]))),
        )}`,
      );
    } else if (Array.isArray(v) && v.length === 0) continue;
    else if (v && typeof v === 'object' && !Array.isArray(v))
      lines.push(
        `${k.padEnd(width)}  ${Object.entries(v as Record<string, unknown>)
          .map(([a, b]) => `${a}=${cellOf(b)}`)
          .join('  ')}`,
      );
    else lines.push(`${k.padEnd(width)}  ${cellOf(v)}`);
  }
  return [lines.join('\n'), ...blocks].filter(Boolean).join('\n\n');
}
