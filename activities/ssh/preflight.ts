// Preflight: what one node must offer before anything is written to it. Every check runs and every
// problem is returned (not thrown), so the workflow can report all nodes' findings in one failure.
// `fixable` findings (missing packages, swap on) are fixed by node preparation and do not block.
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { beat } from '../heartbeat.js';
import { nodeOrFail, withSession } from './session.js';
import type { SshSession } from './client.js';
import { lanAddressFrom, ADDR_PROBE, ROUTE_PROBE } from './node-ip.js';
import { parseAddrs, vipChecks } from './vip-checks.js';

export interface PreflightResult {
  node: string;
  /** Blocking problems: a human has to change the machine or the config. */
  findings: string[];
  /** Problems node preparation fixes (packages, swap). */
  fixable: string[];
  /** Shown, not blocking (the VIP in a range ARP cannot reach). Absent in results recorded before it existed. */
  warnings?: string[];
  /** Pinned key presented by the node ("ssh-ed25519 AAAA..."); with allowTofu this is what to record. */
  hostKey: string;
  /** k3s already runs here, so its own ports being in use is expected. */
  k3sActive: boolean;
  /** The machine's hostname: k3s would name the Node after it without node-name (prepare sets node-name). */
  hostname?: string;
  /** The node-ip k3s will get: the configured one, or the discovered LAN address (pin it in the config). */
  nodeIp?: string;
  nodeIpSource?: string;
  facts: { arch?: string; os?: string; cpus?: number; memoryMiB?: number; diskGiB?: number };
}

// One round trip: every probe prints a tagged line, so a slow link pays the latency once.
const PROBE = [
  'echo "uid=$(id -u)"',
  'echo "user=$(id -un)"',
  'echo "hostname=$(hostname)"',
  `echo "routes=$(${ROUTE_PROBE} | tr '\\n' ';')"`,
  `echo "addrs=$(${ADDR_PROBE} | tr '\\n' ';')"`,
  'echo "sudo=$(sudo -n true 2>/dev/null && echo yes || echo no)"',
  'echo "arch=$(uname -m)"',
  'echo "os=$(. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID")"',
  'echo "cpus=$(nproc)"',
  'echo "mem=$(free -m | awk \'/^Mem:/{print $2}\')"',
  'echo "disk=$(df -BG --output=avail,target / | awk \'NR==2{gsub("G","",$1); print $1}\')"',
  'echo "swap=$(swapon --show --noheadings | wc -l)"',
  'echo "ntp=$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"',
  "echo \"ports=$(ss -tlnH | awk '{n=split($4,a,\":\"); print a[n]}' | sort -nu | tr '\\n' ' ')\"",
  'echo "k3s=$(systemctl is-active k3s 2>/dev/null || true)"',
  'echo "k3sagent=$(systemctl is-active k3s-agent 2>/dev/null || true)"',
].join('; ');

// Prepare installs packages with apt-get and dpkg-query only, so only Debian-family hosts can be
// prepared. k3s itself runs on RHEL/Fedora/SUSE too (its install script adds the k3s-selinux RPM
// there), but refusing them here is honest until prepare learns dnf/zypper.
const SUPPORTED_OS = ['debian', 'ubuntu', 'raspbian'];
const OTHER_FAMILIES: Record<string, string> = {
  rhel: 'dnf',
  rocky: 'dnf',
  almalinux: 'dnf',
  centos: 'dnf',
  fedora: 'dnf',
  ol: 'dnf',
  'opensuse-leap': 'zypper',
  'opensuse-tumbleweed': 'zypper',
  sles: 'zypper',
  sled: 'zypper',
};

function parse(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .split('\n')
      .map((l) => l.match(/^([a-z0-9]+)=(.*)$/))
      .filter((m): m is RegExpMatchArray => m !== null)
      .map((m) => [m[1], m[2].trim()]),
  );
}

async function missingPackages(s: SshSession, pkgs: string[]): Promise<string[]> {
  if (pkgs.length === 0) return [];
  const r = await s.exec(
    `for p in ${pkgs.join(' ')}; do dpkg-query -W -f='\${Status}\\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done`,
  );
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

export function judge(
  spec: ClusterSpec,
  node: NodeSpec,
  f: Record<string, string>,
  missing: string[],
  storageMounted: boolean | undefined,
): Omit<PreflightResult, 'hostKey'> {
  const findings: string[] = [];
  const fixable: string[] = [];
  const p = spec.preflight;
  // Every command prepare and install run (apt-get, sysctl, writing /etc/rancher, systemctl) needs
  // root, and none goes through sudo: a sudo user would pass here and fail half way through prepare.
  if (f.uid !== '0')
    findings.push(
      `SSH user ${f.user || '?'} is not root (uid ${f.uid || '?'})${f.sudo === 'yes' ? ', and sudo is not supported' : ''}: connect as root (ssh.user / nodes[].user)`,
    );
  if (!p.architectures.includes(f.arch))
    findings.push(`architecture ${f.arch || 'unknown'} is not one of ${p.architectures.join(', ')}`);
  const osId = (f.os ?? '').split(' ')[0];
  if (OTHER_FAMILIES[osId])
    findings.push(
      `OS release "${f.os}" uses ${OTHER_FAMILIES[osId]}; node preparation installs packages with apt-get only (Debian, Ubuntu, Raspbian)`,
    );
  else if (!SUPPORTED_OS.includes(osId))
    findings.push(
      `OS release "${f.os || 'unknown'}" is not supported: node preparation needs apt (Debian, Ubuntu, Raspbian)`,
    );
  let nodeIp = node.nodeIp;
  let nodeIpSource = node.nodeIp ? 'config' : undefined;
  if (!node.nodeIp) {
    // both probes print one line per route/address; PROBE joined them with ';' (neither format uses it)
    const lan = lanAddressFrom(f.routes ?? '', (f.addrs ?? '').split(';').join('\n'));
    if ('error' in lan) findings.push(lan.error);
    else {
      nodeIp = lan.address;
      nodeIpSource = `discovered on ${lan.dev}`;
    }
  }
  const cpus = Number(f.cpus);
  const mem = Number(f.mem);
  const disk = Number(f.disk);
  if (!(cpus >= p.minCpus)) findings.push(`${f.cpus || '?'} CPUs, needs at least ${p.minCpus}`);
  if (!(mem >= p.minMemoryMiB)) findings.push(`${f.mem || '?'} MiB memory, needs at least ${p.minMemoryMiB}`);
  if (!(disk >= p.minDiskGiB)) findings.push(`${f.disk || '?'} GiB free disk, needs at least ${p.minDiskGiB}`);
  if (f.ntp !== 'yes') findings.push('clock is not synchronised (timedatectl NTPSynchronized != yes)');
  const k3sActive = f.k3s === 'active' || f.k3sagent === 'active';
  if (!k3sActive) {
    const busy = new Set((f.ports ?? '').split(/\s+/).filter(Boolean).map(Number));
    const taken = p.requiredPorts.filter((port) => busy.has(port));
    if (taken.length > 0) findings.push(`port${taken.length > 1 ? 's' : ''} ${taken.join(', ')} already in use`);
  }
  if (storageMounted === false)
    findings.push(`storage path ${spec.storage.basePath} is not a mounted filesystem on the storage node`);
  const vip = vipChecks(spec, node, parseAddrs(f.addrs ?? ''), nodeIp);
  findings.push(...vip.findings);
  if (missing.length > 0) fixable.push(`packages missing (preparation installs them): ${missing.join(', ')}`);
  if (Number(f.swap) > 0) fixable.push('swap is on (preparation turns it off)');
  return {
    node: node.name,
    findings,
    fixable,
    warnings: vip.warnings,
    k3sActive,
    hostname: f.hostname || undefined,
    nodeIp,
    nodeIpSource,
    facts: { arch: f.arch, os: f.os, cpus, memoryMiB: mem, diskGiB: disk },
  };
}

export function preflightActivities(deps: ActivityDeps) {
  return {
    /** Observes one node; never writes. Connection problems throw typed failures (host key: non-retryable). */
    async preflightNode(input: { cluster: string; node: string; allowTofu?: boolean }): Promise<PreflightResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      beat({ node: node.name, step: 'connecting' });
      return withSession(
        deps,
        spec,
        node,
        async (s) => {
          beat({ node: node.name, step: 'probing' });
          const r = await s.exec(PROBE);
          const facts = parse(r.stdout);
          const missing = await missingPackages(s, spec.preflight.requiredPackages);
          let storageMounted: boolean | undefined;
          if (spec.storage.node === node.name) {
            const m = await s.exec(`mountpoint -q ${spec.storage.basePath}`);
            storageMounted = m.code === 0;
          }
          return { ...judge(spec, node, facts, missing, storageMounted), hostKey: s.hostKey };
        },
        input.allowTofu,
      );
    },
  };
}
