// kube-vip, which cannot run here (no container runtime): the lab's VIP answers only while a kube-vip
// pod runs and leads, as on a real cluster. What it copies from kube-vip v0.6.4:
// - The manager reads its config from env (pkg/kubevip/config_envvar.go): ARP mode (`vip_arp`), the
//   control plane VIP (`cp_enable`), the address (`address`, else `vip_address`), `port`,
//   `vip_interface`, leader election (`vip_leaderelection`, `vip_leasename`, `vip_leaseduration`,
//   `cp_namespace`).
// - An interface the node does not have stops it at start (cmd/kube-vip.go -> CheckInterface,
//   pkg/kubevip/config_manager.go): such a pod never leads. The node's interfaces are its lab facts.
// - With leader election, the pods compete for a Lease (coordination.k8s.io) under the identity
//   os.Hostname(), which with hostNetwork is the machine's hostname, not the Node name
//   (pkg/cluster/clusterLeaderElection.go StartCluster, runKubernetesLeaderElectionOrDie). Only the
//   leader adds the VIP to its interface and ARPs for it (OnStartedLeading -> vipService); on losing
//   the lease or on SIGTERM it deletes the address (OnStoppedLeading -> DeleteIP).
// "Adds the VIP" is, here, a TCP forwarder on the lab's VIP address (a loopback address of its own)
// to the apiserver: nothing listens there until a leader exists, and it goes away with the leader.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { LabApi, KObj } from '../lab-api.js';
import { pathOf } from '../lab-api.js';

export interface KubeVipNode {
  name: string;
  hostname: string;
  rootDir: string;
}

type Env = Record<string, string>;

const envOf = (pod: KObj): Env =>
  Object.fromEntries(
    ((pod.spec?.containers?.[0]?.env ?? []) as { name: string; value?: string }[]).map((e) => [e.name, e.value ?? '']),
  );

const isKubeVip = (pod: KObj) =>
  ((pod.spec?.containers ?? []) as { image?: string }[]).some((c) =>
    /(^|\/)kube-vip\/kube-vip(:|@|$)/.test(c.image ?? ''),
  );

const running = (pod: KObj) =>
  pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp && Boolean(pod.spec?.nodeName);

export class KubeVipDouble {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  /** Who holds the VIP now (machine hostname), for tests and the log. */
  leader?: string;
  private lastSync = Date.now();
  private renewDeadlineMs = 3000;

  constructor(
    private readonly api: LabApi,
    private readonly opts: {
      /** The address the lab's kube-vip may add (the lab's VIP). */
      vip: string;
      /** Where the VIP leads: the apiserver. */
      target: { host: string; port: number };
      nodes: () => KubeVipNode[];
      log?: (line: string) => void;
    },
  ) {}

  start(): void {
    const tick = async () => {
      try {
        await this.sync();
        this.lastSync = Date.now();
      } catch (err) {
        // The leader cannot renew its lease while the API is unreachable: past the renew deadline it
        // steps down and deletes the VIP (client-go leaderelection renew loop -> OnStoppedLeading).
        if (this.server && Date.now() - this.lastSync > this.renewDeadlineMs) {
          this.opts.log?.(
            `kube-vip: lease not renewed (${err instanceof Error ? err.message : String(err)}), ${this.opts.vip} removed`,
          );
          await this.release();
        }
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), 500);
    };
    void tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.release();
  }

  private interfacesOf(node: KubeVipNode): string[] {
    try {
      const facts = JSON.parse(readFileSync(join(node.rootDir, 'var/lib/lab/facts.json'), 'utf8')) as {
        interfaces?: { name: string }[];
      };
      return (facts.interfaces ?? []).map((i) => i.name);
    } catch {
      return [];
    }
  }

  async sync(): Promise<void> {
    const nodes = this.opts.nodes();
    const pods = (await this.api.list('/api/v1/pods')).filter((p) => isKubeVip(p) && running(p));
    // Pods whose manager would get as far as leader election for this VIP, by their machine's hostname.
    const candidates: { id: string; env: Env; ns: string }[] = [];
    for (const pod of pods) {
      const env = envOf(pod);
      const address = env.address || env.vip_address;
      if (env.cp_enable !== 'true' || env.vip_arp !== 'true' || address !== this.opts.vip) continue;
      if (Number(env.port || 6443) !== this.opts.target.port) continue;
      const node = nodes.find((n) => n.name === pod.spec.nodeName || n.hostname === pod.spec.nodeName);
      if (!node) continue;
      if (env.vip_interface && !this.interfacesOf(node).includes(env.vip_interface)) continue;
      candidates.push({ id: node.hostname, env, ns: env.cp_namespace || 'kube-system' });
    }
    const leader = candidates.length === 0 ? undefined : await this.elect(candidates);
    if (leader && !this.server) await this.hold(leader);
    else if (!leader && this.server) {
      this.opts.log?.(`kube-vip: no leader, ${this.opts.vip} removed`);
      await this.release();
    } else if (leader) this.leader = leader;
  }

  /** client-go leaderelection over a Lease: the holder renews; an expired or absent lease is taken. */
  private async elect(candidates: { id: string; env: Env; ns: string }[]): Promise<string | undefined> {
    const c0 = candidates[0];
    if (c0.env.vip_leaderelection !== 'true') return c0.id;
    this.renewDeadlineMs = Number(c0.env.vip_renewdeadline || 3) * 1000;
    const name = c0.env.vip_leasename || 'plndr-cp-lock';
    const duration = Number(c0.env.vip_leaseduration || 5);
    const path = pathOf('coordination.k8s.io/v1', 'leases', c0.ns, name);
    const now = new Date().toISOString().replace('Z', '000Z');
    const cur = await this.api.get(path);
    const spec = cur?.spec ?? {};
    const renewed = spec.renewTime ? Date.parse(spec.renewTime) : 0;
    const expired = Date.now() - renewed > (spec.leaseDurationSeconds ?? duration) * 1000;
    const holder = candidates.find((c) => c.id === spec.holderIdentity);
    const next = holder && !expired ? holder : expired ? c0 : undefined;
    if (!next) return undefined; // held by a machine whose pod is gone, until the lease runs out
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: c0.ns, ...(cur ? { resourceVersion: cur.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: next.id,
        leaseDurationSeconds: duration,
        acquireTime: next === holder ? (spec.acquireTime ?? now) : now,
        renewTime: now,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (next === holder || !cur ? 0 : 1),
      },
    };
    const r = cur
      ? await this.api.request('PUT', path, body)
      : await this.api.request('POST', pathOf('coordination.k8s.io/v1', 'leases', c0.ns), body);
    return r.status < 300 ? next.id : undefined;
  }

  private async hold(leader: string): Promise<void> {
    const { host, port } = this.opts.target;
    const server = createServer((sock) => {
      this.sockets.add(sock);
      const up = createConnection({ host, port });
      this.sockets.add(up);
      sock.pipe(up).pipe(sock);
      const close = () => {
        sock.destroy();
        up.destroy();
        this.sockets.delete(sock);
        this.sockets.delete(up);
      };
      sock.on('error', close).on('close', close);
      up.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.vip, () => resolve());
    });
    this.server = server;
    this.leader = leader;
    this.opts.log?.(`kube-vip: ${leader} leads, ${this.opts.vip}:${port} answers`);
  }

  private async release(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.leader = undefined;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
