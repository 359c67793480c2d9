// The leak audit itself must catch what it exists for: a plaintext payload and a secret value in
// a history. The planted workflow is deleted afterwards so the suite-wide audit stays clean.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { auditSuite, SELF_TEST_PREFIX } from '../leak-audit.js';
import { testTemporal, type TestTemporal } from '../helpers/temporal.js';

let t: TestTemporal;
beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'leak-audit' });
});
afterAll(async () => {
  await t?.close();
});

it('flags unencrypted payloads and secret values, and passes encrypted ones', async () => {
  const planted = `planted-secret-${randomUUID()}`;
  const plain = new Client({ connection: await Connection.connect({ address: t.address }) });
  const id = `${SELF_TEST_PREFIX}${randomUUID()}`;
  // Started but never run (no worker on this queue): the start event holds the input.
  await plain.workflow.start('rotateSecrets', {
    taskQueue: t.taskQueue,
    workflowId: id,
    args: [{ cluster: 'x', note: planted }],
  });
  const encryptedId = `${id}-enc`;
  await t.client.workflow.start('rotateSecrets', {
    taskQueue: t.taskQueue,
    workflowId: encryptedId,
    args: [{ cluster: 'x', note: planted }],
  });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const bad = await auditSuite(t.address, dir, { query: `WorkflowId="${id}"`, extraSecrets: [planted] });
    expect(bad.workflows).toBe(1);
    expect(bad.unencrypted.length).toBeGreaterThan(0);
    expect(bad.leaks.some((l) => l.includes('raw history'))).toBe(true);
    const good = await auditSuite(t.address, dir, { query: `WorkflowId="${encryptedId}"`, extraSecrets: [planted] });
    expect(good.workflows).toBe(1);
    expect(good.unencrypted).toEqual([]);
    // The codec hides the value from the raw history, but the decoded payload still carries it: caught.
    expect(good.leaks).toEqual([expect.stringContaining('decoded payload')]);
  } finally {
    for (const wid of [id, encryptedId]) {
      await t.client.workflow
        .getHandle(wid)
        .terminate('leak audit self-test')
        .catch(() => undefined);
      await t.client.workflowService.deleteWorkflowExecution({
        namespace: 'default',
        workflowExecution: { workflowId: wid },
      });
    }
    await plain.connection.close();
  }
});
