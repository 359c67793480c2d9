// `pedro-ops provision lab` against a running orchestrator (real listening API, real worker, the
// lab): live progress then the report with exit 0; with a fault injected it exits 3 naming the step;
// resolve-step retry continues; --json output parses; attaching to a running build follows it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app.js';
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
  app = await buildApp({
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

    h.lab.faults.clear();
    const retry = await cli('resolve-step', 'lab-cli', 'component/longhorn', 'retry');
    expect(retry.code).toBe(0);

    const done = await cli('provision', 'lab-cli', '--json');
    expect(done.code).toBe(0);
    const out = JSON.parse(done.stdout);
    expect(out).toMatchObject({ workflowId: 'provision/lab-cli', status: 'COMPLETED', result: { state: 'succeeded' } });
    expect(out.result.components.every((c: { state: string }) => c.state === 'Ready')).toBe(true);
    expect(done.stderr).toBe(''); // --json prints nothing else
  });

  it('a second provision of the built cluster shows progress and ends with exit 0, everything already satisfied', async () => {
    const r = await cli('provision', 'lab-cli');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/satisfied/);
    const report = JSON.parse(r.stdout);
    expect(report.state).toBe('succeeded');
  });

  it('dry run prints the plan and starts nothing', async () => {
    const r = await cli('provision', 'lab-cli', '--dry-run', '--json');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(JSON.stringify(plan)).toContain('component/longhorn');
  });
});
