// Failure messages and stack traces go through the payload codec too (encodeCommonAttributes): the
// raw history shows "Encoded failure", while a client with the codec still reads the real message.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps } from '../../activities/deps.js';
import { memoryLogger, testTemporal, type TestTemporal } from '../helpers/temporal.js';
import { progressQuery } from '../../workflows/messages.js';

let t: TestTemporal;
beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'encrypted-failures' });
  await t.startWorker(
    defaultDeps({
      dataDir: mkdtempSync(join(tmpdir(), 'encfail-')),
      log: memoryLogger(),
      clusters: new ClusterRegistry(mkdtempSync(join(tmpdir(), 'noclusters-'))),
    }),
  );
});
afterAll(async () => {
  await t?.close();
});

it('an activity failure is stored encrypted and decoded for the operator', async () => {
  const handle = await t.client.workflow.start('provisionCluster', {
    taskQueue: t.taskQueue,
    workflowId: `provision/nowhere-${Date.now()}`,
    args: [{ cluster: 'nowhere' }],
  });
  let lastError: string | undefined;
  for (let i = 0; i < 80 && !lastError; i++) {
    const p = await handle.query(progressQuery).catch(() => undefined);
    lastError = p?.steps.find((s) => s.lastError)?.lastError?.message;
    if (!lastError) {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const history = await handle.fetchHistory();
  const failed = history.events?.find((e) => e.activityTaskFailedEventAttributes)?.activityTaskFailedEventAttributes
    ?.failure;
  const closed = history.events?.find((e) => e.workflowExecutionFailedEventAttributes)
    ?.workflowExecutionFailedEventAttributes?.failure;
  const failure = failed ?? closed;
  expect(failure).toBeDefined();
  expect(failure!.message).toBe('Encoded failure');
  expect(
    failure!.encodedAttributes?.metadata?.encoding &&
      Buffer.from(failure!.encodedAttributes.metadata.encoding).toString(),
  ).toBe('binary/encrypted');
  const raw = JSON.stringify(history, (_k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('utf8') : v));
  expect(raw).not.toContain('unknown cluster');
  // The operator's view (client with the codec) has the real message.
  const chain = (e: unknown): string => (e instanceof Error ? `${e.message} <- ${chain(e.cause)}` : '');
  const seen = lastError ?? (await handle.result().catch(chain));
  expect(String(seen)).toContain('unknown cluster "nowhere"');
  await handle.terminate('test done').catch(() => undefined);
});
