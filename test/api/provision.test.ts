// The provision API through app.inject against the real dev server and a lab: dryRun plans without
// starting, 202 then 409 with the running ids, live progress, resolveStep (rejections as 409), bad
// bodies as 400 naming the field, unknown clusters as 404.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { temporalSettings } from '../../worker/settings.js';
import { provisionHarness, type ProvisionHarness } from '../workflows/provision-lab.js';

let h: ProvisionHarness;
let app: FastifyInstance;

beforeAll(async () => {
  h = await provisionHarness();
  // Parks the build in preflight so the run stays open for the whole file and touches nothing.
  await h.lab.faults.setFacts('worker-2', { cpus: 1 });
  const settings = { ...temporalSettings({}), address: h.t.address, taskQueue: h.t.taskQueue };
  app = await buildTestApp({ client: h.t.client, settings, clusters: h.deps.clusters });
});
afterAll(async () => {
  await app?.close();
  await h?.stop();
});

async function progress() {
  return app.inject({ method: 'GET', url: '/clusters/lab/provision' });
}

describe('provision API', () => {
  it('unknown cluster is 404 on every route', async () => {
    for (const [method, url, payload] of [
      ['POST', '/clusters/nope/provision', {}],
      ['GET', '/clusters/nope/provision', undefined],
      ['POST', '/clusters/nope/provision/steps/preflight', { action: 'retry' }],
    ] as const) {
      const r = await app.inject({ method, url, payload });
      expect(r.statusCode, url).toBe(404);
      expect(r.json().message).toContain('unknown cluster "nope"');
    }
  });

  it('GET before any run is 404; dryRun returns the DAG and starts nothing', async () => {
    expect((await progress()).statusCode).toBe(404);
    const r = await app.inject({ method: 'POST', url: '/clusters/lab/provision?dryRun=true', payload: {} });
    expect(r.statusCode).toBe(200);
    const plan = r.json();
    expect(plan.workflowId).toBe('provision/lab');
    const byId = new Map<string, { dependsOn: string[] }>(
      plan.steps.map((s: { id: string; dependsOn: string[] }) => [s.id, s]),
    );
    expect(byId.get('component/contour')!.dependsOn).toContain('component/cert-manager');
    // Agents join the VIP, so they wait for the VIP step, which waits for the first server.
    expect(byId.get('k3s/worker-1')!.dependsOn).toEqual(['prepare/worker-1', 'vip']);
    expect(byId.get('vip')!.dependsOn).toEqual(['k3s/control-plane']);
    expect(byId.get('component/grafana')!.dependsOn).toEqual(
      expect.arrayContaining(['component/kube-prometheus-stack', 'component/loki']),
    );
    expect(plan.parallelism).toBe(h.lab.spec.parallelism);
    expect((await progress()).statusCode).toBe(404);
  });

  it('invalid bodies are 400 naming the field', async () => {
    const a = await app.inject({ method: 'POST', url: '/clusters/lab/provision', payload: { allowTofu: 'yes' } });
    expect(a.statusCode).toBe(400);
    expect(a.json().field).toBe('body.allowTofu');
    const b = await app.inject({ method: 'POST', url: '/clusters/lab/provision', payload: { wipe: true } });
    expect(b.statusCode).toBe(400);
    expect(b.json().field).toBe('body.wipe');
    const c = await app.inject({
      method: 'POST',
      url: '/clusters/lab/provision/steps/preflight',
      payload: { action: 'explode' },
    });
    expect(c.statusCode).toBe(400);
    expect(c.json().field).toBe('body.action');
    const d = await app.inject({ method: 'POST', url: '/clusters/lab/provision/steps/preflight', payload: {} });
    expect(d.statusCode).toBe(400);
    expect(d.json().field).toBe('body.action');
    expect((await progress()).statusCode).toBe(404);
  });

  it('POST starts the build (202), a second POST is 409 with the running ids, GET shows progress, steps resolve', async () => {
    const r = await app.inject({ method: 'POST', url: '/clusters/lab/provision', payload: {} });
    expect(r.statusCode).toBe(202);
    const started = r.json();
    expect(started).toMatchObject({ workflowId: 'provision/lab', statusUrl: '/clusters/lab/provision' });
    expect(started.temporalWebUrl).toContain(`/workflows/${encodeURIComponent('provision/lab')}/${started.runId}`);

    const again = await app.inject({ method: 'POST', url: '/clusters/lab/provision', payload: {} });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ workflowId: 'provision/lab', runId: started.runId });

    let p = (await progress()).json();
    for (
      let i = 0;
      i < 100 && p.steps?.find((s: { id: string }) => s.id === 'preflight')?.state !== 'needs-attention';
      i++
    ) {
      await new Promise((res) => setTimeout(res, 200));
      p = (await progress()).json();
    }
    expect(p.runId).toBe(started.runId);
    expect(p.state).toBe('needs-attention');
    const pre = p.steps.find((s: { id: string }) => s.id === 'preflight');
    expect(pre.lastError.message).toContain('worker-2: 1 CPUs, needs at least 4');

    // A step that is not parked: the update is rejected, and the API says why with 409.
    const early = await app.inject({
      method: 'POST',
      url: `/clusters/lab/provision/steps/${encodeURIComponent('prepare/worker-1')}`,
      payload: { action: 'retry' },
    });
    expect(early.statusCode).toBe(409);
    expect(early.json().message).toContain('step "prepare/worker-1" is pending, not needs-attention');
    const ghost = await app.inject({
      method: 'POST',
      url: '/clusters/lab/provision/steps/no-such-step',
      payload: { action: 'retry' },
    });
    expect(ghost.statusCode).toBe(409);
    expect(ghost.json().message).toContain('no step "no-such-step"');

    const abort = await app.inject({
      method: 'POST',
      url: '/clusters/lab/provision/steps/preflight',
      payload: { action: 'abort', note: 'test done' },
    });
    expect(abort.statusCode).toBe(200);
    expect(abort.json()).toMatchObject({
      accepted: true,
      workflowId: 'provision/lab',
      step: 'preflight',
      action: 'abort',
    });
    const handle = h.t.client.workflow.getHandle('provision/lab');
    await expect(handle.result()).rejects.toThrow();
    const after = (await progress()).json();
    expect(after.status).toBe('FAILED');
    expect(Object.values(h.lab.counters().nodes).every((n) => n.installerRuns === 0)).toBe(true);
  });
});
