// The production topology, run (issue 21): PostgreSQL from Debian's package, the real Temporal
// server 1.29.1 on it with the schema and setup scripts docker-compose.yml runs, two workers and the
// API from their production entry points (NODE_ENV=production: codec keys and hashed tokens given,
// nothing generated), against the lab. `npm run test:production` (vitest.production.config.ts).
//
// It shows: a start without keys or tokens is refused; the setup script's second run changes
// nothing; a provision, a rotation and a drill through the API; every payload in their histories is
// encrypted (search attributes and SDK markers aside); a worker SIGKILLed mid-rotation is replaced
// by the other one with no side effect repeated; the Temporal server restarted mid-drill and the
// drill continuing from PostgreSQL. Numbers go to stderr ("[production] …").
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto'; // CommonJS: its namespaces are not named ESM exports under plain Node
import { stringify } from 'yaml';
import { createCodec, dataConverterFor } from '../../worker/codec.js';
import { ClusterRegistry } from '../../config/registry.js';
import { kubeconfigPathFor } from '../../activities/kube/client.js';
import { freePort, startDevServer, type DevServer } from '../../scripts/temporal-server.js';
import { startLab, type Lab } from '../lab/index.js';
import { startRotationLab, type RotationLab } from '../workflows/rotate-secrets-lab.js';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import type { RotationReport } from '../../workflows/rotate-secrets.js';
import type { DrillReport } from '../../workflows/verify-backup.js';
import { auditSuite } from '../leak-audit.js';
import {
  NodeProc,
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

const PENDING_STARTED = proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;

const say = (line: string) => process.stderr.write(`[production] ${line}\n`);
const TASK_QUEUE = 'pedro-ops-production-test';
/** Every live seed entry of the lab's rotation map (as in test/chaos/scenarios.ts): not the two whose
 * 1Password items the owner has yet to create (pendingSource; naming them is refused). */
const SEED = ['eleduck-database', 'podcast-scraper', 'twitch', 'discord', 'supabase', 'github', 'tailscale-oauth'];

// Secrets the operator provides (here: made by the test, never by the orchestrator).
const CODEC_KEY_ID = `prod-${randomBytes(3).toString('hex')}`;
const CODEC_KEY = randomBytes(32);
const codec = createCodec({ keys: [{ id: CODEC_KEY_ID, key: CODEC_KEY }], activeId: CODEC_KEY_ID });
const OPERATOR_TOKEN = `po_${randomBytes(24).toString('base64url')}`;
const FINGERPRINT_KEY = randomBytes(32).toString('hex');

let tools: Record<string, string>;
let pg: Postgres;
let server: TemporalServer;
let serverEnvVars: Record<string, string>;
let client: Client;
let connection: Connection;
let fresh: Lab; // unbuilt: provisioned through the API
let built: RotationLab; // built: rotation and drill
let dataDir: string; // the workers' shared data dir (compose: the worker-data volume)
let auditDir: string;
const workers: NodeProc[] = [];
let api: NodeProc;
let apiUrl: string;
const responses: string[] = [];
const numbers: Record<string, number | string> = {};

function baseEnv(): Record<string, string> {
  return {
    NODE_ENV: 'production',
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_NAMESPACE: 'default',
    PEDRO_OPS_TASK_QUEUE: TASK_QUEUE,
    PEDRO_OPS_CODEC_KEYS: `${CODEC_KEY_ID}:${CODEC_KEY.toString('base64')}`,
    PEDRO_OPS_CLUSTERS_DIR: join(dataDir, 'clusters'),
    PEDRO_OPS_DATA_DIR: dataDir,
    PEDRO_OPS_FINGERPRINT_KEY: FINGERPRINT_KEY,
    LOG_LEVEL: 'info',
  };
}

async function startWorker(name: string, env = baseEnv()): Promise<NodeProc> {
  const w = new NodeProc(
    'worker/main.ts',
    { ...env, PEDRO_OPS_WORKER_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` },
    name,
  );
  workers.push(w);
  return w;
}

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${OPERATOR_TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  responses.push(text);
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** Wall time of a closed run, from its own history (start event to close event). */
async function wallMs(h: WorkflowHandle): Promise<number> {
  const d = await h.describe();
  return d.closeTime!.getTime() - d.startTime.getTime();
}

const writes = (lab: Lab, key: string) => lab.counters().kube.writes[key] ?? 0;

/** Cluster files for the workers and the API: the built lab as `lab`, the unbuilt one as `fresh`. */
function writeClusters(): void {
  const clustersDir = join(dataDir, 'clusters');
  const spec = structuredClone(fresh.spec);
  spec.name = 'fresh';
  writeFileSync(join(clustersDir, 'fresh.yaml'), stringify(spec, { lineWidth: 0 }));
  expect([...new ClusterRegistry(clustersDir).all().keys()].sort()).toEqual(['fresh', 'lab']);
  expect(existsSync(kubeconfigPathFor(new ClusterRegistry(clustersDir).get('lab')!, dataDir))).toBe(true);
}

beforeAll(async () => {
  auditDir = mkdtempSync(join(tmpdir(), 'pedro-ops-prod-audit-'));
  process.env.PEDRO_OPS_AUDIT_DIR = auditDir; // the labs write every secret value they mint here
  const t0 = Date.now();
  // The toolchain first (a cold build takes minutes; cached afterwards), then the data dir is empty.
  tools = temporalToolchain();
  numbers['toolchain ms (cached or cold build)'] = Date.now() - t0;
  const labs = Promise.all([startLab({ log: () => undefined }), startRotationLab()]);
  const empty = Date.now();
  pg = await startPostgres();
  numbers['postgres initdb+start ms'] = Date.now() - empty;
  const schema = await runScript('temporal-schema.sh', schemaEnv(pg, tools));
  expect(schema.status, schema.output).toBe(0);
  expect(schema.output).toContain('schema is current');
  numbers['schema ms'] = schema.ms;
  const ports = await serverPorts();
  serverEnvVars = serverEnv(pg, ports, tools);
  const s0 = Date.now();
  server = await startTemporalServer(tools.TEMPORAL_SERVER_BIN, serverEnvVars, tools.TEMPORAL_CONFIG_DIR);
  numbers['temporal server start→SERVING ms'] = Date.now() - s0;
  const setup = await runScript('temporal-setup.sh', {
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_CLI: temporalCli(),
  });
  expect(setup.status, setup.output).toBe(0);
  expect(setup.output).toContain('change(s) made');
  numbers['setup ms'] = setup.ms;
  numbers['empty data dir → Temporal set up (PostgreSQL, schema, server, setup) ms'] = Date.now() - empty;
  [fresh, built] = await labs;
  numbers['empty data dir → labs ready (in parallel) ms'] = Date.now() - empty;
  dataDir = built.dataDir;
  writeClusters();
  const w0 = await startWorker('worker-a');
  const w1 = await startWorker('worker-b');
  const polling = await Promise.all([w0.waitFor('worker polling'), w1.waitFor('worker polling')]);
  numbers['empty data dir → first worker polling ms'] = Math.min(...polling) - empty;
  numbers['worker spawn → polling ms'] = polling[0] - w0.spawnedAt;
  const apiPort = await freePort();
  api = new NodeProc(
    'api/main.ts',
    {
      ...baseEnv(),
      PEDRO_OPS_API_HOST: '127.0.0.1',
      PEDRO_OPS_API_PORT: String(apiPort),
      PEDRO_OPS_API_TOKENS: `ci:operator:${createHash('sha256').update(OPERATOR_TOKEN).digest('hex')}`,
    },
    'api',
  );
  await api.waitFor('API listening');
  apiUrl = `http://127.0.0.1:${apiPort}`;
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection, dataConverter: dataConverterFor(codec) });
}, 1_800_000);

afterAll(async () => {
  say(
    Object.entries(numbers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n[production] '),
  );
  await connection?.close().catch(() => undefined);
  await Promise.all([...workers, ...(api ? [api] : [])].map((p) => p.stop()));
  await server?.stop();
  await pg?.stop();
  await Promise.all([fresh?.stop(), built?.stop()]);
  if (auditDir) rmSync(auditDir, { recursive: true, force: true });
}, 180_000);

describe('production mode against a PostgreSQL-backed Temporal server', () => {
  it('refuses to start a worker without codec keys, or the API without tokens, and generates nothing', async () => {
    const noKeys = { ...baseEnv(), PEDRO_OPS_CODEC_KEYS: '' };
    const scratch = mkdtempSync(join(tmpdir(), 'pedro-ops-prod-refuse-'));
    try {
      const w = await startWorker('worker-no-keys', { ...noKeys, PEDRO_OPS_DATA_DIR: scratch });
      expect(await w.exited).toBe(1);
      expect(w.text()).toContain('no payload codec key configured (not in dev mode, so none is generated)');
      expect(w.text()).toMatch(/PEDRO_OPS_CODEC_KEYS=/);
      const a = new NodeProc(
        'api/main.ts',
        { ...baseEnv(), PEDRO_OPS_DATA_DIR: scratch, PEDRO_OPS_API_PORT: String(await freePort()) },
        'api-no-tokens',
      );
      workers.push(a);
      expect(await a.exited).toBe(1);
      expect(a.text()).toContain('no API tokens: set PEDRO_OPS_API_TOKENS=');
      // Nothing was generated in their data dir: no dev codec key, no dev API tokens.
      expect(readdirSync(scratch)).toEqual([]);
      expect(existsSync(join(dataDir, 'codec-keys.json'))).toBe(false);
      expect(existsSync(join(dataDir, 'api-tokens.json'))).toBe(false);
      expect(existsSync(join(dataDir, 'fingerprint.key'))).toBe(false);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('runs the schema and the setup scripts a second time without changing anything', async () => {
    const schema = await runScript('temporal-schema.sh', schemaEnv(pg, tools));
    expect(schema.status, schema.output).toBe(0);
    expect(schema.output).toContain('schema is current');
    const setup = await runScript('temporal-setup.sh', {
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_CLI: temporalCli(),
    });
    expect(setup.status, setup.output).toBe(0);
    expect(setup.output).toContain('nothing changed');
    expect(setup.output).not.toMatch(/created/);
    say(`setup, second run:\n${setup.output.trim()}`);
    // A type that disagrees with the registered one is an error, not a silent skip.
    const clash = await runScript('temporal-setup.sh', {
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_CLI: temporalCli(),
      SEARCH_ATTRIBUTES: 'ClusterName=Int',
    });
    expect(clash.status).toBe(1);
    expect(clash.output).toContain('ClusterName is registered as Keyword, not Int');
    const noSchema = await runScript('temporal-schema.sh', {
      ...schemaEnv(pg, tools),
      TEMPORAL_SCHEMA_DIR: '/nonexistent',
    });
    expect(noSchema.status).toBe(1);
    expect(noSchema.output).toContain('no schema dir /nonexistent/temporal/versioned');
  });

  it('provisions the unbuilt lab through the API', async () => {
    fresh.resetCounters();
    const started = await call('POST', '/clusters/fresh/provision', {});
    expect(started.status, JSON.stringify(started.json)).toBe(202);
    const h = client.workflow.getHandle(started.json.workflowId);
    const report = (await h.result()) as ProvisionReport;
    expect(report.state).toBe('succeeded');
    expect(report.components.filter((c) => c.state !== 'Ready')).toEqual([]);
    const c = fresh.counters();
    for (const n of fresh.spec.nodes) expect(c.nodes[n.name].installerRuns, n.name).toBe(1);
    expect(writes(fresh, 'create:HelmChart')).toBe(fresh.spec.components.length);
    expect(writes(fresh, 'update:HelmChart') + writes(fresh, 'patch:HelmChart')).toBe(0);
    numbers['provision wall ms (PostgreSQL)'] = await wallMs(h);
    const status = await call('GET', '/clusters/fresh/provision');
    expect(status.status).toBe(200);
  });

  it('rotates the seed map; a worker SIGKILLed mid-run is replaced by the other, nothing repeated', async () => {
    await built.changeValues(SEED);
    const entries = built.spec.secrets.entries.filter((e) => SEED.includes(e.id));
    const before = new Map(
      await Promise.all(entries.map(async (e) => [e.id, (await built.bao(e.openbaoPath)).version] as const)),
    );
    built.lab.resetCounters();
    const requestId = randomUUID();
    const started = await call('POST', '/clusters/lab/secrets/rotate', {
      entries: SEED,
      rolloutTimeoutSeconds: 30,
      requestId,
    });
    expect(started.status, JSON.stringify(started.json)).toBe(202);
    const h = client.workflow.getHandle(started.json.workflowId);
    // Kill the worker that holds a started activity with a heartbeat timeout (a crash is then
    // noticed by Temporal within that timeout, DESIGN rule 10), not a harness shortcut.
    const live = workers.filter((w) => w.alive && w.entry === 'worker/main.ts');
    expect(live.length).toBe(2);
    let victim: NodeProc | undefined;
    let activity = '';
    await until(
      async () => {
        const d = await client.workflowService.describeWorkflowExecution({
          namespace: 'default',
          execution: { workflowId: h.workflowId },
        });
        for (const a of d.pendingActivities ?? []) {
          const identity = a.lastWorkerIdentity ?? '';
          const w = live.find((x) => identity.startsWith(`${x.pid}@`));
          // rotationRestartConsumer heartbeats (30 s timeout, workflows/rotate-secrets.ts `waits`).
          if (w && a.state === PENDING_STARTED && a.activityType?.name === 'rotationRestartConsumer') {
            victim = w;
            activity = a.activityType?.name ?? '';
          }
        }
        if (!victim && d.workflowExecutionInfo?.closeTime) throw new Error('the rotation ended before a kill point');
        return Boolean(victim);
      },
      120_000,
      'a started heartbeating activity on one of the two workers',
    );
    const killedAt = Date.now();
    await victim!.kill();
    const survivor = live.find((w) => w !== victim)!;
    say(`SIGKILL ${victim!.name} (pid ${victim!.pid}) during ${activity}; ${survivor.name} keeps polling`);
    const report = (await h.result()) as RotationReport;
    numbers['kill → rotation completed ms'] = Date.now() - killedAt;
    numbers['killed during'] = activity;
    expect(report.state, JSON.stringify(report.entries)).toBe('ok');
    expect(report.entries.filter((e) => e.status !== 'rotated')).toEqual([]);
    // After the kill, every activity the run completed was completed by the survivor.
    const history = await h.fetchHistory();
    const afterKill = (history.events ?? []).filter(
      (e) => e.activityTaskStartedEventAttributes && Number(e.eventTime!.seconds) * 1000 > killedAt + 1000,
    );
    expect(afterKill.length).toBeGreaterThan(0);
    for (const e of afterKill)
      expect(e.activityTaskStartedEventAttributes!.identity).toMatch(new RegExp(`^${survivor.pid}@`));
    // No side effect repeated: one OpenBAO write per path, one Secret write per mapped entry, one
    // restart per consumer (as test/chaos/scenarios.ts counts them).
    const c = built.lab.counters();
    for (const e of entries) {
      const now = await built.bao(e.openbaoPath);
      expect(now.version, e.openbaoPath).toBe(before.get(e.id)! + 1);
      expect(c.openbao.byPath[`write:${built.spec.openbao.kvMount}/data/${e.openbaoPath}`], e.openbaoPath).toBe(1);
    }
    const secretWrites = ['create', 'update', 'patch'].reduce(
      (n, verb) => n + (c.kube.writes[`${verb}:Secret`] ?? 0),
      0,
    );
    expect(secretWrites).toBe(entries.filter((e) => e.kubernetes).length);
    const consumers = new Set(
      entries.flatMap((e) =>
        e.consumers.map((w) => `${w.namespace ?? e.kubernetes?.namespace ?? 'default'}/${w.kind}/${w.name}`),
      ),
    );
    expect(Object.keys(c.kube.restarts).sort()).toEqual([...consumers].sort());
    for (const k of consumers) expect(c.kube.restarts[k], k).toBe(1);
    // Two workers again, as the deployment wants.
    const replacement = await startWorker('worker-c');
    await replacement.waitFor('worker polling');
  });

  it('runs a drill; the Temporal server restarted mid-run, the drill continues from PostgreSQL', async () => {
    built.lab.resetCounters();
    const started = await call('POST', '/clusters/lab/backups/verify', { createNew: true });
    expect(started.status, JSON.stringify(started.json)).toBe(202);
    const h = client.workflow.getHandle(started.json.workflowId);
    await until(
      async () => (await h.fetchHistory()).events!.filter((e) => e.activityTaskCompletedEventAttributes).length >= 2,
      60_000,
      'two drill activities completed',
    );
    const eventsBefore = (await h.fetchHistory()).events!.length;
    const stoppedAt = Date.now();
    await server.stop();
    const downMs = Date.now() - stoppedAt;
    server = await startTemporalServer(tools.TEMPORAL_SERVER_BIN, serverEnvVars, tools.TEMPORAL_CONFIG_DIR);
    numbers['server stop ms'] = downMs;
    numbers['server restart → SERVING ms'] = Date.now() - stoppedAt;
    // The history written before the restart is still there (read from PostgreSQL).
    expect((await h.fetchHistory()).events!.length).toBeGreaterThanOrEqual(eventsBefore);
    const report = (await h.result()) as DrillReport;
    numbers['restart → drill completed ms'] = Date.now() - stoppedAt;
    expect(report.result, report.reasons?.join('; ')).toBe('passed');
    expect(report.cleanup.remaining).toEqual([]);
    expect(writes(built.lab, 'create:Backup')).toBe(1);
    expect(writes(built.lab, 'create:Restore')).toBe(1);
    // Both workers reconnected by themselves.
    expect(workers.filter((w) => w.entry === 'worker/main.ts' && w.alive).length).toBe(2);
    const status = await call('GET', `/clusters/lab/backups/verifications/${encodeURIComponent(started.json.id)}`);
    expect(status.status, JSON.stringify(status.json)).toBe(200);
  });

  it('every payload in the histories is encrypted with the operator key; no secret value anywhere', async () => {
    writeFileSync(join(auditDir, 'logs.txt'), [...workers, api].map((p) => p.text()).join('\n'));
    writeFileSync(join(auditDir, 'responses.txt'), responses.join('\n'));
    const r = await auditSuite(server.address, auditDir, {
      codec: { keyId: CODEC_KEY_ID, codec },
      extraSecrets: [OPERATOR_TOKEN, CODEC_KEY.toString('base64'), FINGERPRINT_KEY, pg.password],
    });
    say(
      `audit: ${r.workflows} histories, ${r.payloads} payloads, ${r.secretsChecked} secret values, ${r.logBytes} B logs, ${r.responseBytes} B responses`,
    );
    expect(r.workflows).toBeGreaterThanOrEqual(3);
    expect(r.payloads).toBeGreaterThan(50);
    expect(r.otherKeys).toBe(0);
    expect(r.unencrypted).toEqual([]);
    expect(r.leaks).toEqual([]);
  });

  it('the same provision on the dev server, for the wall-time ratio (one run each)', async () => {
    const lab = await startLab({ log: () => undefined });
    let dev: DevServer | undefined;
    const dir = mkdtempSync(join(tmpdir(), 'pedro-ops-prod-dev-'));
    let w: NodeProc | undefined;
    try {
      dev = await startDevServer({ port: await freePort(), headless: true });
      mkdirSync(join(dir, 'clusters'));
      copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
      const env = {
        ...baseEnv(),
        TEMPORAL_ADDRESS: dev.address,
        PEDRO_OPS_CLUSTERS_DIR: join(dir, 'clusters'),
        PEDRO_OPS_DATA_DIR: dir,
      };
      w = new NodeProc(
        'worker/main.ts',
        { ...env, PEDRO_OPS_WORKER_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` },
        'dev-worker',
      );
      await w.waitFor('worker polling');
      const c = await Connection.connect({ address: dev.address });
      try {
        const devClient = new Client({ connection: c, dataConverter: dataConverterFor(codec) });
        const h = await devClient.workflow.start('provisionCluster', {
          taskQueue: TASK_QUEUE,
          workflowId: 'provision/lab',
          args: [{ cluster: 'lab' }],
        });
        expect(((await h.result()) as ProvisionReport).state).toBe('succeeded');
        const devMs = await wallMs(h);
        numbers['provision wall ms (dev server)'] = devMs;
        const pgMs = Number(numbers['provision wall ms (PostgreSQL)']);
        numbers['provision wall ratio PostgreSQL / dev'] = (pgMs / devMs).toFixed(2);
        expect(devMs).toBeGreaterThan(0);
      } finally {
        await c.close();
      }
    } finally {
      await w?.stop();
      await dev?.stop();
      await lab.stop();
      rmSync(dir, { recursive: true, force: true });
      await sleep(0);
    }
  });
});
