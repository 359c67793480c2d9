// recoverControlPlane onto a replacement machine (issue 20, Done when): the control-plane node is
// destroyed (its files and kine's state), a new empty machine comes up at a new address, the operator
// gives the server that address in the cluster file, and the approved recovery installs k3s on it,
// writes the server token back from 1Password, restores from the S3 snapshot, brings the VIP back and
// re-points the agents. Every object created before the snapshot is back, the agents are Ready, the
// secrets are synced, drift is zero, the report has RTO and RPO, and the token is in no history.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { historiesText } from '../helpers/history-text.js';
import type { RecoverReport } from '../../workflows/recover-control-plane.js';
import { approveUpdate, type Progress } from '../../workflows/messages.js';
import type { DriftReport } from '../../workflows/check-drift.js';
import { createActivities } from '../../activities/index.js';
import { activity, startEtcdLab, type EtcdLab } from './etcd-lab.js';

let t: TestTemporal;
let v: EtcdLab;
let snapshot: string;
let token: string;
const CM = '/api/v1/namespaces/default/configmaps';
const cm = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: name } });

beforeAll(async () => {
  [t, v] = await Promise.all([testTemporal({ taskQueuePrefix: 'recover-cp-new' }), startEtcdLab()]);
  await t.startWorker(v.deps);
  await activity(() => createActivities(v.deps).prepareNode({ cluster: v.spec.name, node: 'control-plane' }));
  const api = v.lab.pieces.kube.controlPlane.api;
  await api.must('POST', CM, cm('before-snapshot'));
  const saved = await v.onNode('k3s etcd-snapshot save');
  snapshot = /Snapshot (\S+) saved/.exec(saved.stderr)![1];
  await api.must('POST', CM, cm('after-snapshot'));
  token = (await v.onNode('cat /var/lib/rancher/k3s/server/token')).stdout.trim();
}, 240_000);

afterAll(async () => {
  await t?.close();
  await v?.stop();
});

test('destroyed server, replacement at a new address: restored from S3 with the token from 1Password, agents re-pointed, drift zero', async () => {
  expect(token).toMatch(/^K10[0-9a-f]{64}::server:/);
  const old = v.lab.nodes.find((n) => n.name === 'control-plane')!;
  const oldHost = { host: old.host, port: old.port, lanIp: old.lanIp };
  await v.lab.faults.kube.destroyControlPlane();
  // The lab's control route: a new, empty machine under the same name at a new address.
  const res = await fetch(`${v.lab.control.url}/faults/nodes/control-plane/replace`, { method: 'POST' });
  expect(res.status).toBe(200);
  const { node: fresh } = (await res.json()) as {
    node: { host: string; port: number; hostKey: string; lanIp: string };
  };
  expect(v.lab.nodes.find((n) => n.name === 'control-plane')?.host).toBe(fresh.host);
  expect(fresh.host).not.toBe(oldHost.host);
  expect(fresh.lanIp).not.toBe(oldHost.lanIp);
  // What an operator does for a new machine: its address and host key in the cluster file, same name.
  v.rewriteSpec((raw) => {
    const n = raw.nodes.find((x) => x.name === 'control-plane')!;
    Object.assign(n, {
      address: fresh.host,
      port: fresh.port,
      hostKey: fresh.hostKey.split(/\s+/).slice(0, 2).join(' '),
    });
  });
  const empty = await v.onNode('ls -A /var/lib/rancher /etc/rancher | grep -v : ; command -v k3s || echo no-k3s');
  expect(empty.stdout.trim()).toBe('no-k3s');

  const h = await t.client.workflow.start('recoverControlPlane', {
    taskQueue: t.taskQueue,
    workflowId: `recover-control-plane/lab/${randomUUID()}`,
    args: [{ cluster: v.spec.name, snapshot }],
  });
  let p: Progress | undefined;
  for (let i = 0; i < 300 && p?.state !== 'waiting-approval'; i++) {
    p = await h.query<Progress>('progress');
    if (p.state !== 'waiting-approval') await new Promise((r) => setTimeout(r, 200));
  }
  expect(p?.state).toBe('waiting-approval');
  const ref = `op://${v.spec.onepassword.vault}/k3s-server-token/token`;
  expect(p!.steps.find((s) => s.id === 'approval')?.detail).toContain(
    `restore control-plane onto a replacement machine at ${fresh.host} (no k3s, no server token on its disk) from ${snapshot}`,
  );
  await h.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'test' }] });
  const r = (await h.result()) as RecoverReport;
  process.stderr.write(
    `[recover onto a replacement] RTO ${r.rtoSeconds}s, RPO ${r.rpoSeconds}s, OpenBAO ${r.openbao}\n`,
  );
  expect(r.result, r.reasons.join('; ')).toBe('recovered');
  expect(r.plan).toMatchObject({
    node: 'control-plane',
    replacement: { address: fresh.host, install: v.spec.k3s.version, tokenRef: ref },
    token: { from: '1password', ref },
    agents: [
      { name: 'worker-1', action: 're-point' },
      { name: 'worker-2', action: 're-point' },
    ],
  });
  expect(r.rtoSeconds).toBeGreaterThanOrEqual(1);
  expect(r.rpoSeconds).toBeGreaterThanOrEqual(0);
  expect(r.nodesReady?.sort()).toEqual(['control-plane', 'worker-1', 'worker-2']);
  // The agents kept running: their load balancer reaches the new server through the VIP.
  expect(r.agents).toEqual([
    { name: 'worker-1', action: 'unchanged' },
    { name: 'worker-2', action: 'unchanged' },
  ]);
  const steps = (await h.query<Progress>('progress')).steps;
  const state = (id: string) => steps.find((s) => s.id === id)?.state;
  expect(['install', 'token', 'cluster-reset', 'vip'].map(state)).toEqual([
    'succeeded',
    'succeeded',
    'succeeded',
    'succeeded',
  ]);

  // Objects from before the snapshot are back, later ones gone; the Node carries the new address.
  const api = v.lab.pieces.kube.controlPlane.api;
  expect(await api.get(`${CM}/before-snapshot`)).toBeTruthy();
  expect(await api.get(`${CM}/after-snapshot`)).toBeFalsy();
  const node = (await api.get('/api/v1/nodes/control-plane')) as {
    status: { addresses: { type: string; address: string }[] };
  };
  expect(node.status.addresses).toContainEqual({ type: 'InternalIP', address: fresh.lanIp });
  // Same token on the new disk, k3s at the pinned version and running.
  expect((await v.onNode('cat /var/lib/rancher/k3s/server/token')).stdout.trim()).toBe(token);
  expect((await v.onNode('systemctl is-active k3s; k3s --version | head -n 1')).stdout).toContain(
    `active\nk3s version ${v.spec.k3s.version}`,
  );

  // Secrets synced, drift zero.
  expect(await t.client.workflow.getHandle(r.secretSync!.workflowId).result()).toMatchObject({ state: 'ok' });
  const drift = (await t.client.workflow.getHandle(r.drift!.workflowId).result()) as DriftReport;
  expect(r.drift?.total, JSON.stringify(drift.findings)).toBe(0);
  expect(r.reasons).toEqual([]);

  // The token (and every other secret of the lab) is in no history of the run or its children.
  const text = await historiesText(t.client, [h.workflowId, r.secretSync!.workflowId, r.drift!.workflowId]);
  expect(text).toContain(ref);
  const values = [token, token.split('::server:')[1], ...v.lab.secretValues()];
  expect(values.filter((x) => text.includes(x) || text.includes(Buffer.from(x).toString('base64')))).toEqual([]);
}, 420_000);
