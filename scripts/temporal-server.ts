// Starts `temporal server start-dev` from the toolchain binary and waits until it answers. Used by
// `npm start` (persistent SQLite under .data/) and by the test suite's global setup (one server per run).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_TYPES } from '../workflows/search-attributes.js';

const TOOLCHAIN = fileURLToPath(new URL('./temporal-cli.sh', import.meta.url));

/** Path of a `temporal` CLI: TEMPORAL_CLI_PATH, PATH, the cached build, or a fresh build (scripts/temporal-cli.sh). */
export function resolveTemporalCli(): string {
  const out = execFileSync('bash', [TOOLCHAIN], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').pop()!;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface DevServerOptions {
  cli?: string;
  ip?: string;
  port: number;
  uiPort?: number;
  headless?: boolean;
  /** SQLite file; omitted = in-memory (lost on exit). */
  dbFile?: string;
  codecEndpoint?: string;
  namespace?: string;
  logFile?: string;
  startTimeoutMs?: number;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  pid: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const cli = opts.cli ?? resolveTemporalCli();
  const ip = opts.ip ?? '127.0.0.1';
  const args = [
    'server',
    'start-dev',
    '--ip',
    ip,
    '--port',
    String(opts.port),
    '--namespace',
    opts.namespace ?? 'default',
    '--log-format',
    'json',
    '--log-level',
    'warn',
  ];
  if (opts.headless) args.push('--headless');
  else if (opts.uiPort) args.push('--ui-port', String(opts.uiPort));
  if (opts.dbFile) args.push('--db-filename', opts.dbFile);
  if (opts.codecEndpoint) args.push('--ui-codec-endpoint', opts.codecEndpoint);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTE_TYPES)) args.push('--search-attribute', `${name}=${type}`);
  const child = spawn(cli, args, {
    stdio: ['ignore', opts.logFile ? 'pipe' : 'ignore', opts.logFile ? 'pipe' : 'ignore'],
  });
  if (opts.logFile) {
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  }
  // An object, not a `let`: TypeScript does not see the exit callback's write and would narrow it to null.
  const state: { exited: number | null } = { exited: null };
  child.once('exit', (code) => {
    state.exited = code ?? -1;
  });
  const address = `${ip}:${opts.port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (state.exited !== null)
      throw new Error(`temporal dev server exited with code ${state.exited} during start (args: ${args.join(' ')})`);
    try {
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      await conn.workflowService.getSystemInfo({});
      await conn.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`temporal dev server did not answer on ${address} within ${opts.startTimeoutMs ?? 60_000} ms`);
      }
      await sleep(250);
    }
  }
  return {
    address,
    uiUrl: opts.headless ? undefined : `http://${ip}:${opts.uiPort ?? opts.port + 1000}`,
    pid: child.pid!,
    process: child,
    async stop() {
      if (state.exited !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
