// The lab scenarios whose histories the replay test keeps (scripts/capture-histories.ts runs them).
// Each scenario drives one workflow through the real client to a known end and throws when the run
// ends anywhere else, so a committed history always shows the behaviour its file name promises.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps, type ActivityDeps } from '../../activities/deps.js';
import { createActivities } from '../../activities/index.js';
import { dependentsOf } from '../../workflows/dag.js';
import { approveUpdate, progressQuery, resolveStepUpdate, type Progress } from '../../workflows/messages.js';
import { provisionWorkflowId } from '../../workflows/provision-plan.js';
import { rotateSecretsWorkflowId, type RotationReport } from '../../workflows/rotate-secrets.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import type { DrRestoreReport } from '../../workflows/dr-restore.js';
import type { DriftReport } from '../../workflows/check-drift.js';
import type { ReconcileReport } from '../../workflows/reconcile.js';
import type { UpgradeReport } from '../../workflows/upgrade-cluster.js';
import { startLab, type Lab } from '../lab/index.js';
import { memoryLogger } from '../helpers/temporal.js';
import { startVeleroLab } from '../workflows/velero-lab.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';
import { activity, startEtcdLab, type EtcdLab } from '../workflows/etcd-lab.js';
import type { RecoverReport } from '../../workflows/recover-control-plane.js';

/** What a scenario needs: `velero`/`rotation`/`etcd` share one built lab per group, `fresh` gets its own unbuilt lab. */
export type LabKind = 'velero' | 'rotation' | 'etcd' | 'fresh';

export interface Env {
  lab: Lab;
  deps: ActivityDeps;
  /** Activities merged over the real ones on this env's worker (test hooks). */
  activities: Record<string, (...args: never[]) => unknown>;
  /** Test hook: while set, the next veleroWaitRestore parks (heartbeating) until cancelled. */
  gate?: { reached: boolean };
  rotation?: RotationLab;
  etcd?: EtcdLab;
  stop(): Promise<void>;
}

export interface Run {
  client: Client;
  taskQueue: string;
  env: Env;
}

export interface Scenario {
  /** File name without .json: `<workflow>-<scenario>`. */
  name: string;
  lab: LabKind;
  /** Drives the workflow to its expected end; throws otherwise. Returns the closed workflow's handle. */
  run(r: Run): Promise<WorkflowHandle>;
}

export async function startEnv(kind: LabKind): Promise<Env> {
  if (kind === 'velero') {
    const v = await startVeleroLab();
    const env: Env = { lab: v.lab, deps: v.deps, activities: {}, stop: () => v.stop() };
    const real = createActivities(v.deps);
    env.activities.veleroWaitRestore = async (input: Parameters<typeof real.veleroWaitRestore>[0]) => {
      if (env.gate && !env.gate.reached) {
        env.gate.reached = true;
        for (;;) {
          Context.current().heartbeat('gated');
          await Context.current().sleep(200);
        }
      }
      return real.veleroWaitRestore(input);
    };
    return env;
  }
  if (kind === 'etcd') {
    const e = await startEtcdLab();
    // The server's config with the S3 settings, as a provision writes it.
    await activity(() => createActivities(e.deps).prepareNode({ cluster: 'lab', node: 'control-plane' }));
    return { lab: e.lab, deps: e.deps, activities: {}, etcd: e, stop: () => e.stop() };
  }
  if (kind === 'rotation') {
    const r = await startRotationLab();
    return { lab: r.lab, deps: r.deps, activities: {}, rotation: r, stop: () => r.stop() };
  }
  const lab = await startLab({ log: () => undefined });
  const dir = mkdtempSync(join(tmpdir(), 'pedro-ops-capture-'));
  mkdirSync(join(dir, 'clusters'));
  copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
  const deps = defaultDeps({ dataDir: dir, log: memoryLogger(), clusters: new ClusterRegistry(join(dir, 'clusters')) });
  return {
    lab,
    deps,
    activities: {},
    async stop() {
      await lab.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function expect(ok: boolean, what: string, got: unknown): void {
  if (!ok) throw new Error(`expected ${what}; got ${JSON.stringify(got)}`);
}

async function until(h: WorkflowHandle, what: string, pred: (p: Progress) => boolean, ms = 120_000): Promise<Progress> {
  const end = Date.now() + ms;
  for (;;) {
    const p = await h.query(progressQuery);
    if (pred(p)) return p;
    if (Date.now() > end)
      throw new Error(
        `timed out waiting for ${what}: ${p.state} ${p.steps.map((s) => `${s.id}=${s.state}`).join(' ')}`,
      );
    await new Promise((res) => setTimeout(res, 150));
  }
}

async function failureOf(h: WorkflowHandle): Promise<WorkflowFailedError> {
  const err = await h.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof WorkflowFailedError)) throw new Error(`expected ${h.workflowId} to fail; got ${String(err)}`);
  return err;
}

/** A snapshot in S3 now, then the server loses `what`; the approved recovery must end recovered. */
async function recoverAfter(r: Run, id: string, lose: (e: EtcdLab) => Promise<void>): Promise<WorkflowHandle> {
  const e = r.env.etcd!;
  const saved = await e.onNode('k3s etcd-snapshot save');
  const snapshot = /Snapshot (\S+) saved/.exec(saved.stderr)?.[1];
  expect(Boolean(snapshot), 'a snapshot saved', saved.stderr);
  await lose(e);
  const h = await r.client.workflow.start('recoverControlPlane', {
    taskQueue: r.taskQueue,
    workflowId: `recover-control-plane/lab/replay-${id}`,
    args: [{ cluster: 'lab', snapshot, requestedBy: 'replay-capture' }],
  });
  await until(h, 'the approval gate', (p) => p.state === 'waiting-approval');
  await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'replay-capture' }] });
  const rep = (await h.result()) as RecoverReport;
  expect(rep.result === 'recovered' && rep.drift?.total === 0, 'a clean recovery', rep);
  return h;
}

const SEED = ['eleduck-database', 'podcast-scraper', 'twitch', 'discord', 'supabase', 'github', 'tailscale-oauth'];

const verify = (r: Run, id: string, input: Record<string, unknown>) =>
  r.client.workflow.start('verifyBackup', {
    taskQueue: r.taskQueue,
    workflowId: `verify-backup/lab/replay-${id}`,
    args: [{ cluster: 'lab', ...input }],
  });

async function latestBackup(env: Env): Promise<string> {
  const kube = env.deps.kube(env.deps.clusters.get('lab')!);
  const backups = await kube.list('velero.io/v1', 'Backup', 'velero', 'velero.io/schedule-name=daily');
  return backups
    .map((b) => b.metadata!.name!)
    .sort()
    .at(-1)!;
}

async function drStart(r: Run, id: string, input: Record<string, unknown>): Promise<WorkflowHandle> {
  const backup = await latestBackup(r.env);
  const h = await r.client.workflow.start('drRestore', {
    taskQueue: r.taskQueue,
    workflowId: `dr-restore/lab/replay-${id}`,
    args: [
      {
        cluster: 'lab',
        backup,
        namespaces: ['eleduck-analytics'],
        target: { 'eleduck-analytics': `ea-replay-${id}` },
        ...input,
      },
    ],
  });
  await until(h, 'waiting-approval', (p) => p.state === 'waiting-approval', 30_000);
  return h;
}

const rotate = (r: Run, id: string, input: Record<string, unknown>) =>
  r.client.workflow.start('rotateSecrets', {
    taskQueue: r.taskQueue,
    workflowId: rotateSecretsWorkflowId('lab', `replay-${id}`),
    args: [{ cluster: 'lab', requestId: `replay-${id}`, rolloutTimeoutSeconds: 20, ...input }],
  });

const provision = (r: Run) =>
  r.client.workflow.start('provisionCluster', {
    taskQueue: r.taskQueue,
    workflowId: provisionWorkflowId('lab'),
    args: [{ cluster: 'lab' }],
  });

export const SCENARIOS: Scenario[] = [
  {
    name: 'verify-backup-passed',
    lab: 'velero',
    async run(r) {
      const h = await verify(r, 'passed', {});
      const rep = (await h.result()) as DrillReport;
      expect(
        rep.result === 'passed' && rep.cleanup.remaining.length === 0,
        'a passed drill with cleanup done',
        rep.reasons,
      );
      return h;
    },
  },
  {
    // Issue 14 items 15, 16, 18: the sandbox (resource modifiers, isolation policy), then cleanup that
    // keeps the restore's results and deletes the Restore before the namespaces.
    name: 'verify-backup-sandbox',
    lab: 'velero',
    async run(r) {
      const h = await verify(r, 'sandbox', {});
      const rep = (await h.result()) as DrillReport;
      expect(
        rep.result === 'passed' &&
          rep.sandbox !== undefined &&
          rep.restoreResults?.errors.total === 0 &&
          rep.cleanup.remaining.length === 0,
        'a passed drill in a sandbox, its results kept, cleanup done',
        rep,
      );
      return h;
    },
  },
  {
    name: 'verify-backup-partially-failed',
    lab: 'velero',
    async run(r) {
      r.env.lab.faults.velero.backupPartiallyFailed();
      const h = await verify(r, 'partially-failed', { createNew: true });
      const rep = (await h.result()) as DrillReport;
      expect(
        rep.result === 'failed' && rep.backupPhase === 'PartiallyFailed' && !rep.restoreAttempted,
        'a failed drill on a PartiallyFailed backup, no restore',
        rep,
      );
      return h;
    },
  },
  {
    name: 'verify-backup-cancelled',
    lab: 'velero',
    async run(r) {
      r.env.gate = { reached: false };
      try {
        const h = await verify(r, 'cancelled', {});
        await until(
          h,
          'the restore wait',
          (p) => r.env.gate!.reached && p.steps.some((s) => s.id === 'wait-restore' && s.state === 'running'),
          60_000,
        );
        await h.cancel();
        const err = await failureOf(h);
        expect(err.cause instanceof CancelledFailure, 'a cancelled drill', String(err.cause));
        const p = await h.query(progressQuery);
        expect(p.steps.find((s) => s.id === 'cleanup')?.state === 'succeeded', 'cleanup after cancellation', p.steps);
        return h;
      } finally {
        r.env.gate = undefined;
      }
    },
  },
  {
    name: 'dr-restore-approved',
    lab: 'velero',
    async run(r) {
      const h = await drStart(r, 'approved', { approvalTimeout: '10m' });
      await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'replay-capture', note: 'INC-1' }] });
      const rep = (await h.result()) as DrRestoreReport;
      expect(rep.result === 'restored', 'a restored DR run', rep.reasons);
      // A DR restore is real: remove its target so later scenarios see the lab as built.
      await r.env.deps.kube(r.env.deps.clusters.get('lab')!).delete('v1', 'Namespace', 'ea-replay-approved');
      return h;
    },
  },
  {
    name: 'dr-restore-approval-timeout',
    lab: 'velero',
    async run(r) {
      const h = await drStart(r, 'approval-timeout', { approvalTimeout: '2s' });
      const rep = (await h.result()) as DrRestoreReport;
      expect(rep.result === 'cancelled' && rep.restore === undefined, 'a cancelled DR run that restored nothing', rep);
      return h;
    },
  },
  {
    name: 'dr-restore-rejected',
    lab: 'velero',
    async run(r) {
      const h = await drStart(r, 'rejected', { approvalTimeout: '10m' });
      await h.executeUpdate(approveUpdate, { args: [{ approved: false, by: 'replay-capture', note: 'wrong backup' }] });
      const rep = (await h.result()) as DrRestoreReport;
      expect(rep.result === 'rejected', 'a rejected DR run', rep);
      return h;
    },
  },
  {
    name: 'rotate-secrets-success',
    lab: 'rotation',
    async run(r) {
      await r.env.rotation!.changeValues(SEED);
      const h = await rotate(r, 'success', { entries: SEED });
      const rep = (await h.result()) as RotationReport;
      expect(
        rep.state === 'ok' && rep.entries.every((e) => e.status === 'rotated'),
        'every seed entry rotated',
        rep.entries.map((e) => [e.id, e.status]),
      );
      return h;
    },
  },
  {
    name: 'rotate-secrets-rollback',
    lab: 'rotation',
    async run(r) {
      await r.env.rotation!.changeValues(['tailscale-oauth', 'github']);
      r.env.lab.faults.rollouts.stall('tailscale', 'Deployment', 'operator');
      const h = await rotate(r, 'rollback', { entries: ['tailscale-oauth', 'github'] });
      const rep = (await h.result()) as RotationReport;
      const status = Object.fromEntries(rep.entries.map((e) => [e.id, e.status]));
      expect(
        rep.state === 'partial' && status['tailscale-oauth'] === 'rolled-back' && status.github === 'rotated',
        'tailscale-oauth rolled back, github rotated',
        status,
      );
      return h;
    },
  },
  {
    name: 'check-drift-clean',
    lab: 'rotation',
    async run(r) {
      const h = await r.client.workflow.start('checkDrift', {
        taskQueue: r.taskQueue,
        workflowId: 'drift-check/lab/replay-clean',
        args: [{ cluster: 'lab', requestedBy: 'replay-capture' }],
      });
      const rep = (await h.result()) as DriftReport;
      expect(rep.total === 0, 'a built lab without drift', rep.findings);
      return h;
    },
  },
  {
    name: 'reconcile-repaired',
    lab: 'rotation',
    async run(r) {
      const e = r.env.lab.spec.secrets.entries.find((x) => !x.pendingSource && x.kubernetes)!;
      await r.env.lab.faults.drift.editSecret(
        e.kubernetes!.namespace,
        e.kubernetes!.name,
        Object.keys(e.kubernetes!.keys)[0],
      );
      const h = await r.client.workflow.start('reconcile', {
        taskQueue: r.taskQueue,
        workflowId: 'reconcile/lab-replay',
        args: [{ cluster: 'lab', requestedBy: 'replay-capture', approvalTimeout: '10m' }],
      });
      const p = await until(h, 'the plan', (x) => x.state === 'waiting-approval');
      const driftId = /^drift ([0-9a-f]{16})/.exec(
        p.steps.find((x) => x.id.startsWith('approval-'))?.detail ?? '',
      )?.[1];
      await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'replay-capture', driftId }] });
      const rep = (await h.result()) as ReconcileReport;
      expect(rep.result === 'repaired' && rep.after?.total === 0, 'a repaired cluster', rep);
      return h;
    },
  },
  {
    // k3s v1.31.4+k3s1 → v1.31.5+k3s1 node by node (the stand-in keeps both releases), no chart changed.
    name: 'upgrade-cluster-success',
    lab: 'rotation',
    async run(r) {
      const file = join(r.env.rotation!.dataDir, 'clusters', 'lab.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/version: v1\.\d+\.\d+\+k3s\d+/, 'version: v1.31.5+k3s1'));
      const h = await r.client.workflow.start('upgradeCluster', {
        taskQueue: r.taskQueue,
        workflowId: 'upgrade/lab',
        args: [{ cluster: 'lab', requestedBy: 'replay-capture' }],
      });
      const rep = (await h.result()) as UpgradeReport;
      expect(
        rep.state === 'succeeded' && rep.nodes.every((n) => n.state === 'succeeded'),
        'every node upgraded',
        rep.nodes,
      );
      return h;
    },
  },
  {
    // The datastore lost on the same machine (k3s and the token still on its disk).
    name: 'recover-control-plane-same-node',
    lab: 'etcd',
    run: (r) =>
      recoverAfter(r, 'same-node', async (e) => {
        await e.lab.pieces.kube.controlPlane.destroy();
        await e.onNode('rm -rf /var/lib/rancher/k3s/server/db/snapshots');
      }),
  },
  {
    // The machine destroyed; a new one at a new address under the same name (token from 1Password).
    name: 'recover-control-plane-replacement',
    lab: 'etcd',
    run: (r) =>
      recoverAfter(r, 'replacement', async (e) => {
        await e.lab.faults.kube.destroyControlPlane();
        const fresh = await e.lab.faults.replaceNode('control-plane');
        e.rewriteSpec((raw) => {
          const n = raw.nodes.find((x) => x.name === 'control-plane')!;
          Object.assign(n, { address: fresh.host, port: fresh.port, hostKey: fresh.hostKey });
        });
      }),
  },
  {
    name: 'provision-cluster-success',
    lab: 'fresh',
    async run(r) {
      const h = await provision(r);
      const rep = (await h.result()) as ProvisionReport;
      expect(
        rep.state === 'succeeded',
        'a succeeded build',
        rep.steps.filter((s) => s.state !== 'succeeded'),
      );
      return h;
    },
  },
  {
    // Runs from issue 13 on: the VIP step (kube-vip deployed after the first server, the VIP waited for)
    // sits between the first server and the joins. provision-cluster-success keeps the run from before it.
    name: 'provision-cluster-vip-success',
    lab: 'fresh',
    async run(r) {
      const h = await provision(r);
      const rep = (await h.result()) as ProvisionReport;
      expect(
        rep.state === 'succeeded' && rep.vip?.state === 'succeeded',
        'a succeeded build whose VIP step succeeded',
        rep.steps.filter((s) => s.state !== 'succeeded' || s.id === 'vip'),
      );
      return h;
    },
  },
  {
    name: 'provision-cluster-needs-attention-retry',
    lab: 'fresh',
    async run(r) {
      // A component nothing depends on: the rest of the build finishes while it waits for the operator.
      const comps = r.env.lab.spec.components;
      const leaf = comps
        .map((c) => c.name)
        .find(
          (n) =>
            dependentsOf(
              comps.map((c) => ({ id: c.name, dependsOn: c.dependsOn })),
              n,
            ).length === 0,
        )!;
      r.env.lab.faults.helmcharts.fail(leaf, `chart ${leaf} not found in repository`);
      const h = await provision(r);
      const step = `component/${leaf}`;
      await until(
        h,
        `${step} in needs-attention`,
        (p) => p.steps.find((s) => s.id === step)?.state === 'needs-attention',
        240_000,
      );
      await r.env.lab.faults.clear();
      await h.executeUpdate(resolveStepUpdate, { args: [{ step, action: 'retry', by: 'replay-capture' }] });
      const rep = (await h.result()) as ProvisionReport;
      const c = rep.components.find((x) => x.name === leaf);
      expect(rep.state === 'succeeded' && c?.attempts === 2, `a succeeded build with ${leaf} retried once`, c);
      return h;
    },
  },
];
