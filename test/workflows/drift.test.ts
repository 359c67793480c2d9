// checkDrift and reconcile against the built lab on the real dev server: a clean built lab has no
// drift; each hand edit the lab can make (a HelmChart, a node's config.yaml, a stopped k3s, a Secret)
// shows with want and have, in the report and in the CLI's diff; reconcile waits for an approval that
// names the drift, refuses one for drift that has since changed, repairs through the provision and
// rotation steps, and a second check finds nothing.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { withBuiltLab, type LabOrchestrator } from '../helpers/lab-deps.js';
import type { Lab } from '../lab/index.js';
import type { DriftReport } from '../../workflows/check-drift.js';
import type { ReconcileReport } from '../../workflows/reconcile.js';
import { approveUpdate, progressQuery } from '../../workflows/messages.js';
import { driftView } from '../../api/cli/drift-view.js';

let t: TestTemporal;
let lab: Lab;
let o: LabOrchestrator;
let stopLab: () => Promise<void>;

beforeAll(async () => {
  [t, [lab, o, stopLab]] = await Promise.all([
    testTemporal({ taskQueuePrefix: 'drift' }),
    withBuiltLab({ prefix: 'pedro-ops-drift' }, (l, orch, stop) => [l, orch, stop] as const),
  ]);
  await t.startWorker(o.deps);
}, 300_000);

afterAll(async () => {
  await t?.close();
  await stopLab?.();
});

const check = (): Promise<DriftReport> =>
  t.client.workflow.execute('checkDrift', {
    taskQueue: t.taskQueue,
    workflowId: `drift-check/${o.spec.name}/test-${randomUUID().slice(0, 8)}`,
    args: [{ cluster: o.spec.name, requestedBy: 'test' }],
  });

const startReconcile = () =>
  t.client.workflow.start('reconcile', {
    taskQueue: t.taskQueue,
    workflowId: `reconcile/${o.spec.name}-${randomUUID().slice(0, 8)}`,
    args: [{ cluster: o.spec.name, requestedBy: 'test', approvalTimeout: '10m' }],
  });

type Handle = Awaited<ReturnType<typeof startReconcile>>;

/** Waits until the run waits for approval; returns the driftId its newest approval step names. */
async function planWaiting(h: Handle, afterStep = 0): Promise<{ driftId: string; detail: string }> {
  for (;;) {
    const p = await h.query(progressQuery);
    const step = p.steps.filter((s) => s.id.startsWith('approval-') && Number(s.id.slice(9)) > afterStep).at(-1);
    if (p.state === 'waiting-approval' && step?.state === 'pending') {
      return { driftId: /^drift ([0-9a-f]{16})/.exec(step.detail ?? '')![1], detail: step.detail! };
    }
    if (['succeeded', 'failed', 'partial', 'cancelled'].includes(p.state))
      throw new Error(`reconcile ended ${p.state} before a plan`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Checks until two in a row see the same drift: a hand edit of a HelmChart reruns its Job for a while. */
async function settled(): Promise<DriftReport> {
  let prev = await check();
  for (let i = 0; i < 20; i++) {
    const next = await check();
    if (next.driftId === prev.driftId) return next;
    prev = next;
  }
  throw new Error(`drift never settled: ${brief(prev).join('; ')}`);
}

/**
 * Approves the waiting plan, and again (as an operator would) when the confirming check refuses it
 * because the drift moved on meanwhile; returns the run's report.
 */
async function approveUntilDone(h: Handle, first: { driftId: string }): Promise<ReconcileReport> {
  let plan = first;
  for (let i = 0; i < 3; i++) {
    await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test', driftId: plan.driftId }] });
    const approvals = (await h.query(progressQuery)).steps.filter((s) => s.id.startsWith('approval-'));
    const step = Number(approvals.at(-1)?.id.slice('approval-'.length) ?? 0);
    const next = await Promise.race([h.result().then(() => undefined), planWaiting(h, step).catch(() => undefined)]);
    if (!next) break;
    plan = next;
  }
  return h.result();
}

const component = () => o.spec.components.find((c) => c.workloads.length > 0 && c.name !== 'openbao')!;
const secretEntry = () => o.spec.secrets.entries.find((e) => !e.pendingSource && e.kubernetes)!;
const brief = (r: DriftReport) => r.findings.map((f) => `${f.kind} ${f.object}: want ${f.want} / have ${f.have}`);

describe('checkDrift', () => {
  test('a clean built lab reports zero findings', async () => {
    const r = await check();
    expect(brief(r)).toEqual([]);
    expect(r.total).toBe(0);
    expect(r.checked).toBeGreaterThan(o.spec.nodes.length + o.spec.components.length);
    expect(driftView(r)).toMatch(/no drift/);
  });

  test('every injected drift shows with want and have, in the report and the CLI diff; reconcile repairs it after approval', async () => {
    const c = component();
    const e = secretEntry();
    const secretKey = Object.keys(e.kubernetes!.keys)[0];
    await lab.faults.drift.editHelmChart(c.name, { valuesContent: 'replicaCount: 7\n' });
    await lab.faults.drift.editNodeFile('worker-1', 'kubelet-arg: [max-pods=7]');
    await lab.faults.drift.stopK3s('worker-2');
    await lab.faults.drift.editSecret(e.kubernetes!.namespace, e.kubernetes!.name, secretKey);
    await lab.faults.drift.editVipImage('ghcr.io/kube-vip/kube-vip:v0.6.3');

    const r = await settled();
    const by = (kind: string, group: string) => r.findings.find((f) => f.kind === kind && f.group === group);
    const chart = by('helmchart', `component ${c.name}`);
    expect(chart?.want).toMatch(/^values sha256:[0-9a-f]{12}$/);
    expect(chart?.have).toMatch(/^values sha256:[0-9a-f]{12}$/);
    expect(chart?.want).not.toBe(chart?.have);
    const file = by('k3s-config', 'node worker-1');
    expect(file).toMatchObject({
      have: 'kubelet-arg: [max-pods=7]',
      repair: { step: 'prepare-node', node: 'worker-1' },
    });
    expect(by('k3s-service', 'node worker-2')).toMatchObject({ want: 'active', have: 'inactive' });
    const vip = by('vip-provider', 'vip');
    expect(vip).toMatchObject({ repair: { step: 'vip' } });
    expect(vip?.want).toMatch(/image ghcr\.io\/kube-vip\/kube-vip:v0\.6\.4/);
    expect(vip?.have).toMatch(/image ghcr\.io\/kube-vip\/kube-vip:v0\.6\.3/);
    const secret = by('secret', `secret ${e.id}`);
    expect(secret?.want).toMatch(/^1Password hmac-sha256:[0-9a-f]{12}; Secret hmac-sha256:[0-9a-f]{12}$/);
    expect(secret?.have).toMatch(/differs from OpenBAO/);
    // No secret value anywhere in the report.
    const text = JSON.stringify(r);
    for (const v of lab.secretValues()) expect(text).not.toContain(v);
    expect(text).not.toContain('edited-by-hand');

    const diff = driftView(r);
    for (const f of [chart!, file!, by('k3s-service', 'node worker-2')!, secret!, vip!]) {
      expect(diff).toContain(`${f.kind}  ${f.object}`);
      expect(diff).toContain(`- ${f.want.split('\n')[0]}`);
      expect(diff).toContain(`+ ${f.have.split('\n')[0]}`);
    }
    // Grouped: nodes first, then components, then the rest.
    expect(diff.indexOf('node worker-1')).toBeLessThan(diff.indexOf(`component ${c.name}`));
    expect(diff.indexOf(`component ${c.name}`)).toBeLessThan(diff.indexOf(`secret ${e.id}`));

    const h = await startReconcile();
    const plan = await planWaiting(h);
    for (const id of [
      'prepare/worker-1',
      'k3s/worker-1',
      'k3s/worker-2',
      'vip',
      `component/${c.name}`,
      `secret/${e.id}`,
    ])
      expect(plan.detail).toContain(id);
    // Nothing is repaired while it waits.
    const waitingCheck = await check();
    for (const kind of ['helmchart', 'k3s-config', 'k3s-service', 'secret', 'vip-provider'])
      expect(waitingCheck.findings.map((f) => f.kind)).toContain(kind);
    // An approval that names other drift is refused by the update's validator.
    await expect(
      h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test', driftId: '0000000000000000' }] }),
    ).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    const rep = await approveUntilDone(h, plan);
    expect(rep.result).toBe('repaired');
    expect(rep.after?.total).toBe(0);
    expect(brief(await check())).toEqual([]);
  }, 600_000);

  test('an approval older than the drift it approved is refused; rejecting changes nothing', async () => {
    const c = component();
    const e = secretEntry();
    await lab.faults.drift.editSecret(e.kubernetes!.namespace, e.kubernetes!.name, Object.keys(e.kubernetes!.keys)[0]);
    const h = await startReconcile();
    const first = await planWaiting(h);
    // Someone edits the cluster again after the plan was made.
    await lab.faults.drift.editHelmChart(c.name, { valuesContent: 'replicaCount: 9\n' });
    await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test', driftId: first.driftId }] });
    const second = await planWaiting(h, 1);
    expect(second.driftId).not.toBe(first.driftId);
    expect(second.detail).toContain(`component/${c.name}`);
    await h.executeUpdate(approveUpdate, { args: [{ approved: false, by: 'test', note: 'not now' }] });
    const rep: ReconcileReport = await h.result();
    expect(rep.result).toBe('rejected');
    expect(rep.refused).toEqual([
      {
        driftId: first.driftId,
        by: 'test',
        reason: expect.stringMatching(/drift changed since the plan was approved/),
      },
    ]);
    expect(rep.applied).toEqual([]);
    // Both drifts are still there: nothing was repaired without an approval of them.
    const after = await check();
    expect(after.findings.map((f) => f.kind)).toEqual(expect.arrayContaining(['secret', 'helmchart']));
  }, 600_000);

  test('the lab control API injects each drift kind; bad input is 400, an unknown node 404', async () => {
    const post = (path: string, body: object = {}) =>
      fetch(`${lab.control.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
    const c = component();
    const e = secretEntry();
    expect((await post('/faults/drift/nodes/nope/stop-k3s')).status).toBe(404);
    expect((await post(`/faults/drift/helmcharts/${c.name}/edit`, { spec: 'x' })).status).toBe(400);
    expect((await post('/faults/drift/nodes/worker-1/k3s-config', {})).status).toBe(400);
    for (const [path, body] of [
      [`/faults/drift/helmcharts/${c.name}/edit`, { spec: { timeout: '1s' } }],
      ['/faults/drift/nodes/control-plane/k3s-config', { line: 'node-ip: 10.9.9.9' }],
      ['/faults/drift/nodes/worker-1/stop-k3s', {}],
      [
        `/faults/drift/secrets/${e.kubernetes!.namespace}/${e.kubernetes!.name}/edit`,
        { key: Object.keys(e.kubernetes!.keys)[0] },
      ],
    ] as const)
      expect((await post(path, body)).status, path).toBe(200);
    const r = await check();
    const seen = r.findings.map((f) => `${f.kind} ${f.group}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        `helmchart component ${c.name}`,
        'k3s-config node control-plane',
        'k3s-service node worker-1',
        `secret secret ${e.id}`,
      ]),
    );
    const cfg = r.findings.find((f) => f.kind === 'k3s-config')!;
    expect(cfg.have).toContain('node-ip: 10.9.9.9');
    expect(cfg.want).toBe('(only the lines prepare writes)');
    expect(driftView(r)).toContain('+ node-ip: 10.9.9.9');
  }, 300_000);
});
