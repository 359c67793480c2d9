// Node drift: per node, over SSH, the k3s version and service state and the two files k3s reads at
// start, compared with exactly what prepare would write (its own renderers, k3sConfig and
// registriesYaml, with the node-ip prepare would resolve and the etcd-s3 keys it reads); then the Node object k3s registered: its
// name, InternalIP, the config's labels and taints nobody declared. Read-only everywhere.
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../deps.js';
import type { KubeObject } from '../kube/client.js';
import { shellQuote } from '../ssh/client.js';
import { withSession } from '../ssh/session.js';
import { resolveNodeIp } from '../ssh/node-ip.js';
import { K3S_CONFIG_PATH, K3S_REGISTRIES_PATH, k3sConfig, registriesYaml, resolveEtcdS3Keys } from '../ssh/prepare.js';
import { observeK3s } from '../k3s/install.js';
import { beat } from '../heartbeat.js';
import type { DriftFinding, DriftObservation } from '../../workflows/drift-types.js';

type NodeObj = KubeObject & {
  spec?: { taints?: { key: string; value?: string; effect: string }[] };
  status?: { addresses?: { type: string; address: string }[] };
};

/**
 * Taints the node lifecycle controller and the kubelet set from the node's condition (upstream
 * kubernetes pkg/controller/nodelifecycle, k8s.io/api/core/v1 well_known_taints.go): state, not
 * configuration. A stopped k3s shows as k3s-service; these would only repeat it.
 */
const CONDITION_TAINT = /^node\.(kubernetes\.io|cloudprovider\.kubernetes\.io)\//;

/** A line that may carry a credential (a hand-added `token:` in config.yaml) shows its key only. */
const SECRETISH = /(token|secret|password|passwd|key)\s*:/i;
const redact = (line: string) => (SECRETISH.test(line) ? `${line.split(':')[0]}: <redacted>` : line);

/** The lines of `want` that `have` lacks and the other way round, credentials redacted. */
export function fileDiff(want: string, have: string | undefined): { want: string; have: string } {
  if (have === undefined)
    return { want: `${K3S_MANAGED} (${want.split('\n').filter(Boolean).length} lines)`, have: '(absent)' };
  const w = want.replace(/\n$/, '').split('\n');
  const h = have.replace(/\n$/, '').split('\n');
  const missing = w.filter((l) => !h.includes(l)).map(redact);
  const extra = h.filter((l) => !w.includes(l)).map(redact);
  return {
    want: missing.length ? missing.join('\n') : '(only the lines prepare writes)',
    have: extra.length ? extra.join('\n') : '(lines missing or reordered)',
  };
}
const K3S_MANAGED = 'the file prepare writes';

async function observeNode(deps: ActivityDeps, spec: ClusterSpec, node: NodeSpec) {
  return withSession(deps, spec, node, async (s) => {
    beat({ node: node.name, step: 'drift: k3s and its files' });
    const k3s = await observeK3s(s, node);
    const nodeIp = await resolveNodeIp(s, node);
    const read = async (path: string) => {
      const r = await s.exec(`cat ${shellQuote(path)} 2>/dev/null`);
      return r.code === 0 ? r.stdout : undefined;
    };
    return { k3s, nodeIp, config: await read(K3S_CONFIG_PATH), registries: await read(K3S_REGISTRIES_PATH) };
  });
}

export async function nodeDrift(deps: ActivityDeps, spec: ClusterSpec, node: NodeSpec): Promise<DriftObservation> {
  const group = `node ${node.name}`;
  const findings: DriftFinding[] = [];
  const add = (f: Omit<DriftFinding, 'group'>) => findings.push({ group, ...f });
  const svc = node.role === 'server' ? 'k3s' : 'k3s-agent';
  const seen = await observeNode(deps, spec, node);
  // prepare writes a server's etcd-s3 keys from 1Password into config.yaml: the same keys here, or
  // every server with snapshots configured would show its S3 lines as drift (values stay redacted).
  const s3Keys = node.role === 'server' ? await resolveEtcdS3Keys(deps, spec) : undefined;

  if (seen.k3s.version !== spec.k3s.version)
    add({
      kind: 'k3s-version',
      object: `k3s on ${node.name}`,
      want: spec.k3s.version,
      have: seen.k3s.version || '(not installed)',
      action: `run the k3s installer at ${spec.k3s.version}`,
      repair: { step: 'k3s', node: node.name },
    });
  if (!seen.k3s.active)
    add({
      kind: 'k3s-service',
      object: `service ${svc} on ${node.name}`,
      want: 'active',
      have: seen.k3s.state,
      action: `start ${svc} (the install step starts a stopped service)`,
      repair: { step: 'k3s', node: node.name },
    });
  const files: [DriftFinding['kind'], string, string | undefined, string | undefined][] = [
    ['k3s-config', K3S_CONFIG_PATH, k3sConfig(spec, node, seen.nodeIp, s3Keys), seen.config],
    ['k3s-registries', K3S_REGISTRIES_PATH, registriesYaml(spec), seen.registries],
  ];
  for (const [kind, path, want, have] of files) {
    if (want === undefined || have?.replace(/\n$/, '') === want.replace(/\n$/, '')) continue;
    add({
      kind,
      object: `file ${path} on ${node.name}`,
      ...fileDiff(want, have),
      action: `rewrite ${path} as prepare does, then restart ${svc} (k3s reads it only at start)`,
      repair: { step: 'prepare-node', node: node.name },
    });
  }

  // The Node object: what k3s registered from those files.
  const kube = deps.kube(spec);
  const obj = await kube.read<NodeObj>('v1', 'Node', node.name);
  if (!obj) {
    const all = await kube.list<NodeObj>('v1', 'Node');
    const other = all.find((n) =>
      n.status?.addresses?.some((a) => a.type === 'InternalIP' && a.address === seen.nodeIp),
    );
    add({
      kind: 'node-name',
      object: `Node ${node.name}`,
      want: `registered as ${node.name}`,
      have: other ? `registered as ${other.metadata?.name} (node-ip ${seen.nodeIp})` : 'not registered',
      action: `rewrite config.yaml (node-name ${node.name}) and restart ${svc}`,
      repair: { step: 'prepare-node', node: node.name },
    });
    return { findings, checked: 5 };
  }
  const ip = obj.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  if (ip !== seen.nodeIp)
    add({
      kind: 'node-ip',
      object: `Node ${node.name} InternalIP`,
      want: seen.nodeIp,
      have: ip ?? '(none)',
      action: `rewrite config.yaml (node-ip ${seen.nodeIp}) and restart ${svc}`,
      repair: { step: 'prepare-node', node: node.name },
    });
  const labels = obj.metadata?.labels ?? {};
  const wrong = Object.entries(node.labels ?? {}).filter(([k, v]) => labels[k] !== v);
  if (wrong.length > 0)
    add({
      kind: 'node-labels',
      object: `Node ${node.name} labels`,
      want: wrong.map(([k, v]) => `${k}=${v}`).join(', '),
      have: wrong.map(([k]) => (k in labels ? `${k}=${labels[k]}` : `${k} absent`)).join(', '),
      // k3s applies --node-label only when the node registers (docs.k3s.io/cli/agent "Node labels and
      // taints"), so a restart would not put it back: the label is patched on the Node.
      action: 'label the Node (k3s applies node-label only at registration)',
      repair: { step: 'node-metadata', node: node.name },
    });
  const taints = (obj.spec?.taints ?? []).filter((t) => !CONDITION_TAINT.test(t.key));
  if (taints.length > 0)
    add({
      kind: 'node-taints',
      object: `Node ${node.name} taints`,
      want: '(none declared)',
      have: taints.map((t) => `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`).join(', '),
      action: 'remove the taints the config does not declare',
      repair: { step: 'node-metadata', node: node.name },
    });
  return { findings, checked: 8 };
}

/** Puts the config's labels on the Node and removes undeclared taints (the node-metadata repair). */
export async function repairNodeMetadata(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
): Promise<{ node: string; changed: string[] }> {
  const kube = deps.kube(spec);
  const obj = await kube.read<NodeObj>('v1', 'Node', node.name);
  if (!obj) return { node: node.name, changed: [] };
  const changed: string[] = [];
  const labels = obj.metadata?.labels ?? {};
  const want = Object.fromEntries(Object.entries(node.labels ?? {}).filter(([k, v]) => labels[k] !== v));
  const taints = obj.spec?.taints ?? [];
  const keep = taints.filter((t) => CONDITION_TAINT.test(t.key));
  if (Object.keys(want).length > 0) changed.push(`labelled ${Object.keys(want).join(', ')}`);
  if (keep.length !== taints.length) changed.push(`removed ${taints.length - keep.length} undeclared taints`);
  if (changed.length === 0) return { node: node.name, changed };
  await kube.patch(
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: node.name, ...(Object.keys(want).length ? { labels: want } : {}) },
      ...(keep.length !== taints.length ? { spec: { taints: keep } } : {}),
    },
    'merge',
  );
  return { node: node.name, changed };
}
