// Worker options in one place: one task queue, workflow code bundled once, activities from
// injected clients. Tests and `npm start` build workers through this too.
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  Worker,
  type NativeConnection,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { DataConverter, Duration } from '@temporalio/common';
import { createActivities } from '../activities/index.js';
import { SHUTDOWN_FORCE_TIME, SHUTDOWN_GRACE_TIME, STICKY_SCHEDULE_TO_START } from './shutdown.js';
import type { ActivityDeps } from '../activities/deps.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundlePromise: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundles the workflow code once per process (~2 s) and reuses it for every worker and replay. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundlePromise ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  return bundlePromise;
}

const quietBundlerLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn(message: string, meta?: unknown) {
    console.warn(message, meta ?? '');
  },
  error(message: string, meta?: unknown) {
    console.error(message, meta ?? '');
  },
};

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  dataConverter?: DataConverter;
  /** Extra activities (tests add fault hooks); merged over the real ones. */
  activities?: Record<string, (...args: never[]) => unknown>;
  shutdownGraceTime?: Duration;
  identity?: string;
}

export async function createWorker(opts: CreateWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: await workflowBundle(),
    activities: { ...createActivities(opts.deps), ...(opts.activities ?? {}) },
    dataConverter: opts.dataConverter,
    shutdownGraceTime: opts.shutdownGraceTime ?? SHUTDOWN_GRACE_TIME,
    shutdownForceTime: SHUTDOWN_FORCE_TIME,
    stickyQueueScheduleToStartTimeout: STICKY_SCHEDULE_TO_START,
    ...(opts.identity ? { identity: opts.identity } : {}),
    maxConcurrentActivityTaskExecutions: 32,
  });
}
