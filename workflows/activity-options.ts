// Activity timeouts, named once per kind of activity, next to the retry policies (failures.ts). Every
// proxyActivities call in workflows/ goes through this file (DESIGN rule 10: a crash costs seconds).
//
// After a SIGKILL or an OOM kill nothing tells the server that the worker's activities died: it
// finds out when a timeout fires. So every activity has one that fires within seconds of a crash:
// - short: one or two API calls or a local read. Start-to-close sized to that work (seconds); no
//   heartbeat needed.
// - steady: several calls to one system (SSH, 1Password, OpenBAO, the Kubernetes API), each of which
//   may take a while. They heartbeat while they run (activities/heartbeat.ts keepAlive, every 3 s);
//   the heartbeat timeout notices a crash, the start-to-close bounds a hang.
// - wait: polls that last minutes (rollouts, restores, installs, probes). They heartbeat every poll
//   with progress; the start-to-close is sized to the wait (waitUpTo), and a retry resumes from the
//   heartbeat details (the first attempt's deadline, the probes already run).
//
// Upstream: Temporal times an attempt out when no heartbeat arrives within the heartbeat timeout, or
// when start-to-close passes, and then retries it under the retry policy; the next attempt gets the
// last heartbeat's details (docs.temporal.io/encyclopedia/detecting-activity-failures). The SDK
// throttles heartbeats to one per 0.8 × heartbeatTimeout (sdk-typescript
// packages/worker/src/worker-options.ts, maxHeartbeatThrottleInterval).
import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { DEFAULT_RETRY } from './failures.js';

/**
 * A worker that stops heartbeating is given up this long after its last heartbeat. The SDK sends
 * heartbeats at most every 0.8 × this (6.4 s), activities beat every 3 s, so a crash is noticed
 * 2-8 s after it happens. 10 s measured a median of 10.4 s from the replacement worker polling to
 * the next step (bench/results/chaos-2026-12-01-timeouts-10s.json); 8 s keeps it under 10 s while a
 * worker whose event loop stalls for seconds under load is not yet taken for dead.
 */
export const HEARTBEAT_TIMEOUT = '8s';

/** The activity-options test holds every kind to this: a lost activity is noticed in under 30 s. */
export const MAX_UNNOTICED_SECONDS = 30;

export type ActivityKind = 'short' | 'steady' | 'wait';

export const ACTIVITY_OPTIONS = {
  short: { startToCloseTimeout: '8s', retry: DEFAULT_RETRY },
  steady: { startToCloseTimeout: '3m', heartbeatTimeout: HEARTBEAT_TIMEOUT, retry: DEFAULT_RETRY },
  // The default bound of a wait whose length the workflow does not know; waitUpTo() when it does.
  wait: { startToCloseTimeout: '40m', heartbeatTimeout: HEARTBEAT_TIMEOUT, retry: DEFAULT_RETRY },
} as const satisfies Record<ActivityKind, ActivityOptions>;

/** Options for a wait the workflow knows the length of: its timeout plus a minute for the work around it. */
export function waitUpTo(seconds: number): ActivityOptions {
  return { ...ACTIVITY_OPTIONS.wait, startToCloseTimeout: `${Math.ceil(seconds) + 60}s` };
}

/** Every activity and its kind; `satisfies` makes a new activity without a kind a type error. */
export const ACTIVITY_KINDS = {
  loadClusterSpec: 'short',
  // Velero (activities/velero/)
  veleroStorageLocation: 'short',
  veleroGetBackup: 'short',
  veleroFindBackup: 'short',
  veleroEnsureBackup: 'short',
  veleroEnsureRestore: 'short',
  veleroDeleteRestore: 'short',
  veleroNamespacesExist: 'short',
  veleroCompareRestored: 'steady',
  veleroVolumeData: 'steady',
  veleroWaitBackup: 'wait',
  veleroWaitRestore: 'wait',
  veleroWaitWorkloads: 'wait',
  veleroRunProbes: 'wait',
  veleroBackupResourceList: 'wait',
  veleroDeleteNamespaces: 'wait',
  // The drill's sandbox and evidence (activities/velero/sandbox.ts, evidence.ts)
  veleroPrepareSandbox: 'steady',
  veleroAuditSandbox: 'steady',
  veleroDeleteSandboxConfig: 'short',
  veleroRestoreResults: 'wait',
  veleroDeleteRestoreAndWait: 'wait',
  // Provisioning (activities/k3s/, ssh/, components/, openbao/, dns/)
  preflightNode: 'steady',
  fetchKubeconfig: 'steady',
  deployVipProvider: 'steady',
  applyVipProvider: 'steady',
  waitVipReady: 'wait',
  applyTailscaleOAuth: 'steady',
  bootstrapOpenBao: 'steady',
  configureSplitDns: 'short',
  prepareNode: 'wait',
  installK3sServer: 'wait',
  joinK3sAgent: 'wait',
  waitNodesReady: 'wait',
  installComponent: 'wait',
  configureVelero: 'wait',
  // Rotation (activities/rotation.ts)
  rotationPreflight: 'steady',
  rotationRestoreOpenBao: 'steady',
  rotationGenerate: 'steady',
  rotationSyncOpenBao: 'steady',
  rotationApplySecret: 'steady',
  rotationMarkRolledBack: 'steady',
  rotationDriftCheck: 'steady',
  rotationRestartConsumer: 'wait',
  rotationProbe: 'wait',
  // Control plane (activities/k3s/etcd-snapshots.ts)
  verifyEtcdSnapshots: 'steady',
  restoreEtcdSnapshot: 'wait',
  observeRestoreTarget: 'steady',
  installRestoreTarget: 'wait',
  observeServerTokenCopy: 'steady',
  restoreServerToken: 'steady',
  // Drift (activities/drift/): read-only observations over SSH or the API, and one Node patch
  driftNode: 'steady',
  driftComponent: 'steady',
  driftPlatform: 'steady',
  driftSecrets: 'steady',
  repairNodeMetadata: 'short',
  // Upgrades (activities/upgrade/)
  observeUpgradeNodes: 'short',
  upgradeDisruption: 'steady',
  upgradeRunConflicts: 'short',
  cordonNode: 'short',
  uncordonNode: 'short',
  etcdSnapshot: 'steady',
  drainNode: 'wait',
  installK3sVersion: 'wait',
  waitNodeUpgraded: 'wait',
  rollbackK3sNode: 'wait',
  upgradeComponent: 'wait',
} as const satisfies Record<keyof Activities, ActivityKind>;

type Kinds = typeof ACTIVITY_KINDS;
type NamesOf<K extends ActivityKind> = { [N in keyof Kinds]: Kinds[N] extends K ? N : never }[keyof Kinds];

/** The activities of one kind, proxied with that kind's options (calling another kind's activity is a type error). */
function proxiesOf<K extends ActivityKind>(kind: K) {
  return proxyActivities<Pick<Activities, NamesOf<K>>>(ACTIVITY_OPTIONS[kind]);
}

/** Single API calls: a crash is noticed when the start-to-close (seconds) runs out. */
export const shortActivities = () => proxiesOf('short');
/** Several calls, heartbeating while they run. */
export const steadyActivities = () => proxiesOf('steady');
/** Waits of minutes, heartbeating every poll; per call `executeWithOptions(waitUpTo(s), [...])`. */
export const waitActivities = () => proxiesOf('wait');
