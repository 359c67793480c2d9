// The production topology without Docker, piece by piece, for test/production: a private PostgreSQL
// (Debian's postgresql-15), the real Temporal server built by scripts/temporal-server.sh, the schema
// and setup scripts docker-compose.yml runs, and the orchestrator's own entry points (worker/main.ts,
// api/main.ts) as separate processes in production mode. Every process started here is tracked and
// stopped by pid; nothing is killed by name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto'; // CommonJS: its namespaces are not named ESM exports under plain Node
import { REPO_ROOT } from '../../worker/settings.js';
import { freePort, resolveTemporalCli } from '../../scripts/temporal-server.js';

export const PG_BIN = process.env.PEDRO_OPS_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** `eval "$(bash scripts/temporal-server.sh)"` as an object (builds the server on first use). */
export function temporalToolchain(version?: string, schemaOnly = false): Record<string, string> {
  const r = spawnSync(
    'bash',
    [join(REPO_ROOT, 'scripts/temporal-server.sh'), ...(schemaOnly ? ['--schema-only'] : [])],
    {
      encoding: 'utf8',
      env: { ...process.env, ...(version ? { TEMPORAL_SERVER_VERSION: version } : {}) },
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 30 * 60_000,
    },
  );
  if (r.status !== 0) throw new Error(`scripts/temporal-server.sh failed (${r.status})`);
  return Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
}

export interface Postgres {
  port: number;
  dir: string;
  user: string;
  password: string;
  pid: number;
  stop(): Promise<void>;
}

const asPostgres = (cmd: string, args: string[]) => ['-u', 'postgres', '--', cmd, ...args];

/**
 * initdb in a fresh temp dir (owned by the `postgres` user: PostgreSQL refuses to run as root) and
 * a postmaster on a free loopback port. The bootstrap superuser is `temporal` with a password, and
 * TCP connections need it (scram-sha-256), as in the compose stack's postgres image.
 */
export async function startPostgres(): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'pedro-ops-pg-'));
  const data = join(dir, 'data');
  const user = 'temporal';
  const password = `pg-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  const pw = join(dir, 'pw');
  writeFileSync(pw, password, { mode: 0o600 });
  chownSync(dir, uid('postgres'), gid('postgres'));
  chownSync(pw, uid('postgres'), gid('postgres'));
  const init = spawnSync(
    'runuser',
    asPostgres(join(PG_BIN, 'initdb'), [
      '-D',
      data,
      '-U',
      user,
      `--pwfile=${pw}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--no-instructions',
    ]),
    { encoding: 'utf8' },
  );
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  rmSync(pw);
  const port = await freePort();
  const child = spawn(
    'runuser',
    asPostgres(join(PG_BIN, 'postgres'), [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
    ]),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = spawnSync(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port)], { encoding: 'utf8' });
    if (ready.status === 0) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`postgres did not start: ${log}`);
    await sleep(200);
  }
  // The postmaster's own pid (runuser is its parent): the first line of postmaster.pid.
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    port,
    dir,
    user,
    password,
    pid,
    async stop() {
      // SIGINT = "fast shutdown" (upstream: src/backend/postmaster/postmaster.c, pmdie).
      if (isAlive(pid)) process.kill(pid, 'SIGINT');
      await until(() => !isAlive(pid), 30_000, 'postgres stop');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function uid(name: string): number {
  return Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
}
function gid(name: string): number {
  return Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function until(ok: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(100);
  }
}

export interface ScriptRun {
  status: number | null;
  output: string;
  ms: number;
}

/** Runs one of scripts/*.sh with POSIX sh, as the admin-tools container does. */
export function runScript(script: string, env: Record<string, string>): Promise<ScriptRun> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn('sh', [join(REPO_ROOT, 'scripts', script)], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (status) => resolve({ status, output, ms: Date.now() - t0 }));
  });
}

export function schemaEnv(pg: Postgres, tools: Record<string, string>): Record<string, string> {
  return {
    SQL_HOST: '127.0.0.1',
    SQL_PORT: String(pg.port),
    SQL_USER: pg.user,
    SQL_PASSWORD: pg.password,
    TEMPORAL_SQL_TOOL: tools.TEMPORAL_SQL_TOOL,
    TEMPORAL_SCHEMA_DIR: tools.TEMPORAL_SCHEMA_DIR,
  };
}

export interface TemporalServer {
  address: string;
  pid: number;
  log(): string;
  stop(): Promise<void>;
}

export type ServerPorts = Record<
  | 'frontend'
  | 'frontendHttp'
  | 'frontendMembership'
  | 'history'
  | 'historyMembership'
  | 'matching'
  | 'matchingMembership'
  | 'worker'
  | 'workerMembership',
  number
>;

/**
 * A free loopback port below 32768. Membership ports must fit PostgreSQL's SMALLINT: the
 * cluster_membership table stores rpc_port as one (schema/postgresql/v12/temporal/schema.sql), and
 * the kernel's ephemeral ports (what port 0 gives) start at 32768.
 */
export async function freeLowPort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free loopback port in 20000-31999');
}

export async function serverPorts(): Promise<ServerPorts> {
  const names = [
    'frontend',
    'frontendHttp',
    'frontendMembership',
    'history',
    'historyMembership',
    'matching',
    'matchingMembership',
    'worker',
    'workerMembership',
  ] as const;
  const ports = {} as ServerPorts;
  for (const n of names) ports[n] = n.endsWith('Membership') ? await freeLowPort() : await freePort();
  return ports;
}

/**
 * The environment that renders the server module's own config/docker.yaml (the file the
 * temporalio/server image starts from: it begins with `# enable-template`, and the server fills
 * it from these variables; upstream: config/docker.yaml and common/config/loader.go). The same
 * variables go into the systemd unit in README.
 */
export function serverEnv(pg: Postgres, ports: ServerPorts, tools: Record<string, string>): Record<string, string> {
  return {
    DB: 'postgres12',
    DB_PORT: String(pg.port),
    // The visibility store reads POSTGRES_PORT, not DB_PORT (config/docker.yaml, visibility datastore).
    POSTGRES_PORT: String(pg.port),
    POSTGRES_SEEDS: '127.0.0.1',
    POSTGRES_USER: pg.user,
    POSTGRES_PWD: pg.password,
    BIND_ON_IP: '127.0.0.1',
    TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
    FRONTEND_GRPC_PORT: String(ports.frontend),
    FRONTEND_HTTP_PORT: String(ports.frontendHttp),
    FRONTEND_MEMBERSHIP_PORT: String(ports.frontendMembership),
    HISTORY_GRPC_PORT: String(ports.history),
    HISTORY_MEMBERSHIP_PORT: String(ports.historyMembership),
    MATCHING_GRPC_PORT: String(ports.matching),
    MATCHING_MEMBERSHIP_PORT: String(ports.matchingMembership),
    WORKER_GRPC_PORT: String(ports.worker),
    WORKER_MEMBERSHIP_PORT: String(ports.workerMembership),
    DYNAMIC_CONFIG_FILE_PATH: join(tools.TEMPORAL_CONFIG_DIR, 'dynamicconfig/docker.yaml'),
    LOG_LEVEL: 'warn',
  };
}

/** `server --root / --config <module>/config --env docker start`, then waits for SERVING. */
export async function startTemporalServer(
  bin: string,
  env: Record<string, string>,
  configDir: string,
  timeoutMs = 120_000,
): Promise<TemporalServer> {
  const address = `127.0.0.1:${env.FRONTEND_GRPC_PORT}`;
  // An absolute --config is joined to --root (REFERENCE.md), so the root is /.
  const child = spawn(bin, ['--root', '/', '--config', configDir, '--env', 'docker', '--allow-no-auth', 'start'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (d: Buffer) => (log = (log + d.toString()).slice(-20_000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`temporal server exited (${child.exitCode}):\n${log.slice(-4000)}`);
    if (Date.now() > deadline)
      throw new Error(`temporal server not SERVING after ${timeoutMs} ms:\n${log.slice(-4000)}`);
    const connection = await Connection.connect({ address, connectTimeout: 1000 }).catch(() => undefined);
    if (connection) {
      const ok = await connection.healthService
        .check({})
        .then((r) => r.status === proto.grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING)
        .catch(() => false);
      await connection.close();
      if (ok) break;
    }
    await sleep(300);
  }
  return {
    address,
    pid: child.pid!,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
      const t = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A node process running one of the orchestrator's entry points, its log lines kept. */
export class NodeProc {
  readonly child: ChildProcess;
  readonly spawnedAt = Date.now();
  lines: { at: number; text: string }[] = [];
  readonly exited: Promise<number | null>;

  constructor(
    readonly entry: string,
    env: Record<string, string>,
    readonly name: string,
  ) {
    this.child = spawn(process.execPath, ['--import', 'tsx', entry], {
      cwd: REPO_ROOT,
      // Only what the process needs: no variable of the test runner leaks in (no dev defaults).
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const add = (d: Buffer) => {
      for (const text of d.toString().split('\n').filter(Boolean)) this.lines.push({ at: Date.now(), text });
    };
    this.child.stdout!.on('data', add);
    this.child.stderr!.on('data', add);
    this.exited = new Promise((r) => this.child.once('exit', (code) => r(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  text(): string {
    return this.lines.map((l) => l.text).join('\n');
  }

  /** Resolves with the time the first line containing `needle` was printed. */
  async waitFor(needle: string, timeoutMs = 90_000): Promise<number> {
    await until(
      () => {
        if (this.lines.some((l) => l.text.includes(needle))) return true;
        if (!this.alive) throw new Error(`${this.name} exited before "${needle}":\n${this.text().slice(-3000)}`);
        return false;
      },
      timeoutMs,
      `${this.name}: "${needle}"`,
    );
    return this.lines.find((l) => l.text.includes(needle))!.at;
  }

  async kill(): Promise<void> {
    if (this.alive) process.kill(this.pid, 'SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    process.kill(this.pid, 'SIGTERM');
    const t = setTimeout(() => this.alive && process.kill(this.pid, 'SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(t);
  }
}

export function temporalCli(): string {
  return process.env.TEMPORAL_CLI_PATH && existsSync(process.env.TEMPORAL_CLI_PATH)
    ? process.env.TEMPORAL_CLI_PATH
    : resolveTemporalCli();
}
