// One real worker in a process of its own, so the chaos tests can SIGKILL it like a crashed pod.
// Built exactly like production (createWorker + defaultDeps), with the suite's test data converter.
//
// Environment: CHAOS_ADDRESS, CHAOS_TASK_QUEUE, CHAOS_DATA_DIR (holds clusters/<name>.yaml and the
// kubeconfig), CHAOS_IDENTITY. Protocol: JSON lines on stdout. The process imports everything and
// builds the workflow bundle first ("warm"), then waits for a "go" line on stdin before it connects
// and polls ("ready"): a supervisor keeps a warm standby, and a killed worker's replacement starts
// polling within milliseconds instead of after a cold start.
//
// Test hook: CHAOS_HOLD_FILE=<path> makes veleroWaitBackup (a wait: heartbeat timeout, cancellable)
// wait while that file exists, heartbeating like every wait, then do its real work; the shutdown test
// uses it to have a wait in flight when SIGTERM arrives.
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { ClusterRegistry } from '../../config/registry.js';
import { defaultDeps } from '../../activities/deps.js';
import { createWorker, workflowBundle } from '../../worker/create-worker.js';
import { memoryLogger, testDataConverter } from '../helpers/temporal.js';
import { createActivities } from '../../activities/index.js';
import { beat, sleep } from '../../activities/heartbeat.js';

const t0 = Date.now();
const say = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, at: Date.now(), ...extra })}\n`);

function env(name: string): string {
  const v = process.env[name];
  if (!v) {
    say('fatal', { error: `${name} is not set` });
    process.exit(2);
  }
  return v;
}

const address = env('CHAOS_ADDRESS');
const taskQueue = env('CHAOS_TASK_QUEUE');
const dataDir = env('CHAOS_DATA_DIR');
const identity = env('CHAOS_IDENTITY');

Runtime.install({ logger: new DefaultLogger('ERROR') });
await workflowBundle();
say('warm', { ms: Date.now() - t0 });

let worker: Awaited<ReturnType<typeof createWorker>> | undefined;
const lines = createInterface({ input: process.stdin });
let started = false;
await new Promise<void>((resolve) => {
  lines.on('line', (l) => {
    if (l.trim() === 'go') {
      started = true;
      resolve();
    }
  });
  // stdin closes when the supervisor goes away: a standby just leaves, a running worker drains.
  lines.on('close', () => (started ? shutdown() : process.exit(0)));
});

function shutdown() {
  if (worker?.getState() === 'RUNNING') worker.shutdown();
}

const goAt = Date.now();
const connection = await NativeConnection.connect({ address });
const log = memoryLogger();
const deps = defaultDeps({ dataDir, log, clusters: new ClusterRegistry(join(dataDir, 'clusters')) });
worker = await createWorker({
  connection,
  namespace: 'default',
  taskQueue,
  deps,
  dataConverter: testDataConverter,
  identity,
  activities: process.env.CHAOS_HOLD_FILE ? holdWhileFileExists(deps, process.env.CHAOS_HOLD_FILE) : undefined,
});
const running = worker.run();
say('ready', { goMs: Date.now() - goAt });

function holdWhileFileExists(d: typeof deps, file: string) {
  const real = createActivities(d);
  return {
    async veleroWaitBackup(input: Parameters<typeof real.veleroWaitBackup>[0]) {
      while (existsSync(file)) {
        beat({ held: file });
        await sleep(200);
      }
      return real.veleroWaitBackup(input);
    },
  };
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
try {
  await running;
  say('stopped');
  await connection.close();
  process.exit(0);
} catch (err) {
  say('fatal', { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}
