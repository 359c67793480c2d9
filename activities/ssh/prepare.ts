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
import { resolveNodeIp } from './node-ip.js';

export const K3S_CONFIG_PATH = '/etc/rancher/k3s/config.yaml';
export const K3S_REGISTRIES_PATH = '/etc/rancher/k3s/registries.yaml';
/**
 * k3s reads config.yaml and registries.yaml only when it starts, and the install script does not
 * hash either ("No change detected" ignores them: k3s-io/k3s install.sh get_installed_hashes). So
 * when prepare changes one it leaves this marker (what changed, one per line) and the install step
 * restarts k3s and removes it. It lives on the node, so a crash between the two steps loses nothing.
 */
export const RESTART_MARKER = '/var/lib/rancher/pedro-ops/restart-needed';
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

/**
 * The config k3s reads at start: written before install so the first start already has it.
 * node-name is the config's name: without it k3s registers the Node under the machine's hostname
 * (k3s-io/k3s pkg/util/net.go GetHostnameAndIPs), and waitNodesReady and every
 * `kubernetes.io/hostname: <node>` selector in the config would look for a Node that does not exist.
 */
export function k3sConfig(spec: ClusterSpec, node: NodeSpec, nodeIp: string, s3Keys?: EtcdS3Keys): string {
  const cfg: Record<string, unknown> = { 'node-name': node.name, 'node-ip': nodeIp };
  if (node.labels) cfg['node-label'] = Object.entries(node.labels).map(([k, v]) => `${k}=${v}`);
  if (node.role === 'server') {
    cfg['tls-san'] = [spec.vip, spec.domain, ...(spec.k3s.extraTlsSans ?? [])];
    cfg.disable = spec.k3s.disable;
    if (spec.k3s.clusterCidr) cfg['cluster-cidr'] = spec.k3s.clusterCidr;
    if (spec.k3s.serviceCidr) cfg['service-cidr'] = spec.k3s.serviceCidr;
    cfg['write-kubeconfig-mode'] = '0600';
    Object.assign(cfg, etcdSnapshotConfig(spec, s3Keys));
  }
  return `# Managed by pedro-ops orchestrator; changes are overwritten on the next provision.\n${stringify(cfg)}`;
}

export interface EtcdS3Keys {
  accessKey: string;
  secretKey: string;
}

/**
 * k3s's etcd snapshot settings as config.yaml keys: the flag names of k3s-io/k3s pkg/cli/cmds/server.go
 * (etcd-snapshot-schedule-cron, etcd-snapshot-retention, etcd-s3, etcd-s3-endpoint, etcd-s3-insecure,
 * etcd-s3-bucket, etcd-s3-folder, etcd-s3-region, etcd-s3-access-key, etcd-s3-secret-key). The
 * `k3s etcd-snapshot` subcommand reads the same file, so `save` and `ls` on the node see S3 too
 * (pkg/cli/etcdsnapshot/etcd_snapshot.go commandSetup copies every EtcdS3* setting). Without keys
 * (a caller that only renders the shape) the S3 part is left out rather than written half.
 */
export function etcdSnapshotConfig(spec: ClusterSpec, s3Keys?: EtcdS3Keys): Record<string, unknown> {
  const snaps = spec.k3s.etcdSnapshots;
  if (!snaps) return {};
  const cfg: Record<string, unknown> = {
    'etcd-snapshot-schedule-cron': snaps.scheduleCron,
    'etcd-snapshot-retention': snaps.retention,
  };
  if (!s3Keys) return cfg;
  const s3 = snaps.s3;
  Object.assign(cfg, {
    'etcd-s3': true,
    'etcd-s3-endpoint': s3.endpoint,
    ...(s3.insecure ? { 'etcd-s3-insecure': true } : {}),
    'etcd-s3-bucket': s3.bucket,
    ...(s3.folder ? { 'etcd-s3-folder': s3.folder } : {}),
    ...(s3.region ? { 'etcd-s3-region': s3.region } : {}),
    'etcd-s3-access-key': s3Keys.accessKey,
    'etcd-s3-secret-key': s3Keys.secretKey,
  });
  return cfg;
}

/** The S3 keys from 1Password, resolved inside the activity: never a workflow input or output. */
export async function resolveEtcdS3Keys(deps: ActivityDeps, spec: ClusterSpec): Promise<EtcdS3Keys | undefined> {
  const s3 = spec.k3s.etcdSnapshots?.s3;
  if (!s3) return undefined;
  const op = await deps.onepassword(spec);
  const [accessKey, secretKey] = await Promise.all([
    op.secrets.resolve(s3.accessKeyRef),
    op.secrets.resolve(s3.secretKeyRef),
  ]);
  return { accessKey, secretKey };
}

/**
 * /etc/rancher/k3s/registries.yaml in the k3s docs' format (docs.k3s.io/installation/private-registry):
 * `mirrors.<host:port>.endpoint` lists the URLs containerd tries; an `http://` endpoint is how a
 * plain-HTTP registry is reached (containerd's implicit default endpoint is always https://<host:port>/v2).
 */
export function registriesYaml(spec: ClusterSpec): string | undefined {
  const r = spec.registry;
  if (!r) return undefined;
  const hostPort = `${r.host}:${r.port}`;
  const doc = { mirrors: { [hostPort]: { endpoint: [`${r.tls ? 'https' : 'http'}://${hostPort}`] } } };
  return `# Managed by pedro-ops orchestrator; changes are overwritten on the next provision.\n${stringify(doc)}`;
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
        const nodeIp = await resolveNodeIp(s, node);
        const restart: string[] = [];
        const s3Keys = node.role === 'server' ? await resolveEtcdS3Keys(deps, spec) : undefined;
        if (await ensureFile(s, name, K3S_CONFIG_PATH, k3sConfig(spec, node, nodeIp, s3Keys), 0o600, changed))
          restart.push('config.yaml changed');
        const registries = registriesYaml(spec);
        if (registries && (await ensureFile(s, name, K3S_REGISTRIES_PATH, registries, 0o600, changed)))
          restart.push('registries.yaml changed');
        if (restart.length > 0)
          await must(
            s,
            name,
            `mkdir -p ${shellQuote(RESTART_MARKER.replace(/\/[^/]+$/, ''))} && printf '%s\\n' ${restart.map(shellQuote).join(' ')} >>${RESTART_MARKER}`,
          );
        return { node: name, changed };
      });
    },
  };
}
