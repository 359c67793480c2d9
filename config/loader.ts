// Loads config/clusters/*.yaml into typed ClusterSpecs. Every problem is reported as
// "file: path.to.field: reason" so an operator can fix the file without reading a stack trace.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import AjvModule, { type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { isClusterHost, ociHostPort, registryHostPort } from './addresses.js';
import { ClusterSpecSchema, type ClusterSpec } from './schema.js';
import { findCycle } from '../workflows/dag.js';

const Ajv = AjvModule.default ?? AjvModule;
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
const validate = ajv.compile<ClusterSpec>(ClusterSpecSchema);

export const DEFAULT_CLUSTERS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), 'clusters');

export interface ConfigProblem {
  path: string;
  reason: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(problems.map((p) => `${file}: ${p.path}: ${p.reason}`).join('\n'));
    this.name = 'ConfigError';
  }
}

function pointerToPath(pointer: string): string {
  if (!pointer) return '(root)';
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
    .join('')
    .replace(/^\./, '');
}

function describe(err: ErrorObject): ConfigProblem {
  let path = pointerToPath(err.instancePath);
  let reason = err.message ?? 'is invalid';
  switch (err.keyword) {
    case 'required':
      path = pointerToPath(`${err.instancePath}/${(err.params as { missingProperty: string }).missingProperty}`);
      reason = 'is required';
      break;
    case 'additionalProperties':
      path = pointerToPath(`${err.instancePath}/${(err.params as { additionalProperty: string }).additionalProperty}`);
      reason = 'is not a known field';
      break;
    case 'pattern':
      reason = `does not match ${(err.params as { pattern: string }).pattern}`;
      break;
    case 'anyOf':
      reason = 'matches none of the allowed shapes';
      break;
  }
  return { path, reason };
}

/** 100.64.0.0/10: the shared address space Tailscale hands out (RFC 6598). */
export function inCgnat(ip: string): boolean {
  const m = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(ip);
  return m !== null && Number(m[1]) === 100 && Number(m[2]) >= 64 && Number(m[2]) <= 127;
}

/** Checks that need more than one field: references between parts of the file. */
function crossCheck(spec: ClusterSpec): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const nodeNames = new Set<string>();
  spec.nodes.forEach((n, i) => {
    if (nodeNames.has(n.name)) problems.push({ path: `nodes[${i}].name`, reason: `duplicate node name "${n.name}"` });
    nodeNames.add(n.name);
  });
  if (!spec.nodes.some((n) => n.role === 'server'))
    problems.push({ path: 'nodes', reason: 'needs at least one node with role "server"' });
  const servers = spec.nodes.filter((n) => n.role === 'server').length;
  if (servers !== 1 && servers !== 3)
    problems.push({ path: 'nodes', reason: `has ${servers} servers; use 1 or 3 (etcd quorum)` });
  spec.nodes.forEach((n, i) => {
    if (n.nodeIp && inCgnat(n.nodeIp) && !n.allowCgnatNodeIp)
      problems.push({
        path: `nodes[${i}].nodeIp`,
        reason: `${n.nodeIp} is in 100.64.0.0/10 (Tailscale/CGNAT); node-ip must be the LAN address (flannel over Tailscale broke pod traffic). Remove it to have it discovered, or set allowCgnatNodeIp: true`,
      });
  });
  if (!nodeNames.has(spec.storage.node))
    problems.push({ path: 'storage.node', reason: `names no node in nodes ("${spec.storage.node}")` });
  if (spec.openbao.threshold > spec.openbao.shares)
    problems.push({ path: 'openbao.threshold', reason: `must not exceed openbao.shares (${spec.openbao.shares})` });
  const access = spec.openbao.access;
  if (access.mode === 'url' && !spec.openbao.address)
    problems.push({ path: 'openbao.address', reason: 'is required with access.mode url' });
  if (access.mode === 'api-proxy' && spec.openbao.address)
    problems.push({ path: 'openbao.address', reason: 'is not used with access.mode api-proxy: remove it' });
  if (access.caFile && !(access.mode === 'url' && spec.openbao.address?.startsWith('https://')))
    problems.push({
      path: 'openbao.access.caFile',
      reason: 'only applies to access.mode url with an https address (the API proxy does not verify the pod)',
    });

  const componentNames = new Map<string, number>();
  spec.components.forEach((c, i) => {
    if (c.repo?.startsWith('oci://')) {
      const hostPort = ociHostPort(c.repo);
      const reg = registryHostPort(spec);
      // A registry inside the cluster (on a node, the VIP or the registry's host) must be the configured
      // one, whose plain HTTP nodes and Helm are told about; a public one (ghcr.io) speaks TLS as Helm expects.
      if (isClusterHost(spec, hostPort.replace(/:\d+$/, '')) && hostPort !== reg)
        problems.push({
          path: `components[${i}].repo`,
          reason: reg
            ? `oci registry ${hostPort} is not the configured registry ${reg}`
            : `oci registry ${hostPort} needs a registry entry (host, port, tls) so nodes and Helm know how to reach it`,
        });
    }
    if (componentNames.has(c.name))
      problems.push({ path: `components[${i}].name`, reason: `duplicate component "${c.name}"` });
    componentNames.set(c.name, i);
    if (c.values && c.valuesFile)
      problems.push({ path: `components[${i}].valuesFile`, reason: 'give values or valuesFile, not both' });
  });
  spec.components.forEach((c, i) =>
    c.dependsOn.forEach((d, j) => {
      if (!componentNames.has(d))
        problems.push({ path: `components[${i}].dependsOn[${j}]`, reason: `names no component ("${d}")` });
      if (d === c.name)
        problems.push({ path: `components[${i}].dependsOn[${j}]`, reason: 'a component cannot depend on itself' });
    }),
  );
  if (problems.length === 0) {
    const cycle = findCycle(spec.components.map((c) => ({ id: c.name, dependsOn: c.dependsOn })));
    if (cycle)
      problems.push({
        path: `components[${componentNames.get(cycle[0])}].dependsOn`,
        reason: `dependency cycle ${cycle.join(' -> ')}`,
      });
  }
  if (!componentNames.has(spec.tailscale.component))
    problems.push({ path: 'tailscale.component', reason: `names no component ("${spec.tailscale.component}")` });

  const entryIds = new Set<string>();
  spec.secrets.entries.forEach((e, i) => {
    if (entryIds.has(e.id)) problems.push({ path: `secrets.entries[${i}].id`, reason: `duplicate entry "${e.id}"` });
    entryIds.add(e.id);
    if (e.kubernetes) {
      for (const [k, v] of Object.entries(e.kubernetes.keys)) {
        if (!(v in e.fields))
          problems.push({
            path: `secrets.entries[${i}].kubernetes.keys.${k}`,
            reason: `names OpenBAO key "${v}" that fields does not define`,
          });
      }
    }
    if (e.generate && !(e.generate.field in e.fields))
      problems.push({
        path: `secrets.entries[${i}].generate.field`,
        reason: `names "${e.generate.field}" that fields does not define`,
      });
    for (const [k, ref] of Object.entries(e.fields)) {
      const vault = ref.slice('op://'.length).split('/')[0];
      if (vault.toLowerCase() !== spec.onepassword.vault.toLowerCase())
        problems.push({
          path: `secrets.entries[${i}].fields.${k}`,
          reason: `refers to vault "${vault}", not the configured vault "${spec.onepassword.vault}"`,
        });
    }
  });
  return problems;
}

export function parseClusterSpec(text: string, file: string): ClusterSpec {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, reason: e.message.split('\n')[0] })),
    );
  }
  const data = doc.toJS() as unknown;
  if (!validate(data)) {
    const seen = new Set<string>();
    const problems = (validate.errors ?? []).map(describe).filter((p) => {
      const key = `${p.path}|${p.reason}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    throw new ConfigError(file, problems);
  }
  const problems = crossCheck(data);
  if (problems.length > 0) throw new ConfigError(file, problems);
  const expected = basename(file).replace(/\.ya?ml$/, '');
  if (data.name !== expected)
    throw new ConfigError(file, [{ path: 'name', reason: `must equal the file name "${expected}"` }]);
  // Resolve valuesFile contents relative to the cluster file so workflows get plain values.
  for (const [i, c] of data.components.entries()) {
    if (c.valuesFile) {
      const p = resolve(dirname(file), c.valuesFile);
      if (!existsSync(p))
        throw new ConfigError(file, [{ path: `components[${i}].valuesFile`, reason: `file not found: ${p}` }]);
      const values = parseDocument(readFileSync(p, 'utf8')).toJS() as Record<string, unknown>;
      c.values = values ?? {};
    }
  }
  // The CA file is read by the worker: an absolute path keeps it valid wherever the spec travels.
  const ca = data.openbao.access.caFile;
  if (ca) {
    const p = resolve(dirname(file), ca);
    if (!existsSync(p))
      throw new ConfigError(file, [{ path: 'openbao.access.caFile', reason: `file not found: ${p}` }]);
    data.openbao.access.caFile = p;
  }
  return data;
}

export function loadClusterFile(file: string): ClusterSpec {
  return parseClusterSpec(readFileSync(file, 'utf8'), file);
}

/** The cluster files of a folder (`*.yaml`, `*.yml`), sorted; none when the folder is missing. */
export function clusterFiles(dir = process.env.PEDRO_OPS_CLUSTERS_DIR ?? DEFAULT_CLUSTERS_DIR): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** Loads every cluster under the folder. Throws ConfigError for the first invalid file. */
export function loadClusters(
  dir = process.env.PEDRO_OPS_CLUSTERS_DIR ?? DEFAULT_CLUSTERS_DIR,
): Map<string, ClusterSpec> {
  const clusters = new Map<string, ClusterSpec>();
  for (const file of clusterFiles(dir)) {
    const spec = loadClusterFile(file);
    clusters.set(spec.name, spec);
  }
  return clusters;
}

/** Spec summary safe to show to anyone with read access: no secret values exist in the spec anyway. */
export function summarize(spec: ClusterSpec) {
  return {
    name: spec.name,
    clusterName: spec.clusterName,
    domain: spec.domain,
    vip: spec.vip,
    lab: spec.lab ?? false,
    k3sVersion: spec.k3s.version,
    nodes: spec.nodes.map((n) => ({
      name: n.name,
      address: n.address,
      nodeIp: n.nodeIp ?? null,
      role: n.role,
      roles: n.roles,
      storage: n.storage ?? null,
    })),
    components: spec.components.map((c) => ({
      name: c.name,
      namespace: c.namespace,
      chart: c.chart,
      version: c.version,
      dependsOn: c.dependsOn,
    })),
    secretEntries: spec.secrets.entries.map((e) => e.id),
    backups: { schedule: spec.backups.schedule.cron, drill: spec.backups.drill.cron },
  };
}

/** For process entry points: validate every cluster file, print "file: path: reason" and exit 2 on a problem. */
export function validateClustersOrExit(dir?: string): Map<string, ClusterSpec> {
  try {
    return loadClusters(dir);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
