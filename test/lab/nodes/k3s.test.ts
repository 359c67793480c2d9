// The k3s stand-in: installed and run over SSH exactly like get.k3s.io, registering with a (fake)
// Kubernetes double through the lab-only endpoints.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { K3S_INSTALL_SCRIPT, startNodes, type LabNodes } from './index.js';
import { startFakeKube, type FakeKube } from './fake-kube.js';
import { connect, labKeyPair, runInstaller } from './test-helpers.js';

const keys = labKeyPair();
const dir = path.join(keys.dir, 'nodes');
const VERSION = 'v1.31.4+k3s1';
const SERVER_EXEC = 'server --cluster-init --tls-san 127.0.0.10 --disable=traefik --disable=servicelb';
let kube: FakeKube;
let lab: LabNodes;
/** K3S_URL: the agent validates its token against this URL first, so it must answer (the fake kube does). */
let serverUrl: string;

beforeAll(async () => {
  kube = await startFakeKube();
  lab = await startNodes({
    dir,
    names: ['control-plane', 'worker-1', 'worker-2'],
    authorizedKey: keys.publicKey,
    kube,
  });
  serverUrl = kube.url;
});
afterAll(async () => {
  await lab?.stop();
  await kube?.stop();
  rmSync(keys.dir, { recursive: true, force: true });
});

/** Uploads the installer and runs it with env + positional args, like the orchestrator does. */
const install = (nodeIdx: number, env: string, args = '') =>
  runInstaller(lab.nodes[nodeIdx], keys.privateKey, env, args);
async function run(nodeIdx: number, cmd: string) {
  const n = lab.nodes[nodeIdx];
  const ssh = await connect(n, keys.privateKey, n.hostKey);
  try {
    return await ssh.execCommand(cmd);
  } finally {
    ssh.dispose();
  }
}

describe('k3s stand-in', () => {
  it('installs a server: binary, service, tokens and kubeconfig like k3s, registered with the cluster API', async () => {
    await run(
      0,
      'mkdir -p /etc/rancher/k3s && printf "node-ip: 10.0.0.62\\ntls-san:\\n  - 100.81.89.100\\n" > /etc/rancher/k3s/config.yaml',
    );
    const r = await install(0, `INSTALL_K3S_VERSION=${VERSION} INSTALL_K3S_EXEC="${SERVER_EXEC}"`, '--token s3cret');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`[INFO]  Using ${VERSION} as release`);
    expect(r.stdout).toContain('[INFO]  systemd: Starting k3s');

    const v = await run(
      0,
      'k3s --version; systemctl is-active k3s; ls /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-killall.sh',
    );
    expect(v.stdout).toMatch(/^k3s version v1\.31\.4\+k3s1 \([0-9a-f]{8}\)\ngo version go1\.\d+\.\d+\nactive\n/);
    const tokenFile = path.join(lab.nodes[0].rootDir, 'var/lib/rancher/k3s/server/node-token');
    expect(readFileSync(tokenFile, 'utf8').trim()).toMatch(/^K10[0-9a-f]{64}::server:s3cret$/);
    expect(readFileSync(path.join(lab.nodes[0].rootDir, 'var/lib/rancher/k3s/server/agent-token'), 'utf8')).toMatch(
      /^K10[0-9a-f]{64}::node:\S+/,
    );

    const kubeconfig = path.join(lab.nodes[0].rootDir, 'etc/rancher/k3s/k3s.yaml');
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
    const kc = readFileSync(kubeconfig, 'utf8');
    expect(kc).toContain('server: https://127.0.0.1:6443');
    expect(kc).toContain(`certificate-authority-data: ${Buffer.from(kube.caPem).toString('base64')}`);
    expect(kc).toContain(`token: ${kube.token}`);

    // no node-name in config.yaml: k3s names the Node after the machine's hostname, not the config's name
    expect((await run(0, 'hostname')).stdout).toBe('pedro-cp');
    expect(kube.registered.has('control-plane')).toBe(false);
    expect(kube.registered.get('pedro-cp')).toMatchObject({
      role: 'server',
      body: {
        version: VERSION,
        token: 's3cret',
        nodeIp: '10.0.0.62',
        clusterInit: true,
        tlsSans: ['100.81.89.100', '127.0.0.10'],
        disable: ['traefik', 'servicelb'],
      },
    });
    expect(lab.counters()['control-plane'].installerRuns).toBe(1);
  });

  it('a wrong join token or an unreachable server blocks `systemctl restart k3s-agent` (Type=notify) until stopped', async () => {
    const unit = readFileSync(K3S_INSTALL_SCRIPT, 'utf8');
    expect(unit).toContain('TYPE=${INSTALL_K3S_TYPE:-notify}');
    const closed = 'https://127.0.0.1:9'; // discard port: nothing listens
    for (const [url, token, says] of [
      [serverUrl, `K10${'0'.repeat(64)}::node:nope`, 'token CA hash does not match the Cluster CA certificate hash'],
      [
        closed,
        'K10abc::node:x',
        `failed to get CA certs: Get \\"${closed}/cacerts\\": dial tcp 127.0.0.1:9: connect: connection refused`,
      ],
    ] as const) {
      await run(1, 'rm -f /root/inst.rc /var/lib/lab/journal/k3s-agent.log');
      await runInstaller(
        lab.nodes[1],
        keys.privateKey,
        `(K3S_URL=${url} K3S_TOKEN='${token}' INSTALL_K3S_VERSION=${VERSION}`,
        '>/root/inst.log 2>&1; echo $? >/root/inst.rc) </dev/null >/dev/null 2>&1 &',
      );
      await vi.waitFor(
        async () => expect((await run(1, 'journalctl -u k3s-agent')).stdout.split(says).length).toBeGreaterThan(2),
        { timeout: 10_000, interval: 250 },
      );
      // still blocked: the installer has not finished, the unit is activating, nothing registered
      expect((await run(1, 'cat /root/inst.rc')).code).not.toBe(0);
      expect(await run(1, 'systemctl is-active k3s-agent')).toMatchObject({ stdout: 'activating', code: 3 });
      expect(kube.registered.has('pedro-w1')).toBe(false);
      await run(1, 'systemctl stop k3s-agent');
      await vi.waitFor(async () => expect((await run(1, 'cat /root/inst.rc')).stdout).toBe('1'), { timeout: 5000 });
      expect((await run(1, 'cat /root/inst.log')).stdout).toContain('Job for k3s-agent.service canceled.');
    }
  });

  it("an agent joins with the server's agent token (script piped to `sh -s -`, args appended)", async () => {
    const token = readFileSync(
      path.join(lab.nodes[0].rootDir, 'var/lib/rancher/k3s/server/agent-token'),
      'utf8',
    ).trim();
    const n = lab.nodes[1];
    const ssh = await connect(n, keys.privateKey, n.hostKey);
    await ssh.execCommand('mkdir -p /etc/rancher/k3s && echo "node-name: worker-1" >/etc/rancher/k3s/config.yaml');
    const r = await ssh.execCommand(
      `K3S_URL=${serverUrl} K3S_TOKEN='${token}' INSTALL_K3S_VERSION=${VERSION} sh -s - agent --node-ip 10.0.0.12`,
      { stdin: readFileSync(K3S_INSTALL_SCRIPT, 'utf8') },
    );
    ssh.dispose();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await run(1, 'systemctl is-active k3s-agent; systemctl is-active k3s; echo $?')).stdout).toBe(
      'active\ninactive\n3',
    );
    expect(
      (await run(1, 'systemctl show -p ActiveState --value k3s-agent; systemctl is-enabled k3s-agent')).stdout,
    ).toBe('active\nenabled');
    expect(kube.registered.get('worker-1')).toMatchObject({
      role: 'agent',
      body: { serverUrl, nodeIp: '10.0.0.12', version: VERSION },
    });
    expect(lab.counters()['worker-1'].installerRuns).toBe(3);
  });

  it('an agent newer than the server is refused', async () => {
    const token = readFileSync(path.join(lab.nodes[0].rootDir, 'var/lib/rancher/k3s/server/node-token'), 'utf8').trim();
    const r = await install(2, `K3S_URL=${serverUrl} K3S_TOKEN='${token}' INSTALL_K3S_VERSION=v1.32.1+k3s1`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/level=fatal msg="Error: .*newer/);
    expect((await run(2, 'systemctl is-active k3s-agent')).code).toBe(3);
  });

  it('re-running the installer with the same version is allowed and counted', async () => {
    const r = await install(0, `INSTALL_K3S_VERSION=${VERSION} INSTALL_K3S_EXEC="${SERVER_EXEC}"`, '--token s3cret');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Skipping binary downloaded, installed k3s matches hash');
    expect(r.stdout).toContain('No change detected so skipping service start');
    expect(lab.counters()['control-plane'].installerRuns).toBe(2);
  });

  it('a stopped service with nothing changed stays stopped after a re-run ("No change detected"), as upstream', async () => {
    await run(0, 'systemctl stop k3s');
    const r = await install(0, `INSTALL_K3S_VERSION=${VERSION} INSTALL_K3S_EXEC="${SERVER_EXEC}"`, '--token s3cret');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('No change detected so skipping service start');
    expect(await run(0, 'systemctl is-active k3s')).toMatchObject({ stdout: 'inactive', code: 3 });
    expect((await run(0, 'systemctl start k3s; systemctl is-active k3s')).stdout).toBe('active');
  });

  it('rejects bad installer input like the real script', async () => {
    const badUrl = await install(2, 'K3S_URL=http://127.0.0.10:6443 K3S_TOKEN=x');
    expect(badUrl).toMatchObject({
      code: 1,
      stderr: '[ERROR]  Only https:// URLs are supported for K3S_URL (have http://127.0.0.10:6443)',
    });
    const noToken = await install(2, 'K3S_URL=https://127.0.0.10:6443');
    expect(noToken.stderr).toContain("Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN");
    const badVersion = await install(2, 'INSTALL_K3S_VERSION=v9.9.9');
    expect(badVersion.stderr).toContain('[ERROR]  Download failed');
    await run(2, 'rm -f /usr/local/bin/k3s'); // left by the refused newer agent above
    const skip = await install(2, 'INSTALL_K3S_SKIP_DOWNLOAD=true');
    expect(skip.stderr).toContain('Executable k3s binary not found');
    await lab.faults.setFacts('worker-2', { arch: 'mips' });
    expect((await install(2, '')).stderr).toBe('[ERROR]  Unsupported architecture mips');
    expect(lab.counters()['worker-2'].installerRuns).toBe(6);
  });

  it('a second server with a different token is refused', async () => {
    await lab.faults.setFacts('worker-2', { arch: 'x86_64' });
    const r = await install(
      2,
      `INSTALL_K3S_VERSION=${VERSION} INSTALL_K3S_EXEC="server --server https://127.0.0.10:6443 --token other"`,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('level=fatal msg="Error: token CA hash does not match the Cluster CA certificate hash"');
    expect((await run(2, 'systemctl is-active k3s')).stdout).toBe('failed');
  });

  it('the uninstall script removes k3s and deregisters the node', async () => {
    const r = await run(
      1,
      'k3s-agent-uninstall.sh; test -e /usr/local/bin/k3s; echo k3s=$?; systemctl is-active k3s-agent',
    );
    expect(r.stdout).toMatch(/k3s=1\ninactive$/);
    expect(kube.deleted).toContain('worker-1');
    expect((await run(0, 'systemctl is-active iscsid; echo $?')).stdout).toBe('inactive\n3');
  });
});
