// verifyBackup against the built lab on the real Temporal dev server: a passing drill with an RTO,
// a PartiallyFailed backup (no restore attempted), a restore Velero fails, an unavailable storage
// location, an unknown backup, cancellation mid-restore, volume data (restored, missing, a backup
// without file-system backup) and renamed VolumeSnapshots — scratch namespaces gone every time.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { createActivities } from '../../activities/index.js';
import type { DrillReport, VerifyBackupInput } from '../../workflows/verify-backup.js';
import type { Progress } from '../../workflows/messages.js';
import { startVeleroLab, type VeleroLab } from './velero-lab.js';
import { clients } from '../lab/kube/test-client.js';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

let t: TestTemporal;
let v: VeleroLab;
// Test hook: while set, the first veleroWaitRestore call parks (heartbeating) until cancelled, so a
// cancellation lands while the workflow waits on a restore Velero is running.
let gate: { reached: boolean } | undefined;
// Test hook: while set, veleroEnsureRestore heartbeats until cancelled and never creates the Restore.
let holdCreate: { reached: boolean } | undefined;
// Test hook: while set, veleroDeleteNamespaces fails non-retryably (as a denied API call would).
let denyCleanup = false;
// Test hook: runs once the restored workloads were checked, while the scratch namespaces still exist.
let afterWorkloads: ((namespaces: string[]) => Promise<void>) | undefined;

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'verify-backup' }), startVeleroLab()]);
  const real = createActivities(v.deps);
  await t.startWorker(v.deps, {
    activities: {
      async veleroWaitRestore(input: Parameters<typeof real.veleroWaitRestore>[0]) {
        if (gate && !gate.reached) {
          gate.reached = true;
          for (;;) {
            Context.current().heartbeat('gated');
            await Context.current().sleep(200);
          }
        }
        return real.veleroWaitRestore(input);
      },
      async veleroEnsureRestore(input: Parameters<typeof real.veleroEnsureRestore>[0]) {
        if (holdCreate) {
          holdCreate.reached = true;
          for (;;) {
            Context.current().heartbeat('held before the Restore exists');
            await Context.current().sleep(200);
          }
        }
        return real.veleroEnsureRestore(input);
      },
      async veleroWaitWorkloads(input: Parameters<typeof real.veleroWaitWorkloads>[0]) {
        const res = await real.veleroWaitWorkloads(input);
        await afterWorkloads?.(input.namespaces);
        return res;
      },
      async veleroDeleteNamespaces(input: Parameters<typeof real.veleroDeleteNamespaces>[0]) {
        if (denyCleanup) throw ApplicationFailure.nonRetryable('namespaces is forbidden (lab)', 'AuthDenied');
        return real.veleroDeleteNamespaces(input);
      },
    },
  });
});

afterAll(async () => {
  await t?.close();
  await v?.stop();
});

async function start(input: Omit<VerifyBackupInput, 'cluster'>) {
  const id = `verify-backup/lab/${input.requestId ?? randomUUID()}`;
  return t.client.workflow.start('verifyBackup', {
    taskQueue: t.taskQueue,
    workflowId: id,
    args: [{ cluster: 'lab', ...input }],
  });
}

async function run(input: Omit<VerifyBackupInput, 'cluster'>): Promise<{ report: DrillReport; id: string }> {
  const h = await start(input);
  return { report: (await h.result()) as DrillReport, id: h.workflowId };
}

describe('verifyBackup', () => {
  test('a Completed backup of the schedule passes, records an RTO and leaves no scratch namespace', async () => {
    const { report, id } = await run({});
    expect(report.reasons).toEqual([]);
    expect(report.result).toBe('passed');
    expect(report.backup).toMatch(/^daily-/);
    expect(report.backupPhase).toBe('Completed');
    expect(report.verification).toBe('resource-list');
    expect(report.rtoSeconds).toBeGreaterThanOrEqual(1);
    expect(report.rtoMs).toBeGreaterThan(0);
    expect(report.namespaces).toEqual([
      { source: 'eleduck-analytics', scratch: expect.stringMatching(/^drill-eleduck-analytics-[0-9a-f]{6}$/) },
    ]);
    const restored = Object.values(report.counts).reduce((n, c) => n + c.restored, 0);
    expect(restored).toBeGreaterThan(0);
    for (const c of Object.values(report.counts)) expect(c.restored).toBe(c.expected);
    expect(report.cleanup.remaining).toEqual([]);
    expect(report.cleanup.deleted).toEqual([report.namespaces[0].scratch]);
    expect(await v.scratchNamespaces()).toEqual([]);
    // The real namespace was only read, never touched.
    expect(await v.kube.read('v1', 'Namespace', 'eleduck-analytics')).toBeDefined();
    expect(await v.kube.read('velero.io/v1', 'Restore', report.restore!, 'velero')).toBeUndefined();

    const desc = await t.client.workflow.getHandle(id).describe();
    expect(desc.searchAttributes.DrillResult).toEqual(['passed']);
    expect(desc.searchAttributes.RtoSeconds).toEqual([report.rtoSeconds]);
    expect(desc.searchAttributes.Operation).toEqual(['verify-backup']);
    expect((desc.memo?.report as { result: string }).result).toBe('passed');
    const progress = await t.client.workflow.getHandle(id).query<Progress>('progress');
    expect(progress.state).toBe('succeeded');
    expect(progress.steps.map((s) => s.id)).toEqual(
      expect.arrayContaining([
        'storage-location',
        'pick-backup',
        'restore',
        'wait-restore',
        'compare',
        'workloads',
        'cleanup',
      ]),
    );
  });

  test('a PartiallyFailed on-demand backup fails the drill with the reason and no restore is attempted', async () => {
    v.lab.resetCounters();
    v.lab.faults.velero.backupPartiallyFailed();
    const { report, id } = await run({ createNew: true });
    expect(report.result).toBe('failed');
    expect(report.backupPhase).toBe('PartiallyFailed');
    expect(report.reasons.join('\n')).toMatch(
      /BackupNotUsable: backup verify-lab-[0-9a-f]{6} is PartiallyFailed with 1 errors/,
    );
    expect(report.restoreAttempted).toBe(false);
    expect(report.rtoSeconds).toBeUndefined();
    expect(v.writes('create:Backup')).toBe(1);
    expect(v.writes('create:Restore')).toBe(0);
    expect(await v.scratchNamespaces()).toEqual([]);
    const desc = await t.client.workflow.getHandle(id).describe();
    expect(desc.searchAttributes.DrillResult).toEqual(['failed']);
    expect(desc.searchAttributes.RtoSeconds).toBeUndefined();
  });

  test('a restore Velero fails ends the drill with Velero’s reason and the scratch namespaces are gone', async () => {
    v.lab.faults.velero.restoreFailed(undefined, 'error restoring: lab object store returned 500');
    const { report } = await run({ createNew: true });
    expect(report.result).toBe('failed');
    expect(report.restoreAttempted, JSON.stringify(report.reasons)).toBe(true);
    expect(report.reasons).toEqual([
      expect.stringMatching(/^RestoreFailed: restore .* ended Failed: error restoring: lab object store returned 500$/),
    ]);
    expect(report.cleanup.remaining).toEqual([]);
    expect(await v.scratchNamespaces()).toEqual([]);
  });

  test('an unavailable storage location fails the drill before any backup or restore', async () => {
    v.lab.resetCounters();
    await v.lab.faults.velero.bslUnavailable('default');
    try {
      const { report } = await run({ createNew: true });
      expect(report.result).toBe('failed');
      expect(report.reasons[0]).toMatch(/^BackupNotUsable: backup storage location default is Unavailable: .*503/);
      expect(v.writes('create:Backup')).toBe(0);
      expect(v.writes('create:Restore')).toBe(0);
    } finally {
      await v.lab.faults.clear();
    }
  });

  test('an unknown named backup, or namespaces the backup lacks, fail with the reason', async () => {
    const missing = await run({ backup: 'no-such-backup' });
    expect(missing.report.result).toBe('failed');
    expect(missing.report.reasons).toEqual(['BackupNotUsable: backup velero/no-such-backup does not exist']);
    const lacking = await run({ namespaces: ['kube-system'] });
    expect(lacking.report.reasons[0]).toMatch(/does not include namespaces kube-system/);
    expect(lacking.report.restoreAttempted).toBe(false);
  });

  test('cancelling a drill mid-restore still deletes the scratch namespaces', async () => {
    gate = { reached: false };
    try {
      const h = await start({});
      const scratch = await until(async () => {
        const ns = await v.scratchNamespaces();
        return gate!.reached && ns.length > 0 ? ns : undefined;
      });
      expect(scratch[0]).toMatch(/^drill-eleduck-analytics-/);
      await h.cancel();
      const err = await h.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      expect(await v.scratchNamespaces()).toEqual([]);
      const desc = await h.describe();
      expect(desc.status.name).toBe('CANCELLED');
      expect(desc.searchAttributes.DrillResult).toEqual(['cancelled']);
      const progress = await h.query<Progress>('progress');
      expect(progress.steps.find((s) => s.id === 'cleanup')?.state).toBe('succeeded');
    } finally {
      gate = undefined;
    }
  });
});

describe('verifyBackup checks volume data', () => {
  const scratchOf = (r: DrillReport) => r.namespaces[0].scratch;

  test('a passing drill reports, per namespace, the PVCs the node-agent restored', async () => {
    const { report } = await run({ createNew: true });
    expect(report.reasons).toEqual([]);
    expect(report.result).toBe('passed');
    const fsBackup = (pvc: string) => ({
      pvc,
      method: 'fs-backup',
      name: expect.stringMatching(new RegExp(`^${report.restore}-`)),
      phase: 'Completed',
      bytes: expect.any(Number),
    });
    expect(report.volumes).toEqual([
      {
        source: 'eleduck-analytics',
        target: scratchOf(report),
        pvcs: [fsBackup('airbyte-server-data'), fsBackup('metabase-data')],
        withData: ['airbyte-server-data', 'metabase-data'],
        withoutData: [],
      },
    ]);
  });

  test('a restore that brings no volume data back fails the drill, naming the PVCs', async () => {
    // Velero finds none of the backup's PodVolumeBackups: the restore Completes with empty PVCs.
    v.lab.faults.velero.restoreWithoutVolumeData();
    const { report } = await run({ createNew: true });
    expect(report.result).toBe('failed');
    const scratch = scratchOf(report);
    expect(report.reasons).toEqual([
      `VerificationFailed: no volume data restored for eleduck-analytics (restored as ${scratch}): PVCs airbyte-server-data, metabase-data came back empty`,
      `VerificationFailed: 0 PVCs of eleduck-analytics (restored as ${scratch}) came back with data; the config expects at least 2`,
    ]);
    expect(report.volumes?.[0].withoutData).toEqual(['airbyte-server-data', 'metabase-data']);
    expect(await v.scratchNamespaces()).toEqual([]);
  });

  test('a backup taken without file-system backup fails the drill (snapshots are disabled)', async () => {
    const name = `no-fs-${randomUUID().slice(0, 8)}`;
    await v.kube.create({
      apiVersion: 'velero.io/v1',
      kind: 'Backup',
      metadata: { name, namespace: 'velero' },
      spec: { includedNamespaces: ['eleduck-analytics'], storageLocation: 'default', ttl: '1h0m0s' },
    });
    await until(async () =>
      (await v.kube.read<{ status?: { phase?: string } }>('velero.io/v1', 'Backup', name, 'velero'))?.status?.phase ===
      'Completed'
        ? true
        : undefined,
    );
    const { report } = await run({ backup: name });
    expect(report.result).toBe('failed');
    expect(report.reasons[0]).toMatch(
      /^VerificationFailed: no volume data restored for eleduck-analytics .*: PVCs airbyte-server-data, metabase-data came back empty$/,
    );
  });

  test('a CSI VolumeSnapshot restored under its new name (Velero ≥ 1.16) counts as restored', async () => {
    const c = clients(v.lab.kube);
    const vs = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots' };
    await c.custom.createNamespacedCustomObject({
      ...vs,
      namespace: 'eleduck-analytics',
      body: {
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshot',
        metadata: { name: 'metabase-data-snap' },
        spec: { source: { persistentVolumeClaimName: 'metabase-data' } },
      },
    });
    try {
      await c.custom.patchNamespacedCustomObjectStatus(
        {
          ...vs,
          namespace: 'eleduck-analytics',
          name: 'metabase-data-snap',
          body: { status: { boundVolumeSnapshotContentName: 'snapcontent-metabase', readyToUse: true } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      const { report } = await run({ createNew: true });
      expect(report.reasons).toEqual([]);
      expect(report.result).toBe('passed');
      expect(report.counts['snapshot.storage.k8s.io/v1/VolumeSnapshot']).toEqual({ expected: 1, restored: 1 });
    } finally {
      await c.custom.deleteNamespacedCustomObject({
        ...vs,
        namespace: 'eleduck-analytics',
        name: 'metabase-data-snap',
      });
    }
  });
});

describe('verifyBackup never parks in cleanup', () => {
  const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
    Promise.race([
      p,
      new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)),
    ]);

  test('a drill cancelled before its Restore exists ends at once: no park in settle-restore', async () => {
    holdCreate = { reached: false };
    try {
      const h = await start({});
      await until(async () => (holdCreate!.reached ? true : undefined));
      await h.cancel();
      const err = await within(
        h.result().then(
          () => undefined,
          (e: unknown) => e,
        ),
        20_000,
        'the cancelled drill',
      );
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      const progress = await h.query<Progress>('progress');
      expect(progress.steps.some((s) => s.state === 'needs-attention')).toBe(false);
      expect(await v.scratchNamespaces()).toEqual([]);
    } finally {
      holdCreate = undefined;
    }
  });

  test('a cleanup that fails non-retryably is reported, not parked', async () => {
    denyCleanup = true;
    try {
      const h = await start({});
      const report = (await within(h.result(), 30_000, 'the drill')) as DrillReport;
      expect(report.result).toBe('failed');
      expect(report.reasons.join('\n')).toMatch(/CleanupIncomplete: .*namespaces is forbidden/);
      const progress = await h.query<Progress>('progress');
      expect(progress.steps.find((s) => s.id === 'cleanup')?.state).toBe('failed');
    } finally {
      denyCleanup = false;
      for (const ns of await v.scratchNamespaces()) await v.kube.delete('v1', 'Namespace', ns);
    }
  });

  test('a drill past its deadline is failed with DrillTimeout and cleans up', async () => {
    gate = { reached: false };
    try {
      const h = await start({ deadlineSeconds: 4 });
      const report = (await within(h.result(), 30_000, 'the drill')) as DrillReport;
      expect(report.result).toBe('failed');
      expect(report.reasons).toContain('DrillTimeout: the drill did not finish within 4s');
      expect(await v.scratchNamespaces()).toEqual([]);
      expect((await h.describe()).searchAttributes.DrillResult).toEqual(['failed']);
    } finally {
      gate = undefined;
    }
  });
});

async function until<T>(fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the drill sandbox (issue 14 items 15, 16, 18)', () => {
  const PROD_HOST = 'analytics.soypetetech.local';

  test('restored hosts, CronJobs, external-facing workloads and fixed NodePorts stay off production', async () => {
    const k = v.kube;
    // What the real charts add in eleduck-analytics: Metabase's Ingress (values.ingress.hosts) and a
    // Service with a nodePort Helm fixes (its field manager owns it, so Velero keeps it on restore).
    await k.create({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: { name: 'metabase', namespace: 'eleduck-analytics' },
      spec: {
        rules: [
          {
            host: PROD_HOST,
            http: {
              paths: [
                { path: '/', pathType: 'Prefix', backend: { service: { name: 'metabase', port: { number: 80 } } } },
              ],
            },
          },
        ],
        tls: [{ hosts: [PROD_HOST], secretName: 'analytics-tls' }],
      },
    });
    const fixedPort = 30000 + Math.floor(Math.random() * 2000);
    await k.patch(
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'metabase-nodeport', namespace: 'eleduck-analytics' },
        spec: {
          type: 'NodePort',
          selector: { app: 'metabase' },
          ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: fixedPort }],
        },
      },
      'apply',
    );
    let seen: Record<string, unknown> | undefined;
    afterWorkloads = async ([ns]) => {
      const ing = await k.read<any>('networking.k8s.io/v1', 'Ingress', 'metabase', ns);
      const crons = await k.list<any>('batch/v1', 'CronJob', ns);
      const airbyte = await k.read<any>('apps/v1', 'Deployment', 'airbyte-server', ns);
      const metabase = await k.read<any>('apps/v1', 'Deployment', 'metabase', ns);
      const svc = await k.read<any>('v1', 'Service', 'metabase-nodeport', ns);
      const policy = await k.read<any>('networking.k8s.io/v1', 'NetworkPolicy', 'drill-sandbox-isolation', ns);
      seen = {
        hosts: [...(ing?.spec?.rules ?? []).map((r: any) => r.host), ...(ing?.spec?.tls?.[0]?.hosts ?? [])],
        suspended: crons.map((c) => c.spec?.suspend),
        airbyteReplicas: airbyte?.spec?.replicas,
        metabaseReplicas: metabase?.spec?.replicas,
        nodePort: svc?.spec?.ports?.[0]?.nodePort,
        policy: policy?.spec,
      };
    };
    try {
      const { report } = await run({ createNew: true });
      const scratch = report.namespaces[0].scratch;
      expect(seen, JSON.stringify(report.reasons)).toBeDefined();
      expect(seen!.hosts).toEqual([
        `analytics-soypetetech-local.${scratch}.drill.invalid`,
        `analytics-soypetetech-local.${scratch}.drill.invalid`,
      ]);
      expect(seen!.suspended).toEqual([true, true]);
      expect(seen!.airbyteReplicas).toBe(0);
      expect(seen!.metabaseReplicas).toBe(1);
      expect(seen!.nodePort).not.toBe(fixedPort);
      expect(seen!.policy).toMatchObject({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
      expect(report.reasons).toEqual([]);
      expect(report.result).toBe('passed');
      expect(report.sandbox?.hosts).toEqual([
        { from: PROD_HOST, to: `analytics-soypetetech-local.${scratch}.drill.invalid` },
      ]);
      // Nothing of the drill is left: namespaces, the Restore, the resource modifiers.
      expect(await v.scratchNamespaces()).toEqual([]);
      expect(await k.list('v1', 'ConfigMap', 'velero', 'pedro-ops/drill')).toEqual([]);
    } finally {
      afterWorkloads = undefined;
      await k.delete('networking.k8s.io/v1', 'Ingress', 'metabase', 'eleduck-analytics');
      await k.delete('v1', 'Service', 'metabase-nodeport', 'eleduck-analytics');
    }
  }, 240_000);

  test('cleanup of a restore still running waits for Velero to let it go, so no namespace comes back', async () => {
    gate = { reached: false };
    v.lab.faults.velero.restoreSlow(400);
    try {
      const h = await start({ deadlineSeconds: 5, timeouts: { settleSeconds: 1 } });
      // A scratch namespace seen under a second uid was deleted and created again (by Velero).
      const uids = new Map<string, string>();
      let stop = false;
      const recreated = (async () => {
        while (!stop) {
          for (const n of await v.kube.list('v1', 'Namespace')) {
            const { name, uid } = n.metadata!;
            if (!name!.startsWith('drill-')) continue;
            if (uids.has(name!) && uids.get(name!) !== uid)
              throw new Error(`${name} was created again after its deletion`);
            uids.set(name!, uid!);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const report = (await Promise.race([h.result(), recreated]).finally(() => (stop = true))) as DrillReport;
      await recreated;
      expect(report.reasons[0]).toBe('DrillTimeout: the drill did not finish within 5s');
      // Whatever the drill did, Velero ends the restore; then no scratch namespace may be there.
      await until(
        async () => ((await v.kube.read('velero.io/v1', 'Restore', report.restore!, 'velero')) ? undefined : true),
        60_000,
      );
      expect(await v.scratchNamespaces()).toEqual([]);
      expect(report.cleanup.remaining).toEqual([]);
      const progress = await h.query<Progress>('progress');
      expect(progress.steps.find((s) => s.id === 'delete-restore')?.state).toBe('succeeded');
    } finally {
      gate = undefined;
      v.lab.faults.velero.restoreSlow(0);
      for (const ns of await v.scratchNamespaces()) await v.kube.delete('v1', 'Namespace', ns);
    }
  }, 240_000);

  test('a namespace stuck Terminating is reported with the namespace controller’s conditions', async () => {
    afterWorkloads = async ([ns]) => {
      await v.kube.create({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'held', namespace: ns, finalizers: ['lab.pedro-ops.io/hold'] },
      });
    };
    let scratch: string | undefined;
    try {
      const { report } = await run({ timeouts: { cleanupSeconds: 8 } });
      scratch = report.namespaces[0].scratch;
      expect(report.result).toBe('failed');
      expect(report.cleanup.stuck).toEqual([
        expect.objectContaining({ namespace: scratch, phase: 'Terminating', terminating: true }),
      ]);
      expect(report.reasons.join('\n')).toMatch(
        new RegExp(
          `CleanupIncomplete: scratch namespaces still present: ${scratch} Terminating \\[.*NamespaceFinalizersRemaining`,
        ),
      );
    } finally {
      afterWorkloads = undefined;
      if (scratch)
        await v.kube
          .patch(
            {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: 'held', namespace: scratch, finalizers: [] },
            },
            'merge',
          )
          .catch(() => undefined);
    }
  }, 240_000);

  test('the restore’s errors and warnings are kept in the report before the Restore takes them along', async () => {
    v.lab.faults.velero.restoreItemError(
      'Deployment/metabase',
      'admission webhook "lab" denied the request: password=hunter2',
    );
    try {
      const { report } = await run({});
      const scratch = report.namespaces[0].scratch;
      expect(report.result).toBe('failed');
      expect(report.reasons[0]).toMatch(/^RestoreFailed: restore .* ended PartiallyFailed/);
      expect(report.restoreResults?.errors.total).toBe(1);
      expect(report.restoreResults?.errors.by[scratch]).toEqual({
        count: 1,
        messages: [expect.stringContaining(`error restoring deployments/${scratch}/metabase: admission webhook`)],
      });
      expect(JSON.stringify(report)).not.toContain('hunter2');
      expect(report.warnings.join('\n')).toMatch(/restore errors in drill-eleduck-analytics-/);
      expect(await v.kube.read('velero.io/v1', 'Restore', report.restore!, 'velero')).toBeUndefined();
      expect(await v.scratchNamespaces()).toEqual([]);
    } finally {
      await v.lab.faults.clear();
    }
  }, 240_000);
});
