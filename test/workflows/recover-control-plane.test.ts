// recoverControlPlane on the built lab: the plan names the newest S3 snapshot and waits for approval;
// a rejection or an approval timeout changes nothing; approved after the control plane's datastore was
// destroyed (and the node's local snapshot copies deleted), it restores from S3, every object created
// before the snapshot is back, those created after it are gone, every node is Ready, OpenBAO is
// unsealed, the secrets are synced, a full drift check finds nothing, and the report carries the
// measured RTO and the RPO.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import {
  WorkflowFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import type { RecoverControlPlaneInput, RecoverReport } from '../../workflows/recover-control-plane.js';
import type { Progress } from '../../workflows/messages.js';
import type { DriftReport } from '../../workflows/check-drift.js';
import { approveUpdate } from '../../workflows/messages.js';
import { createActivities } from '../../activities/index.js';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { activity, startEtcdLab, type EtcdLab } from './etcd-lab.js';

let t: TestTemporal;
let v: EtcdLab;
let snapshot: string;
let app: FastifyInstance;
const cm = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: name } });
const CM = '/api/v1/namespaces/default/configmaps';

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'recover-cp' }), startEtcdLab()]);
  await t.startWorker(v.deps);
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: v.deps.clusters,
  });
  // The server's config gets the S3 settings (as a provision would write them), then a snapshot.
  await activity(() => createActivities(v.deps).prepareNode({ cluster: v.spec.name, node: 'control-plane' }));
  await v.lab.pieces.kube.controlPlane.api.must('POST', CM, cm('before-snapshot'));
  const saved = await v.onNode('k3s etcd-snapshot save');
  snapshot = /Snapshot (\S+) saved/.exec(saved.stderr)![1];
  await v.lab.pieces.kube.controlPlane.api.must('POST', CM, cm('after-snapshot'));
}, 240_000);

afterAll(async () => {
  await app?.close();
  await t?.close();
  await v?.stop();
});

async function start(
  input: Omit<RecoverControlPlaneInput, 'cluster'> = {},
): Promise<WorkflowHandleWithFirstExecutionRunId> {
  return t.client.workflow.start('recoverControlPlane', {
    taskQueue: t.taskQueue,
    workflowId: `recover-control-plane/lab/${randomUUID()}`,
    args: [{ cluster: v.spec.name, ...input }],
  });
}

async function waitingApproval(h: WorkflowHandle): Promise<Progress> {
  for (let i = 0; i < 300; i++) {
    const p = await h.query<Progress>('progress');
    if (p.state === 'waiting-approval') return p;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('never reached the approval gate');
}

const exists = async (name: string) => Boolean(await v.lab.pieces.kube.controlPlane.api.get(`${CM}/${name}`));

describe('recoverControlPlane', () => {
  test('rejected: the plan names the newest snapshot and nothing changes', async () => {
    const h = await start();
    const p = await waitingApproval(h);
    expect(p.steps.find((s) => s.id === 'approval')?.detail).toContain(`restore control-plane from ${snapshot}`);
    await h.executeUpdate(approveUpdate, { args: [{ approved: false, by: 'test', note: 'not now' }] });
    const r = (await h.result()) as RecoverReport;
    expect(r.result).toBe('rejected');
    expect(r.plan).toMatchObject({
      node: 'control-plane',
      snapshot,
      agents: [{ name: 'worker-1' }, { name: 'worker-2' }],
    });
    expect(r.reasons).toEqual(['rejected by test: not now; nothing was changed']);
    expect(await exists('after-snapshot')).toBe(true);
  });

  test('API: POST plans and waits; reject through the API; a bad snapshot name is 400', async () => {
    const bad = await app.inject({
      method: 'POST',
      url: '/clusters/lab/control-plane/recover',
      payload: { snapshot: 'a b' },
    });
    expect(bad.statusCode).toBe(400);
    const r = await app.inject({ method: 'POST', url: '/clusters/lab/control-plane/recover', payload: {} });
    expect(r.statusCode).toBe(202);
    const started = r.json<{ id: string; workflowId: string; statusUrl: string; rejectUrl: string }>();
    expect(started.workflowId).toBe(`recover-control-plane/lab/${started.id}`);
    await waitingApproval(t.client.workflow.getHandle(started.workflowId));
    const rej = await app.inject({ method: 'POST', url: started.rejectUrl, payload: { note: 'drill' } });
    expect(rej.statusCode, rej.body).toBe(200);
    expect(rej.json()).toMatchObject({ accepted: true, decision: 'reject' });
    const report = (await t.client.workflow.getHandle(started.workflowId).result()) as RecoverReport;
    expect(report.result).toBe('rejected');
    expect(await exists('after-snapshot')).toBe(true);
  });

  test('no decision before the timeout: cancelled, nothing changes', async () => {
    const r = (await (await start({ approvalTimeout: '2s' })).result()) as RecoverReport;
    expect(r.result).toBe('cancelled');
    expect(r.reasons).toEqual(['no approval within 2s; nothing was changed']);
    expect(await exists('after-snapshot')).toBe(true);
  });

  test('datastore destroyed: restored from S3, objects from before the snapshot back, nodes Ready, secrets synced, drift zero, RTO and RPO', async () => {
    await v.lab.pieces.kube.controlPlane.destroy();
    await v.onNode('rm -rf /var/lib/rancher/k3s/server/db/snapshots');
    const h = await start({ snapshot });
    await waitingApproval(h);
    await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test' }] });
    const r = (await h.result()) as RecoverReport;
    expect(r.result).toBe('recovered');
    process.stderr.write(`[recover] RTO ${r.rtoSeconds}s, RPO ${r.rpoSeconds}s, OpenBAO ${r.openbao}\n`);
    expect(r.rtoSeconds).toBeGreaterThanOrEqual(1);
    expect(r.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(r.nodesReady?.sort()).toEqual(['control-plane', 'worker-1', 'worker-2']);
    // Secrets synced through the child rotation, OpenBAO unsealed, and a full drift check finds nothing.
    expect(r.openbao).toMatch(/^(already-unsealed|unsealed)$/);
    expect(r.secretSync?.workflowId).toBe(`rotate-secrets/${v.spec.name}/recover-${h.firstExecutionRunId}`);
    expect(r.secretSync?.entries).toBeGreaterThan(0);
    const sync = await t.client.workflow.getHandle(r.secretSync!.workflowId).result();
    expect(sync).toMatchObject({ state: 'ok' });
    const drift = (await t.client.workflow.getHandle(r.drift!.workflowId).result()) as DriftReport;
    expect(r.drift, JSON.stringify(drift.findings)).toMatchObject({
      total: 0,
      workflowId: `drift-check/${v.spec.name}/recover-${h.firstExecutionRunId}`,
    });
    expect(r.reasons).toEqual([]);
    const steps = (await h.query<Progress>('progress')).steps;
    const state = (id: string) => steps.find((s) => s.id === id)?.state;
    expect(state('unseal')).toBe(r.openbao === 'unsealed' ? 'succeeded' : 'satisfied');
    expect([state('secret-sync'), state('drift')]).toEqual(['succeeded', 'succeeded']);
    expect(await exists('before-snapshot')).toBe(true);
    expect(await exists('after-snapshot')).toBe(false);
    // A reset marker for this run only: a retried attempt skips the reset.
    const markers = await v.onNode('ls /var/lib/rancher/pedro-ops/');
    expect(markers.stdout.split('\n').filter((l) => l.startsWith('cluster-reset-'))).toHaveLength(1);
  }, 300_000);

  test('a snapshot that is not in S3 is refused before the gate', async () => {
    const err = await (await start({ snapshot: 'on-demand-control-plane-1' })).result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.message).toMatch(
      /^control-plane recovery refused: snapshot on-demand-control-plane-1 is not in S3 \(have on-demand-control-plane-\d+\)$/,
    );
  });

  // Last: the fault wipes the server's disk (k3s, its token, its config), which nothing here undoes.
  test('the whole node destroyed (disk wiped) and no token copy in 1Password: refused before the gate, naming the missing token', async () => {
    await v.lab.faults.kube.destroyControlPlane();
    // The built lab keeps the token in 1Password as a provision does; a cluster file naming an item
    // that does not exist is a cluster whose token was never kept off-node.
    v.rewriteSpec((raw) => void (raw.k3s.tokenItem = 'no-such-item'));
    const err = await (await start({ snapshot })).result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.message).toBe(
      `control-plane recovery refused: the k3s server token (/var/lib/rancher/k3s/server/token) is gone from control-plane and 1Password holds no copy (op://${v.spec.onepassword.vault}/no-such-item/token): the snapshot is unusable without it`,
    );
  });
});
