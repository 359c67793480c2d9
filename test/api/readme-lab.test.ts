// The README's lab block ("Operating it"), command by command, as a newcomer runs it: `npm run lab --
// --built &`, `npm start` (its own Temporal dev server, worker and API on free ports, its own data dir),
// then every `npm run cli -- …` line verbatim through sh, each with its documented exit code (0: the
// built lab needs no provision first, so rotate, drift and verify-backup run against it directly).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/temporal-server.js';
import { REPO_ROOT } from '../lab/cluster-spec.js';

const work = mkdtempSync(join(tmpdir(), 'pedro-readme-lab-'));
const clustersDir = join(work, 'clusters'); // only the lab: nothing here can reach pedro-ops.yaml's addresses
const dataDir = join(work, 'data');
const children: ChildProcess[] = [];
let env: NodeJS.ProcessEnv;

/** The first ```sh block under "## Operating it", one command per line, comments stripped. */
function readmeLabBlock(): string[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Operating it'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1];
  return block
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

function startProcess(command: string, ready: RegExp, ms: number) {
  // its own process group, so stopping it stops npm, tsx and everything under them (pid only, never by name)
  const child = spawn('sh', ['-c', command], {
    cwd: REPO_ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return new Promise<string>((resolve, reject) => {
    const t0 = Date.now();
    const tick = setInterval(() => {
      if (ready.test(out)) {
        clearInterval(tick);
        resolve(out);
      } else if (child.exitCode !== null || Date.now() - t0 > ms) {
        clearInterval(tick);
        reject(new Error(`\`${command}\` not ready (exit ${child.exitCode}):\n${out.slice(-3000)}`));
      }
    }, 200);
  });
}

async function stopGroup(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid!, 'SIGINT');
  } catch {
    return;
  }
  await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

function sh(command: string): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', command], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - t0 }));
  });
}

const lines = readmeLabBlock();

beforeAll(async () => {
  const [grpc, ui, api, metrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
  env = {
    ...process.env,
    PEDRO_OPS_CLUSTERS_DIR: clustersDir,
    PEDRO_OPS_DATA_DIR: dataDir,
    PEDRO_OPS_DEV_TEMPORAL_PORT: String(grpc),
    TEMPORAL_UI_PORT: String(ui),
    TEMPORAL_WEB_URL: `http://127.0.0.1:${ui}`,
    PEDRO_OPS_API_PORT: String(api),
    PEDRO_OPS_API_URL: `http://127.0.0.1:${api}`,
    PEDRO_OPS_WORKER_METRICS_ADDRESS: `127.0.0.1:${metrics}`,
    PEDRO_OPS_AUDIT_DIR: '',
    LOG_LEVEL: 'warn',
    npm_config_loglevel: 'silent',
  };
  delete env.PEDRO_OPS_API_TOKEN; // the CLI uses the dev operator token `npm start` generates, as documented
  rmSync(clustersDir, { recursive: true, force: true });
  expect(lines[0]).toBe('npm run lab -- --built &');
  await startProcess(lines[0].replace(/&$/, '').trim(), /Ctrl-C stops the lab\./, 120_000);
  await startProcess('npm start', /orchestrator ready in/, 120_000);
}, 300_000);

afterAll(async () => {
  for (const c of children.reverse()) await stopGroup(c);
  rmSync(work, { recursive: true, force: true });
});

it('every CLI command of the README lab block exits as documented on the built lab', async () => {
  const cli = lines.slice(1);
  expect(cli.length).toBeGreaterThanOrEqual(8);
  const seen: string[] = [];
  for (const line of cli) {
    expect(line.startsWith('npm run cli -- '), line).toBe(true);
    const r = await sh(line);
    seen.push(`${line}  -> exit ${r.code} (${(r.ms / 1000).toFixed(1)} s)`);
    expect(r.code, `${line}\nstdout:\n${r.stdout.slice(-2000)}\nstderr:\n${r.stderr.slice(-3000)}`).toBe(0);
    const args = line.slice('npm run cli -- '.length);
    // a few looks at what each prints for a person (no --json in the README block)
    if (args === 'clusters') expect(r.stdout).toMatch(/^lab\s+vip/m);
    if (args === 'provision lab --dry-run') expect(r.stdout).toMatch(/critical path/);
    if (args === 'provision lab') expect(r.stderr).toMatch(/satisfied/);
    if (args === 'rotate lab' || args === 'drift lab' || args === 'verify-backup lab')
      expect(r.stderr).not.toMatch(/no kubeconfig|NEEDS ATTENTION/);
    if (args === 'verify-backup lab') expect(r.stdout).toMatch(/result\s+passed/);
    // A built lab that was provisioned again and rotated is as its config says (no false positives).
    if (args === 'drift lab') expect(r.stdout).toMatch(/no drift/);
    if (args === 'runs lab') expect(r.stdout).toMatch(/verify-backup\s+succeeded/);
    if (args === 'schedules list lab') expect(r.stdout).toMatch(/dr-drill\/lab/);
  }
  process.stderr.write(`[readme-lab]\n${seen.join('\n')}\n`);
}, 600_000);
