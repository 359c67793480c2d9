// Node-side build activities (preflight, prepare, k3s install/join) against the lab's nodes, which
// behave like the owner's machines and like upstream k3s (issue 13): hostnames differ from the
// config's node names, the LAN address is only found through `ip`, agent units are Type=notify and
// block while the server is unreachable, and the installer leaves a stopped service stopped.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { NodeSSH } from 'node-ssh';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { startLab, type Lab } from '../lab/index.js';
import { orchestratorForLab, type LabOrchestrator } from '../helpers/lab-deps.js';
import { preflightActivities } from '../../activities/ssh/preflight.js';
import { prepareActivities } from '../../activities/ssh/prepare.js';
import { k3sActivities } from '../../activities/k3s/install.js';
import { kubeconfigActivities } from '../../activities/k3s/kubeconfig.js';
import { vipActivities } from '../../activities/k3s/vip.js';
import type { ClusterSpec } from '../../config/schema.js';
import type { KubeObject } from '../../activities/kube/client.js';

let lab: Lab;
let o: LabOrchestrator;
const extra: LabOrchestrator[] = [];
beforeAll(async () => {
  lab = await startLab({ log: () => undefined });
  o = orchestratorForLab(lab, { prefix: 'k3s-node-test' });
}, 60_000);
afterAll(async () => {
  await lab?.stop();
  for (const x of [o, ...extra]) if (x) rmSync(x.dataDir, { recursive: true, force: true });
});

const acts = (x: LabOrchestrator = o) => ({
  ...preflightActivities(x.deps),
  ...prepareActivities(x.deps),
  ...k3sActivities(x.deps),
  ...kubeconfigActivities(x.deps),
  ...vipActivities(x.deps),
});
const patched = (patch: (s: ClusterSpec) => void) => {
  const x = orchestratorForLab(lab, { prefix: 'k3s-node-test-patched', patch });
  extra.push(x);
  return x;
};
const cluster = () => o.spec.name;

async function onNode(name: string, cmd: string) {
  const n = lab.nodes.find((x) => x.name === name)!;
  const pinned = Buffer.from(n.hostKey.split(' ')[1], 'base64');
  const ssh = await new NodeSSH().connect({
    host: n.host,
    port: n.port,
    username: 'root',
    privateKey: readFileSync(lab.sshKeyPath, 'utf8'),
    hostVerifier: (k: Buffer) => k.equals(pinned),
  });
  try {
    return await ssh.execCommand(cmd);
  } finally {
    ssh.dispose();
  }
}
const failureOf = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
};
type NodeObj = KubeObject & { status?: { addresses?: { type: string; address: string }[] } };

describe('node build on lab machines that behave like the real ones', () => {
  it('preflight refuses RHEL-family and SUSE hosts with the reason: prepare only knows apt (item 10)', async () => {
    await lab.faults.setFacts('worker-2', { osRelease: 'Rocky 9.4' });
    try {
      const r = await acts().preflightNode({ cluster: cluster(), node: 'worker-2' });
      expect(r.findings.join('\n')).toMatch(/rocky 9\.4.*apt/i);
    } finally {
      await lab.faults.setFacts('worker-2', { osRelease: 'Debian 12' });
    }
  });

  it('preflight reports the real hostname and the discovered LAN node-ip (not tailscale0) (items 2, 3)', async () => {
    expect(o.spec.nodes.every((n) => n.nodeIp === undefined)).toBe(true);
    const r = await acts().preflightNode({ cluster: cluster(), node: 'control-plane' });
    expect(r.findings).toEqual([]);
    expect(r).toMatchObject({ hostname: 'pedro-cp', nodeIp: '192.168.50.10', nodeIpSource: 'discovered on eth0' });
    // The lab's VIP is a loopback address, not on the facts' eth0 LAN: shown, not refused.
    expect(r.warnings).toEqual([expect.stringContaining(`the VIP ${o.spec.vip} is outside eth0's subnet`)]);

    // an exit node (or a route to tailscale0 with a better metric) must not win
    await lab.faults.setFacts('worker-1', {
      defaultRoutes: [
        { dev: 'tailscale0', via: '100.100.100.100', metric: 5 },
        { dev: 'eth0', via: '192.168.50.1', metric: 100 },
      ],
    });
    expect(await acts().preflightNode({ cluster: cluster(), node: 'worker-1' })).toMatchObject({
      hostname: 'pedro-w1',
      nodeIp: '192.168.50.11',
    });
    // only tailscale0 has a default route: nothing to pin, so it is a finding
    await lab.faults.setFacts('worker-1', { defaultRoutes: [{ dev: 'tailscale0', via: '100.100.100.100' }] });
    const none = await acts().preflightNode({ cluster: cluster(), node: 'worker-1' });
    expect(none.findings.join('\n')).toMatch(/no LAN address.*tailscale0.*nodeIp/);
    await lab.faults.setFacts('worker-1', { defaultRoutes: [{ dev: 'eth0', via: '192.168.50.1', metric: 100 }] });
  });

  it('prepare writes node-name, the LAN node-ip and registries.yaml; the Nodes register under the config names (items 2, 3, 4)', async () => {
    for (const n of o.spec.nodes) await acts().prepareNode({ cluster: cluster(), node: n.name });
    const cfg = readFileSync(`${lab.nodes[0].rootDir}/etc/rancher/k3s/config.yaml`, 'utf8');
    expect(cfg).toContain('node-name: control-plane');
    expect(cfg).toContain('node-ip: 192.168.50.10');
    const reg = readFileSync(`${lab.nodes[1].rootDir}/etc/rancher/k3s/registries.yaml`, 'utf8');
    const r = o.spec.registry!;
    // k3s docs' format (docs.k3s.io/installation/private-registry): plain HTTP = an http:// endpoint
    expect(parse(reg)).toEqual({ mirrors: { [`${r.host}:${r.port}`]: { endpoint: [`http://${r.host}:${r.port}`] } } });

    const server = await acts().installK3sServer({ cluster: cluster(), node: 'control-plane' });
    // The new server token goes off-node into 1Password (issue 20): the result carries its reference
    // and fingerprint, never the value.
    const token = (await onNode('control-plane', 'cat /var/lib/rancher/k3s/server/token')).stdout.trim();
    expect(server.tokenCopy).toMatchObject({
      ref: `op://${o.spec.onepassword.vault}/k3s-server-token/token`,
      action: 'created',
      fingerprint: expect.stringMatching(/^hmac-sha256:[0-9a-f]+$/),
    });
    expect(JSON.stringify(server)).not.toContain(token.split('::server:')[1]);
    // Agents join the VIP, which answers only once kube-vip runs (issue 13 item 1): as the workflow does.
    expect(await acts().deployVipProvider({ cluster: cluster() })).toMatchObject({ changed: true });
    await acts().waitVipReady({ cluster: cluster(), timeoutSeconds: 45 });
    await acts().joinK3sAgent({ cluster: cluster(), node: 'worker-1' });
    const nodes = await o.kube.list<NodeObj>('v1', 'Node');
    const names = nodes.map((n) => n.metadata!.name);
    expect(names).toEqual(expect.arrayContaining(['control-plane', 'worker-1']));
    expect(names).not.toContain('pedro-cp');
    const cp = nodes.find((n) => n.metadata!.name === 'control-plane')!;
    expect(cp.status?.addresses).toContainEqual({ type: 'InternalIP', address: '192.168.50.10' });
  });

  it('an agent that cannot reach the server parks with "server unreachable from <node>" within the bound (item 7)', async () => {
    const bad = patched((s) => {
      s.k3s.apiPort = 9; // nothing listens on the discard port: the agent retries forever (Type=notify)
      s.k3s.startTimeoutSeconds = 6;
    });
    const t0 = Date.now();
    const err = await failureOf(acts(bad).joinK3sAgent({ cluster: bad.spec.name, node: 'worker-2' }));
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(err.nonRetryable).toBe(true);
    expect(err.type).toBe('ServerUnreachable');
    expect(err.message).toMatch(/^server unreachable from worker-2/);
    expect(err.message).toContain('connection refused');
    // the blocked start was stopped, so a retry with a fixed config starts over
    expect((await onNode('worker-2', 'systemctl is-active k3s-agent')).stdout).not.toBe('activating');
    const ok = await acts().joinK3sAgent({ cluster: cluster(), node: 'worker-2' });
    expect(ok.action).toBe('started'); // binary already there from the failed attempt; env rewritten
    // every node registered under its config name, so the wait by config names completes (item 2)
    const ready = await acts().waitNodesReady({ cluster: cluster(), timeoutSeconds: 30 });
    expect(ready.nodes.map((n) => n.name)).toEqual(['control-plane', 'worker-1', 'worker-2']);
  });

  it('a stopped k3s at the pinned version is started explicitly: the installer alone leaves it down (item 8)', async () => {
    await onNode('worker-1', 'systemctl stop k3s-agent');
    const r = await acts().joinK3sAgent({ cluster: cluster(), node: 'worker-1' });
    expect(r).toMatchObject({ installed: false, action: 'started' });
    expect(r.detail).toMatch(/started k3s-agent/);
    expect((await onNode('worker-1', 'systemctl is-active k3s-agent')).stdout).toBe('active');
    const log = (await onNode('worker-1', 'cat /var/lib/rancher/pedro-ops/install.log')).stdout;
    expect(log).toContain('No change detected so skipping service start');
    expect(log).toContain('systemctl start k3s-agent');
  });

  it('a changed k3s config is applied by a restart, and the detail says so (item 9)', async () => {
    const more = patched((s) => {
      s.k3s.extraTlsSans = ['k3s.example.internal'];
    });
    const prep = await acts(more).prepareNode({ cluster: more.spec.name, node: 'control-plane' });
    expect(prep.changed.join('\n')).toContain('/etc/rancher/k3s/config.yaml');
    const r = await acts(more).installK3sServer({ cluster: more.spec.name, node: 'control-plane' });
    expect(r).toMatchObject({ installed: false, action: 'restarted' });
    expect(r.detail).toMatch(/restarted k3s.*config\.yaml changed/);
    const node = await o.kube.read<KubeObject>('v1', 'Node', 'control-plane');
    expect(node?.metadata?.annotations?.['k3s.io/node-args']).toContain('k3s.example.internal');
    // applied: nothing left to do on the next run
    const again = await acts(more).installK3sServer({ cluster: more.spec.name, node: 'control-plane' });
    expect(again).toMatchObject({ installed: false, action: 'unchanged' });
    // The kept copy is read back and compared: unchanged, same fingerprint, nothing written.
    expect(again.tokenCopy).toMatchObject({ action: 'unchanged', fingerprint: r.tokenCopy?.fingerprint });
  });

  it('an item that holds another server token is refused, not overwritten (issue 20)', async () => {
    const other = patched((s) => {
      s.k3s.tokenItem = 'k3s-token-of-an-older-cluster';
    });
    const op = await other.deps.onepassword(other.spec);
    const vaultId = (await op.vaults.list()).find((x) => x.title === other.spec.onepassword.vault)!.id;
    const field = { id: 'token', title: 'token', fieldType: 'Concealed', value: 'K10aaaa::server:older' } as never;
    await op.items.create({
      category: 'Password' as never,
      vaultId,
      title: 'k3s-token-of-an-older-cluster',
      fields: [field],
      sections: [],
    });
    const err = await failureOf(acts(other).installK3sServer({ cluster: other.spec.name, node: 'control-plane' }));
    expect([err.type, err.nonRetryable]).toEqual(['BadConfig', true]);
    expect(err.message).toBe(
      `1Password item op://${other.spec.onepassword.vault}/k3s-token-of-an-older-cluster/token holds another k3s server token than control-plane's; move it aside (it may open an older cluster's snapshots) and retry`,
    );
    const overview = (await op.items.list(vaultId)).find((i) => i.title === 'k3s-token-of-an-older-cluster')!;
    expect((await op.items.get(vaultId, overview.id)).fields[0].value).toBe('K10aaaa::server:older');
  });
});
