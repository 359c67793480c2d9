// What activities are built from. Every external system is injected so tests and the lab can
// swap endpoints; the defaults build real clients from the cluster spec.
import type { ClusterSpec } from '../config/schema.js';
import { ClusterRegistry } from '../config/registry.js';
import { ErrorType, nonRetryable } from '../workflows/failures.js';
import { kubeForCluster, type KubePort } from './kube/client.js';
import { onePasswordForCluster, type OnePasswordPort } from './onepassword/client.js';
import { openbaoClient, type VaultClient } from './openbao/client.js';
import { createSshConnector, KnownHosts, type SshConnector } from './ssh/client.js';
import { join } from 'node:path';

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export interface ActivityDeps {
  clusters: ClusterRegistry;
  /** Worker-owned folder: kubeconfigs (0600) and other non-secret state files. */
  dataDir: string;
  log: Logger;
  ssh: SshConnector;
  kube: (spec: ClusterSpec) => KubePort;
  onepassword: (spec: ClusterSpec) => Promise<OnePasswordPort>;
  openbao: (spec: ClusterSpec, token?: string) => Promise<VaultClient>;
}

export function defaultDeps(opts: { dataDir: string; log: Logger; clusters?: ClusterRegistry }): ActivityDeps {
  return {
    clusters: opts.clusters ?? new ClusterRegistry(),
    dataDir: opts.dataDir,
    log: opts.log,
    ssh: createSshConnector({ knownHosts: new KnownHosts(join(opts.dataDir, 'known_hosts')) }),
    kube: (spec) => kubeForCluster(spec, opts.dataDir),
    onepassword: (spec) => onePasswordForCluster(spec),
    openbao: (spec, token) => openbaoClient(spec, opts.dataDir, token),
  };
}

export function clusterOrFail(deps: ActivityDeps, name: string): ClusterSpec {
  const spec = deps.clusters.get(name);
  if (!spec) throw nonRetryable(ErrorType.NotFound, `unknown cluster "${name}"`);
  return spec;
}
