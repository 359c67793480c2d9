// "Upgrading Temporal = bumping the pinned tags" (README), run: a database set up by the previous
// minor (server v1.28.1's schema, applied by scripts/temporal-schema.sh), a v1.28.1 server running a
// provision on it, then the server stopped mid-run, the same script applied with v1.29.1's schema
// (update-schema from its versioned dir), and the v1.29.1 server finishing the run from PostgreSQL
// with no side effect repeated.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { createCodec, dataConverterFor } from '../../worker/codec.js';
import { freePort } from '../../scripts/temporal-server.js';
import { startLab, type Lab } from '../lab/index.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import {
  NodeProc,
  PG_BIN,
  runScript,
  schemaEnv,
  serverEnv,
  serverPorts,
  startPostgres,
  startTemporalServer,
  temporalCli,
  temporalToolchain,
  until,
  type Postgres,
  type TemporalServer,
} from './stack.js';

const FROM = 'v1.28.1'; // the newest v1.28 the Go module proxy serves here (v1.28.2+ are refused)
const say = (line: string) => process.stderr.write(`[upgrade] ${line}\n`);
const KEY_ID = 'upgrade-1';
const KEY = randomBytes(32);
const codec = createCodec({ keys: [{ id: KEY_ID, key: KEY }], activeId: KEY_ID });

const stops: (() => Promise<unknown>)[] = [];
let to: Record<string, string>;
let from: Record<string, string>;
// Both servers are built (and cached) before the test's clock starts: a cold build takes minutes.
beforeAll(() => {
  to = temporalToolchain();
  const t0 = Date.now();
  from = temporalToolchain(FROM);
  say(`${FROM} toolchain ready in ${Date.now() - t0} ms (cached or cold build)`);
}, 1_800_000);
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch((e) => say(`cleanup: ${e}`));
}, 120_000);

function schemaVersions(pg: Postgres): Record<string, string> {
  const out: Record<string, string> = {};
  for (const db of ['temporal', 'temporal_visibility']) {
    const r = spawnSync(
      join(PG_BIN, 'psql'),
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(pg.port),
        '-U',
        pg.user,
        '-d',
        db,
        '-tAc',
        'SELECT curr_version FROM schema_version',
      ],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: pg.password } },
    );
    if (r.status !== 0) throw new Error(`psql ${db}: ${r.stderr}`);
    out[db] = r.stdout.trim();
  }
  return out;
}

it(`upgrades a ${FROM} database to v1.29.1 with update-schema, and a run started on ${FROM} finishes on v1.29.1`, async () => {
  const pg = await startPostgres();
  stops.push(() => pg.stop());

  // 1. The previous minor's schema, with the same script (1.29.1's temporal-sql-tool reads it).
  const old = await runScript(
    'temporal-schema.sh',
    schemaEnv(pg, { ...to, TEMPORAL_SCHEMA_DIR: from.TEMPORAL_SCHEMA_DIR }),
  );
  expect(old.status, old.output).toBe(0);
  const before = schemaVersions(pg);
  say(`after ${FROM}'s schema: ${JSON.stringify(before)}`);
  expect(before.temporal).toBe('1.17');

  // 2. The v1.28.1 server and a provision on it, stopped part way.
  const ports = await serverPorts();
  let server: TemporalServer = await startTemporalServer(
    from.TEMPORAL_SERVER_BIN,
    serverEnv(pg, ports, from),
    from.TEMPORAL_CONFIG_DIR,
  );
  stops.push(() => server.stop());
  const setup = await runScript('temporal-setup.sh', { TEMPORAL_ADDRESS: server.address, TEMPORAL_CLI: temporalCli() });
  expect(setup.status, setup.output).toBe(0);
  const lab: Lab = await startLab({ log: () => undefined });
  stops.push(() => lab.stop());
  const dir = mkdtempSync(join(tmpdir(), 'pedro-ops-upgrade-'));
  stops.push(async () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'clusters'));
  copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
  const env = {
    NODE_ENV: 'production',
    TEMPORAL_ADDRESS: server.address,
    PEDRO_OPS_TASK_QUEUE: 'pedro-ops-upgrade',
    PEDRO_OPS_CODEC_KEYS: `${KEY_ID}:${KEY.toString('base64')}`,
    PEDRO_OPS_CLUSTERS_DIR: join(dir, 'clusters'),
    PEDRO_OPS_DATA_DIR: dir,
    PEDRO_OPS_FINGERPRINT_KEY: randomBytes(32).toString('hex'),
  };
  const startWorker = async () => {
    const w = new NodeProc(
      'worker/main.ts',
      { ...env, PEDRO_OPS_WORKER_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` },
      'upgrade-worker',
    );
    stops.push(() => w.stop());
    await w.waitFor('worker polling');
    return w;
  };
  const worker = await startWorker();
  let connection = await Connection.connect({ address: server.address });
  let client = new Client({ connection, dataConverter: dataConverterFor(codec) });
  const h = await client.workflow.start('provisionCluster', {
    taskQueue: env.PEDRO_OPS_TASK_QUEUE,
    workflowId: 'provision/lab',
    args: [{ cluster: 'lab' }],
  });
  await until(
    async () => (await h.fetchHistory()).events!.filter((e) => e.activityTaskCompletedEventAttributes).length >= 4,
    120_000,
    'four provision activities completed on the old server',
  );
  await worker.stop(); // drains: the activities it holds complete first
  const doneOnOld = (await h.fetchHistory()).events!.filter((e) => e.activityTaskCompletedEventAttributes).length;
  await connection.close();
  await server.stop();
  say(`${FROM} stopped with the provision running (${doneOnOld} activities completed)`);

  // 3. The pinned version's schema over it: the same script, v1.29.1's versioned dir.
  const upgrade = await runScript('temporal-schema.sh', schemaEnv(pg, to));
  expect(upgrade.status, upgrade.output).toBe(0);
  const after = schemaVersions(pg);
  say(`after v1.29.1's schema: ${JSON.stringify(after)}`);
  expect(after.temporal).toBe('1.18');

  // 4. The v1.29.1 server on the upgraded database finishes the run.
  server = await startTemporalServer(to.TEMPORAL_SERVER_BIN, serverEnv(pg, ports, to), to.TEMPORAL_CONFIG_DIR);
  const again = await runScript('temporal-setup.sh', { TEMPORAL_ADDRESS: server.address, TEMPORAL_CLI: temporalCli() });
  expect(again.output).toContain('nothing changed');
  await startWorker(); // stopped at the end with the rest (stops)
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection, dataConverter: dataConverterFor(codec) });
  stops.push(() => connection.close());
  const report = (await client.workflow.getHandle('provision/lab', h.firstExecutionRunId).result()) as ProvisionReport;
  expect(report.state).toBe('succeeded');
  const c = lab.counters();
  for (const n of lab.spec.nodes) expect(c.nodes[n.name].installerRuns, n.name).toBe(1);
  expect(c.kube.writes['create:HelmChart']).toBe(lab.spec.components.length);
  expect((c.kube.writes['update:HelmChart'] ?? 0) + (c.kube.writes['patch:HelmChart'] ?? 0)).toBe(0);
  say(`provision finished on v1.29.1 after the schema upgrade: ${report.state}`);
});
