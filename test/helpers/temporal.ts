// Test harness: connects to the run's one dev server (test/global-setup.ts), gives each test file
// its own task queue, and starts real workers built exactly like production ones.
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import type { DataConverter } from '@temporalio/common';
import { createWorker } from '../../worker/create-worker.js';
import { createCodec, dataConverterFor, type AesGcmCodec } from '../../worker/codec.js';
import type { ActivityDeps, Logger } from '../../activities/deps.js';

// A fixed, test-only key (never used outside tests) so committed replay histories stay decodable.
// Every workflow the suite runs is encrypted exactly as in production.
export const TEST_CODEC_KEY_ID = 'test-2026';
const TEST_CODEC_KEY = Buffer.from('cGVkcm8tb3BzLXRlc3Qtb25seS1jb2RlYy1rZXktMzI=', 'base64');
export const testCodec: AesGcmCodec = createCodec({
  keys: [{ id: TEST_CODEC_KEY_ID, key: TEST_CODEC_KEY }],
  activeId: TEST_CODEC_KEY_ID,
});
export const testDataConverter = dataConverterFor(testCodec);

let runtimeInstalled = false;
function quietRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by another helper in this process
  }
}

export interface TestTemporal {
  address: string;
  namespace: string;
  taskQueue: string;
  client: Client;
  native: NativeConnection;
  /** Starts a real worker on this file's task queue; stopped by close(). */
  startWorker(
    deps: ActivityDeps,
    opts?: { activities?: Record<string, (...args: never[]) => unknown>; dataConverter?: DataConverter },
  ): Promise<{ worker: Worker; stop(): Promise<void> }>;
  close(): Promise<void>;
}

export async function testTemporal(
  opts: { dataConverter?: DataConverter; taskQueuePrefix?: string } = {},
): Promise<TestTemporal> {
  quietRuntime();
  const address = inject('temporalAddress');
  const namespace = 'default';
  const taskQueue = `${opts.taskQueuePrefix ?? 'test'}-${randomUUID().slice(0, 8)}`;
  const connection = await Connection.connect({ address });
  const dataConverter = opts.dataConverter ?? testDataConverter;
  const client = new Client({ connection, namespace, dataConverter });
  const native = await NativeConnection.connect({ address });
  const workers: { stop(): Promise<void> }[] = [];
  return {
    address,
    namespace,
    taskQueue,
    client,
    native,
    async startWorker(deps, wopts = {}) {
      const worker = await createWorker({
        connection: native,
        namespace,
        taskQueue,
        deps,
        activities: wopts.activities,
        dataConverter: wopts.dataConverter ?? dataConverter,
        shutdownGraceTime: '1s',
      });
      const done = worker.run();
      const handle = {
        worker,
        async stop() {
          if (worker.getState() === 'RUNNING') worker.shutdown();
          await done.catch(() => undefined);
        },
      };
      workers.push(handle);
      return handle;
    },
    async close() {
      for (const w of workers.splice(0)) await w.stop();
      await native.close();
      await connection.close();
    },
  };
}

/** A logger that keeps every line in memory (leak scans read it). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const audit = process.env.PEDRO_OPS_AUDIT_DIR ? join(process.env.PEDRO_OPS_AUDIT_DIR, 'logs.txt') : undefined;
  const push = (level: string) => (obj: object | string, msg?: string) => {
    const line = `${level} ${typeof obj === 'string' ? obj : JSON.stringify(obj)} ${msg ?? ''}`;
    lines.push(line);
    if (audit) appendFileSync(audit, `${line}\n`); // the suite-wide leak audit reads every worker log line
  };
  return { lines, info: push('info'), warn: push('warn'), error: push('error') };
}
