// Starts a worker for the configured task queue and returns a handle that drains it on shutdown.
import type { Worker } from '@temporalio/worker';
import type { DataConverter } from '@temporalio/common';
import { defaultDeps, type ActivityDeps, type Logger } from '../activities/deps.js';
import { connectNative } from './connect.js';
import { createWorker } from './create-worker.js';
import { dataDir, type TemporalSettings } from './settings.js';

export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has stopped (after draining); rejects if it crashed. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

export async function startWorker(opts: {
  settings: TemporalSettings;
  log: Logger;
  dataConverter?: DataConverter;
  deps?: ActivityDeps;
  signal?: AbortSignal;
}): Promise<RunningWorker> {
  const connection = await connectNative(opts.settings, opts.log, { signal: opts.signal });
  const deps = opts.deps ?? defaultDeps({ dataDir: dataDir(), log: opts.log });
  const worker = await createWorker({
    connection,
    namespace: opts.settings.namespace,
    taskQueue: opts.settings.taskQueue,
    deps,
    dataConverter: opts.dataConverter,
  });
  const done = worker.run().finally(() => connection.close().catch(() => undefined));
  opts.log.info(
    { taskQueue: opts.settings.taskQueue, namespace: opts.settings.namespace, address: opts.settings.address },
    'worker polling',
  );
  return {
    worker,
    done,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
