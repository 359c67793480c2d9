// DESIGN rule 10 (a crash costs seconds), checked over every activity: each one the worker registers
// has a kind (workflows/activity-options.ts), and each kind's options let the server notice a lost
// attempt within seconds: a heartbeat timeout, or a start-to-close under 30 s. The workflows must use
// those options and nothing else: no proxyActivities and no timeout literal outside that file.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { msToNumber } from '@temporalio/common/lib/time.js';
import type { ActivityOptions } from '@temporalio/workflow';
import { createActivities } from '../../activities/index.js';
import { beat, KEEPALIVE_MS, keepAlive, resumeDetails, sleep, waitDeadline } from '../../activities/heartbeat.js';
import {
  ACTIVITY_KINDS,
  ACTIVITY_OPTIONS,
  HEARTBEAT_TIMEOUT,
  MAX_UNNOTICED_SECONDS,
  waitUpTo,
  type ActivityKind,
} from '../../workflows/activity-options.js';
import { REPO_ROOT } from '../../worker/settings.js';

const seconds = (d: ActivityOptions['startToCloseTimeout']) => (d === undefined ? undefined : msToNumber(d) / 1000);

/** Why `o` lets a crashed attempt go unnoticed for too long; undefined when it does not. */
export function unnoticedTooLong(o: ActivityOptions): string | undefined {
  const hb = seconds(o.heartbeatTimeout);
  const stc = seconds(o.startToCloseTimeout);
  if (hb !== undefined && hb > 0 && hb <= 15) return undefined;
  if (hb === undefined && stc !== undefined && stc < MAX_UNNOTICED_SECONDS) return undefined;
  return `heartbeatTimeout ${o.heartbeatTimeout ?? 'none'}, startToCloseTimeout ${o.startToCloseTimeout ?? 'none'}: a crash goes unnoticed for ${hb ?? stc ?? 'ever'} s`;
}

/** Every option set an activity of this kind can be scheduled with (waits: per-call bounds too). */
function optionSets(kind: ActivityKind): ActivityOptions[] {
  const base = ACTIVITY_OPTIONS[kind] as ActivityOptions;
  return kind === 'wait' ? [base, waitUpTo(0), waitUpTo(120), waitUpTo(1800)] : [base];
}

describe('activity options', () => {
  const registered = Object.keys(createActivities({} as never)).sort();

  it('every registered activity has a kind, and every kind names a registered activity', () => {
    expect(Object.keys(ACTIVITY_KINDS).sort()).toEqual(registered);
  });

  it('every activity is noticed as lost within seconds: a heartbeat timeout or a start-to-close under 30 s', () => {
    const problems = registered.flatMap((name) => {
      const kind = (ACTIVITY_KINDS as Record<string, ActivityKind>)[name];
      return optionSets(kind).flatMap((o) => {
        const why = unnoticedTooLong(o);
        return why ? [`${name} (${kind}): ${why}`] : [];
      });
    });
    expect(problems).toEqual([]);
  });

  it('the rule itself: no heartbeat and a minutes-long start-to-close fails, a heartbeat or a short one passes', () => {
    expect(unnoticedTooLong({ startToCloseTimeout: '3m' })).toMatch(/unnoticed for 180 s/);
    expect(unnoticedTooLong({})).toMatch(/unnoticed/);
    expect(unnoticedTooLong({ startToCloseTimeout: '30s' })).toMatch(/unnoticed/);
    expect(unnoticedTooLong({ startToCloseTimeout: '40m', heartbeatTimeout: '60s' })).toMatch(/unnoticed/);
    expect(unnoticedTooLong({ startToCloseTimeout: '10s' })).toBeUndefined();
    expect(unnoticedTooLong({ startToCloseTimeout: '40m', heartbeatTimeout: HEARTBEAT_TIMEOUT })).toBeUndefined();
  });

  it('after a crash the next attempt starts within 20 s: the retry backoff cap plus the heartbeat timeout', () => {
    for (const [kind, o] of Object.entries(ACTIVITY_OPTIONS) as [ActivityKind, ActivityOptions][]) {
      const cap = msToNumber(o.retry!.maximumInterval!) / 1000;
      const noticed = seconds(o.heartbeatTimeout) ?? seconds(o.startToCloseTimeout)!;
      expect(cap + noticed, `${kind}: ${cap} s backoff + ${noticed} s`).toBeLessThanOrEqual(20);
    }
    // and a transient outage is still retried through for about 100 s before the step parks
    const r = ACTIVITY_OPTIONS.steady.retry;
    let window = 0;
    for (let i = 1, d = msToNumber(r.initialInterval!); i < r.maximumAttempts!; i++, d *= r.backoffCoefficient!)
      window += Math.min(d, msToNumber(r.maximumInterval!));
    expect(window / 1000).toBeGreaterThanOrEqual(90);
  });

  it('heartbeating kinds beat well inside their heartbeat timeout', () => {
    expect(KEEPALIVE_MS).toBeLessThanOrEqual((msToNumber(HEARTBEAT_TIMEOUT) * 0.8) / 2);
  });

  it('workflows schedule activities only through workflows/activity-options.ts', () => {
    const dir = join(REPO_ROOT, 'workflows');
    const offenders: string[] = [];
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts') && x !== 'activity-options.ts')) {
      const lines = readFileSync(join(dir, f), 'utf8').split('\n');
      lines.forEach((l, i) => {
        if (/^\s*(\/\/|\*)/.test(l)) return;
        if (
          /\b(proxyActivities|proxyLocalActivities)\b|\b(startToCloseTimeout|heartbeatTimeout|scheduleToCloseTimeout|scheduleToStartTimeout)\s*:/.test(
            l,
          )
        )
          offenders.push(`workflows/${f}:${i + 1}: ${l.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});

describe('heartbeat helpers (activities/heartbeat.ts)', () => {
  it('keepAlive repeats the last details every few seconds while one long call runs', async () => {
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    await env.run(async () => {
      beat({ step: 'installing' });
      await keepAlive(() => new Promise((r) => setTimeout(r, KEEPALIVE_MS + 400)));
    });
    expect(beats).toEqual([{ step: 'installing' }, { step: 'installing' }]);
  }, 10_000);

  it('a long sleep keeps beating, and a cancellation ends it', async () => {
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const run = env.run(async () => {
      beat({ attempt: 1 });
      await sleep(60_000);
    });
    await new Promise((r) => setTimeout(r, KEEPALIVE_MS + 400));
    env.cancel();
    await expect(run).rejects.toThrow();
    expect(beats).toEqual([{ attempt: 1 }, { attempt: 1 }]);
  }, 10_000);

  it('keepAlive runs onCancel when the activity is cancelled (a worker shutdown hands the attempt back)', async () => {
    const env = new MockActivityEnvironment();
    let abort: (e: Error) => void = () => undefined;
    const call = new Promise<never>((_, reject) => (abort = reject));
    const run = env.run(() =>
      keepAlive(
        () => call,
        () => abort(new Error('session closed')),
      ),
    );
    env.cancel();
    await expect(run).rejects.toThrow('session closed');
  }, 10_000);

  it('a retried wait keeps the first attempt deadline; another wait or a first attempt starts afresh', async () => {
    const first = Date.now() + 5_000;
    const resumed = new MockActivityEnvironment({ heartbeatDetails: { waiting: 'restore r1', deadline: first } });
    expect(await resumed.run(async () => waitDeadline(600, 'restore r1'))).toBe(first);
    const other = await resumed.run(async () => waitDeadline(600, 'restore r2'));
    expect(other).toBeGreaterThan(first + 500_000);
    expect(await new MockActivityEnvironment().run(async () => resumeDetails())).toBeUndefined();
    expect(waitDeadline(1, 'outside an activity')).toBeLessThanOrEqual(Date.now() + 1000);
  });
});
