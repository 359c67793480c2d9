// checkDrift: the whole cluster against its config, read-only. Every node (over SSH), every
// component, the platform wiring (CoreDNS, Velero) and the secret map are observed in parallel; a
// part that cannot be observed is itself a finding ("unobservable"), never a silent pass, and never
// parks the run (a scheduled check must not hold its schedule). The report is the result; its count
// goes to the DriftCount search attribute and a gauge per kind.
import {
  ApplicationFailure,
  metricMeter,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { DriftFinding, DriftKind, DriftObservation } from './drift-types.js';
import { shortActivities, steadyActivities } from './activity-options.js';
import { countByKind, findingsId } from './drift-plan.js';
import { RequestedBy, DriftCount } from './search-attributes.js';
import { StepRunner } from './steps.js';

export interface CheckDriftInput {
  cluster: string;
  requestedBy?: string;
}

export interface DriftReport {
  cluster: string;
  /** The run that made it (GET /clusters/:name/drift/:id). */
  workflowId: string;
  checkedAt: string;
  /** Hash of the findings: equal for two checks that saw the same drift. A reconcile approves this. */
  driftId: string;
  total: number;
  counts: Record<DriftKind, number>;
  /** Objects compared (nodes, charts, files, ConfigMaps, secret entries). */
  checked: number;
  findings: DriftFinding[];
}

const short = shortActivities();
const steady = steadyActivities();

export async function checkDrift(input: CheckDriftInput): Promise<DriftReport> {
  const { cluster } = input;
  const runner = new StepRunner('checkDrift', cluster, 'drift-check');
  if (input.requestedBy) upsertSearchAttributes([{ key: RequestedBy, value: input.requestedBy }]);
  runner.setPhase('observe');
  const loaded = await runner.attempt('load-spec', 'observe', 'Load the cluster definition', () =>
    short.loadClusterSpec(cluster),
  );
  const spec = loaded.value;
  if (!spec) {
    runner.setState('failed');
    // A plain Error would fail the workflow task and retry it forever; this ends the run.
    throw ApplicationFailure.create({
      type: 'NotFound',
      nonRetryable: true,
      message: `cannot load cluster ${cluster}: ${loaded.error}`,
    });
  }

  const parts: { id: string; title: string; group: string; run: () => Promise<DriftObservation> }[] = [
    ...spec.nodes.map((n) => ({
      id: `node/${n.name}`,
      title: `Node ${n.name}: k3s, its files, the Node object`,
      group: `node ${n.name}`,
      run: () => steady.driftNode({ cluster, node: n.name }),
    })),
    ...spec.components.map((c) => ({
      id: `component/${c.name}`,
      title: `Component ${c.name}: HelmChart, release, workloads`,
      group: `component ${c.name}`,
      run: () => steady.driftComponent({ cluster, component: c.name }),
    })),
    {
      id: 'platform',
      title: 'CoreDNS coredns-custom, Velero location and Schedule',
      group: 'platform',
      run: () => steady.driftPlatform({ cluster }),
    },
    {
      id: 'secrets',
      title: 'Secret map: 1Password, OpenBAO, Kubernetes fingerprints',
      group: 'secrets',
      run: () => steady.driftSecrets({ cluster }),
    },
  ];
  const results = await Promise.all(
    parts.map(async (p) => {
      const r = await runner.attempt(p.id, 'observe', p.title, p.run, {
        describe: (o) => ({
          satisfied: o.findings.length === 0,
          detail: o.findings.length === 0 ? 'no drift' : `${o.findings.length} findings`,
        }),
      });
      if (r.value) return r.value;
      const unobservable: DriftFinding = {
        kind: 'unobservable',
        group: p.group,
        object: p.title,
        want: 'observable',
        have: r.error ?? 'failed',
        action: 'fix access (SSH, API) and check again',
        repair: { step: 'manual' },
      };
      return { findings: [unobservable], checked: 0 };
    }),
  );

  const findings = results.flatMap((r) => r.findings);
  const counts = countByKind(findings);
  const report: DriftReport = {
    cluster,
    workflowId: workflowInfo().workflowId,
    checkedAt: new Date().toISOString(),
    driftId: findingsId(findings),
    total: findings.length,
    counts,
    checked: results.reduce((n, r) => n + r.checked, 0),
    findings,
  };
  const gauge = metricMeter.createGauge(
    'pedro_ops_drift_findings',
    'int',
    'findings',
    'Drift findings of the last drift check, per cluster and kind',
  );
  for (const [kind, n] of Object.entries(counts)) gauge.set(n, { cluster, kind });
  upsertSearchAttributes([{ key: DriftCount, value: findings.length }]);
  upsertMemo({ drift: { total: findings.length, driftId: report.driftId } });
  runner.setPhase('done');
  runner.setState('succeeded');
  return report;
}
