// Pure dependency-graph helpers shared by the config loader (cycle check) and the provisioning
// workflow (what may start now). No I/O, deterministic: safe inside workflow code.

export interface DagNode {
  id: string;
  dependsOn: string[];
}

/** Returns one cycle as [a, b, ..., a], or null when the graph is acyclic. */
export function findCycle(nodes: DagNode[]): string[] | null {
  const deps = new Map(nodes.map((n) => [n.id, n.dependsOn]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | null => {
    const s = state.get(id);
    if (s === 'done') return null;
    if (s === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const d of deps.get(id) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    state.set(id, 'done');
    return null;
  };
  for (const n of nodes) {
    const c = visit(n.id);
    if (c) return c;
  }
  return null;
}

/** Ids whose dependencies are all in `done` and that are neither done nor running/blocked. */
export function readyNodes(nodes: DagNode[], done: ReadonlySet<string>, excluded: ReadonlySet<string>): string[] {
  return nodes
    .filter((n) => !done.has(n.id) && !excluded.has(n.id) && n.dependsOn.every((d) => done.has(d)))
    .map((n) => n.id);
}

/** All transitive dependents of `id` (what must wait when `id` is stuck). */
export function dependentsOf(nodes: DagNode[], id: string): string[] {
  const out = new Set<string>();
  let frontier = [id];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const n of nodes) {
      if (!out.has(n.id) && n.dependsOn.some((d) => frontier.includes(d))) {
        out.add(n.id);
        next.push(n.id);
      }
    }
    frontier = next;
  }
  return [...out];
}

/** Topological layers: layer k holds nodes whose longest dependency chain has length k. */
export function layers(nodes: DagNode[]): string[][] {
  const depth = new Map<string, number>();
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const d = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    const n = byId.get(id);
    const v = n && n.dependsOn.length > 0 ? 1 + Math.max(...n.dependsOn.map(d)) : 0;
    depth.set(id, v);
    return v;
  };
  const out: string[][] = [];
  for (const n of nodes) (out[d(n.id)] ??= []).push(n.id);
  return out;
}

/** Length of the longest weighted path (the lower bound for a build with unlimited parallelism). */
export function criticalPath(nodes: DagNode[], weight: (id: string) => number): number {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const memo = new Map<string, number>();
  const finish = (id: string): number => {
    const m = memo.get(id);
    if (m !== undefined) return m;
    const n = byId.get(id);
    const v = weight(id) + (n && n.dependsOn.length > 0 ? Math.max(...n.dependsOn.map(finish)) : 0);
    memo.set(id, v);
    return v;
  };
  return Math.max(0, ...nodes.map((n) => finish(n.id)));
}
