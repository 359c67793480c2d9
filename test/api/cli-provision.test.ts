// `pedro-ops provision lab` against a running orchestrator (real listening API, real worker, the
// lab): live progress then the report with exit 0; with a fault injected it exits 3 naming the step;
// resolve-step retry continues; --json output parses; attaching to a running build follows it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, parseTokens } from '../../api/auth.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec } from '../helpers/temporal.js';
import { runCli } from '../helpers/cli.js';
import { provisionHarness, type ProvisionHarness } from '../workflows/provision-lab.js';

const OPERATOR = 'cli-provision-token-0123456789';
let h: ProvisionHarness;
let app: FastifyInstance;
let url: string;

beforeAll(async () => {
  h = await provisionHarness({}, 'lab-cli'); // its own cluster: api/provision.test.ts owns provision/lab
  app = await buildTestApp({
    client: h.t.client,
    settings: { ...temporalSettings({}), address: h.t.address, taskQueue: h.t.taskQueue },
    clusters: h.deps.clusters,
    auth: { tokens: parseTokens(`ops:operator:${hashToken(OPERATOR)}`) },
    codec: testCodec,
  });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
}, 180_000);
afterAll(async () => {
  await app?.close();
  await h?.stop();
});

const cli = (...args: string[]) => runCli(args, { url, token: OPERATOR });

describe('pedro-ops provision', () => {
  it('a fault parks the build: exit 3 naming the step; retry via the CLI; --json then ends with the report', async () => {
    h.lab.faults.helmcharts.fail('longhorn', 'chart longhorn-9.9.9 not found');
    const first = await cli('provision', 'lab-cli');
    expect(first.code).toBe(3);
    expect(first.stderr).toContain('NEEDS ATTENTION: component/longhorn');
    expect(first.stderr).toContain('chart longhorn-9.9.9 not found');
    expect(first.stderr).toContain('pedro-ops resolve provision/lab-cli component/longhorn retry|skip|abort');
    expect(first.stderr).toMatch(/preflight|k3s/); // live progress lines were printed before
    expect(first.stdout).toBe(''); // human mode: the report only at the end

    // attaching again while it is still stuck: exits 3 at once, JSON names the step
    const attached = await cli('provision', 'lab-cli', '--json');
    expect(attached.code).toBe(3);
    expect(JSON.parse(attached.stdout)).toMatchObject({
      workflowId: 'provision/lab-cli',
      state: 'needs-attention',
      steps: [{ step: 'component/longhorn' }],
    });

    await h.lab.faults.clear();
    const retry = await cli('resolve-step', 'lab-cli', 'component/longhorn', 'retry');
    expect(retry.code).toBe(0);

    const done = await cli('provision', 'lab-cli', '--json');
    expect(done.code).toBe(0);
    const out = JSON.parse(done.stdout);
    expect(out).toMatchObject({ workflowId: 'provision/lab-cli', status: 'COMPLETED', result: { state: 'succeeded' } });
    expect(out.result.components.every((c: { state: string }) => c.state === 'Ready')).toBe(true);
    expect(done.stderr).toBe(''); // --json prints nothing else
    // Two provisions of the lab cluster (parked, then retried): 46 s alone on a 2-core machine, so
    // 3× that, not the suite's 60 s default that a 1.3× slower, busy machine overran.
  }, 150_000);

  it('a second provision of the built cluster shows progress and ends with exit 0, everything already satisfied', async () => {
    const r = await cli('provision', 'lab-cli');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/satisfied/);
    // the report for a person: fields, then tables (nodes, components)
    expect(r.stdout).toMatch(/^state\s+succeeded$/m);
    expect(r.stdout).toMatch(/^components:\n.*NAME/m);
  });

  it('dry run prints the plan and starts nothing', async () => {
    const r = await cli('provision', 'lab-cli', '--dry-run', '--json');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(JSON.stringify(plan)).toContain('component/longhorn');
  });

  it('parked again: skip where allowed (preflight), refused where later steps depend on it (409), abort ends the build failed', async () => {
    await h.lab.faults.ssh.rotateHostKey('worker-1'); // a re-installed machine: its pinned host key no longer matches
    try {
      // a re-run converges from the top; HostKeyMismatch is never retried, so preflight parks first
      const parked = await cli('provision', 'lab-cli');
      expect(parked.code, parked.stderr).toBe(3);
      expect(parked.stderr).toContain('pedro-ops resolve provision/lab-cli preflight retry|skip|abort');
      expect((await cli('resolve', 'provision/lab-cli', 'preflight', 'skip', '--note', 'checked by hand')).code).toBe(
        0,
      );
      const next = await cli('status', 'provision/lab-cli');
      expect(next.code, next.stderr).toBe(3);
      expect(next.stderr).toContain('pedro-ops resolve provision/lab-cli prepare/worker-1 retry|skip|abort');
      const skip = await cli('resolve', 'provision/lab-cli', 'prepare/worker-1', 'skip', '--json');
      expect(skip.code).toBe(1);
      expect(JSON.parse(skip.stdout).error).toMatchObject({ error: 'Conflict' });
      expect(JSON.parse(skip.stdout).error.message).toMatch(/skip refused for "prepare\/worker-1": .* on it/);
      const abort = await cli('resolve', 'provision/lab-cli', 'prepare/worker-1', 'abort', '--note', 're-pin first');
      expect(abort.code, abort.stderr).toBe(0);
      const st = await eventually('provision/lab-cli to end after the abort', async () => {
        const r = await cli('status', 'provision/lab-cli', '--no-follow');
        return /RUNNING/.test(r.stdout.split('\n')[0]) ? undefined : r;
      });
      expect(st.code).toBe(1);
      expect(st.stdout).toMatch(/^error: .*aborted by operator at step prepare\/worker-1.*nothing was rolled back/m);
      expect(st.stdout).toMatch(/prepare\/worker-1\s+failed\s+1\s/);
      expect(st.stdout).toMatch(/preflight\s+skipped\s/);
    } finally {
      await h.lab.faults.ssh.restoreHostKey('worker-1');
      await h.lab.faults.clear();
    }
  });
});

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 45_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
