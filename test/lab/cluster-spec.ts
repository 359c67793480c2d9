// The lab's cluster definition: the real pedro-ops file (components, dependencies, secret map,
// backup policy) with only the edges moved to the lab — addresses, ports, pinned host keys, the
// stand-in installer and short timeouts. Deriving it keeps the lab honest: a change to the real
// config is exercised by the lab without anyone copying it.
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { loadClusterFile } from '../../config/loader.js';
import { lockPathFor, readChartLock } from '../../activities/components/chart-lock.js';
import type { ClusterSpec } from '../../config/schema.js';
import { K3S_INSTALL_SCRIPT } from './nodes/index.js';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '../..');
export const PEDRO_OPS_FILE = join(REPO_ROOT, 'config/clusters/pedro-ops.yaml');
export const LAB_CLUSTER_NAME = 'lab';

export interface LabSpecNode {
  name: string;
  host: string;
  port: number;
  hostKey: string;
}

export interface LabSpecParts {
  kube: { host: string; port: number };
  /** The lab's VIP (answers only while kube-vip leads); default: the apiserver's own address. */
  vip?: string;
  nodes: LabSpecNode[];
  sshKeyPath: string;
  /** The lab's S3 object store: the BSL's publicUrl (reachable from the worker, unlike s3Url). */
  objectStoreUrl?: string;
  onepasswordUrl: string;
  installScript?: string;
  /** Where the orchestrator should keep the fetched kubeconfig (inside the lab dir, so stop() removes it). */
  kubeconfigPath?: string;
}

/** Real timeouts are sized for real Helm installs; the lab's controllers finish in seconds. Keeps the ratio
 * (Airbyte stays the slowest) so ordering-by-timeout logic sees the same shape. */
export function labTimeout(realSeconds: number): number {
  return Math.max(60, Math.round(realSeconds / 10));
}

export function labClusterSpec(parts: LabSpecParts, base: ClusterSpec = loadClusterFile(PEDRO_OPS_FILE)): ClusterSpec {
  const spec = structuredClone(base);
  const byName = new Map(parts.nodes.map((n) => [n.name, n]));
  const missing = spec.nodes.filter((n) => !byName.has(n.name)).map((n) => n.name);
  if (missing.length > 0) throw new Error(`lab has no node for ${missing.join(', ')}`);
  const server = spec.nodes.find((n) => n.role === 'server');

  spec.name = LAB_CLUSTER_NAME;
  spec.lab = true;
  spec.clusterName = 'pedro-ops-lab';
  spec.vip = parts.vip ?? parts.kube.host;
  spec.k3s = { ...spec.k3s, apiPort: parts.kube.port, installScript: parts.installScript ?? K3S_INSTALL_SCRIPT };
  const serverPort = byName.get(server?.name ?? spec.nodes[0].name)!.port;
  spec.ssh = { user: 'root', port: serverPort, privateKey: parts.sshKeyPath, connectTimeoutSeconds: 5 };
  spec.nodes = spec.nodes.map(({ nodeIp: _realLan, ...n }) => {
    const lab = byName.get(n.name)!;
    return {
      ...n,
      // no nodeIp: the real config pins none either, so the lab's build discovers each node's LAN
      // address through `ip` (nodes/shims/ip) exactly as it would on the owner's machines
      address: lab.host,
      port: lab.port,
      user: 'root',
      hostKey: hostKeyLine(lab.hostKey),
    };
  });
  // Preflight stays the real one: the nodes' default facts (4 CPUs, 8 GiB, 100 GiB, the real package
  // list) pass it, and tests lower one node's facts through the control API to see it refuse.
  spec.preflight = structuredClone(base.preflight);
  spec.components = spec.components.map((c) => ({ ...c, timeoutSeconds: labTimeout(c.timeoutSeconds) }));
  // OpenBAO is reached the way the real config says. Its double answers only where a real OpenBAO would:
  // at its pod, through the apiserver's egress (kube/tunnel.ts). A hostname in the config has no Ingress
  // or route in front of it (openbao-helm: ingress.enabled false), so in the lab it names a port where
  // nothing listens (the real name is never looked up: no traffic leaves the lab).
  if (spec.openbao.address) spec.openbao = { ...spec.openbao, address: `https://${parts.kube.host}:1` };
  if (parts.objectStoreUrl) spec.backups = { ...spec.backups, publicUrl: parts.objectStoreUrl };
  spec.onepassword = { vault: 'pedro', tokenEnv: 'OP_SERVICE_ACCOUNT_TOKEN', labUrl: parts.onepasswordUrl };
  if (parts.kubeconfigPath) spec.kubernetes = { ...spec.kubernetes, kubeconfigPath: parts.kubeconfigPath };
  return spec;
}

/** known_hosts style "type base64" only: the schema pins the key, not its comment. */
function hostKeyLine(line: string): string {
  const [type, key] = line.trim().split(/\s+/);
  if (!type || !key) throw new Error(`node host key is not "type base64": ${JSON.stringify(line)}`);
  return `${type} ${key}`;
}

/**
 * Writes the spec as YAML and proves it loads: the orchestrator reads the same file through
 * loadClusterFile, so a lab spec the schema rejects must fail here, not in a workflow.
 * The file name must equal spec.name (the loader's rule).
 */
export function writeClusterFile(spec: ClusterSpec, file: string): ClusterSpec {
  if (basename(file).replace(/\.ya?ml$/, '') !== spec.name)
    throw new Error(`cluster file ${file} must be named ${spec.name}.yaml`);
  mkdirSync(dirname(file), { recursive: true });
  const text = `# Written by the lab (test/lab); deleted when the lab stops. Do not edit.\n${stringify(spec, { lineWidth: 0 })}`;
  // Write-then-rename so an orchestrator polling the folder never reads half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
  return loadClusterFile(file);
}

/**
 * HelmChart name -> what its install creates: the chart lock's render of the real chart
 * (config/clusters/pedro-ops.charts-lock.json), found by component and chart name. The lab's edges
 * (addresses, the BSL's publicUrl) change no object a chart renders, so the real cluster's lock is the
 * lab's. A test that pins another version of the chart gets the same render (the lab has no other).
 */
export function componentWorkloads(spec: ClusterSpec, lock = readChartLock(lockPathFor(PEDRO_OPS_FILE))) {
  return Object.fromEntries(
    spec.components.map((c) => {
      const e = lock?.components[c.name];
      // A chart the lock maker could not get at all (eleduck-jobs: the owner's chart, pulled from the
      // cluster's own Zot; config marks it pendingChart) has no render to play: the lab falls back to
      // its config workloads. A chart that does not template fails its install, as Helm does.
      const render =
        !e || e.chart !== c.chart || (!e.render.ok && e.render.missing)
          ? undefined
          : e.render.ok
            ? { objects: e.render.objects }
            : { error: e.render.error };
      return [c.name, { namespace: c.namespace, workloads: c.workloads, storage: c.usesStorage, render }];
    }),
  );
}
