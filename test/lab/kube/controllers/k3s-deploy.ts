// k3s's deploy controller (k3s-io/k3s pkg/deploy/controller.go), which the stand-in on the nodes has
// no process for: while k3s runs as a server on a node, every file in that node's
// /var/lib/rancher/k3s/server/manifests with a .yaml/.yml/.json name (no dotfiles, none with a
// `<name>.skip` beside it) is applied to the cluster, all at k3s start and then whenever its mtime
// changes. What it copies and what it leaves out:
// - k3s polls every 15 s (`time.After(15 * time.Second)`); the lab every second, so tests wait less.
// - k3s tracks each file in an Addon (k3s.cattle.io/v1, named after the basename up to its first dot)
//   and applies with wrangler's apply; the lab's apiserver has no Addon CRD, so the lab keeps the
//   checksum itself and applies each object server-side (field manager "deploy"). Pruning of objects
//   removed from a file is not copied.
// The node's private root is readable on the host (test/lab/README.md, Nodes: rootDir), and its k3s unit state is
// the systemctl shim's file.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { LabApi, KObj } from '../lab-api.js';
import { pathOf } from '../lab-api.js';

export const MANIFESTS_DIR = 'var/lib/rancher/k3s/server/manifests';

/** Kind → resource (plural). The kinds a manifests folder holds here; an unknown kind is an error event. */
export function pluralOf(kind: string): string {
  const k = kind.toLowerCase();
  if (k.endsWith('y')) return `${k.slice(0, -1)}ies`;
  if (k.endsWith('s')) return `${k}es`;
  return `${k}s`;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

export class K3sDeployController {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** node -> file -> mtime applied ('' after k3s stopped: the next start applies everything again). */
  private readonly seen = new Map<string, Map<string, number>>();
  readonly errors: string[] = [];

  constructor(
    private readonly api: LabApi,
    private readonly nodes: () => { name: string; rootDir: string }[],
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  start(): void {
    const tick = async () => {
      try {
        await this.sync();
      } catch (err) {
        this.log(`k3s deploy: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), 1000);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async sync(): Promise<void> {
    for (const n of this.nodes()) {
      const state = join(n.rootDir, 'var/lib/lab/units/k3s.state');
      const active = existsSync(state) && readFileSync(state, 'utf8').trim() === 'active';
      if (!active) {
        // k3s starts with force=true: after a restart every file is applied again
        this.seen.delete(n.name);
        continue;
      }
      const seen = this.seen.get(n.name) ?? new Map<string, number>();
      this.seen.set(n.name, seen);
      const dir = join(n.rootDir, MANIFESTS_DIR);
      if (!existsSync(dir)) continue;
      const names = readdirSync(dir).sort();
      const skips = new Set(names.filter((f) => f.endsWith('.skip')).map((f) => f.slice(0, -'.skip'.length)));
      for (const f of names) {
        if (f.startsWith('.') || skips.has(f) || !/\.(ya?ml|json)$/.test(f)) continue;
        const path = join(dir, f);
        const mtime = statSync(path).mtimeMs;
        if (seen.get(f) === mtime) continue;
        const content = readFileSync(path, 'utf8');
        try {
          await this.apply(content);
          seen.set(f, mtime);
          this.log(
            `k3s deploy: applied ${f} on ${n.name} (${createHash('sha256').update(content).digest('hex').slice(0, 8)})`,
          );
        } catch (err) {
          // k3s logs "Failed to process config" and tries again on the next pass
          const msg = `failed to process ${path}: ${err instanceof Error ? err.message : String(err)}`;
          if (this.errors.at(-1) !== msg) this.errors.push(msg);
        }
      }
    }
  }

  private async apply(content: string): Promise<void> {
    for (const doc of parseAllDocuments(content)) {
      const obj = doc.toJSON() as KObj | null;
      if (!obj?.kind || !obj.apiVersion) continue;
      const ns = CLUSTER_SCOPED.has(obj.kind) ? undefined : (obj.metadata?.namespace ?? 'default');
      const path = `${pathOf(obj.apiVersion, pluralOf(obj.kind), ns, obj.metadata.name)}?fieldManager=deploy&force=true`;
      await this.api.must('PATCH', path, obj, 'application/apply-patch+yaml');
    }
  }
}
