// A full build of the lab through provisionCluster on the real Temporal dev server, then the same
// provision again: the second one must change nothing and say so step by step.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import { kubeconfigPathFor } from '../../activities/kube/client.js';
import { VIP_MANIFEST_PATH } from '../../activities/k3s/vip.js';
import { goDuration } from '../../activities/components/helmchart.js';
import { provisionHarness, progressOf, until, type ProvisionHarness } from './provision-lab.js';

let h: ProvisionHarness;
beforeAll(async () => {
  h = await provisionHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe('provisionCluster on the lab', () => {
  test('a full build installs k3s once per node, creates each HelmChart once, reports every component Ready', async () => {
    h.lab.resetCounters();
    const handle = await h.start();
    const report = (await handle.result()) as ProvisionReport;
    const c = h.lab.counters();
    for (const n of ['control-plane', 'worker-1', 'worker-2']) expect(c.nodes[n].installerRuns, n).toBe(1);
    expect(c.kube.writes['create:HelmChart']).toBe(h.lab.spec.components.length);
    expect(c.kube.writes['update:HelmChart'] ?? 0).toBe(0);
    expect(report.state).toBe('succeeded');
    expect(report.components.map((x) => [x.name, x.state])).toEqual(
      h.lab.spec.components.map((x) => [x.name, 'Ready']),
    );
    expect(report.nodes.every((n) => n.installed && n.version === h.lab.spec.k3s.version)).toBe(true);
    expect(report.steps.find((s) => s.id === 'openbao-bootstrap')?.state).toBe('succeeded');
    // The lab machines' hostnames differ from the config names and no nodeIp is pinned (issue 13):
    // the preflight step shows what k3s will see, and the Nodes register under the config names.
    const preflight = report.steps.find((s) => s.id === 'preflight')?.detail ?? '';
    expect(preflight).toContain(
      'control-plane: hostname pedro-cp, node-ip 192.168.50.10 (discovered on eth0; pin as nodeIp)',
    );
    expect(preflight).toContain('worker-2: hostname pedro-w2, node-ip 192.168.50.12');
    const kube = h.deps.kube(h.deps.clusters.get('lab')!);
    const nodes = await kube.list<{
      metadata?: { name?: string };
      status?: { addresses?: { type: string; address: string }[] };
    }>('v1', 'Node');
    expect(nodes.map((n) => n.metadata?.name).sort()).toEqual(['control-plane', 'worker-1', 'worker-2']);
    expect(nodes.find((n) => n.metadata?.name === 'worker-1')?.status?.addresses).toContainEqual({
      type: 'InternalIP',
      address: '192.168.50.11',
    });

    // Split DNS lives in coredns-custom (k3s imports its *.server keys), forwarding to PowerDNS's
    // ClusterIP as the real apiserver allocated it; k3s's own coredns ConfigMap is left alone. The
    // Service is the one the chart renders (unbyte-de/powerdns-chart: <fullname>-auth, from the lock).
    const svc = await kube.read<{ spec?: { clusterIP?: string } }>('v1', 'Service', 'powerdns-auth', 'powerdns-system');
    expect(svc?.spec?.clusterIP).toMatch(/^10\.43\./);
    const custom = await kube.read<{ data?: Record<string, string> }>(
      'v1',
      'ConfigMap',
      'coredns-custom',
      'kube-system',
    );
    expect(custom?.data?.['split-dns.server']).toContain(`forward . ${svc!.spec!.clusterIP}\n`);
    const core = await kube.read<{ data?: Record<string, string> }>('v1', 'ConfigMap', 'coredns', 'kube-system');
    expect(core?.data?.Corefile).not.toContain('pedro-ops');

    // The VIP (issue 13 item 1): the lab's VIP answers only once kube-vip runs and leads, so the build
    // deployed it after the first server and waited for it before the joins and the kubeconfig.
    expect(report.vip).toMatchObject({ address: h.lab.vip, provider: 'kube-vip v0.6.4', state: 'succeeded' });
    expect(report.vip?.detail).toContain(`manifest written to ${VIP_MANIFEST_PATH}`);
    const order = report.steps.map((s) => s.id);
    expect(order.indexOf('vip')).toBeGreaterThan(order.indexOf('k3s/control-plane'));
    expect(order.indexOf('vip')).toBeLessThan(order.indexOf('k3s/worker-1'));
    const lease = await kube.read<{ spec?: { holderIdentity?: string } }>(
      'coordination.k8s.io/v1',
      'Lease',
      'plndr-cp-lock',
      'kube-system',
    );
    expect(lease?.spec?.holderIdentity).toBe('pedro-cp'); // kube-vip's identity is the machine's hostname

    const kubeconfig = kubeconfigPathFor(h.lab.spec, h.dir);
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
    expect(readFileSync(kubeconfig, 'utf8')).toContain(`server: https://${h.lab.spec.vip}:${h.lab.spec.k3s.apiPort}`);

    // Nothing secret in history: join tokens, unseal keys, the root token and the kubeconfig's token.
    const history = JSON.stringify(await handle.fetchHistory());
    const secrets = [...h.lab.secretValues(), h.lab.kube.token];
    expect(secrets.filter((s) => s.length >= 8 && history.includes(s))).toEqual([]);
    expect(secrets.filter((s) => s.length >= 8 && h.log.lines.join('\n').includes(s))).toEqual([]);
    const p = await progressOf(handle);
    expect(p.state).toBe('succeeded');
  }, 240_000);

  test('provision again: no installer run, no HelmChart write, every step already satisfied', async () => {
    h.lab.resetCounters();
    const handle = await h.start();
    await until(handle, 'second provision to finish', (p) => p.state !== 'running', 60_000).then((p) => {
      const parked = p.steps
        .filter((s) => s.state === 'needs-attention')
        .map((s) => `${s.id}: ${s.lastError?.type} ${s.lastError?.message}`);
      expect(parked).toEqual([]);
    });
    const report = (await handle.result()) as ProvisionReport;
    const c = h.lab.counters();
    expect(Object.values(c.nodes).map((n) => n.installerRuns)).toEqual([0, 0, 0]);
    const helmWrites = Object.entries(c.kube.writes).filter(([k]) => k.endsWith(':HelmChart'));
    expect(helmWrites).toEqual([]);
    const notSatisfied = report.steps.filter((s) => s.state !== 'satisfied');
    expect(notSatisfied).toEqual([]);
    expect(report.steps.every((s) => s.detail?.includes('already satisfied'))).toBe(true);
  }, 180_000);

  test('a chart an older orchestrator wrote (timeout "60s", another spec hash) is updated; its Complete Job stays the result', async () => {
    // Before Go's duration form, the spec said `${n}s`. helm-controller runs the same Job for both
    // forms (env TIMEOUT is Duration.String()), so it makes no new Job: waiting for one would park.
    const spec = h.deps.clusters.get('lab')!;
    const kube = h.deps.kube(spec);
    const c = spec.components.find((x) => x.name === 'contour')!;
    const jobBefore = await kube.read<{ metadata?: { uid?: string } }>(
      'batch/v1',
      'Job',
      'helm-install-contour',
      'kube-system',
    );
    await kube.patch(
      {
        apiVersion: 'helm.cattle.io/v1',
        kind: 'HelmChart',
        metadata: { name: 'contour', namespace: 'kube-system', annotations: { 'pedro-ops.dev/spec-hash': 'older' } },
        spec: { timeout: `${c.timeoutSeconds}s` },
      },
      'merge',
    );
    h.lab.resetCounters();
    const handle = await h.start();
    const p = await until(handle, 'third provision to finish', (x) => x.state !== 'running', 60_000);
    expect(p.steps.filter((x) => x.state === 'needs-attention').map((x) => `${x.id}: ${x.lastError?.message}`)).toEqual(
      [],
    );
    const report = (await handle.result()) as ProvisionReport;
    expect(report.steps.find((x) => x.id === 'component/contour')?.state).toBe('succeeded');
    expect(h.lab.counters().kube.writes['patch:HelmChart']).toBe(1);
    const chart = await kube.read<{ spec?: { timeout?: string } }>(
      'helm.cattle.io/v1',
      'HelmChart',
      'contour',
      'kube-system',
    );
    expect(chart?.spec?.timeout).toBe(goDuration(c.timeoutSeconds));
    const jobAfter = await kube.read<{ metadata?: { uid?: string } }>(
      'batch/v1',
      'Job',
      'helm-install-contour',
      'kube-system',
    );
    expect(jobAfter?.metadata?.uid).toBe(jobBefore?.metadata?.uid);
  }, 180_000);

  test('readiness comes from what Helm deployed: a chart whose workloads the config names otherwise still installs', async () => {
    // contour 0.1.0 renders its envoy as a Deployment instead of a DaemonSet when `envoy.kind:
    // deployment` (templates/envoy/deployment.yaml, same name `<fullname>-envoy`); the config still
    // lists DaemonSet contour-envoy. The release's manifest is what the install waits for.
    const spec = h.deps.clusters.get('lab')!;
    const kube = h.deps.kube(spec);
    const ns = spec.components.find((x) => x.name === 'contour')!.namespace;
    expect(spec.components.find((x) => x.name === 'contour')!.workloads).toContainEqual({
      kind: 'DaemonSet',
      name: 'contour-envoy',
    });
    h.lab.pieces.kube.setComponentWorkloads({
      contour: {
        namespace: ns,
        workloads: [
          { kind: 'Deployment', name: 'contour-contour' },
          { kind: 'Deployment', name: 'contour-envoy' },
        ],
      },
    });
    // helm uninstall through helm-controller's helm-delete Job, then a build installs it again
    await kube.delete('helm.cattle.io/v1', 'HelmChart', 'contour', 'kube-system');
    for (
      const deadline = Date.now() + 60_000;
      await kube.read('helm.cattle.io/v1', 'HelmChart', 'contour', 'kube-system');
    ) {
      if (Date.now() > deadline) throw new Error('HelmChart contour still there after 60 s (helm-delete Job)');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await kube.read('apps/v1', 'DaemonSet', 'contour-envoy', ns)).toBeUndefined(); // uninstalled from the manifest
    const handle = await h.start();
    const p = await until(handle, 'the build to finish', (x) => x.state !== 'running', 120_000);
    expect(p.steps.filter((x) => x.state === 'needs-attention').map((x) => `${x.id}: ${x.lastError?.message}`)).toEqual(
      [],
    );
    const report = (await handle.result()) as ProvisionReport;
    expect(report.components.find((x) => x.name === 'contour')).toMatchObject({
      state: 'Ready',
      action: 'created',
      waitedFor: [`Deployment ${ns}/contour-contour`, `Deployment ${ns}/contour-envoy`],
    });
    expect(report.steps.find((x) => x.id === 'component/contour')?.detail).toBe(
      `created; ready: Deployment ${ns}/contour-contour, Deployment ${ns}/contour-envoy`,
    );
  }, 240_000);
});
