// The cluster's own addresses, as the config names them. Shared by the loader (an oci:// repository
// inside the cluster must be the configured registry), the HelmChart (plain HTTP only to that registry)
// and the chart lock (never contacts an address inside the cluster).
import type { ClusterSpec } from './schema.js';

/** `host[:port]` of an `oci://host[:port]/path` repository. */
export const ociHostPort = (repo: string): string => repo.slice('oci://'.length).split('/')[0];

/** The cluster's registry as `host:port`, when one is configured. */
export const registryHostPort = (spec: ClusterSpec): string | undefined =>
  spec.registry ? `${spec.registry.host}:${spec.registry.port}` : undefined;

/** Whether `host` (no port) is the cluster's own: its registry's host, its VIP or a node. */
export const isClusterHost = (spec: ClusterSpec, host: string): boolean =>
  [spec.registry?.host, spec.vip, ...spec.nodes.map((n) => n.address)].includes(host);
