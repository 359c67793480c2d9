// One build of a fresh lab through every fault the issue names, in the order an operator would meet
// them: two broken nodes in preflight (one failure naming both), a changed host key on worker-2,
// an SSH connection dropped while worker-1's installer runs, and a failing HelmChart whose
// dependents wait while the rest finish. Each is resolved through the resolveStep update.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { ProvisionReport } from '../../workflows/provision-cluster.js';
import { dependentsOf } from '../../workflows/dag.js';
import { provisionHarness, resolve, stepOf, until, type ProvisionHarness } from './provision-lab.js';

let h: ProvisionHarness;
let handle: WorkflowHandle;
beforeAll(async () => {
  h = await provisionHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe('provisionCluster faults on the lab', () => {
  test('preflight with two broken nodes reports both nodes in one failure and parks', async () => {
    await h.lab.faults.setFacts('worker-1', { memoryMiB: 1024 });
    await h.lab.faults.setFacts('control-plane', { timeSynced: false, arch: 'armv7l' });
    handle = await h.start();
    const p = await until(
      handle,
      'preflight needs-attention',
      (x) => stepOf(x, 'preflight').state === 'needs-attention',
    );
    const err = stepOf(p, 'preflight').lastError!;
    expect(err.type).toBe('PreflightFailed');
    expect(err.message).toContain('worker-1: 1024 MiB memory, needs at least 7600');
    expect(err.message).toContain('control-plane: clock is not synchronised');
    expect(err.message).toContain('control-plane: architecture armv7l');
    expect(err.message).not.toContain('worker-2');
    expect(p.state).toBe('needs-attention');
    expect(stepOf(p, 'prepare/worker-1').state).toBe('pending');
    expect(Object.values(h.lab.counters().nodes).every((n) => n.installerRuns === 0)).toBe(true);
  });

  test('a changed host key on worker-2 is a non-retryable failure naming worker-2', async () => {
    await h.lab.faults.setFacts('worker-1', { memoryMiB: 8192 });
    await h.lab.faults.setFacts('control-plane', { timeSynced: true, arch: 'x86_64' });
    await h.lab.faults.ssh.rotateHostKey('worker-2');
    await resolve(handle, 'preflight', 'retry');
    const p = await until(
      handle,
      'host key failure',
      (x) => stepOf(x, 'preflight').state === 'needs-attention' && stepOf(x, 'preflight').attempts === 2,
    );
    const err = stepOf(p, 'preflight').lastError!;
    expect(err.type).toBe('HostKeyMismatch');
    expect(err.message).toContain('worker-2');
  });

  test('restore the key and retry: an SSH drop mid-install and a failing chart do not stop the rest', async () => {
    await h.lab.faults.ssh.restoreHostKey('worker-2');
    h.lab.faults.helmcharts.fail('cert-manager', 'chart cert-manager v1.14.2 not found in repository');
    // Slow worker-1's link so its installer is still running when the connection is cut.
    h.lab.faults.ssh.slow('worker-1', 150);
    await resolve(handle, 'preflight', 'retry');
    // preflight and prepare now also discover each node's LAN address (two more round trips on the
    // slowed link), so the installer starts later than it used to
    const deadline = Date.now() + 60_000;
    while (h.lab.counters().nodes['worker-1'].installerRuns === 0) {
      if (Date.now() > deadline) throw new Error('worker-1 installer never started');
      await new Promise((r) => setTimeout(r, 25));
    }
    h.lab.faults.ssh.drop('worker-1');
    h.lab.faults.ssh.clear('worker-1');

    const dependents = dependentsOf(
      h.lab.spec.components.map((c) => ({ id: c.name, dependsOn: c.dependsOn })),
      'cert-manager',
    );
    expect(dependents.sort()).toEqual(['airbyte', 'contour', 'metabase']);
    const others = h.lab.spec.components
      .map((c) => c.name)
      .filter((n) => n !== 'cert-manager' && !dependents.includes(n));
    const p = await until(
      handle,
      'cert-manager parked and the independent components done',
      (x) =>
        stepOf(x, 'component/cert-manager').state === 'needs-attention' &&
        others.every((n) => stepOf(x, `component/${n}`).state === 'succeeded'),
      90_000,
    );
    expect(stepOf(p, 'component/cert-manager').lastError?.type).toBe('InstallFailed');
    expect(stepOf(p, 'component/cert-manager').lastError?.message).toContain('not found in repository');
    for (const d of dependents) expect(stepOf(p, `component/${d}`).state, d).toBe('pending');
    expect(p.state).toBe('needs-attention');

    // skip is refused: contour (and through it airbyte, metabase) depend on cert-manager
    const skip = await resolve(handle, 'component/cert-manager', 'skip').catch((e: unknown) => e);
    expect(skip).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(String((skip as { cause?: { message?: string } }).cause?.message)).toMatch(
      /skip refused for "component\/cert-manager": .*component\/contour/,
    );

    await h.lab.faults.clear();
    await resolve(handle, 'component/cert-manager', 'retry');
    await until(handle, 'the build to finish', (x) => x.state === 'succeeded', 60_000);
    const report = (await handle.result()) as ProvisionReport;
    expect(report.state).toBe('succeeded');
    expect(report.components.every((c) => c.state === 'Ready')).toBe(true);
    expect(report.components.find((c) => c.name === 'cert-manager')?.attempts).toBe(2);

    const c = h.lab.counters();
    // The drop neither killed the installer nor let the retry run a second one.
    for (const n of ['control-plane', 'worker-1', 'worker-2']) expect(c.nodes[n].installerRuns, n).toBe(1);
    expect(c.kube.writes['create:HelmChart']).toBe(h.lab.spec.components.length);
    // The retry removed the failed install Job (helm-controller never reruns a failed one) and re-triggered once.
    expect(c.kube.writes['delete:Job']).toBe(1);

    // The join activity on worker-1 was retried (the drop hit it), visible in history as attempt > 1.
    const history = await handle.fetchHistory();
    const scheduled = new Map<string, string>();
    let joinAttempts = 0;
    for (const e of history.events ?? []) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '');
      const st = e.activityTaskStartedEventAttributes;
      if (st && ['joinK3sAgent', 'prepareNode'].includes(scheduled.get(String(st.scheduledEventId)) ?? ''))
        joinAttempts = Math.max(joinAttempts, st.attempt ?? 1);
    }
    expect(joinAttempts).toBeGreaterThan(1);
  }, 180_000);
});
