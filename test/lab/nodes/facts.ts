// Node facts: what the lab node's shims (nodes/shims/) report for the machine the orchestrator checks.
// The shims read /var/lib/lab/facts.json inside the node, so changing the file changes the answers live.
import { writeFile, rename } from 'node:fs/promises';

export interface NodeFacts {
  cpus: number;
  memoryMiB: number;
  diskGiB: number;
  arch: string;
  osRelease: string; // short form ("Debian 12", "Ubuntu 24.04") or a whole os-release file (contains "=")
  packages: string[];
  swap: boolean;
  timeSynced: boolean;
  busyPorts: number[];
  storageMounted: boolean;
  /** IPv4 addresses per interface, printed by the `ip` shim in iproute2's format ("eth0" -> "192.168.50.10/24"). */
  interfaces: { name: string; address: string }[];
  /** Default routes in the main table (what `ip -4 route show default` prints). */
  defaultRoutes: { dev: string; via: string; metric?: number }[];
}

/**
 * Hostnames the lab machines carry: like the owner's real machines, they differ from the config's node
 * names, so anything that assumes "Node name == hostname" fails here as it would there (k3s names the
 * Node after the hostname unless node-name is set: k3s-io/k3s pkg/util/net.go GetHostnameAndIPs).
 */
export const LAB_HOSTNAMES: Record<string, string> = {
  'control-plane': 'pedro-cp',
  'worker-1': 'pedro-w1',
  'worker-2': 'pedro-w2',
};
export const labHostname = (node: string) => LAB_HOSTNAMES[node] ?? `host-${node}`.slice(0, 63);

export const STORAGE_PATH = '/data/persistent-storage';

/** The lab's LAN: every node has eth0 on 192.168.50.0/24 (default route) and a Tailscale address. */
export function defaultFacts(node: string, index = 0): NodeFacts {
  return {
    cpus: 4,
    memoryMiB: 8192,
    diskGiB: 100,
    arch: 'x86_64',
    osRelease: 'Debian 12',
    packages: ['curl', 'open-iscsi', 'nfs-common'],
    swap: false,
    timeSynced: true,
    busyPorts: [],
    // the real pedro-ops only has the Longhorn disk mounted on worker-1 at first
    storageMounted: node === 'worker-1',
    interfaces: [
      { name: 'lo', address: '127.0.0.1/8' },
      { name: 'eth0', address: `192.168.50.${10 + index}/24` },
      { name: 'tailscale0', address: `100.64.0.${10 + index}/32` },
    ],
    defaultRoutes: [{ dev: 'eth0', via: '192.168.50.1', metric: 100 }],
  };
}

const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]*$/;

/** Rejects facts the shims could not print faithfully (they are shell scripts reading JSON with jq). */
export function validateFacts(f: Partial<NodeFacts>): void {
  const posInt = (k: keyof NodeFacts, v: unknown) => {
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`facts.${k}: expected a non-negative integer`);
  };
  if (f.cpus !== undefined) posInt('cpus', f.cpus);
  if (f.memoryMiB !== undefined) posInt('memoryMiB', f.memoryMiB);
  if (f.diskGiB !== undefined) posInt('diskGiB', f.diskGiB);
  if (f.arch !== undefined && !/^[A-Za-z0-9_]+$/.test(f.arch))
    throw new Error('facts.arch: expected a machine name like x86_64');
  if (f.osRelease !== undefined && (typeof f.osRelease !== 'string' || f.osRelease.trim() === '')) {
    throw new Error('facts.osRelease: expected a non-empty string');
  }
  if (f.packages !== undefined) {
    if (!Array.isArray(f.packages)) throw new Error('facts.packages: expected an array');
    for (const p of f.packages)
      if (typeof p !== 'string' || !PACKAGE_NAME.test(p))
        throw new Error(`facts.packages: bad package name ${JSON.stringify(p)}`);
  }
  for (const k of ['swap', 'timeSynced', 'storageMounted'] as const) {
    if (f[k] !== undefined && typeof f[k] !== 'boolean') throw new Error(`facts.${k}: expected a boolean`);
  }
  const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
  const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
  if (f.interfaces !== undefined) {
    if (!Array.isArray(f.interfaces)) throw new Error('facts.interfaces: expected an array');
    for (const i of f.interfaces) {
      const [ip, prefix] = String(i?.address).split('/');
      if (!IFNAME.test(i?.name) || !IPV4.test(ip) || !(Number(prefix) >= 0 && Number(prefix) <= 32))
        throw new Error(`facts.interfaces: bad interface ${JSON.stringify(i)}`);
    }
  }
  if (f.defaultRoutes !== undefined) {
    if (!Array.isArray(f.defaultRoutes)) throw new Error('facts.defaultRoutes: expected an array');
    for (const r of f.defaultRoutes)
      if (!IFNAME.test(r?.dev) || !IPV4.test(r?.via) || (r.metric !== undefined && !Number.isInteger(r.metric)))
        throw new Error(`facts.defaultRoutes: bad route ${JSON.stringify(r)}`);
  }
  if (f.busyPorts !== undefined) {
    if (!Array.isArray(f.busyPorts)) throw new Error('facts.busyPorts: expected an array');
    for (const p of f.busyPorts)
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`facts.busyPorts: bad port ${p}`);
  }
}

const KNOWN_RELEASES: Record<string, string> = {
  'Debian 12': `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`,
  'Debian 11': `PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"
NAME="Debian GNU/Linux"
VERSION_ID="11"
VERSION="11 (bullseye)"
VERSION_CODENAME=bullseye
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`,
};

/** The /etc/os-release text for a fact: known short names get the distribution's real file. */
export function renderOsRelease(osRelease: string): string {
  if (osRelease.includes('=')) return osRelease.endsWith('\n') ? osRelease : `${osRelease}\n`;
  const known = KNOWN_RELEASES[osRelease];
  if (known) return known;
  const [name, ...rest] = osRelease.trim().split(/\s+/);
  const version = rest.join(' ');
  const id = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  return `PRETTY_NAME="${osRelease}"\nNAME="${name}"\nVERSION_ID="${version}"\nVERSION="${version}"\nID=${id}\n`;
}

/** Writes facts.json (atomic rename: the node sees /var/lib/lab through a directory bind) and os-release. */
export async function writeFacts(varLibLab: string, osReleaseFile: string, facts: NodeFacts): Promise<void> {
  const tmp = `${varLibLab}/.facts.json.tmp`;
  await writeFile(tmp, `${JSON.stringify(facts, null, 2)}\n`);
  await rename(tmp, `${varLibLab}/facts.json`);
  // os-release is a *file* bind mount: rewrite in place (a rename would leave the node on the old inode)
  await writeFile(osReleaseFile, renderOsRelease(facts.osRelease));
}
