// Preflight's VIP checks, pure so the unit tests hold them to the cases. kube-vip in ARP mode adds the
// VIP to one interface of the leading control-plane node and answers ARP for it there (kube-vip
// v0.6.4 pkg/vip/address.go AddIP, pkg/vip/arp.go): only hosts on that interface's layer-2 segment
// that ARP for the address, i.e. have it inside an on-link subnet, can reach it.
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';

export interface InterfaceAddress {
  dev: string;
  address: string;
  prefix: number;
}

/** `ip -o -4 addr show` lines: `2: eth0    inet 192.168.1.62/24 brd ... scope global eth0\ ...`. */
export function parseAddrs(text: string): InterfaceAddress[] {
  return text
    .split(/\n|;/)
    .map((l) => /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ dev: m[1].replace(/@.*$/, ''), address: m[2], prefix: Number(m[3]) }));
}

function ipv4(a: string): number | undefined {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return undefined;
  return ((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3];
}

export function inSubnet(address: string, base: string, prefix: number): boolean {
  const a = ipv4(address);
  const b = ipv4(base);
  if (a === undefined || b === undefined) return false;
  if (prefix === 0) return true;
  const mask = (~0 << (32 - prefix)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

/** RFC 6598 shared address space, which Tailscale hands its machines addresses from. */
export const CGNAT = { base: '100.64.0.0', prefix: 10 };

/**
 * findings block the build; warnings are shown in the preflight step. `addrs` is the node's
 * `ip -o -4 addr show`, `nodeIp` the node-ip k3s will get.
 */
export function vipChecks(
  spec: ClusterSpec,
  node: NodeSpec,
  addrs: InterfaceAddress[],
  nodeIp: string | undefined,
): { findings: string[]; warnings: string[] } {
  const findings: string[] = [];
  const warnings: string[] = [];
  const vip = spec.vip;
  const own = addrs.find((a) => a.address === vip);
  if (vip === node.address || vip === nodeIp || own)
    findings.push(
      `the VIP ${vip} is this node's own address${own ? ` (on ${own.dev})` : ''}: the VIP must be a free address that moves between control-plane nodes, not one a machine already holds`,
    );
  const p = spec.vipProvider;
  if (node.role !== 'server' || !p) return { findings, warnings };

  if (inSubnet(vip, CGNAT.base, CGNAT.prefix))
    // tailscaled drops packets from 100.64.0.0/10 arriving on any interface but tailscale0 on every
    // Linux tailnet machine (tailscale util/linuxfw/iptables_runner.go addBase4: "this will definitely
    // break nodes that end up using the CGNAT range for other purposes"), and the tailnet routes only
    // addresses its coordination server assigned: an address ARP-announced on the LAN inside that
    // range reaches neither tailnet peers nor LAN machines running Tailscale.
    warnings.push(
      `the VIP ${vip} is in 100.64.0.0/10 (Tailscale/CGNAT): kube-vip announces it by ARP on ${p.interface}, but tailscaled on every tailnet machine drops traffic from that range arriving outside tailscale0 and the tailnet does not route it, so agents and this orchestrator are unlikely to reach it; prefer a free LAN address (the VIP step waits for it and parks if it does not answer)`,
    );
  if (p.interface === 'tailscale0')
    findings.push(
      `vipProvider.interface is tailscale0, a layer-3 tunnel without ARP: kube-vip's ARP mode announces nothing there; use the LAN interface`,
    );
  const onIf = addrs.filter((a) => a.dev === p.interface);
  if (addrs.length > 0 && onIf.length === 0) {
    const have = [...new Set(addrs.map((a) => a.dev))].join(', ');
    findings.push(
      `vipProvider.interface ${p.interface} has no IPv4 address on this machine (it has ${have || 'none'}): kube-vip exits at start when the interface does not exist (pkg/kubevip/config_manager.go CheckInterface) and announces nothing reachable without one`,
    );
  } else if (onIf.length > 0 && !onIf.some((a) => inSubnet(vip, a.address, a.prefix)))
    warnings.push(
      `the VIP ${vip} is outside ${p.interface}'s subnet${onIf.length > 1 ? 's' : ''} ${onIf.map((a) => `${a.address}/${a.prefix}`).join(', ')}: hosts ARP only for on-link addresses, so only machines routing ${vip} to this segment reach it`,
    );
  return { findings, warnings };
}
