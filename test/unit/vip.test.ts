// The VIP provider (issue 13 item 1): the kube-vip manifest the build writes, preflight's VIP checks,
// and where the VIP step sits in the plan.
import { describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { join } from 'node:path';
import { DEFAULT_CLUSTERS_DIR, loadClusterFile } from '../../config/loader.js';
import type { ClusterSpec } from '../../config/schema.js';
import { kubeVipManifest } from '../../activities/k3s/vip.js';
import { parseAddrs, vipChecks } from '../../activities/ssh/vip-checks.js';
import { buildProvisionPlan, skipRefusal } from '../../workflows/provision-plan.js';

const real = loadClusterFile(join(DEFAULT_CLUSTERS_DIR, 'pedro-ops.yaml'));
const server = real.nodes.find((n) => n.role === 'server')!;
const withVip = (vip: string, iface = 'eth0'): ClusterSpec => ({
  ...real,
  vip,
  vipProvider: { ...real.vipProvider!, interface: iface },
});
const LAN = parseAddrs(
  [
    '1: lo    inet 127.0.0.1/8 scope host lo\\',
    '2: eth0    inet 192.168.50.10/24 brd 192.168.50.255 scope global eth0\\',
    '3: tailscale0    inet 100.81.89.62/32 scope global tailscale0\\',
  ].join(';'),
);

describe('the kube-vip manifest', () => {
  test('is what `kube-vip manifest daemonset --controlplane --arp --leaderElection --inCluster --taint` prints at the pinned version', () => {
    expect(real.vipProvider).toMatchObject({ kind: 'kube-vip', version: 'v0.6.4', interface: 'eth0' });
    const docs = parseAllDocuments(kubeVipManifest(real)!).map((d) => d.toJSON());
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'ServiceAccount/kube-vip',
      'ClusterRole/system:kube-vip-role',
      'ClusterRoleBinding/system:kube-vip-binding',
      'DaemonSet/kube-vip-ds',
    ]);
    const ds = docs[3];
    expect(ds.metadata.namespace).toBe('kube-system');
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.serviceAccountName).toBe('kube-vip');
    expect(pod.containers[0].image).toBe('ghcr.io/kube-vip/kube-vip:v0.6.4');
    expect(pod.containers[0].args).toEqual(['manager']);
    const env = Object.fromEntries(
      pod.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    expect(env).toMatchObject({
      vip_arp: 'true',
      vip_interface: 'eth0',
      port: '6443',
      cp_enable: 'true',
      vip_leaderelection: 'true',
      vip_leasename: 'plndr-cp-lock',
      address: '100.81.89.100',
    });
    expect(env.svc_enable).toBeUndefined();
    const terms = pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    expect(terms.map((t: { matchExpressions: { key: string }[] }) => t.matchExpressions[0].key)).toEqual([
      'node-role.kubernetes.io/master',
      'node-role.kubernetes.io/control-plane',
    ]);
    const rbac = docs[1].rules.find((r: { apiGroups: string[] }) => r.apiGroups[0] === 'coordination.k8s.io');
    expect(rbac.verbs).toEqual(expect.arrayContaining(['get', 'create', 'update']));
  });

  test('no vipProvider: nothing to deploy', () => {
    expect(kubeVipManifest({ ...real, vipProvider: undefined })).toBeUndefined();
  });
});

describe("preflight's VIP checks", () => {
  test("the real config's VIP is in Tailscale's CGNAT range and outside the LAN: warned, not refused", () => {
    const r = vipChecks(real, server, LAN, '192.168.50.10');
    expect(r.findings).toEqual([]);
    expect(r.warnings).toHaveLength(2);
    expect(r.warnings[0]).toContain('100.81.89.100 is in 100.64.0.0/10 (Tailscale/CGNAT)');
    expect(r.warnings[0]).toContain('tailscaled on every tailnet machine drops traffic from that range');
    expect(r.warnings[1]).toContain("outside eth0's subnet 192.168.50.10/24");
  });

  test('a free LAN address on the interface subnet passes without a word', () => {
    expect(vipChecks(withVip('192.168.50.100'), server, LAN, '192.168.50.10')).toEqual({ findings: [], warnings: [] });
  });

  test('the VIP may not be a node address', () => {
    const own = vipChecks(withVip('192.168.50.10'), server, LAN, '192.168.50.10');
    expect(own.findings[0]).toMatch(/the VIP 192\.168\.50\.10 is this node's own address \(on eth0\)/);
    const agent = real.nodes.find((n) => n.role === 'agent')!;
    expect(vipChecks(withVip(agent.address), agent, [], undefined).findings[0]).toContain("this node's own address");
  });

  test('an interface the machine lacks, or tailscale0, is refused', () => {
    const missing = vipChecks(withVip('192.168.50.100', 'enp3s0'), server, LAN, '192.168.50.10');
    expect(missing.findings[0]).toContain('vipProvider.interface enp3s0 has no IPv4 address on this machine');
    expect(missing.findings[0]).toContain('it has lo, eth0, tailscale0');
    const tun = vipChecks(withVip('100.81.89.100', 'tailscale0'), server, LAN, '192.168.50.10');
    expect(tun.findings.join(' ')).toContain('tailscale0, a layer-3 tunnel without ARP');
  });

  test('agents are not checked for the interface (kube-vip runs on control-plane nodes only)', () => {
    const agent = real.nodes.find((n) => n.role === 'agent')!;
    expect(vipChecks(real, agent, LAN, '192.168.50.11')).toEqual({ findings: [], warnings: [] });
  });
});

describe('the VIP step in the plan', () => {
  test('comes after the first server; agents and the kubeconfig wait for it; an operator may skip it', () => {
    const plan = buildProvisionPlan(real);
    const dep = (id: string) => plan.steps.find((s) => s.id === id)!.dependsOn;
    expect(dep('vip')).toEqual(['k3s/control-plane']);
    expect(dep('k3s/worker-1')).toContain('vip');
    expect(dep('kubeconfig')).toEqual(['vip']);
    expect(plan.steps.find((s) => s.id === 'vip')!.title).toBe(
      'VIP 100.81.89.100: deploy kube-vip v0.6.4 (ARP on eth0), wait for /readyz',
    );
    expect(skipRefusal(plan, 'vip')).toBeUndefined();
    expect(skipRefusal(plan, 'kubeconfig')).toContain('nodes-ready');
  });

  test('runs recorded before the step keep their plan', () => {
    const old = buildProvisionPlan(real, { vip: false });
    expect(old.steps.some((s) => s.id === 'vip')).toBe(false);
    expect(old.steps.find((s) => s.id === 'kubeconfig')!.dependsOn).toEqual(['k3s/control-plane']);
  });
});
