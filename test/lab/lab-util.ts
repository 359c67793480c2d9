// The lab's bookkeeping: counters relative to a baseline, an admin kubeconfig, and the proof that
// stop() left nothing behind (no process, no mount, no dir).
import { readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { stringify } from 'yaml';
import type { LabCounters } from './control.js';

/** A JSON scalar as text (as Go's weak decoding reads "2" and 2 alike); anything else is `dflt`. */
export function scalarText(v: unknown, dflt = ''): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : dflt;
}

export function kubeconfigYaml(kube: { url: string; caPem: string; token: string }): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'lab',
        cluster: { server: kube.url, 'certificate-authority-data': Buffer.from(kube.caPem).toString('base64') },
      },
    ],
    users: [{ name: 'lab', user: { token: kube.token } }],
    contexts: [{ name: 'lab', context: { cluster: 'lab', user: 'lab' } }],
    'current-context': 'lab',
  });
}

type Num = Record<string, number>;
const minus = (a: Num, b: Num | undefined): Num =>
  Object.fromEntries(
    Object.entries(a)
      .map(([k, v]) => [k, v - (b?.[k] ?? 0)] as const)
      .filter(([, v]) => v !== 0),
  );

/** Pieces count from their start; tests want only their own effects, so counters are relative to a baseline. */
export function subtractCounters(cur: LabCounters, base: LabCounters): LabCounters {
  const flat = <T extends object>(c: T, b: T | undefined) =>
    Object.fromEntries(
      Object.entries(c).map(([k, v]) => [
        k,
        typeof v === 'number' ? v - ((b as Record<string, number> | undefined)?.[k] ?? 0) : v,
      ]),
    ) as T;
  const nodes = Object.fromEntries(Object.entries(cur.nodes).map(([name, c]) => [name, flat(c, base.nodes[name])]));
  return {
    nodes,
    kube: { writes: minus(cur.kube.writes, base.kube.writes), restarts: minus(cur.kube.restarts, base.kube.restarts) },
    openbao: { ...flat(cur.openbao, base.openbao), byPath: minus(cur.openbao.byPath, base.openbao.byPath) },
    onepassword: flat(cur.onepassword, base.onepassword),
  };
}

/** Mounts visible in this namespace below the lab dir: removing the dir through one would delete the mount's source. */
function mountsUnder(dir: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  return lines.map((l) => l.split(' ')[4]).filter((m) => m && (m === dir || m.startsWith(`${dir}/`)));
}

/** Processes that belong to the lab dir: the node namespace holders (cwd there), sshd and every session
 * (chrooted there), and anything whose command line names it. Found by pid, so stop() can prove none is left. */
export function labProcesses(dir: string): number[] {
  const inDir = (p: string) => p === dir || p.startsWith(`${dir}/`);
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir) || inDir(readlinkSync(`/proc/${p}/root`)) || inDir(readlinkSync(`/proc/${p}/cwd`)))
        pids.push(Number(p));
    } catch {
      // exited while we looked, or a kernel thread
    }
  }
  return pids;
}

export async function removeLabDir(dir: string): Promise<string[]> {
  const problems: string[] = [];
  // The pieces stop their own processes; session children may need a moment to notice their sshd is gone.
  for (let i = 0; i < 20 && labProcesses(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  // Anything still running is a leak worth naming, then ending.
  for (const pid of labProcesses(dir)) {
    problems.push(`process ${pid} still ran after stop (killed)`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const mounts = mountsUnder(dir);
  if (mounts.length > 0) {
    problems.push(`mounts left under ${dir}: ${mounts.join(', ')} (dir kept so nothing behind them is deleted)`);
    return problems;
  }
  rmSync(dir, { recursive: true, force: true });
  return problems;
}
