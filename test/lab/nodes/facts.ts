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
}

export const STORAGE_PATH = '/data/persistent-storage';

export function defaultFacts(node: string): NodeFacts {
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
