// Lab-only endpoints the k3s stand-in calls when `k3s server` / `k3s agent` start on a node:
// the node registers as a v1 Node (NotReady, then Ready), the first server bootstraps kube-system.
import { createHash, randomBytes } from 'node:crypto';
import { condition, ensureNamespace, rtOf, setStatus, type Ctx } from './controllers/ctx.js';
import type { WorkloadController } from './controllers/workloads.js';
import type { Reply } from './routes.js';
import { isObject, type KObj } from './util.js';

export const COREDNS_COREFILE = `.:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts /etc/coredns/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom/*.override
}
import /etc/coredns/custom/*.server
`;

const HASH_MISMATCH = 'token CA hash does not match the Cluster CA certificate hash';

/** v1.31.4+k3s1 → [1, 31, 4, 1] for ordering. */
export function parseK3sVersion(v: string): number[] | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)] : undefined;
}
const newer = (a: number[], b: number[]) => {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return false;
};

/** What k3s records in the `k3s.io/node-args` annotation: the subcommand and its flags. */
function nodeArgs(role: string, b: Record<string, unknown>): string[] {
  const args = Array.isArray(b.args) ? b.args.map(String) : [];
  const out = [role, ...args];
  if (b.clusterInit && !args.includes('--cluster-init')) out.push('--cluster-init');
  for (const d of Array.isArray(b.disable) ? b.disable.map(String) : []) {
    if (!args.some((a) => a === `--disable=${d}` || a === d)) out.push('--disable', d);
  }
  for (const san of Array.isArray(b.tlsSans) ? b.tlsSans.map(String) : []) {
    if (!args.includes(san)) out.push('--tls-san', san);
  }
  if (b.nodeIp && !args.some((a) => a.includes(String(b.nodeIp)))) out.push('--node-ip', String(b.nodeIp));
  return out;
}

export class K3sRegistry {
  private serverPassword?: string;
  private agentPassword?: string;
  private serverVersion?: string;
  private readonly servers = new Set<string>();
  private readonly caHash: string;

  constructor(
    private readonly ctx: Ctx,
    caPem: string,
    private readonly workloads: WorkloadController,
  ) {
    this.caHash = createHash('sha256').update(caPem).digest('hex');
  }

  version(): string {
    return this.serverVersion ?? 'v1.31.4+k3s1';
  }

  /** The seeded cluster runs this version (its token stays unknown until a server registers). */
  adoptVersion(version: string): void {
    this.serverVersion = version;
  }

  /** `K10<sha256(CA)>::server:<password>` or a bare password → the password; undefined if the CA hash is wrong. */
  private password(token: unknown): string | undefined {
    if (typeof token !== 'string' || !token) return undefined;
    const m = /^K10([0-9a-f]{64})::[^:]+:(.+)$/.exec(token);
    if (!m) return token;
    return m[1] === this.caHash ? m[2] : undefined;
  }

  handle(method: string, segs: string[], body: unknown): Reply | undefined {
    const b = isObject(body) ? body : {};
    if (method === 'POST' && segs[2] === 'server' && segs.length === 3) return this.server(b);
    if (method === 'POST' && segs[2] === 'agent' && segs.length === 3) return this.agent(b);
    if (method === 'DELETE' && segs[2] === 'nodes' && segs.length === 4) return this.remove(segs[3]);
    return undefined;
  }

  private fail(status: number, message: string): Reply {
    return { status, body: { message } };
  }

  private server(b: Record<string, unknown>): Reply {
    const version = String(b.version ?? '');
    if (!b.node || !parseK3sVersion(version))
      return this.fail(400, 'node and a k3s version (vX.Y.Z+k3sN) are required');
    const pw = this.password(b.token);
    if (pw === undefined) return this.fail(401, HASH_MISMATCH);
    if (this.serverPassword !== undefined && pw !== this.serverPassword) return this.fail(401, HASH_MISMATCH);
    const first = this.serverPassword === undefined;
    this.serverPassword = pw;
    this.agentPassword ??= randomBytes(16).toString('hex');
    if (!this.serverVersion || first || newer(parseK3sVersion(version)!, parseK3sVersion(this.serverVersion)!))
      this.serverVersion = version;
    this.servers.add(String(b.node));
    if (first) this.bootstrap();
    this.register(
      String(b.node),
      version,
      String(b.nodeIp ?? ''),
      true,
      Boolean(b.clusterInit),
      false,
      nodeArgs('server', b),
    );
    return { status: 200, body: { agentToken: `K10${this.caHash}::node:${this.agentPassword}` } };
  }

  private agent(b: Record<string, unknown>): Reply {
    const version = String(b.version ?? '');
    if (!b.node || !parseK3sVersion(version))
      return this.fail(400, 'node and a k3s version (vX.Y.Z+k3sN) are required');
    if (this.serverPassword === undefined)
      return this.fail(503, 'no k3s server has registered yet: connection refused');
    const pw = this.password(b.token);
    if (pw === undefined || (pw !== this.serverPassword && pw !== this.agentPassword))
      return this.fail(401, HASH_MISMATCH);
    if (newer(parseK3sVersion(version)!, parseK3sVersion(this.serverVersion!)!)) {
      return this.fail(
        400,
        `agent version ${version} is newer than server version ${this.serverVersion}: upgrade servers before agents`,
      );
    }
    this.register(String(b.node), version, String(b.nodeIp ?? ''), false, false, false, nodeArgs('agent', b));
    return { status: 200, body: {} };
  }

  private remove(name: string): Reply {
    const rt = rtOf(this.ctx, 'v1', 'Node');
    const existed = Boolean(this.ctx.store.get(rt, undefined, name));
    if (existed) this.ctx.store.delete(rt, undefined, name, 'controller');
    this.servers.delete(name);
    // Uninstalling the last server wipes the cluster's token: a fresh install may pick a new one.
    if (this.servers.size === 0) {
      this.serverPassword = undefined;
      this.agentPassword = undefined;
    }
    return { status: 200, body: { deleted: existed } };
  }

  /** kube-system plus what k3s deploys on first start (CoreDNS). */
  bootstrap(): void {
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) ensureNamespace(this.ctx, ns);
    const cm = rtOf(this.ctx, 'v1', 'ConfigMap');
    if (!this.ctx.store.get(cm, 'kube-system', 'coredns')) {
      this.ctx.store.create(
        cm,
        'kube-system',
        {
          metadata: {
            name: 'coredns',
            labels: { 'objectset.rio.cattle.io/hash': 'bce283298811743a0386ab510f2f67ef74240c57' },
          },
          data: { Corefile: COREDNS_COREFILE, NodeHosts: '' },
        },
        'controller',
      );
    }
    const dep = rtOf(this.ctx, 'apps/v1', 'Deployment');
    if (!this.ctx.store.get(dep, 'kube-system', 'coredns')) {
      const labels = { 'k8s-app': 'kube-dns' };
      const created = this.ctx.store.create(
        dep,
        'kube-system',
        {
          metadata: { name: 'coredns', labels: { ...labels, 'kubernetes.io/name': 'CoreDNS' } },
          spec: {
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
              metadata: { labels },
              spec: { containers: [{ name: 'coredns', image: 'rancher/mirrored-coredns-coredns:1.12.0' }] },
            },
          },
        },
        'controller',
      );
      this.workloads.markReady(dep, created);
    }
  }

  /** Creates or refreshes v1 Node `name`, NotReady until readyDelayMs has passed. */
  register(
    name: string,
    version: string,
    nodeIp: string,
    server: boolean,
    etcd: boolean,
    ready = false,
    args: string[] = [server ? 'server' : 'agent'],
  ): KObj {
    const rt = rtOf(this.ctx, 'v1', 'Node');
    const labels: Record<string, string> = {
      'kubernetes.io/hostname': name,
      'kubernetes.io/os': 'linux',
      'kubernetes.io/arch': 'amd64',
      'beta.kubernetes.io/os': 'linux',
      'beta.kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': 'k3s',
      ...(server ? { 'node-role.kubernetes.io/control-plane': 'true', 'node-role.kubernetes.io/master': 'true' } : {}),
      ...(etcd ? { 'node-role.kubernetes.io/etcd': 'true' } : {}),
    };
    const readyCond = (on: boolean) =>
      condition(
        'Ready',
        on ? 'True' : 'False',
        on ? 'KubeletReady' : 'KubeletNotReady',
        on ? 'kubelet is posting ready status' : 'container runtime network not ready: NetworkReady=false',
      );
    const status = {
      addresses: [
        { type: 'InternalIP', address: nodeIp },
        { type: 'Hostname', address: name },
      ],
      nodeInfo: {
        kubeletVersion: version,
        kubeProxyVersion: version,
        containerRuntimeVersion: 'containerd://1.7.23-k3s2',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        operatingSystem: 'linux',
        architecture: 'amd64',
        kernelVersion: '6.1.0-28-amd64',
        machineID: '',
        systemUUID: '',
        bootID: '',
      },
      capacity: { cpu: '4', memory: '8024512Ki', pods: '110' },
      allocatable: { cpu: '4', memory: '8024512Ki', pods: '110' },
      conditions: [readyCond(ready)],
    };
    const annotations = {
      'k3s.io/node-args': JSON.stringify(args),
      'k3s.io/internal-ip': nodeIp,
      'flannel.alpha.coreos.com/public-ip': nodeIp,
    };
    const cur = this.ctx.store.get(rt, undefined, name);
    const node = cur
      ? this.ctx.store.update(
          rt,
          undefined,
          name,
          {
            ...cur,
            metadata: {
              ...cur.metadata,
              labels: { ...cur.metadata.labels, ...labels },
              annotations: { ...cur.metadata.annotations, ...annotations },
            },
            status,
          },
          { source: 'controller' },
        )
      : this.ctx.store.create(
          rt,
          undefined,
          {
            metadata: { name, labels, annotations },
            spec: { podCIDR: '10.42.0.0/24', podCIDRs: ['10.42.0.0/24'], providerID: `k3s://${name}` },
            status,
          },
          'controller',
        );
    if (!ready) {
      this.ctx.timers.after(this.ctx.delays.readyDelayMs, () => {
        setStatus(this.ctx, rt, undefined, name, (c) =>
          c.metadata.uid !== node.metadata.uid ? c.status : { ...c.status, conditions: [readyCond(true)] },
        );
      });
    }
    return node;
  }
}
