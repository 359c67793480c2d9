// A worker join that cannot reach the server (issue 13, item 7). The lab's agent units are
// Type=notify with TimeoutStartSec=0 like the real install script writes them, so the agent's
// `systemctl restart` blocks while it retries its token validation; the install wait is bounded and
// parks the step with "server unreachable from <node>" instead of hanging for the activity's
// 15 minutes times its retries. The VIP step in front of the joins parks first (nothing answers on
// the VIP either) and is skipped here, as an operator may, so the joins meet the unreachable server.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { provisionHarness, resolve, stepOf, until, type ProvisionHarness } from './provision-lab.js';

let h: ProvisionHarness;
let handle: WorkflowHandle | undefined;
beforeAll(async () => {
  h = await provisionHarness({}, 'lab', (spec) => {
    spec.k3s.apiPort = 9; // nothing listens on the discard port: agents joining https://<vip>:9 cannot reach it
    spec.k3s.startTimeoutSeconds = 5;
    spec.vipProvider.readyTimeoutSeconds = 5;
  });
});
afterAll(async () => {
  await handle?.terminate('test done').catch(() => undefined);
  await h?.stop();
});

describe('provisionCluster: an agent that cannot reach the server', () => {
  test('parks its join step as ServerUnreachable within the bound, naming the node and the cause', async () => {
    const t0 = Date.now();
    handle = await h.start();
    // Nothing answers on the VIP's port either: the VIP step parks first, within its own bound
    // (issue 13 item 1), and says what it waited for.
    const parked = await until(
      handle,
      'the VIP step parked',
      (x) => stepOf(x, 'vip').state === 'needs-attention',
      60_000,
    );
    const vipErr = stepOf(parked, 'vip').lastError!;
    expect(vipErr.type).toBe('ServerUnreachable');
    expect(vipErr.message).toMatch(
      /^VIP unreachable: https:\/\/[0-9.]+:9\/readyz did not answer within 5s \(last: ECONNREFUSED\)/,
    );
    expect(stepOf(parked, 'k3s/worker-1').state).toBe('pending');
    // An operator who knows better skips the VIP wait: the agents then try the VIP themselves.
    await resolve(handle, 'vip', 'skip');
    const p = await until(
      handle,
      'both joins parked',
      (x) => ['k3s/worker-1', 'k3s/worker-2'].every((id) => stepOf(x, id).state === 'needs-attention'),
      90_000,
    );
    expect(Date.now() - t0).toBeLessThan(90_000);
    expect(stepOf(p, 'k3s/control-plane').state).toBe('succeeded');
    for (const n of ['worker-1', 'worker-2']) {
      const err = stepOf(p, `k3s/${n}`).lastError!;
      expect(err.type).toBe('ServerUnreachable');
      expect(err.message).toMatch(new RegExp(`^server unreachable from ${n}: https://[0-9.]+:9 `));
      expect(err.message).toContain('connect: connection refused');
      // one attempt: a non-retryable finding, not ten retries of a 15-minute activity
      expect(stepOf(p, `k3s/${n}`).attempts).toBe(1);
    }
    expect(p.state).toBe('needs-attention');
  }, 120_000);
});
