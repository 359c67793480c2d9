// One real Temporal dev server for the whole test run (in-memory, headless, free port), from the
// project's own toolchain binary. Tests isolate themselves by task queue.
import type { TestProject } from 'vitest/node';
import { freePort, startDevServer, type DevServer } from '../scripts/temporal-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
  }
}

let server: DevServer | undefined;

export default async function setup(project: TestProject) {
  if (process.env.PEDRO_OPS_TEST_TEMPORAL_ADDRESS) {
    project.provide('temporalAddress', process.env.PEDRO_OPS_TEST_TEMPORAL_ADDRESS);
    return;
  }
  const started = Date.now();
  server = await startDevServer({ port: await freePort(), headless: true });
  process.stderr.write(`[global-setup] temporal dev server ${server.address} (pid ${server.pid}) ready in ${Date.now() - started} ms\n`);
  project.provide('temporalAddress', server.address);
  return async () => {
    await server?.stop();
  };
}
