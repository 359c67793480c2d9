// Node preparation: packages, swap, kernel modules, sysctls, the storage layout and the k3s config
// file, each observed first and written only when it differs. Returns what changed; an empty list
// means the node was already prepared.
import { stringify } from 'yaml';
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { shellQuote, type SshSession } from './client.js';
import { beat } from '../heartbeat.js';
import { must, nodeOrFail, withSession } from './session.js';

export const K3S_CONFIG_PATH = '/etc/rancher/k3s/config.yaml';
const MODULES = ['overlay', 'br_netfilter', 'iscsi_tcp'];
const SYSCTLS: Record<string, string> = {
  'net.bridge.bridge-nf-call-iptables': '1',
  'net.bridge.bridge-nf-call-ip6tables': '1',
  'net.ipv4.ip_forward': '1',
  // Longhorn and Prometheus open many inotify watches.
  'fs.inotify.max_user_instances': '8192',
  'fs.inotify.max_user_watches': '524288',
};

export interface PrepareResult {
  node: string;
  changed: string[];
}

/** The config k3s reads at start: written before install so the first start already has it. */
export function k3sConfig(spec: ClusterSpec, node: NodeSpec): string {
  const cfg: Record<string, unknown> = { 'node-ip': node.nodeIp };
  if (node.labels) cfg['node-label'] = Object.entries(node.labels).map(([k, v]) => `${k}=${v}`);
  if (node.role === 'server') {
    cfg['tls-san'] = [spec.vip, spec.domain, ...(spec.k3s.extraTlsSans ?? [])];
    cfg.disable = spec.k3s.disable;
    if (spec.k3s.clusterCidr) cfg['cluster-cidr'] = spec.k3s.clusterCidr;
    if (spec.k3s.serviceCidr) cfg['service-cidr'] = spec.k3s.serviceCidr;
    cfg['write-kubeconfig-mode'] = '0600';
  }
  return `# Managed by pedro-ops orchestrator; changes are overwritten on the next provision.\n${stringify(cfg)}`;
}

async function ensureFile(
  s: SshSession,
  node: string,
  path: string,
  content: string,
  mode: number,
  changed: string[],
): Promise<boolean> {
  const cur = await s.exec(`cat ${shellQuote(path)} 2>/dev/null`);
  if (cur.code === 0 && cur.stdout === content.replace(/\n$/, '')) return false;
  await s.putContent(content, path, mode);
  changed.push(`wrote ${path}`);
  void node;
  return true;
}

export function prepareActivities(deps: ActivityDeps) {
  return {
    async prepareNode(input: { cluster: string; node: string }): Promise<PrepareResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      return withSession(deps, spec, node, async (s) => {
        const changed: string[] = [];
        const name = node.name;

        beat({ node: name, step: 'packages' });
        const pkgs = spec.preflight.requiredPackages;
        if (pkgs.length > 0) {
          const r = await s.exec(
            `for p in ${pkgs.join(' ')}; do dpkg-query -W -f='\${Status}\\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done`,
          );
          const missing = r.stdout
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean);
          if (missing.length > 0) {
            await must(
              s,
              name,
              `DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${missing.join(' ')}`,
              { what: 'apt-get install' },
            );
            changed.push(`installed ${missing.join(', ')}`);
          }
        }

        beat({ node: name, step: 'swap' });
        const swap = await s.exec('swapon --show --noheadings | wc -l');
        if (Number(swap.stdout.trim()) > 0) {
          await must(s, name, 'swapoff -a');
          changed.push('swap turned off');
        }

        beat({ node: name, step: 'kernel' });
        if (await ensureFile(s, name, '/etc/modules-load.d/k3s.conf', `${MODULES.join('\n')}\n`, 0o644, changed)) {
          await must(s, name, MODULES.map((m) => `modprobe ${m}`).join(' && '));
        }
        const sysctl =
          Object.entries(SYSCTLS)
            .map(([k, v]) => `${k} = ${v}`)
            .join('\n') + '\n';
        if (await ensureFile(s, name, '/etc/sysctl.d/90-k3s.conf', sysctl, 0o644, changed)) {
          await must(s, name, 'sysctl -q --system');
        }

        if (spec.storage.node === name) {
          beat({ node: name, step: 'storage' });
          const dirs = [
            spec.storage.longhornPath,
            ...spec.storage.directories.map((d) => `${spec.storage.basePath}/${d.name}`),
          ];
          const r = await s.exec(`for d in ${dirs.map(shellQuote).join(' ')}; do [ -d "$d" ] || echo "$d"; done`);
          const missing = r.stdout
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean);
          if (missing.length > 0) {
            await must(s, name, `mkdir -p ${missing.map(shellQuote).join(' ')}`);
            changed.push(`created ${missing.join(', ')}`);
          }
        }

        beat({ node: name, step: 'k3s config' });
        await ensureFile(s, name, K3S_CONFIG_PATH, k3sConfig(spec, node), 0o600, changed);
        return { node: name, changed };
      });
    },
  };
}
