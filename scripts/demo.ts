// npm run demo — the whole story in one command: a Temporal dev server (Web UI on), the lab, a worker
// and the API; cluster `lab` is provisioned end to end through POST /clusters/lab/provision, live step
// transitions are printed from GET /clusters/lab/provision, then the final report. Exit 0 on success,
// 1 with the reason otherwise; everything started here is stopped (by handle/pid) on the way out.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { freePort, startDevServer, type DevServer } from './temporal-server.js';
import { startLab, type Lab } from '../test/lab/index.js';
import { ClusterRegistry } from '../config/registry.js';
import { defaultDeps } from '../activities/deps.js';
import { createWorker } from '../worker/create-worker.js';
import { buildApp } from '../api/app.js';
import { temporalSettings } from '../worker/settings.js';
import type { ProvisionReport } from '../workflows/provision-cluster.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const quiet = { info() {}, warn() {}, error() {} };
const ICON: Record<string, string> = {
  succeeded: '✔',
  satisfied: '=',
  skipped: '↷',
  'needs-attention': '!',
  failed: '✘',
  running: '…',
};

async function main(): Promise<number> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    let server: DevServer | undefined;
    let address = process.env.TEMPORAL_ADDRESS;
    let webUrl = process.env.TEMPORAL_WEB_URL ?? 'http://127.0.0.1:8233';
    if (!address) {
      const uiPort = await freePort();
      server = await startDevServer({ port: await freePort(), uiPort });
      cleanups.push(() => server!.stop());
      address = server.address;
      webUrl = server.uiUrl ?? `http://127.0.0.1:${uiPort}`;
    }
    say(`temporal  ${address}   web ${webUrl}`);
    const lab: Lab = await startLab({ log: () => undefined });
    cleanups.push(() => lab.stop());
    say(`lab       ${lab.host}: ${lab.nodes.map((n) => `${n.name}@${n.host}:${n.port}`).join(', ')}`);

    const dir = mkdtempSync(join(tmpdir(), 'pedro-ops-demo-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'clusters'));
    copyFileSync(lab.clusterFile, join(dir, 'clusters', 'lab.yaml'));
    const clusters = new ClusterRegistry(join(dir, 'clusters'));
    const settings = {
      ...temporalSettings({ ...process.env, TEMPORAL_WEB_URL: webUrl }),
      address,
      taskQueue: `demo-${process.pid}`,
    };
    const native = await NativeConnection.connect({ address });
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    const worker = await createWorker({
      connection: native,
      namespace: settings.namespace,
      taskQueue: settings.taskQueue,
      deps: defaultDeps({ dataDir: dir, log: quiet, clusters }),
      shutdownGraceTime: '1s',
    });
    const running = worker.run();
    cleanups.push(async () => {
      worker.shutdown();
      await running;
      await native.close();
      await connection.close();
    });
    const app = await buildApp({ client, settings, clusters });
    const apiUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => app.close());
    say(`api       ${apiUrl}`);

    const post = await fetch(`${apiUrl}/clusters/lab/provision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const started = (await post.json()) as {
      workflowId?: string;
      runId?: string;
      temporalWebUrl?: string;
      message?: string;
    };
    if (post.status !== 202)
      throw new Error(`POST /clusters/lab/provision answered ${post.status}: ${started.message}`);
    say(`started   ${started.workflowId} (${started.runId})\n          ${started.temporalWebUrl}\n`);

    const seen = new Map<string, string>();
    for (;;) {
      const r = await fetch(`${apiUrl}/clusters/lab/provision`);
      const p = (await r.json()) as {
        status: string;
        state: string;
        steps: {
          id: string;
          state: string;
          detail?: string;
          durationMs?: number;
          lastError?: { type?: string; message: string };
        }[];
      };
      for (const s of p.steps ?? []) {
        if (seen.get(s.id) === s.state || s.state === 'pending') continue;
        seen.set(s.id, s.state);
        const extra =
          s.state === 'needs-attention'
            ? ` ${s.lastError?.type}: ${s.lastError?.message}`
            : s.detail
              ? ` ${s.detail}`
              : '';
        say(
          `  ${ICON[s.state] ?? ' '} ${s.id.padEnd(34)} ${s.state}${s.durationMs !== undefined && s.state !== 'running' ? ` ${s.durationMs} ms` : ''}${extra.slice(0, 110)}`,
        );
      }
      if (p.state === 'needs-attention')
        throw new Error(
          'the build needs attention (see above); resolve it with POST /clusters/lab/provision/steps/<step>',
        );
      if (p.status !== 'RUNNING') break;
      await new Promise((res) => setTimeout(res, 300));
    }
    const report = (await client.workflow.getHandle(started.workflowId!).result()) as ProvisionReport;
    say(`\nreport: ${report.state} in ${report.durationMs} ms, k3s ${report.k3sVersion}`);
    if (report.vip) say(`  vip  ${report.vip.address.padEnd(14)} ${report.vip.provider} ${report.vip.state}`);
    for (const n of report.nodes) say(`  node ${n.name.padEnd(14)} ${n.role.padEnd(7)} ${n.version ?? '?'}`);
    for (const c of report.components)
      say(`  ${c.name.padEnd(24)} ${c.version.padEnd(10)} ${c.state.padEnd(8)} ${c.durationMs ?? 0} ms`);
    say(`\nTemporal Web: ${started.temporalWebUrl}`);
    return report.state === 'succeeded' ? 0 : 1;
  } catch (err) {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

void main().then((code) => process.exit(code));
