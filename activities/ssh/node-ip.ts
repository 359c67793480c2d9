// The node's LAN address for k3s `node-ip`, when the config does not pin one. The owner's machines
// reach each other over Tailscale for SSH, but flannel over the Tailscale address broke cross-node pod
// traffic, so node-ip must be the LAN address: the address of the default-route interface, skipping
// tailscale0 (an exit node or a Tailscale default route must not win). This is also the interface k3s
// itself would pick without node-ip (k3s-io/k3s pkg/util/net.go GetHostnameAndIPs ->
// k8s.io/apimachinery/pkg/util/net ChooseHostInterface, default route first), made explicit and
// shown so it can be pinned.
import type { NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { SshSession } from './client.js';

/** Both in iproute2's one-line format (what `ip -o -4 ...` prints). */
export const ROUTE_PROBE = 'ip -o -4 route show default 2>/dev/null';
export const ADDR_PROBE = 'ip -o -4 addr show 2>/dev/null';

export type LanAddress = { address: string; dev: string } | { error: string };

/**
 * routes: `default via 192.168.1.1 dev eth0 proto dhcp src 192.168.1.62 metric 100` lines;
 * addrs: `2: eth0    inet 192.168.1.62/24 brd 192.168.1.255 scope global eth0\ ...` lines.
 */
export function lanAddressFrom(routes: string, addrs: string, skip = ['tailscale0']): LanAddress {
  const defaults = routes
    .split(/\n|;/)
    .map((l) => l.trim())
    .filter((l) => /^default\b/.test(l))
    .map((l) => ({
      dev: /\bdev (\S+)/.exec(l)?.[1],
      src: /\bsrc (\S+)/.exec(l)?.[1],
      metric: Number(/\bmetric (\d+)/.exec(l)?.[1] ?? 0),
    }))
    .filter((r): r is { dev: string; src: string | undefined; metric: number } => r.dev !== undefined);
  const usable = defaults.filter((r) => !skip.includes(r.dev)).sort((a, b) => a.metric - b.metric);
  if (usable.length === 0) {
    const seen = defaults.map((r) => r.dev);
    return {
      error: `no LAN address: ${seen.length ? `the only default route${seen.length > 1 ? 's go' : ' goes'} via ${[...new Set(seen)].join(', ')}` : 'no default route'}; set nodeIp to the node's LAN address`,
    };
  }
  const best = usable[0];
  const inet = addrs
    .split('\n')
    .map((l) => /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\/\d+/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .filter((m) => m[1].replace(/@.*$/, '') === best.dev)
    .map((m) => m[2]);
  const address = best.src && (inet.length === 0 || inet.includes(best.src)) ? best.src : inet[0];
  if (!address) return { error: `no LAN address: interface ${best.dev} has no IPv4 address; set nodeIp` };
  return { address, dev: best.dev };
}

export async function discoverLanAddress(s: SshSession): Promise<LanAddress> {
  const r = await s.exec(`${ROUTE_PROBE}; echo ---; ${ADDR_PROBE}`);
  const lines = r.stdout.split('\n');
  const cut = lines.indexOf('---');
  return lanAddressFrom(lines.slice(0, cut).join('\n'), lines.slice(cut + 1).join('\n'));
}

/** The node-ip to give k3s: the pinned one, else the discovered LAN address (BadConfig when there is none). */
export async function resolveNodeIp(s: SshSession, node: NodeSpec): Promise<string> {
  if (node.nodeIp) return node.nodeIp;
  const found = await discoverLanAddress(s);
  if ('error' in found) throw nonRetryable(ErrorType.BadConfig, `${node.name}: ${found.error}`, { node: node.name });
  return found.address;
}
