// Drift faults: what a person does to a cluster by hand, done the same way here. `kubectl edit` of a
// HelmChart or a Secret (a merge patch through the real apiserver, as kubectl's edit sends one), an
// edit of a node's k3s config file (a write into the node's own filesystem, as `vi` over SSH would),
// and `systemctl stop k3s` on a node (over SSH, through the node's systemctl).
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { ClusterSpec } from '../../config/schema.js';
import type { LabNode } from './nodes/index.js';
import { connectNode } from './built.js';

export interface DriftFaults {
  /** Merge-patches the HelmChart's spec (e.g. {version: '9.9.9'} or {valuesContent: '...'}). */
  editHelmChart(name: string, spec: Record<string, unknown>): Promise<void>;
  /** Appends a line to a file on the node (default /etc/rancher/k3s/config.yaml). */
  editNodeFile(node: string, line: string, path?: string): Promise<void>;
  /** `systemctl stop k3s` (server) or `k3s-agent` (agent) on the node. */
  stopK3s(node: string): Promise<void>;
  /** Sets one key of a Secret to a value no source holds (base64 of `edited-by-hand-<n>`). */
  editSecret(namespace: string, name: string, key: string): Promise<void>;
  /** `kubectl set image` on the kube-vip DaemonSet (a hand up- or downgrade; the VIP keeps answering). */
  editVipImage(image: string): Promise<void>;
}

export function driftFaults(opts: {
  spec: ClusterSpec;
  nodes: LabNode[];
  sshKeyPath: string;
  kube: { url: string; caPem: string; token: string };
}): DriftFaults {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'lab', server: opts.kube.url, caData: Buffer.from(opts.kube.caPem).toString('base64') }],
    users: [{ name: 'lab', token: opts.kube.token }],
    contexts: [{ name: 'lab', cluster: 'lab', user: 'lab' }],
    currentContext: 'lab',
  });
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  // kubectl edit sends a merge patch for custom resources and a strategic one for built-ins; for a
  // map field like spec or data both mean the same.
  const mergePatch = (obj: k8s.KubernetesObject & Record<string, unknown>) =>
    api.patch(obj, undefined, undefined, 'kubectl-edit', undefined, k8s.PatchStrategy.MergePatch);
  const labNode = (name: string) => {
    const n = opts.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`unknown node "${name}"`);
    return n;
  };
  let edits = 0;
  return {
    async editHelmChart(name, spec) {
      await mergePatch({
        apiVersion: 'helm.cattle.io/v1',
        kind: 'HelmChart',
        metadata: { name, namespace: 'kube-system' },
        spec,
      });
    },
    async editNodeFile(node, line, path = '/etc/rancher/k3s/config.yaml') {
      // The node's /etc/rancher is its own bind mount below rootDir (nodes/index.ts).
      const file = join(labNode(node).rootDir, path);
      if (!existsSync(file)) throw new Error(`${node}: ${path} does not exist`);
      appendFileSync(file, `${line}\n`);
    },
    async stopK3s(node) {
      const role = opts.spec.nodes.find((n) => n.name === node)?.role;
      const ssh = await connectNode(labNode(node), opts.sshKeyPath);
      try {
        const r = await ssh.execCommand(`systemctl stop ${role === 'server' ? 'k3s' : 'k3s-agent'}`);
        if (r.code !== 0) throw new Error(`${node}: systemctl stop exited ${r.code}: ${r.stderr}`);
      } finally {
        ssh.dispose();
      }
    },
    async editVipImage(image) {
      // A strategic merge patch, as kubectl set image sends: containers merge by name.
      await api.patch(
        {
          apiVersion: 'apps/v1',
          kind: 'DaemonSet',
          metadata: { name: 'kube-vip-ds', namespace: 'kube-system' },
          spec: { template: { spec: { containers: [{ name: 'kube-vip', image }] } } },
        },
        undefined,
        undefined,
        'kubectl-set',
        undefined,
        k8s.PatchStrategy.StrategicMergePatch,
      );
    },
    async editSecret(namespace, name, key) {
      edits += 1;
      await mergePatch({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace },
        data: { [key]: Buffer.from(`edited-by-hand-${edits}`).toString('base64') },
      });
    },
  };
}
