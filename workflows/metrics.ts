// Domain metrics emitted from workflow code through the SDK's metric meter (not emitted on replay),
// exported by the worker's Prometheus endpoint beside the SDK's own worker metrics.
import { metricMeter } from '@temporalio/workflow';

export function recordStepOutcome(workflow: string, phase: string, outcome: string): void {
  metricMeter
    .createCounter('pedro_ops_steps', 'steps', 'Workflow steps by outcome')
    .add(1, { workflow, phase, outcome });
}

export function recordRunOutcome(workflow: string, cluster: string, outcome: string): void {
  metricMeter
    .createCounter('pedro_ops_runs', 'runs', 'Workflow runs by outcome (provisions, rotations, drills, restores)')
    .add(1, { workflow, cluster, outcome });
}

export function recordDrill(cluster: string, result: string, rtoSeconds?: number): void {
  metricMeter
    .createCounter('pedro_ops_drills', 'drills', 'Backup verification drills by result')
    .add(1, { cluster, result });
  if (rtoSeconds !== undefined) {
    metricMeter
      .createGauge('pedro_ops_drill_rto_seconds', 'float', 's', 'RTO measured by the last drill')
      .set(rtoSeconds, { cluster });
  }
}

export function recordDrillsSkipped(cluster: string, count: number): void {
  metricMeter
    .createCounter('pedro_ops_drills_skipped', 'drills', 'Scheduled drills skipped by overlap SKIP while a drill ran')
    .add(count, { cluster });
}

/** Age of the newest off-node etcd snapshot when the drill checked it: the control plane's current RPO. */
export function recordEtcdSnapshotAge(cluster: string, seconds: number): void {
  metricMeter
    .createGauge('pedro_ops_etcd_snapshot_age_seconds', 'float', 's', 'Age of the newest off-node etcd snapshot')
    .set(seconds, { cluster });
}
