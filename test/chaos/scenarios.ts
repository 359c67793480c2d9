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
import type { ClusterSpec } from '../../config/schema.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import { rotateSecretsWorkflowId, type RotationReport } from '../../workflows/rotate-secrets.js';
import { startLab, type Lab } from '../lab/index.js';
import { startVeleroLab } from '../workflows/velero-lab.js';
import { startRotationLab } from '../workflows/rotate-secrets-lab.js';
import { orchestratorForLab } from '../helpers/lab-deps.js';
import { upgradeWorkflowId } from '../../workflows/upgrade-plan.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { SNAPSHOT_DIR } from '../../activities/upgrade/k3s.js';

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
      const secretWrites = ['create', 'update', 'patch'].reduce(
        (n, verb) => n + (c.kube.writes[`${verb}:Secret`] ?? 0),
        0,
      );
      counts['Secret writes'] = [entries.filter((e) => e.kubernetes).length, secretWrites];
      for (const k of consumers) counts[`restart ${k}`] = [1, c.kube.restarts[k] ?? 0];
      const extra = Object.keys(c.kube.restarts).filter((k) => !consumers.includes(k));
      if (extra.length) problems.push(`unexpected restarts: ${extra.join(', ')}`);
      return tally(counts, problems);
    },
    stop: () => r.stop(),
  };
}

/** The versions the lab's k3s stand-in ships after the built lab's v1.31.4+k3s1 (nodes/index.ts K3S_RELEASES). */
const UPGRADE_PATH = ['v1.31.5+k3s1', 'v1.31.6+k3s1', 'v1.32.1+k3s1'];

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
