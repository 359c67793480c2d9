// What a drift check reports: one finding per object that differs from what the config declares.
// Shared by the drift activities (which observe), the checkDrift/reconcile workflows (which plan the
// repair) and the API and CLI (which show it). Findings carry fingerprints, never secret values.

export const DRIFT_KINDS = [
  'k3s-version',
  'k3s-service',
  'k3s-config',
  'k3s-registries',
  'node-name',
  'node-ip',
  'node-labels',
  'node-taints',
  'helmchart',
  'helm-release',
  'workloads',
  'coredns-custom',
  'vip-provider',
  'velero-bsl',
  'velero-schedule',
  'secret',
  /** The check itself could not observe the object (node unreachable, API down): not a clean bill. */
  'unobservable',
] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

/** The existing idempotent step that puts an object back the way the config says. */
export type RepairStep =
  | { step: 'prepare-node'; node: string }
  | { step: 'k3s'; node: string }
  | { step: 'node-metadata'; node: string }
  | { step: 'component'; component: string }
  | { step: 'split-dns' }
  | { step: 'vip' }
  | { step: 'velero' }
  | { step: 'secret-sync'; entry: string }
  /** Nothing the orchestrator can do safely (it would need a person): listed, never applied. */
  | { step: 'manual' };

export interface DriftFinding {
  kind: DriftKind;
  /** Where the CLI groups it: `node <name>`, `component <name>`, `dns`, `velero`, `secret <id>`. */
  group: string;
  /** The object that differs, as a person would name it ("file /etc/rancher/k3s/config.yaml"). */
  object: string;
  want: string;
  have: string;
  /** What repairing it does, in words. */
  action: string;
  repair: RepairStep;
}

export interface DriftObservation {
  findings: DriftFinding[];
  /** How many objects were compared (so "0 findings" is distinguishable from "nothing looked at"). */
  checked: number;
}
