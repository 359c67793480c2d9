// The workflows the chaos tests crash: each scenario prepares a lab and a worker data dir,
// starts one run, and afterwards checks the result and the lab's counters. "Repeated" means a
// completed side effect happened twice: a second installer run, a second HelmChart create (or any
// HelmChart rewrite, which re-runs helm), a second OpenBAO write of a path, a second Secret write,
// a second restart of a consumer, a second Restore/Backup.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { ClusterSpec, SecretEntrySpec } from '../../config/schema.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import { rotateSecretsWorkflowId, type RotationReport } from '../../workflows/rotate-secrets.js';
import { startLab, type Lab } from '../lab/index.js';
import { K3S_RELEASES } from '../lab/nodes/index.js';
import { startVeleroLab } from '../workflows/velero-lab.js';
import { startRotationLab } from '../workflows/rotate-secrets-lab.js';
import { orchestratorForLab, withBuiltLab } from '../helpers/lab-deps.js';
import { upgradeWorkflowId } from '../../workflows/upgrade-plan.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { SNAPSHOT_DIR } from '../../activities/upgrade/k3s.js';
import type { DriftReport } from '../../workflows/check-drift.js';
import type { ReconcileReport } from '../../workflows/reconcile.js';
import type { DrRestoreReport } from '../../workflows/dr-restore.js';
import type { RecoverReport } from '../../workflows/recover-control-plane.js';
import { approveUpdate, progressQuery, type ApprovalInput } from '../../workflows/messages.js';
import { createActivities } from '../../activities/index.js';
import { activity, startEtcdLab } from '../workflows/etcd-lab.js';

export interface Check {
  /** What is wrong with the result (empty: right result). */
  problems: string[];
  /** Side effect -> [expected, actual]; any actual above expected is a repeat. */
  counts: Record<string, [number, number]>;
  repeated: string[];
}

export interface Scenario {
  workflow: string;
  lab: Lab;
  dataDir: string;
  /** Random delay ceiling for "delay" kills, about the run's length divided by the kills wanted. */
  maxDelayMs: number;
  /** Prepares the next run (fresh values to rotate, counters reset) and starts it. */
  start(client: Client, taskQueue: string): Promise<WorkflowHandle>;
  check(result: unknown): Promise<Check>;
  stop(): Promise<void>;
}

function tally(counts: Record<string, [number, number]>, problems: string[]): Check {
  const repeated = Object.entries(counts)
    .filter(([, [want, got]]) => got > want)
    .map(([k, [want, got]]) => `${k}: ${got} (want ${want})`);
  for (const [k, [want, got]] of Object.entries(counts)) if (got < want) problems.push(`${k}: ${got}, want ${want}`);
  return { problems, counts, repeated };
}

const writes = (lab: Lab, key: string) => lab.counters().kube.writes[key] ?? 0;

export async function drillScenario(): Promise<Scenario> {
  const v = await startVeleroLab();
  return {
    workflow: 'verifyBackup',
    lab: v.lab,
    dataDir: v.dataDir,
    maxDelayMs: 700,
    async start(client, taskQueue) {
      v.lab.resetCounters();
      return client.workflow.start('verifyBackup', {
        taskQueue,
        workflowId: `verify-backup/lab/chaos-${randomUUID().slice(0, 8)}`,
        args: [{ cluster: 'lab', createNew: true }],
      });
    },
    async check(result) {
      const r = result as DrillReport;
      const problems: string[] = [];
      if (r.result !== 'passed') problems.push(`drill ${r.result}: ${r.reasons.join('; ')}`);
      if (r.cleanup.remaining.length) problems.push(`cleanup left ${r.cleanup.remaining.join(', ')}`);
      const scratch = await v.scratchNamespaces();
      if (scratch.length) problems.push(`scratch namespaces still present: ${scratch.join(', ')}`);
      if (r.restore && (await v.kube.read('velero.io/v1', 'Restore', r.restore, 'velero')))
        problems.push(`Restore ${r.restore} not deleted`);
      return tally(
        {
          'create:Restore': [1, writes(v.lab, 'create:Restore')],
          'create:Backup': [1, writes(v.lab, 'create:Backup')],
        },
        problems,
      );
    },
    stop: () => v.stop(),
  };
}

export async function provisionScenario(): Promise<Scenario> {
  const lab = await startLab({ log: () => undefined });
  const dataDir = mkdtempSync(join(tmpdir(), 'pedro-ops-chaos-provision-'));
  mkdirSync(join(dataDir, 'clusters'));
  copyFileSync(lab.clusterFile, join(dataDir, 'clusters', 'lab.yaml'));
  const spec: ClusterSpec = lab.spec;
  // The first run builds the cluster; a further run (when the first ended before enough kills) must change nothing.
  let runs = 0;
  const s: Scenario = {
    workflow: 'provisionCluster',
    lab,
    dataDir,
    maxDelayMs: 1500,
    async start(client, taskQueue) {
      lab.resetCounters();
      runs += 1;
      return client.workflow.start('provisionCluster', {
        taskQueue,
        workflowId: `provision/lab-chaos-${randomUUID().slice(0, 8)}`,
        args: [{ cluster: 'lab' }],
      });
    },
    async check(result) {
      const r = result as ProvisionReport;
      const problems: string[] = [];
      if (r.state !== 'succeeded') problems.push(`provision ${r.state}`);
      const notReady = r.components.filter((c) => c.state !== 'Ready').map((c) => `${c.name}=${c.state}`);
      if (notReady.length) problems.push(`components not Ready: ${notReady.join(', ')}`);
      if (!r.nodes.every((n) => n.version === spec.k3s.version)) problems.push(`nodes: ${JSON.stringify(r.nodes)}`);
      const c = lab.counters();
      const counts: Record<string, [number, number]> = {};
      const first = runs === 1 ? 1 : 0;
      for (const n of spec.nodes) counts[`installer runs ${n.name}`] = [first, c.nodes[n.name].installerRuns];
      counts['create:HelmChart'] = [first * spec.components.length, c.kube.writes['create:HelmChart'] ?? 0];
      // An update or patch of a HelmChart re-runs its helm install Job.
      counts['update+patch:HelmChart'] = [
        0,
        (c.kube.writes['update:HelmChart'] ?? 0) + (c.kube.writes['patch:HelmChart'] ?? 0),
      ];
      return tally(counts, problems);
    },
    async stop() {
      await lab.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return s;
}

/** Every seed entry, and the consumers they share (each must restart exactly once per rotation). */
const SEED = ['eleduck-database', 'podcast-scraper', 'twitch', 'discord', 'supabase', 'github', 'tailscale-oauth'];

export async function rotationScenario(): Promise<Scenario> {
  const r = await startRotationLab();
  const entries = r.spec.secrets.entries.filter((e) => SEED.includes(e.id));
  const consumers = [
    ...new Set(
      entries.flatMap((e) =>
        e.consumers.map((w) => `${w.namespace ?? e.kubernetes?.namespace ?? 'default'}/${w.kind}/${w.name}`),
      ),
    ),
  ];
  let before = new Map<string, number>();
  let rotationId = '';
  return {
    workflow: 'rotateSecrets',
    lab: r.lab,
    dataDir: r.dataDir,
    maxDelayMs: 500,
    async start(client, taskQueue) {
      await r.changeValues(SEED);
      before = new Map(
        await Promise.all(entries.map(async (e) => [e.id, (await r.bao(e.openbaoPath)).version] as const)),
      );
      r.lab.resetCounters();
      rotationId = randomUUID();
      return client.workflow.start('rotateSecrets', {
        taskQueue,
        workflowId: rotateSecretsWorkflowId('lab', rotationId),
        args: [{ cluster: 'lab', entries: SEED, rolloutTimeoutSeconds: 30, requestId: rotationId }],
      });
    },
    async check(result) {
      const rep = result as RotationReport;
      const problems: string[] = [];
      if (rep.state !== 'ok') problems.push(`rotation ${rep.state}`);
      const wrong = rep.entries
        .filter((e) => e.status !== 'rotated')
        .map((e) => `${e.id}=${e.status}${e.reason ? ` (${e.reason})` : ''}`);
      if (wrong.length) problems.push(`entries not rotated: ${wrong.join(', ')}`);
      const c = r.lab.counters();
      const counts: Record<string, [number, number]> = {};
      for (const e of entries) {
        const now = await r.bao(e.openbaoPath);
        const prev = before.get(e.id)!;
        if (now.version !== prev + 1) problems.push(`${e.openbaoPath}: version ${now.version}, want ${prev + 1}`);
        // The bookkeeping a later rollback relies on must name this rotation and the version served before it.
        if (
          now.custom.rotation_id !== rotationId ||
          now.custom.previous_version !== String(prev) ||
          now.custom.written_version !== String(now.version)
        ) {
          problems.push(
            `${e.openbaoPath}: metadata rotation_id=${now.custom.rotation_id === rotationId ? 'this run' : 'other'} previous_version=${now.custom.previous_version} written_version=${now.custom.written_version}, want previous ${prev}, written ${now.version}`,
          );
        }
        counts[`OpenBAO data write ${e.openbaoPath}`] = [
          1,
          c.openbao.byPath[`write:${r.spec.openbao.kvMount}/data/${e.openbaoPath}`] ?? 0,
        ];
      }
      counts['Secret writes'] = [entries.filter((e) => e.kubernetes).length, secretWrites(r.lab)];
      for (const k of consumers) counts[`restart ${k}`] = [1, c.kube.restarts[k] ?? 0];
      const extra = Object.keys(c.kube.restarts).filter((k) => !consumers.includes(k));
      if (extra.length) problems.push(`unexpected restarts: ${extra.join(', ')}`);
      return tally(counts, problems);
    },
    stop: () => r.stop(),
  };
}

/** The versions the lab's k3s stand-in ships after the built lab's v1.31.4+k3s1 (nodes/index.ts K3S_RELEASES). */
const UPGRADE_PATH = K3S_RELEASES.slice(K3S_RELEASES.indexOf('v1.31.4+k3s1') + 1);

/**
 * upgradeCluster on a built lab, one k3s version further each run. Watched from outside the workflow
 * (Nodes polled every 200 ms): each node changes kubeletVersion exactly once (a second change is a
 * second upgrade or a rollback) and is cordoned exactly once, none is left cordoned, and one etcd
 * snapshot is taken per run.
 */
export async function upgradeScenario(): Promise<Scenario> {
  const lab = await startLab({ built: true, log: () => undefined });
  const o = orchestratorForLab(lab, {
    prefix: 'pedro-ops-chaos-upgrade',
    patch: (spec) => {
      spec.name = 'upgrade-chaos';
      spec.upgrade = { concurrency: 1, drainTimeoutSeconds: 60, nodeReadyTimeoutSeconds: 60 };
    },
  });
  const file = join(o.dataDir, 'clusters', 'upgrade-chaos.yaml');
  const names = o.spec.nodes.map((n) => n.name);
  const snapshotDir = join(lab.pieces.nodes.nodes.find((n) => n.name === names[0])!.rootDir, SNAPSHOT_DIR);
  let runs = 0;
  let target = '';
  let watching = false;
  let watcher: Promise<void> = Promise.resolve();
  const seen = new Map<string, { versions: string[]; cordons: number; cordoned: boolean }>();
  const watch = async () => {
    while (watching) {
      for (const n of await o.kube.list<NodeObj>('v1', 'Node').catch(() => [] as NodeObj[])) {
        const s = seen.get(n.metadata.name);
        if (!s) continue;
        const v = n.status?.nodeInfo?.kubeletVersion ?? '';
        if (v && v !== s.versions.at(-1)) s.versions.push(v);
        const cordoned = n.spec?.unschedulable ?? false;
        if (cordoned && !s.cordoned) s.cordons += 1;
        s.cordoned = cordoned;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  return {
    workflow: 'upgradeCluster',
    lab,
    dataDir: o.dataDir,
    maxDelayMs: 4000,
    async start(client, taskQueue) {
      if (runs >= UPGRADE_PATH.length) throw new Error(`chaos: the lab knows no k3s version after ${target}`);
      target = UPGRADE_PATH[runs++];
      writeFileSync(file, readFileSync(file, 'utf8').replace(/version: v1\.\d+\.\d+\+k3s\d+/, `version: ${target}`));
      watching = false;
      await watcher;
      seen.clear();
      for (const n of names) seen.set(n, { versions: [], cordons: 0, cordoned: false });
      watching = true;
      watcher = watch();
      // the first poll records each node's version before the run starts
      while ([...seen.values()].some((s) => s.versions.length === 0)) await new Promise((r) => setTimeout(r, 50));
      lab.resetCounters();
      return client.workflow.start('upgradeCluster', {
        taskQueue,
        workflowId: upgradeWorkflowId('upgrade-chaos'),
        args: [{ cluster: 'upgrade-chaos', requestedBy: 'chaos' }],
      });
    },
    async check(result) {
      // one more poll after the end, so the last uncordon is seen
      await new Promise((r) => setTimeout(r, 500));
      watching = false;
      await watcher;
      const r = result as UpgradeReport;
      const problems: string[] = [];
      if (r.state !== 'succeeded') problems.push(`upgrade ${r.state}`);
      const bad = r.nodes.filter((n) => n.state !== 'succeeded').map((n) => `${n.name}=${n.state} ${n.detail ?? ''}`);
      if (bad.length) problems.push(`nodes not upgraded: ${bad.join(', ')}`);
      const counts: Record<string, [number, number]> = {};
      for (const [name, s] of seen) {
        if (s.versions.at(-1) !== target) problems.push(`${name} runs ${s.versions.at(-1)}, want ${target}`);
        if (s.cordoned) problems.push(`${name} left cordoned`);
        // [before, target]: anything more is a second upgrade or a rollback
        counts[`kubeletVersion changes ${name}`] = [1, s.versions.length - 1];
        counts[`cordons ${name}`] = [1, s.cordons];
      }
      const snaps = existsSync(snapshotDir)
        ? readdirSync(snapshotDir).filter((f) => f.startsWith(`${r.snapshot?.file.replace(/-\d+$/, '')}-`))
        : [];
      counts['etcd snapshots'] = [1, snaps.length];
      return tally(counts, problems);
    },
    async stop() {
      watching = false;
      await watcher;
      await lab.stop();
      rmSync(o.dataDir, { recursive: true, force: true });
    },
  };
}

type NodeObj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: { unschedulable?: boolean };
  status?: { nodeInfo?: { kubeletVersion?: string } };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (progress query) until the run waits for its approval, then approves it: the scenarios with a
 * gate start their kills after the decision, where the work is. Returns the approval step's detail.
 */
async function approveWhenWaiting(h: WorkflowHandle, decision: (detail: string) => ApprovalInput): Promise<void> {
  const end = Date.now() + 180_000;
  for (;;) {
    const p = await h.query(progressQuery).catch(() => undefined);
    const step = p?.steps.filter((x) => x.id.startsWith('approval')).at(-1);
    if (p?.state === 'waiting-approval' && step?.state === 'pending') {
      await h.executeUpdate(approveUpdate, { args: [decision(step.detail ?? '')] });
      return;
    }
    if (p && ['succeeded', 'failed', 'partial', 'cancelled'].includes(p.state))
      throw new Error(`${h.workflowId} ended ${p.state} before its approval`);
    if (Date.now() > end) throw new Error(`${h.workflowId} never waited for approval`);
    await sleep(200);
  }
}

const kubeWrites = (lab: Lab) => Object.values(lab.counters().kube.writes).reduce((n, x) => n + x, 0);
const secretWrites = (lab: Lab) =>
  ['create', 'update', 'patch'].reduce((n, verb) => n + (lab.counters().kube.writes[`${verb}:Secret`] ?? 0), 0);
/** [0, installer runs] per node: a drift check or a config repair never reinstalls k3s. */
const noInstallerRuns = (lab: Lab, spec: ClusterSpec): Record<string, [number, number]> =>
  Object.fromEntries(
    spec.nodes.map((n) => [`installer runs ${n.name}`, [0, lab.counters().nodes[n.name].installerRuns]]),
  );

/** The hand edits the drift scenarios make: a line in worker-1's k3s config and one key of the entry's Secret. */
async function handEdits(lab: Lab, entry: SecretEntrySpec): Promise<void> {
  await lab.faults.drift.editNodeFile('worker-1', 'kubelet-arg: [max-pods=7]');
  const k = entry.kubernetes!;
  await lab.faults.drift.editSecret(k.namespace, k.name, Object.keys(k.keys)[0]);
}

/**
 * checkDrift on a built lab with two hand edits made once (a line in worker-1's k3s config and a key
 * of a Secret): every run, however often its worker dies, reports exactly those two findings with the
 * same drift id, and writes nothing (no Kubernetes write, no installer run).
 */
export function driftScenario(): Promise<Scenario> {
  return withBuiltLab({ prefix: 'pedro-ops-chaos-drift' }, async (lab, o, stop) => {
    const entry = o.spec.secrets.entries.find((e) => !e.pendingSource && e.kubernetes)!;
    await handEdits(lab, entry);
    let driftId = '';
    return {
      workflow: 'checkDrift',
      lab,
      dataDir: o.dataDir,
      maxDelayMs: 1500,
      async start(client, taskQueue) {
        lab.resetCounters();
        return client.workflow.start('checkDrift', {
          taskQueue,
          workflowId: `drift-check/${o.spec.name}/chaos-${randomUUID().slice(0, 8)}`,
          args: [{ cluster: o.spec.name, requestedBy: 'chaos' }],
        });
      },
      async check(result) {
        const r = result as DriftReport;
        const problems: string[] = [];
        const found = r.findings.map((f) => `${f.kind} ${f.group}`).sort();
        const want = ['k3s-config node worker-1', `secret secret ${entry.id}`];
        if (JSON.stringify(found) !== JSON.stringify(want))
          problems.push(`findings ${JSON.stringify(found)}, want ${JSON.stringify(want)}`);
        // a read-only check: every run sees the same drift
        driftId ||= r.driftId;
        if (r.driftId !== driftId) problems.push(`drift id ${r.driftId}, an earlier run saw ${driftId}`);
        return tally({ 'Kubernetes writes': [0, kubeWrites(lab)], ...noInstallerRuns(lab, o.spec) }, problems);
      },
      stop,
    };
  });
}

/**
 * reconcile on a built lab: before each run, the same two hand edits (worker-1's k3s config, a key of
 * a Secret); the plan is approved by its drift id, and the kills land in the repair. Each run ends
 * repaired with zero drift after it, having written the Secret once and restarted each of its
 * consumers once, and run no installer.
 */
export function reconcileScenario(): Promise<Scenario> {
  return withBuiltLab({ prefix: 'pedro-ops-chaos-reconcile' }, (lab, o, stop) => {
    const entry = o.spec.secrets.entries.find((e) => !e.pendingSource && e.kubernetes && e.consumers.length > 0)!;
    const consumers = entry.consumers.map((w) => `${w.namespace ?? entry.kubernetes!.namespace}/${w.kind}/${w.name}`);
    return {
      workflow: 'reconcile',
      lab,
      dataDir: o.dataDir,
      maxDelayMs: 3000,
      async start(client, taskQueue) {
        await handEdits(lab, entry);
        const h = await client.workflow.start('reconcile', {
          taskQueue,
          workflowId: `reconcile/${o.spec.name}-chaos-${randomUUID().slice(0, 8)}`,
          args: [{ cluster: o.spec.name, requestedBy: 'chaos', approvalTimeout: '10m' }],
        });
        await approveWhenWaiting(h, (detail) => ({
          approved: true,
          by: 'chaos',
          driftId: /^drift ([0-9a-f]{16})/.exec(detail)?.[1],
        }));
        lab.resetCounters();
        return h;
      },
      async check(result) {
        const r = result as ReconcileReport;
        const problems: string[] = [];
        if (r.result !== 'repaired') problems.push(`reconcile ${r.result}: ${JSON.stringify(r.applied)}`);
        if (r.after?.total !== 0) problems.push(`drift after the repair: ${r.after?.total}`);
        if (r.refused.length) problems.push(`approvals refused: ${r.refused.map((x) => x.reason).join('; ')}`);
        const counts: Record<string, [number, number]> = { 'Secret writes': [1, secretWrites(lab)] };
        for (const k of consumers) counts[`restart ${k}`] = [1, lab.counters().kube.restarts[k] ?? 0];
        return tally({ ...counts, ...noInstallerRuns(lab, o.spec) }, problems);
      },
      stop,
    };
  });
}

/**
 * drRestore of the newest daily backup into a fresh namespace per run, approved as soon as it waits:
 * each run restores once (one Restore created), every counted kind comes back complete, and the target
 * namespace holds what the backup had.
 */
export async function drRestoreScenario(): Promise<Scenario> {
  const v = await startVeleroLab();
  const backups = await v.kube.list('velero.io/v1', 'Backup', 'velero', 'velero.io/schedule-name=daily');
  const backup = backups
    .map((b) => b.metadata!.name!)
    .sort()
    .at(-1)!;
  let target = '';
  return {
    workflow: 'drRestore',
    lab: v.lab,
    dataDir: v.dataDir,
    maxDelayMs: 1500,
    async start(client, taskQueue) {
      target = `eleduck-analytics-dr-${randomUUID().slice(0, 6)}`;
      const h = await client.workflow.start('drRestore', {
        taskQueue,
        workflowId: `dr-restore/lab/chaos-${randomUUID().slice(0, 8)}`,
        args: [
          {
            cluster: 'lab',
            backup,
            namespaces: ['eleduck-analytics'],
            target: { 'eleduck-analytics': target },
            approvalTimeout: '10m',
          },
        ],
      });
      await approveWhenWaiting(h, () => ({ approved: true, by: 'chaos' }));
      v.lab.resetCounters();
      return h;
    },
    async check(result) {
      const r = result as DrRestoreReport;
      const problems: string[] = [];
      if (r.result !== 'restored') problems.push(`dr restore ${r.result}: ${r.reasons.join('; ')}`);
      for (const [kind, c] of Object.entries(r.counts))
        if (c.expected !== undefined && c.restored !== c.expected)
          problems.push(`${kind}: ${c.restored} restored, ${c.expected} expected`);
      if (!(await v.kube.read('v1', 'Namespace', target))) problems.push(`namespace ${target} missing`);
      return tally({ 'create:Restore': [1, v.writes('create:Restore')] }, problems);
    },
    stop: () => v.stop(),
  };
}

/**
 * recoverControlPlane on a built lab with etcd snapshots in S3. Before each run: a ConfigMap, a
 * snapshot (`k3s etcd-snapshot save`), a second ConfigMap, then the control plane's datastore is
 * destroyed; the recovery is approved as soon as it waits. Each run restores the datastore exactly
 * once (the lab counts what `--cluster-reset-restore-path` posts), every node comes back Ready, the
 * ConfigMap from before the snapshot is back and the later one is not, and the drift check after it
 * finds nothing.
 */
export async function recoverScenario(): Promise<Scenario> {
  const v = await startEtcdLab();
  const cp = v.lab.pieces.kube.controlPlane;
  const CM = '/api/v1/namespaces/default/configmaps';
  let restores = 0;
  let before = '';
  let after = '';
  try {
    await activity(() => createActivities(v.deps).prepareNode({ cluster: v.spec.name, node: 'control-plane' }));
    const restore = cp.restore.bind(cp);
    cp.restore = async (body: Buffer) => {
      restores += 1;
      return restore(body);
    };
  } catch (err) {
    await v.stop();
    throw err;
  }
  return {
    workflow: 'recoverControlPlane',
    lab: v.lab,
    dataDir: v.dataDir,
    maxDelayMs: 3000,
    async start(client, taskQueue) {
      const id = randomUUID().slice(0, 6);
      before = `before-snapshot-${id}`;
      after = `after-snapshot-${id}`;
      await cp.api.must('POST', CM, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: before } });
      const saved = await v.onNode(`k3s etcd-snapshot save --name chaos-${id}`);
      const snapshot = /Snapshot (\S+) saved/.exec(saved.stderr)?.[1];
      if (!snapshot) throw new Error(`etcd-snapshot save: ${saved.stderr}`);
      await cp.api.must('POST', CM, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: after } });
      await cp.destroy();
      // the node's local copies go too: the reset fetches the snapshot from S3
      await v.onNode('rm -rf /var/lib/rancher/k3s/server/db/snapshots');
      restores = 0;
      const h = await client.workflow.start('recoverControlPlane', {
        taskQueue,
        workflowId: `recover-control-plane/lab/chaos-${id}`,
        args: [{ cluster: v.spec.name, snapshot, requestedBy: 'chaos' }],
      });
      await approveWhenWaiting(h, () => ({ approved: true, by: 'chaos' }));
      return h;
    },
    async check(result) {
      const r = result as RecoverReport;
      const problems: string[] = [];
      if (r.result !== 'recovered') problems.push(`recovery ${r.result}: ${r.reasons.join('; ')}`);
      const ready = [...(r.nodesReady ?? [])].sort();
      const nodes = v.spec.nodes.map((n) => n.name).sort();
      if (JSON.stringify(ready) !== JSON.stringify(nodes)) problems.push(`nodes Ready ${ready.join(', ')}`);
      if (!(await cp.api.get(`${CM}/${before}`))) problems.push(`ConfigMap ${before} (before the snapshot) missing`);
      if (await cp.api.get(`${CM}/${after}`)) problems.push(`ConfigMap ${after} (after the snapshot) present`);
      if (r.drift?.total !== 0) problems.push(`drift after the recovery: ${r.drift?.total}`);
      return tally({ 'datastore restores': [1, restores] }, problems);
    },
    stop: () => v.stop(),
  };
}
