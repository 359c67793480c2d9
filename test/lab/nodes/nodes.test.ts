// The lab nodes: real sshd per node, distinct hostnames, private filesystems, facts, and a clean stop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LAB_HOSTNAMES, startNodes, type LabNodes } from './index.js';
import { startFakeKube, type FakeKube } from './fake-kube.js';
import { connect, hostMountsBelow, labKeyPair, labProcesses } from './test-helpers.js';

const NAMES = ['control-plane', 'worker-1', 'worker-2'];
const keys = labKeyPair();
const dir = path.join(keys.dir, 'nodes');
let kube: FakeKube;
let lab: LabNodes;
let startMs = 0;

beforeAll(async () => {
  kube = await startFakeKube();
  const t0 = performance.now();
  lab = await startNodes({
    dir,
    names: NAMES,
    authorizedKey: keys.publicKey,
    kube,
    facts: { 'worker-2': { cpus: 2, memoryMiB: 4096 } },
  });
  startMs = performance.now() - t0;
  console.log(`lab nodes: 3 nodes started in ${startMs.toFixed(0)} ms`);
});

afterAll(async () => {
  await lab?.stop();
  await kube?.stop();
  rmSync(keys.dir, { recursive: true, force: true });
});

describe('lab nodes', () => {
  it('start three sshd nodes quickly, each with its own loopback address and host key', () => {
    expect(startMs).toBeLessThan(5000);
    expect(lab.nodes.map((n) => n.name)).toEqual(NAMES);
    expect(new Set(lab.nodes.map((n) => n.host)).size).toBe(3);
    expect(new Set(lab.nodes.map((n) => n.hostKey)).size).toBe(3);
    for (const n of lab.nodes) expect(n.hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
  });

  it('answer over real SSH with pinned host keys and show three distinct hostnames, not the config names', async () => {
    const names = await Promise.all(
      lab.nodes.map(async (n) => {
        const ssh = await connect(n, keys.privateKey, n.hostKey);
        try {
          return (await ssh.execCommand('hostname')).stdout;
        } finally {
          ssh.dispose();
        }
      }),
    );
    // like the owner's machines: the hostname is not the config's node name (k3s would name the Node after it)
    expect(names).toEqual(['pedro-cp', 'pedro-w1', 'pedro-w2']);
    expect(names).toEqual(NAMES.map((n) => LAB_HOSTNAMES[n]));
    expect(lab.nodes.map((n) => n.hostname)).toEqual(names);
  });

  it('accept only the lab key: another key and passwords are refused', async () => {
    const other = labKeyPair();
    const n = lab.nodes[0];
    await expect(connect(n, other.privateKey, n.hostKey)).rejects.toThrow(/authentication methods failed/);
    await expect(connect(n, '', n.hostKey, { privateKey: undefined, password: 'root' })).rejects.toThrow(
      /authentication methods failed/,
    );
    rmSync(other.dir, { recursive: true, force: true });
  });

  it("keep each node's writes private: not on the other nodes, not on the host", async () => {
    const [cp, w1, w2] = lab.nodes;
    const ssh = await connect(cp, keys.privateKey, cp.hostKey);
    const r = await ssh.execCommand(
      'mkdir -p /etc/rancher/k3s && echo "node-ip: 127.0.0.11" > /etc/rancher/k3s/config.yaml && echo x > /etc/lab-probe && mkdir -p /data/persistent-storage/longhorn && cat /etc/rancher/k3s/config.yaml',
    );
    ssh.dispose();
    expect(r.stdout).toBe('node-ip: 127.0.0.11');
    expect(readFileSync(path.join(cp.rootDir, 'etc/rancher/k3s/config.yaml'), 'utf8')).toBe('node-ip: 127.0.0.11\n');
    for (const n of [w1, w2]) {
      const s = await connect(n, keys.privateKey, n.hostKey);
      const check = await s.execCommand(
        'test -e /etc/rancher/k3s/config.yaml; echo $?; test -e /etc/lab-probe; echo $?',
      );
      s.dispose();
      expect(check.stdout).toBe('1\n1');
    }
    expect(existsSync('/etc/rancher/k3s/config.yaml')).toBe(false);
    expect(existsSync('/etc/lab-probe')).toBe(false);
    expect(existsSync('/data/persistent-storage/longhorn')).toBe(false);
    expect(hostMountsBelow(dir)).toEqual([]);
  });

  it('print the configured facts through the usual commands', async () => {
    const w1 = lab.nodes[1];
    const ssh = await connect(w1, keys.privateKey, w1.hostKey);
    const run = async (cmd: string) => ssh.execCommand(cmd);
    expect((await run('uname -m')).stdout).toBe('x86_64');
    expect((await run('uname -s')).stdout).toBe('Linux');
    expect((await run('nproc')).stdout).toBe('4');
    expect((await run('free -m')).stdout.split('\n')[1]).toMatch(/^Mem:\s+8192\s+\d+/);
    expect((await run('df -BG --output=avail,target /data/persistent-storage')).stdout).toBe(
      'Avail Mounted on\n 100G /data/persistent-storage',
    );
    expect((await run('cat /etc/os-release')).stdout).toContain('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"');
    expect((await run("dpkg-query -W -f='${Status}' nfs-common")).stdout).toBe('install ok installed');
    const missing = await run("dpkg-query -W -f='${Status}' jq");
    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'dpkg-query: no packages found matching jq' });
    expect((await run('timedatectl show -p NTPSynchronized --value')).stdout).toBe('yes');
    expect((await run('swapon --show --noheadings')).stdout).toBe('');
    expect((await run('ss -Htln')).stdout).toBe('');
    expect((await run('mountpoint -q /data/persistent-storage')).code).toBe(0);
    expect((await run('sysctl -w net.ipv4.ip_forward=1')).stdout).toBe('net.ipv4.ip_forward = 1');
    expect((await run('modprobe br_netfilter && lsmod | grep -c br_netfilter')).stdout).toBe('1');
    // iproute2's formats (ip/iproute.c, ip/ipaddress.c): route lines end in a space, -o joins with "\"
    expect((await run("ip -o -4 route show default | sed 's/$/|/'")).stdout).toBe(
      'default via 192.168.50.1 dev eth0 proto dhcp src 192.168.50.11 metric 100 |',
    );
    expect((await run('ip -o -4 addr show')).stdout.split('\n')).toEqual([
      '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
      '2: eth0    inet 192.168.50.11/24 brd 192.168.50.255 scope global eth0\\       valid_lft forever preferred_lft forever',
      '3: tailscale0    inet 100.64.0.11/32 scope global tailscale0\\       valid_lft forever preferred_lft forever',
    ]);
    expect(await run('ip -o addr show dev wlan0')).toMatchObject({ code: 1, stderr: 'Device "wlan0" does not exist.' });
    ssh.dispose();

    const w2 = lab.nodes[2];
    const s2 = await connect(w2, keys.privateKey, w2.hostKey);
    expect((await s2.execCommand('nproc')).stdout).toBe('2');
    expect((await s2.execCommand('free -m')).stdout).toMatch(/Mem:\s+4096 /);
    expect((await s2.execCommand('mountpoint /data/persistent-storage')).stdout).toBe(
      '/data/persistent-storage is not a mountpoint',
    );
    expect((await s2.execCommand('df -BG --output=avail,target /data/persistent-storage')).stdout).toMatch(/ \/$/);
    s2.dispose();
  });

  it('change facts live with setFacts, and through apt-get / swapoff on the node', async () => {
    const cp = lab.nodes[0];
    await lab.faults.setFacts(cp.name, {
      cpus: 1,
      swap: true,
      timeSynced: false,
      busyPorts: [6443],
      arch: 'riscv64',
      osRelease: 'Ubuntu 24.04',
      diskGiB: 12,
    });
    const ssh = await connect(cp, keys.privateKey, cp.hostKey);
    const run = async (cmd: string) => (await ssh.execCommand(cmd)).stdout;
    expect(await run('nproc; uname -m; timedatectl show -p NTPSynchronized --value')).toBe('1\nriscv64\nno');
    expect(await run('ss -Htln')).toBe('LISTEN 0      4096   0.0.0.0:6443 0.0.0.0:*');
    expect(await run('swapon --show --noheadings')).toContain('/swapfile');
    expect(await run('grep ^PRETTY_NAME /etc/os-release')).toBe('PRETTY_NAME="Ubuntu 24.04"');
    expect(await run('df -BG --output=avail,target /')).toBe('Avail Mounted on\n  12G /');
    expect(await run('swapoff -a && swapon --show --noheadings; free -m | grep Swap')).toMatch(/^Swap:\s+0 /);

    const before = lab.counters()[cp.name].aptInstalls;
    const noYes = await ssh.execCommand('apt-get install jq');
    expect(noYes.code).toBe(1);
    expect(noYes.stdout).toContain('Abort.');
    const inst = await ssh.execCommand('apt-get install -y jq curl');
    expect(inst.code).toBe(0);
    expect(inst.stdout).toContain('curl is already the newest version');
    expect(await run("dpkg-query -W -f='${Status}' jq")).toBe('install ok installed');
    expect(lab.counters()[cp.name].aptInstalls).toBe(before + 1);
    const facts = JSON.parse(readFileSync(path.join(cp.rootDir, 'var/lib/lab/facts.json'), 'utf8'));
    expect(facts).toMatchObject({ swap: false, cpus: 1 });
    expect(facts.packages).toContain('jq');
    ssh.dispose();
  });

  it('reject bad input', async () => {
    await expect(lab.faults.setFacts('control-plane', { cpus: -1 })).rejects.toThrow(/cpus/);
    await expect(lab.faults.setFacts('control-plane', { packages: ['bad name'] })).rejects.toThrow(/packages/);
    await expect(lab.faults.setFacts('nope', { cpus: 1 })).rejects.toThrow(/unknown node "nope"/);
    expect(() => lab.faults.slow('nope', 10)).toThrow(/unknown node/);
    expect(() => lab.faults.dropAfter('worker-1', 0)).toThrow(/n must be/);
    const base = { dir: path.join(keys.dir, 'bad'), authorizedKey: keys.publicKey, kube };
    await expect(startNodes({ ...base, names: ['Bad_Name'] })).rejects.toThrow(/not a valid hostname/);
    await expect(startNodes({ ...base, names: ['a', 'a'] })).rejects.toThrow(/duplicate/);
    await expect(startNodes({ ...base, names: ['a'], authorizedKey: 'hello' })).rejects.toThrow(/public key/);
    await expect(startNodes({ ...base, names: ['a'], facts: { a: { cpus: 1.5 } } })).rejects.toThrow(/cpus/);
    expect(hostMountsBelow(path.join(keys.dir, 'bad'))).toEqual([]);
  });

  it('stop() leaves no process, mount or node folder behind', async () => {
    const before = labProcesses(dir);
    expect(before.length).toBeGreaterThanOrEqual(6); // 3 holders + 3 sshd
    // a session still running at stop time must not survive it either
    const cp = lab.nodes[0];
    const ssh = await connect(cp, keys.privateKey, cp.hostKey);
    void ssh.execCommand('sleep 30').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(labProcesses(dir).length).toBeGreaterThan(before.length);
    await lab.stop();
    ssh.dispose();
    expect(labProcesses(dir)).toEqual([]);
    for (const pid of before) expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(hostMountsBelow(keys.dir)).toEqual([]);
    for (const n of NAMES) expect(existsSync(path.join(dir, n))).toBe(false);
  });
});
