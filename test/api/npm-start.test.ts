// `npm start` as an operator runs it (scripts/dev.ts in its own process group, on free ports, with its
// own data dir): ready with /readyz 200, SIGINT stops every process it started, and a workflow
// started before a restart is still there after it (same SQLite file).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/temporal-server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'pedro-npm-start-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function start(ports: { grpc: number; ui: number; api: number; metrics: number }) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/dev.ts'], {
    detached: true, // its own process group: SIGINT to the group is what Ctrl-C sends
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PEDRO_OPS_DATA_DIR: dataDir,
      PEDRO_OPS_DEV_TEMPORAL_PORT: String(ports.grpc),
      TEMPORAL_UI_PORT: String(ports.ui),
      PEDRO_OPS_API_PORT: String(ports.api),
      PEDRO_OPS_WORKER_METRICS_ADDRESS: `127.0.0.1:${ports.metrics}`,
      PEDRO_OPS_ENSURE_SCHEDULES: 'false',
      PEDRO_OPS_AUDIT_DIR: '',
      LOG_LEVEL: 'warn',
    },
  });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const t0 = Date.now();
  while (!/orchestrator ready in/.test(out)) {
    if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}:\n${out}`);
    if (Date.now() - t0 > 60_000) throw new Error(`not ready within 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, readyMs: Date.now() - t0, output: () => out };
}

async function stop(child: ChildProcess) {
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  process.kill(-child.pid!, 'SIGINT');
  const code = await exited;
  for (let i = 0; i < 50 && groupAlive(child.pid!); i++) await new Promise((r) => setTimeout(r, 100));
  return code;
}

it('starts ready, stops cleanly on SIGINT, and keeps workflows across a restart', async () => {
  const ports = { grpc: await freePort(), ui: await freePort(), api: await freePort(), metrics: await freePort() };
  const api = `http://127.0.0.1:${ports.api}`;
  const first = await start(ports);
  expect(first.output()).toContain(`Temporal Web  http://127.0.0.1:${ports.ui}`);
  let ready = await fetch(`${api}/readyz`);
  for (let i = 0; i < 40 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 250));
    ready = await fetch(`${api}/readyz`);
  }
  expect(ready.status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${ports.ui}/`)).status).toBe(200); // Temporal Web answers

  // A run that waits (DR restore of an unknown backup parks in needs-attention) started through the API.
  const token = JSON.parse(readFileSync(join(dataDir, 'api-tokens.json'), 'utf8')).operator as string;
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const started = await fetch(`${api}/clusters/pedro-ops/dr/restore`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ backup: 'no-such-backup', namespaces: ['eleduck-analytics'] }),
  });
  expect(started.status).toBe(202);
  const { workflowId, runId } = (await started.json()) as { workflowId: string; runId: string };

  expect(await stop(first.child)).toBe(0);
  expect(groupAlive(first.child.pid!)).toBe(false); // no orphan: dev server, worker and API all gone
  await expect(fetch(`${api}/healthz`)).rejects.toThrow();

  const second = await start(ports);
  const again = await fetch(`${api}/workflows/${encodeURIComponent(workflowId)}`, { headers: auth });
  expect(again.status).toBe(200);
  expect(await again.json()).toMatchObject({ workflowId, runId, type: 'drRestore', status: 'RUNNING' });
  expect(await stop(second.child)).toBe(0);
  expect(groupAlive(second.child.pid!)).toBe(false);
  process.stderr.write(`[npm-start] ready in ${first.readyMs} ms (cold) / ${second.readyMs} ms (restart)\n`);
}, 180_000);
