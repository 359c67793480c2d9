// `npm run histories:capture [-- scenario...]`: runs the replay scenarios (test/replay/scenarios.ts)
// against the lab on a dev server of its own, through a real worker encrypting with the suite's fixed
// test key, and writes one history per scenario to test/replay/histories/<workflow>-<scenario>.json.
// Everything it starts it stops; it exits non-zero when any scenario misses its expected end.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { NativeConnection } from '@temporalio/worker';
import { freePort, startDevServer, type DevServer } from './temporal-server.js';
import { createWorker } from '../worker/create-worker.js';
import { testDataConverter } from '../test/helpers/temporal.js';
import { SCENARIOS, startEnv, type Env, type LabKind, type Scenario } from '../test/replay/scenarios.js';
import { HISTORY_DIR, quietRuntime } from '../test/replay/history-files.js';

const CLOSED = [
  'workflowExecutionCompletedEventAttributes',
  'workflowExecutionFailedEventAttributes',
  'workflowExecutionCanceledEventAttributes',
] as const;

class UsageError extends Error {}

function pick(args: string[]): Scenario[] {
  if (args.length === 0) return SCENARIOS;
  const unknown = args.filter((a) => !SCENARIOS.some((s) => s.name === a || s.name.startsWith(`${a}-`)));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown scenario(s): ${unknown.join(', ')}\nknown: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
  }
  // A workflow name ("verify-backup") selects all its scenarios.
  return SCENARIOS.filter((s) => args.some((a) => s.name === a || s.name.startsWith(`${a}-`)));
}

/** Scenarios sharing a built lab run on one; each `fresh` scenario gets a lab of its own. */
function groups(list: Scenario[]): { kind: LabKind; scenarios: Scenario[] }[] {
  const out: { kind: LabKind; scenarios: Scenario[] }[] = [];
  for (const s of list) {
    const g = s.lab === 'fresh' ? undefined : out.find((x) => x.kind === s.lab);
    if (g) g.scenarios.push(s);
    else out.push({ kind: s.lab, scenarios: [s] });
  }
  return out;
}

async function main(): Promise<number> {
  const selected = pick(process.argv.slice(2).filter((a) => a !== '--'));
  // Expected activity failures (the scenarios inject them) would otherwise print as WARN stack traces.
  quietRuntime();
  mkdirSync(HISTORY_DIR, { recursive: true });
  const results: { name: string; ok: boolean; ms: number; bytes?: number; events?: number; error?: string }[] = [];
  let server: DevServer | undefined;
  let env: Env | undefined;
  const stopAll = async () => {
    await env?.stop().catch((e: unknown) => console.error(`lab stop: ${String(e)}`));
    env = undefined;
    await server?.stop();
    server = undefined;
  };
  // Ctrl-C still stops the dev server and the lab (both pid-based in their own stop()).
  const onSignal = () => void stopAll().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    server = await startDevServer({ port: await freePort(), headless: true });
    console.log(`dev server ${server.address} (pid ${server.pid})`);
    const connection = await Connection.connect({ address: server.address });
    const native = await NativeConnection.connect({ address: server.address });
    const client = new Client({ connection, namespace: 'default', dataConverter: testDataConverter });
    try {
      for (const [i, g] of groups(selected).entries()) {
        const t0 = Date.now();
        env = await startEnv(g.kind);
        console.log(`${g.kind} lab ready in ${Date.now() - t0} ms`);
        const taskQueue = `capture-${g.kind}-${i}`;
        const worker = await createWorker({
          connection: native,
          namespace: 'default',
          taskQueue,
          deps: env.deps,
          activities: env.activities,
          dataConverter: testDataConverter,
          shutdownGraceTime: '1s',
        });
        const running = worker.run();
        try {
          for (const s of g.scenarios) {
            const started = Date.now();
            try {
              await env.lab.faults.clear();
              const handle = await s.run({ client, taskQueue, env });
              const history = await handle.fetchHistory();
              const last = history.events?.at(-1);
              if (!last || !CLOSED.some((k) => last[k]))
                throw new Error(`history of ${handle.workflowId} is not closed (last event ${last?.eventType})`);
              // historyToJSON gives the compact string `temporal workflow show --output json` would; indented for reviewable diffs.
              const json = `${JSON.stringify(JSON.parse(historyToJSON(history)), null, 2)}\n`;
              writeFileSync(`${HISTORY_DIR}${s.name}.json`, json);
              results.push({
                name: s.name,
                ok: true,
                ms: Date.now() - started,
                bytes: Buffer.byteLength(json),
                events: history.events!.length,
              });
            } catch (err) {
              results.push({
                name: s.name,
                ok: false,
                ms: Date.now() - started,
                error: err instanceof Error ? err.message : String(err),
              });
            }
            const r = results.at(-1)!;
            console.log(
              `${r.ok ? 'ok  ' : 'FAIL'} ${s.name} ${r.ms} ms${r.ok ? ` ${r.events} events ${r.bytes} B` : `: ${r.error}`}`,
            );
          }
        } finally {
          worker.shutdown();
          await running.catch(() => undefined);
          await env.stop();
          env = undefined;
        }
      }
    } finally {
      await native.close();
      await connection.close();
    }
  } finally {
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const failed = results.filter((r) => !r.ok);
  console.log(`${results.length - failed.length}/${results.length} histories written to ${HISTORY_DIR}`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(
      err instanceof UsageError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err),
    );
    process.exit(1);
  },
);
