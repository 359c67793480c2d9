// upgradeCluster on a built lab (real apiserver, disruption controller, kwok kubelets, sshd nodes with
// the k3s stand-in): v1.31.4+k3s1 → v1.31.5+k3s1 node by node while a 2-replica Deployment under a
// PDB minAvailable 1 is sampled every second, then the faults: a node that never turns Ready on the
// next version (rolled back, uncordoned, parked, aborted) and a drain a PDB blocks.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import type { Lab } from '../lab/index.js';
import type { LabOrchestrator } from '../helpers/lab-deps.js';
import { withBuiltLab } from '../helpers/lab-deps.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { resolve, stepOf, until } from './provision-lab.js';

const CLUSTER = 'upgrade-lab';
let lab: Lab;
let o: LabOrchestrator;
let stopLab: () => Promise<void>;
let t: TestTemporal;

type NodeObj = {
  metadata: { name: string };
  spec?: { unschedulable?: boolean };
  status?: { nodeInfo?: { kubeletVersion?: string } };
};
const writeVersion = (version: string) => {
  // The orchestrator's copy of the cluster file is what the workflow loads: bump the pinned version there.
  const file = join(o.dataDir, 'clusters', `${CLUSTER}.yaml`);
  writeFileSync(file, readFileSync(file, 'utf8').replace(/version: v1\.\d+\.\d+\+k3s\d+/, `version: ${version}`));
};
const nodes = async () =>
  (await o.kube.list<NodeObj & { apiVersion?: string; kind?: string }>('v1', 'Node')) as NodeObj[];
const start = (): Promise<WorkflowHandle> =>
  t.client.workflow.start('upgradeCluster', {
    taskQueue: t.taskQueue,
    workflowId: `upgrade/${CLUSTER}`,
    args: [{ cluster: CLUSTER, requestedBy: 'test' }],
  });

beforeAll(async () => {
  await withBuiltLab(
    {
      prefix: 'pedro-ops-upgrade',
      patch: (spec) => {
        spec.name = CLUSTER;
        // nodeReadyTimeoutSeconds is both how long the never-Ready test waits before rolling back and
        // the rollback's own budget to see the node Ready again on the old version (kwok's
        // node-initialize stage turning Ready back on). That takes well under a second alone, but a
        // rollback missed a 20 s budget once with three labs running side by side, and a 45 s one in a
        // full run once the lab installed the charts' real renders (more DaemonSet pods per node): 90 s.
        spec.upgrade = { concurrency: 1, drainTimeoutSeconds: 20, nodeReadyTimeoutSeconds: 90 };
      },
    },
    (l, orch, stop) => {
      lab = l;
      o = orch;
      stopLab = stop;
    },
  );
  t = await testTemporal({ taskQueuePrefix: 'upgrade' });
  await t.startWorker(o.deps);
  const labels = { app: 'sampled' };
  await o.kube.create({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'sampled', namespace: 'default' },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } },
    },
  });
  await o.kube.create({
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: 'sampled', namespace: 'default' },
    spec: { minAvailable: 1, selector: { matchLabels: labels } },
  });
  for (const end = Date.now() + 60_000; ;) {
    const d = await o.kube.read<{ status?: { availableReplicas?: number } } & { apiVersion: string; kind: string }>(
      'apps/v1',
      'Deployment',
      'sampled',
      'default',
    );
    if ((d?.status?.availableReplicas ?? 0) >= 2) break;
    if (Date.now() > end) throw new Error('sampled Deployment never became available');
    await new Promise((r) => setTimeout(r, 250));
  }
}, 600_000);

afterAll(async () => {
  await t?.close();
  await stopLab?.();
});

describe('upgradeCluster on the lab', () => {
  test('v1.31.4+k3s1 → v1.31.5+k3s1 node by node, the PDB-guarded Deployment never unavailable', async () => {
    // Longhorn keeps a minAvailable-1 PDB on every node's instance manager while the node is schedulable
    // (the lab's longhorn-manager double, controllers/longhorn-im.ts): 0 disruptions allowed, by design.
    const imBudgets = async () =>
      (
        await o.kube.list<
          { metadata: { name: string }; status?: { disruptionsAllowed?: number } } & {
            apiVersion: string;
            kind: string;
          }
        >('policy/v1', 'PodDisruptionBudget', 'longhorn-system')
      ).filter((b) => b.metadata.name.startsWith('instance-manager-'));
    for (const end = Date.now() + 60_000; (await imBudgets()).length < 3;) {
      if (Date.now() > end) throw new Error('no instance-manager PDB on every node');
      await new Promise((r) => setTimeout(r, 250));
    }
    expect((await imBudgets()).map((b) => b.status?.disruptionsAllowed ?? 0)).toEqual([0, 0, 0]);
    writeVersion('v1.31.5+k3s1');
    const samples: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const d = await o.kube.read<{ status?: { availableReplicas?: number } } & { apiVersion: string; kind: string }>(
          'apps/v1',
          'Deployment',
          'sampled',
          'default',
        );
        samples.push(d?.status?.availableReplicas ?? 0);
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    const h = await start();
    const report = (await h.result()) as UpgradeReport;
    sampling = false;
    await sampler;
    process.stderr.write(`[upgrade] availableReplicas every 1 s (${samples.length} samples): ${samples.join(' ')}\n`);
    process.stderr.write(`[upgrade] nodes: ${JSON.stringify(report.nodes)}\n`);
    expect(report.state).toBe('succeeded');
    expect(report.snapshot?.file).toMatch(/^pre-upgrade-v1\.31\.5-k3s1-control-plane-\d+$/);
    expect(report.nodes.map((n) => [n.name, n.from, n.state])).toEqual([
      ['control-plane', 'v1.31.4+k3s1', 'succeeded'],
      ['worker-1', 'v1.31.4+k3s1', 'succeeded'],
      ['worker-2', 'v1.31.4+k3s1', 'succeeded'],
    ]);
    // node by node: each node's upgrade started after the previous one finished
    const p = await h.query<{ steps: { id: string; startedAt?: string; finishedAt?: string; detail?: string }[] }>(
      'progress',
    );
    const spans = ['control-plane', 'worker-1', 'worker-2'].map((n) => p.steps.find((s) => s.id === `node/${n}`)!);
    for (let i = 1; i < spans.length; i++)
      expect(Date.parse(spans[i].startedAt!)).toBeGreaterThanOrEqual(Date.parse(spans[i - 1].finishedAt!));
    expect(samples.length).toBeGreaterThan(0);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(1);
    for (const n of await nodes()) {
      expect(n.status?.nodeInfo?.kubeletVersion, n.metadata.name).toBe('v1.31.5+k3s1');
      expect(n.spec?.unschedulable ?? false, n.metadata.name).toBe(false);
    }
    // The server's pinned workloads (openbao, powerdns, zot: `kubernetes.io/hostname: control-plane` in
    // their recorded renders) were evicted by its drain and could come back only to it: they run there
    // again, so the server was uncordoned before OpenBAO's unseal and the gate waited for them.
    for (const [ns, app] of [
      ['openbao-system', 'openbao'],
      ['powerdns-system', 'powerdns'],
      ['zot-system', 'zot'],
    ]) {
      const pods = await o.kube.list<
        { spec?: { nodeName?: string; nodeSelector?: Record<string, string> } } & {
          apiVersion: string;
          kind: string;
        }
      >('v1', 'Pod', ns, `app.kubernetes.io/name=${app}`);
      expect(pods.length, `${ns} pods`).toBeGreaterThan(0);
      for (const pod of pods) {
        expect(pod.spec?.nodeSelector?.['kubernetes.io/hostname'], ns).toBe('control-plane');
        expect(pod.spec?.nodeName, ns).toBe('control-plane');
      }
    }
    // each instance manager is back on its uncordoned node, with its PDB
    for (const end = Date.now() + 60_000; (await imBudgets()).length < 3;) {
      if (Date.now() > end) throw new Error('instance-manager PDBs not back after the upgrade');
      await new Promise((r) => setTimeout(r, 250));
    }
    const cpStep = p.steps.find((x) => x.id === 'node/control-plane')!;
    expect(Number(/\((\d+) pods evicted/.exec(cpStep.detail ?? '')?.[1])).toBeGreaterThanOrEqual(3);
  }, 600_000);

  test('a node that never turns Ready on the new version is rolled back, uncordoned and parked; abort leaves nothing cordoned', async () => {
    writeVersion('v1.31.6+k3s1');
    await lab.faults.upgrade.nodeNotReadyOn('worker-1', 'v1.31.6+k3s1');
    const h = await start();
    const p = await until(h, 'worker-1 parked', (x) => stepOf(x, 'node/worker-1').state === 'needs-attention', 300_000);
    const err = stepOf(p, 'node/worker-1').lastError!;
    expect(err.type).toBe('NodeNotReady');
    expect(err.message).toContain('rolled back to v1.31.5+k3s1');
    const byName = new Map((await nodes()).map((n) => [n.metadata.name, n]));
    expect(byName.get('worker-1')?.status?.nodeInfo?.kubeletVersion).toBe('v1.31.5+k3s1');
    expect(byName.get('control-plane')?.status?.nodeInfo?.kubeletVersion).toBe('v1.31.6+k3s1');
    for (const n of byName.values()) expect(n.spec?.unschedulable ?? false, n.metadata.name).toBe(false);
    await resolve(h, 'node/worker-1', 'abort');
    await expect(h.result()).rejects.toThrow();
    for (const n of await nodes()) expect(n.spec?.unschedulable ?? false, n.metadata.name).toBe(false);
    await lab.faults.clear();
  }, 600_000);

  test('a drain blocked by a PDB: preflight names it; skipped, the drain fails naming it, the node is uncordoned', async () => {
    await lab.faults.upgrade.blockDrain('default', { app: 'sampled' });
    const h = await start();
    let p = await until(h, 'preflight parked', (x) => stepOf(x, 'preflight').state === 'needs-attention', 120_000);
    expect(stepOf(p, 'preflight').lastError?.message).toContain('PodDisruptionBudget default/lab-block-drain');
    await resolve(h, 'preflight', 'skip');
    p = await until(
      h,
      'a drain parked',
      (x) => x.steps.some((s) => s.id.startsWith('node/') && s.state === 'needs-attention'),
      300_000,
    );
    const parked = p.steps.find((s) => s.id.startsWith('node/') && s.state === 'needs-attention')!;
    expect(parked.lastError?.type).toBe('DrainBlocked');
    expect(parked.lastError?.message).toContain('default/lab-block-drain');
    for (const n of await nodes()) expect(n.spec?.unschedulable ?? false, n.metadata.name).toBe(false);
    await resolve(h, parked.id, 'abort');
    await expect(h.result()).rejects.toThrow();
    for (const n of await nodes()) expect(n.spec?.unschedulable ?? false, n.metadata.name).toBe(false);
    await lab.faults.clear();
  }, 600_000);
});
