// The k3s stand-in against the lab's real control plane (test/lab/kube): the nodes it registers
// through the k3s supervisor appear as v1 Nodes that kwok turns Ready; the token rules reach the agent.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startKubeLab, type KubeLab } from '../kube/index.js';
import { startNodes, type LabNodes } from './index.js';
import { labKeyPair, runInstaller } from './test-helpers.js';

const keys = labKeyPair();
let kube: KubeLab;
let lab: LabNodes;

beforeAll(async () => {
  kube = await startKubeLab({ host: '127.0.0.1', dir: path.join(keys.dir, 'kube') });
  lab = await startNodes({
    dir: path.join(keys.dir, 'nodes'),
    names: ['control-plane', 'worker-1'],
    authorizedKey: keys.publicKey,
    kube: { url: kube.supervisorUrl, token: kube.token, caPem: kube.caPem },
  });
}, 120_000);
afterAll(async () => {
  await lab?.stop();
  await kube?.stop();
  rmSync(keys.dir, { recursive: true, force: true });
});

const install = (i: number, env: string, args = '') => runInstaller(lab.nodes[i], keys.privateKey, env, args);

describe('k3s stand-in with the Kubernetes double', () => {
  it('server and agent register as Nodes that turn Ready; a wrong token is refused', async () => {
    const server = await install(
      0,
      'INSTALL_K3S_VERSION=v1.31.4+k3s1 INSTALL_K3S_EXEC="server --cluster-init --tls-san 127.0.0.10"',
      '--token t0ken',
    );
    expect(server.stderr).toBe('');
    expect(server.code).toBe(0);
    const agentToken = readFileSync(
      path.join(lab.nodes[0].rootDir, 'var/lib/rancher/k3s/server/agent-token'),
      'utf8',
    ).trim();
    expect(agentToken).toMatch(/^K10[0-9a-f]{64}::node:\S+$/);

    // A wrong token does not fail the agent: it retries (k3s pkg/agent/run.go), so the unit stays activating.
    await install(
      1,
      `(K3S_URL=${kube.url} K3S_TOKEN=nope INSTALL_K3S_VERSION=v1.31.4+k3s1`,
      '>/dev/null 2>&1) </dev/null >/dev/null 2>&1 &',
    );
    const journal = path.join(lab.nodes[1].rootDir, 'var/lib/lab/journal/k3s-agent.log');
    await vi.waitFor(
      () =>
        expect(readFileSync(journal, 'utf8')).toContain('token CA hash does not match the Cluster CA certificate hash'),
      { timeout: 10_000, interval: 200 },
    );
    expect(await kube.get('v1', 'nodes', undefined, 'pedro-w1')).toBeUndefined();

    // the right token: the restart replaces the blocked start (its job is canceled) and the agent joins
    const agent = await install(1, `K3S_URL=${kube.url} K3S_TOKEN='${agentToken}' INSTALL_K3S_VERSION=v1.31.4+k3s1`);
    expect(agent.code).toBe(0);
    await vi.waitFor(
      async () => {
        // no node-name configured: the Nodes carry the machines' hostnames
        for (const n of ['pedro-cp', 'pedro-w1']) {
          const node = (await kube.get('v1', 'nodes', undefined, n)) as
            { status?: { conditions?: { type: string; status: string }[] } } | undefined;
          expect(node?.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
        }
      },
      { timeout: 10_000 },
    );
    expect(lab.counters()['worker-1'].installerRuns).toBe(2);
  });
});
