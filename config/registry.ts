// Serves every cluster under config/clusters/*.yaml, re-reading a file only when it changed, so a
// lab started after the orchestrator (npm run lab writes lab.yaml) is served without a restart.
import { statSync } from 'node:fs';
import { clusterFiles, DEFAULT_CLUSTERS_DIR, loadClusterFile } from './loader.js';
import type { ClusterSpec } from './schema.js';

export class ClusterRegistry {
  private readonly cache = new Map<string, { mtimeMs: number; spec: ClusterSpec }>();

  constructor(readonly dir: string = process.env.PEDRO_OPS_CLUSTERS_DIR ?? DEFAULT_CLUSTERS_DIR) {}

  /** All valid clusters; throws ConfigError for an invalid file so it is never served half-read. */
  all(): Map<string, ClusterSpec> {
    const out = new Map<string, ClusterSpec>();
    for (const path of clusterFiles(this.dir)) {
      let mtimeMs: number;
      try {
        mtimeMs = statSync(path).mtimeMs;
      } catch {
        continue; // removed between readdir and stat (lab shutting down)
      }
      const hit = this.cache.get(path);
      const spec = hit && hit.mtimeMs === mtimeMs ? hit.spec : loadClusterFile(path);
      this.cache.set(path, { mtimeMs, spec });
      out.set(spec.name, spec);
    }
    return out;
  }

  get(name: string): ClusterSpec | undefined {
    return this.all().get(name);
  }
}
