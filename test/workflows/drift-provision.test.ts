// The false-positive test of the drift check (k0sctl #1094 reports drift on a cluster it just
// installed): a lab provisioned from bare nodes reports zero findings, and so does the same lab after
// a second provision.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { DriftReport } from '../../workflows/check-drift.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import { provisionHarness, type ProvisionHarness } from './provision-lab.js';

let h: ProvisionHarness;
beforeAll(async () => {
  h = await provisionHarness({}, 'drift-fp');
});
afterAll(async () => {
  await h?.stop();
});

const check = (): Promise<DriftReport> =>
  h.t.client.workflow.execute('checkDrift', {
    taskQueue: h.t.taskQueue,
    workflowId: `drift-check/drift-fp/test-${randomUUID().slice(0, 8)}`,
    args: [{ cluster: 'drift-fp', requestedBy: 'test' }],
  });
const brief = (r: DriftReport) => r.findings.map((f) => `${f.kind} ${f.object}: want ${f.want} / have ${f.have}`);

test('a fresh provision and a second provision show no drift', async () => {
  const first = (await (await h.start()).result()) as ProvisionReport;
  expect(first.state).toBe('succeeded');
  const a = await check();
  expect(brief(a)).toEqual([]);
  expect(a.checked).toBeGreaterThan(0);
  const second = (await (await h.start()).result()) as ProvisionReport;
  expect(second.state).toBe('succeeded');
  const b = await check();
  expect(brief(b)).toEqual([]);
  expect(b.driftId).toBe(a.driftId);
}, 600_000);
