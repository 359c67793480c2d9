// drRestore against the built lab on the real Temporal dev server: the plan is visible while it
// waits; no approval before the timeout restores nothing and ends cancelled; approval restores and
// verifies; rejection ends cleanly; a PartiallyFailed backup is refused unless forced.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { type ApplicationFailure } from '@temporalio/common';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import type { DrRestoreInput, DrRestoreReport } from '../../workflows/dr-restore.js';
import type { Progress } from '../../workflows/messages.js';
import { startVeleroLab, type VeleroLab } from './velero-lab.js';

let t: TestTemporal;
let v: VeleroLab;
let backup: string;

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'dr-restore' }), startVeleroLab()]);
  await t.startWorker(v.deps);
  const backups = await v.kube.list('velero.io/v1', 'Backup', 'velero', 'velero.io/schedule-name=daily');
  backup = backups
    .map((b) => b.metadata!.name!)
    .sort()
    .at(-1)!;
});

afterAll(async () => {
  await t?.close();
  await v?.stop();
});

function start(input: Omit<DrRestoreInput, 'cluster'>) {
  return t.client.workflow.start('drRestore', {
    taskQueue: t.taskQueue,
    workflowId: `dr-restore/lab/${randomUUID()}`,
    args: [{ cluster: 'lab', ...input }],
  });
}

async function waitingApproval(h: WorkflowHandle): Promise<Progress> {
  const end = Date.now() + 20_000;
  for (;;) {
    const p = await h.query<Progress>('progress');
    if (p.state === 'waiting-approval') return p;
    if (Date.now() > end) throw new Error(`never waited for approval: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const approve = (h: WorkflowHandle, approved: boolean, by = 'alice', note?: string) =>
  h.executeUpdate<{ accepted: boolean }, [{ approved: boolean; by?: string; note?: string }]>('approve', {
    args: [{ approved, by, note }],
  });

describe('drRestore', () => {
  test('without approval before the timeout it ends cancelled and restores nothing', async () => {
    v.lab.resetCounters();
    const h = await start({
      backup,
      namespaces: ['eleduck-analytics'],
      target: { 'eleduck-analytics': 'eleduck-analytics-dr' },
      approvalTimeout: '1500ms',
    });
    const p = await waitingApproval(h);
    expect(p.steps.find((s) => s.id === 'approval')?.detail).toBe(
      `restore backup ${backup} (Completed): eleduck-analytics → eleduck-analytics-dr; existing resources: kept`,
    );
    const report = (await h.result()) as DrRestoreReport;
    expect(report.result).toBe('cancelled');
    expect(report.reasons).toEqual(['no approval within 1500ms; nothing was restored']);
    expect(report.restore).toBeUndefined();
    const desc = await h.describe();
    expect(desc.searchAttributes.State).toEqual(['cancelled']);
    expect((desc.memo?.report as { result: string }).result).toBe('cancelled');
    expect((await h.query<Progress>('progress')).state).toBe('cancelled');
    expect(v.writes('create:Restore')).toBe(0);
    expect(await v.kube.read('v1', 'Namespace', 'eleduck-analytics-dr')).toBeUndefined();
    // A late approval finds nothing waiting.
    await expect(approve(h, true)).rejects.toBeTruthy();
  });

  test('approval restores into the target namespace and verifies it', async () => {
    const h = await start({
      backup,
      namespaces: ['eleduck-analytics'],
      target: { 'eleduck-analytics': 'eleduck-analytics-dr' },
      approvalTimeout: '1m',
    });
    await waitingApproval(h);
    expect(await approve(h, true, 'alice', 'INC-42')).toEqual({ accepted: true });
    // One decision only.
    await expect(approve(h, false, 'bob')).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    const report = (await h.result()) as DrRestoreReport;
    expect(report.result).toBe('restored');
    expect(report.approval).toEqual({ approved: true, by: 'alice', note: 'INC-42' });
    expect(report.reasons).toEqual([]);
    expect(report.verification).toBe('resource-list');
    const counts = Object.values(report.counts);
    expect(counts.length).toBeGreaterThan(0);
    for (const c of counts) expect(c.restored).toBe(c.expected);
    const restored = await v.kube.list(
      'v1',
      'Secret',
      'eleduck-analytics-dr',
      `velero.io/restore-name=${report.restore}`,
    );
    expect(restored.length).toBeGreaterThan(0);
    // The volume data came back through the node-agent (the seeded backups used file-system backup).
    expect(report.volumes).toMatchObject([
      {
        source: 'eleduck-analytics',
        target: 'eleduck-analytics-dr',
        withData: ['airbyte-server-data', 'metabase-data'],
        withoutData: [],
      },
    ]);
    const progress = await h.query<Progress>('progress');
    expect(progress.state).toBe('succeeded');
    expect(progress.steps.find((s) => s.id === 'volume-data')?.detail).toBe('eleduck-analytics: 2 of 2 PVCs with data');
    expect(progress.steps.find((s) => s.id === 'approval')?.detail).toBe('approved by alice: INC-42');
    // A DR restore is real: its target stays. Remove it so other tests see the lab as built.
    await v.deps.kube(v.spec).delete('v1', 'Namespace', 'eleduck-analytics-dr');
  });

  test('rejection ends cleanly with nothing restored', async () => {
    v.lab.resetCounters();
    const h = await start({
      backup,
      namespaces: ['eleduck-analytics'],
      target: { 'eleduck-analytics': 'ea-rejected' },
    });
    await waitingApproval(h);
    await approve(h, false, 'bob', 'wrong backup');
    const report = (await h.result()) as DrRestoreReport;
    expect(report.result).toBe('rejected');
    expect(report.reasons).toEqual(['rejected by bob: wrong backup']);
    expect((await h.describe()).status.name).toBe('COMPLETED');
    expect(v.writes('create:Restore')).toBe(0);
  });

  test('a PartiallyFailed backup is refused unless forced; force shows the override in the plan', async () => {
    v.lab.faults.velero.backupPartiallyFailed('pf-backup');
    await v.kube.create({
      apiVersion: 'velero.io/v1',
      kind: 'Backup',
      metadata: { name: 'pf-backup', namespace: 'velero' },
      spec: { includedNamespaces: ['eleduck-analytics'], storageLocation: 'default' },
    });
    const end = Date.now() + 15_000;
    while (
      (await v.kube.read<{ status?: { phase?: string } }>('velero.io/v1', 'Backup', 'pf-backup', 'velero'))?.status
        ?.phase !== 'PartiallyFailed'
    ) {
      if (Date.now() > end) throw new Error('backup never PartiallyFailed');
      await new Promise((r) => setTimeout(r, 100));
    }
    v.lab.resetCounters();
    const refused = await start({ backup: 'pf-backup', namespaces: ['eleduck-analytics'] });
    const err = await refused.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('BackupNotUsable');
    expect(cause.message).toMatch(
      /DR restore refused: backup pf-backup is PartiallyFailed with 1 errors \(force overrides this\)/,
    );

    const missing = await start({ backup: 'nope', namespaces: ['eleduck-analytics'], force: true });
    const err2 = await missing.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(((err2 as WorkflowFailedError).cause as ApplicationFailure).message).toMatch(/backup nope does not exist/);

    const forced = await start({
      backup: 'pf-backup',
      namespaces: ['eleduck-analytics'],
      target: { 'eleduck-analytics': 'ea-forced' },
      force: true,
    });
    const p = await waitingApproval(forced);
    expect(p.steps.find((s) => s.id === 'approval')?.detail).toMatch(
      /FORCED despite: backup pf-backup is PartiallyFailed/,
    );
    await approve(forced, false, 'carol');
    expect(((await forced.result()) as DrRestoreReport).result).toBe('rejected');
    expect(v.writes('create:Restore')).toBe(0);
  });
});
