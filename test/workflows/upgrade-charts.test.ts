// upgradeCluster's chart path on a built lab (lab helm-controller/klipper-helm against the real
// apiserver): k3s stays at its version, so every node is already satisfied and only the charts move.
// cert-manager and contour (contour dependsOn cert-manager) get new versions in the cluster file; the
// lab fault makes contour's new version fail. cert-manager upgrades first and its workloads roll to the
// new version; contour's failed upgrade is rolled back to its previous version and values, the step
// parks naming both, and the report of the skipped step says what it went back to. Fault cleared, a
// second run upgrades contour. helm-controller is made to win every race against our writes
// (controllerFirst below).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import type { Lab } from '../lab/index.js';
import type { LabOrchestrator } from '../helpers/lab-deps.js';
import { withBuiltLab } from '../helpers/lab-deps.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import type { ClusterSpec } from '../../config/schema.js';
import type { KubeObject, KubePort, PatchKind } from '../../activities/kube/client.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { chartOrder } from '../../workflows/upgrade-plan.js';
import { resolve, stepOf, until } from './provision-lab.js';

const CLUSTER = 'upgrade-charts-lab';
let lab: Lab;
let o: LabOrchestrator;
let stopLab: () => Promise<void>;
let t: TestTemporal;

type Chart = {
  metadata: { annotations?: Record<string, string> };
  spec: { version: string; valuesContent?: string };
};
type Deploy = { metadata: { labels: Record<string, string> } };

/** The orchestrator's copy of the cluster file is what the workflow loads. */
const setCharts = (versions: Record<string, string>, values: Record<string, Record<string, unknown>> = {}) => {
  const file = join(o.dataDir, 'clusters', `${CLUSTER}.yaml`);
  const raw = parse(readFileSync(file, 'utf8')) as ClusterSpec;
  for (const c of raw.components) {
    if (versions[c.name]) c.version = versions[c.name];
    if (values[c.name]) c.values = { ...c.values, ...values[c.name] };
  }
  writeFileSync(file, stringify(raw, { lineWidth: 0 }));
};
const chart = async (name: string) =>
  (await o.kube.read<Chart & { apiVersion: string; kind: string }>(
    'helm.cattle.io/v1',
    'HelmChart',
    name,
    'kube-system',
  ))!;
/** The chart version a workload was last applied from: charts label their objects `helm.sh/chart: <name>-<version>`.
 * (The lab has one recorded render per chart, so another version's images are not known to it.) */
const deployedChart = async (ns: string, name: string) =>
  (await o.kube.read<Deploy & { apiVersion: string; kind: string }>('apps/v1', 'Deployment', name, ns))!.metadata
    .labels['helm.sh/chart'];
const nsOf = (name: string) => o.spec.components.find((c) => c.name === name)!.namespace;
/**
 * helm-controller winning the race against the orchestrator: after a write that changes a HelmChart's
 * spec, the call returns only once the controller has replaced the chart's install Job (a new uid), as
 * a controller that sees the watch event before our next request would. Upstream allows that order;
 * the rollback must not delete the Job it is about to wait for.
 */
function controllerFirst(kube: KubePort): KubePort {
  return {
    ...kube,
    async patch<T extends KubeObject>(obj: KubeObject, kind: PatchKind): Promise<T> {
      const name = obj.metadata?.name ?? '';
      const job = () => kube.read('batch/v1', 'Job', `helm-install-${name}`, 'kube-system');
      const before = obj.kind === 'HelmChart' && 'spec' in obj ? (await job())?.metadata?.uid : undefined;
      const out = await kube.patch<T>(obj, kind);
      const replaced = async () => [before, undefined].includes((await job())?.metadata?.uid) === false;
      for (let i = 0; before && i < 100 && !(await replaced()); i++) await new Promise((r) => setTimeout(r, 100));
      return out;
    },
  };
}
const start = (): Promise<WorkflowHandle> =>
  t.client.workflow.start('upgradeCluster', {
    taskQueue: t.taskQueue,
    workflowId: `upgrade/${CLUSTER}`,
    args: [{ cluster: CLUSTER, requestedBy: 'test' }],
  });

beforeAll(async () => {
  await withBuiltLab(
    { prefix: 'pedro-ops-upgrade-charts', patch: (spec) => (spec.name = CLUSTER) },
    (l, orch, stop) => {
      lab = l;
      o = orch;
      stopLab = stop;
    },
  );
  t = await testTemporal({ taskQueuePrefix: 'upgrade-charts' });
  await t.startWorker({ ...o.deps, kube: (spec) => controllerFirst(o.deps.kube(spec)) });
}, 600_000);

afterAll(async () => {
  await t?.close();
  await stopLab?.();
});

describe('upgradeCluster: charts', () => {
  test('changed charts upgrade in dependency order; a failing new version is rolled back to the previous version and values', async () => {
    const was = { cm: (await chart('cert-manager')).spec, contour: await chart('contour') };
    expect(o.spec.components.find((c) => c.name === 'contour')!.dependsOn).toContain('cert-manager');
    // contour's values change with its version: the rollback must restore both
    setCharts({ 'cert-manager': 'v1.14.3', contour: '0.1.1' }, { contour: { replicas: 3 } });
    lab.faults.helmcharts.failVersion('contour', '0.1.1');

    const h = await start();
    const p = await until(h, 'contour parked', (x) => stepOf(x, 'chart/contour').state === 'needs-attention', 300_000);
    const cm = stepOf(p, 'chart/cert-manager');
    expect(cm.state).toBe('succeeded');
    expect(cm.detail).toBe(`${was.cm.version} → v1.14.3`);
    // dependency order: contour's upgrade began after cert-manager's had finished
    expect(Date.parse(stepOf(p, 'chart/contour').startedAt!)).toBeGreaterThanOrEqual(Date.parse(cm.finishedAt!));
    expect(await deployedChart(nsOf('cert-manager'), 'cert-manager')).toBe('cert-manager-v1.14.3');
    for (const n of p.steps.filter((s) => s.id.startsWith('node/'))) expect(n.state, n.id).toBe('satisfied');

    const err = stepOf(p, 'chart/contour').lastError!;
    expect(err.type).toBe('InstallFailed');
    expect(err.message).toContain(`upgrade of contour ${was.contour.spec.version} → 0.1.1 failed`);
    expect(err.message).toContain('UPGRADE FAILED: lab: injected failure installing contour 0.1.1');
    expect(err.message).toContain(`rolled back to version ${was.contour.spec.version} and its previous values`);
    // the HelmChart holds its previous spec again (version and values), the release is deployed on it
    const back = await chart('contour');
    expect(back.spec).toEqual(was.contour.spec);
    expect(back.metadata.annotations?.['pedro-ops.dev/spec-hash']).toBe(
      was.contour.metadata.annotations?.['pedro-ops.dev/spec-hash'],
    );
    expect(back.metadata.annotations?.['pedro-ops.dev/rollback-spec']).toBeUndefined();
    expect(await deployedChart(nsOf('contour'), 'contour-contour')).toBe(`contour-${was.contour.spec.version}`);
    const rel = await o.kube.list<
      { metadata: { labels: Record<string, string> } } & { apiVersion: string; kind: string }
    >('v1', 'Secret', nsOf('contour'), 'owner=helm,name=contour');
    // revision 1 (the build) superseded, the failed revision 2 removed, the rollback's one helm run deployed
    // as revision 2: a second run of the rollback Job would show as a revision 3
    const revs = rel
      .map((r) => [Number(r.metadata.labels.version), r.metadata.labels.status])
      .sort((a, b) => Number(a[0]) - Number(b[0]));
    expect(revs).toEqual([
      [1, 'superseded'],
      [2, 'deployed'],
    ]);

    await resolve(h, 'chart/contour', 'skip');
    const report = (await h.result()) as UpgradeReport;
    expect(report.state).toBe('partial');
    const entry = report.charts.find((c) => c.name === 'contour')!;
    expect(entry.state).toBe('skipped');
    expect(entry.detail).toContain(`rolled back to version ${was.contour.spec.version}`);
    expect(report.charts.find((c) => c.name === 'cert-manager')).toMatchObject({ state: 'succeeded' });
    // everything after contour in dependency order still ran
    expect(report.charts.map((c) => c.name)).toEqual(chartOrder(o.spec));

    // the fault gone, the next run upgrades contour and leaves cert-manager as it is
    await lab.faults.clear();
    const again = (await (await start()).result()) as UpgradeReport;
    expect(again.state).toBe('succeeded');
    expect(again.charts.find((c) => c.name === 'contour')).toMatchObject({
      state: 'succeeded',
      detail: `${was.contour.spec.version} → 0.1.1`,
    });
    expect(again.charts.find((c) => c.name === 'cert-manager')?.state).toBe('satisfied');
    expect(await deployedChart(nsOf('contour'), 'contour-contour')).toBe('contour-0.1.1');
    expect((await chart('contour')).spec.valuesContent).toContain('replicas: 3');
  }, 600_000);
});
