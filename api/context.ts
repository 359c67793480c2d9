// What route modules get: the Temporal client, settings and the cluster registry. Routes never
// touch infrastructure themselves (DESIGN: the API is a thin front door).
import type { Client } from '@temporalio/client';
import type { ClusterRegistry } from '../config/registry.js';
import type { ClusterSpec } from '../config/schema.js';
import type { TemporalSettings } from '../worker/settings.js';
import { notFound } from './errors.js';

export interface AppContext {
  client: Client;
  settings: TemporalSettings;
  clusters: ClusterRegistry;
}

export function clusterOr404(ctx: AppContext, name: string): ClusterSpec {
  const spec = ctx.clusters.get(name);
  if (!spec) throw notFound(`unknown cluster "${name}"`, { cluster: name });
  return spec;
}

/** Who made the request (set by the auth layer); recorded in every started workflow's memo. */
export function identityOf(req: { identity?: { name: string } } | object): string {
  return (req as { identity?: { name: string } }).identity?.name ?? 'anonymous';
}
