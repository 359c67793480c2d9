// Proves the replay guard bites: the same change to verifyBackup (a timer before its first step)
// fails replay of the committed history with a DeterminismViolationError when made plainly, and
// replays cleanly behind patched(). Also: the histories only decode with the suite's test key.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import type { DataConverter } from '@temporalio/common';
import { testDataConverter } from '../helpers/temporal.js';
import { loadHistories, quietRuntime, type StoredHistory } from './history-files.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
// Inside the repo (git-ignored .data/) so the bundler resolves @temporalio/* from the repo's node_modules.
const WORK = join(REPO, '.data', 'replay-guard', randomUUID().slice(0, 8));
const ANCHOR = "runner.run('load-spec'";

const silent = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) };

/** A copy of workflows/ whose verifyBackup waits one second before its first step. */
async function bundleVariant(name: string, guarded: boolean): Promise<WorkflowBundleWithSourceMap> {
  const dir = join(WORK, name, 'workflows');
  mkdirSync(dir, { recursive: true });
  cpSync(join(REPO, 'workflows'), dir, { recursive: true });
  const file = join(dir, 'verify-backup.ts');
  const lines = readFileSync(file, 'utf8').split('\n');
  const at = lines.findIndex((l) => l.includes(ANCHOR));
  if (at < 0) throw new Error(`verify-backup.ts no longer contains ${ANCHOR}: update this test's anchor`);
  const indent = lines[at].match(/^\s*/)![0];
  lines.splice(
    at,
    0,
    guarded ? `${indent}if (guardPatched('guard-test')) await guardSleep('1s');` : `${indent}await guardSleep('1s');`,
  );
  lines.unshift("import { patched as guardPatched, sleep as guardSleep } from '@temporalio/workflow';");
  writeFileSync(file, lines.join('\n'));
  return bundleWorkflowCode({ workflowsPath: join(dir, 'index.ts'), logger: silent });
}

async function replay(
  bundle: WorkflowBundleWithSourceMap,
  histories: StoredHistory[],
  dataConverter: DataConverter = testDataConverter,
) {
  const out = [];
  for await (const r of Worker.runReplayHistories(
    { workflowBundle: bundle, dataConverter, replayName: 'determinism-guard' },
    histories,
  ))
    out.push(r);
  return out;
}

let plain: WorkflowBundleWithSourceMap;
let guarded: WorkflowBundleWithSourceMap;
let drills: StoredHistory[];

beforeAll(async () => {
  quietRuntime();
  drills = loadHistories().filter((h) => h.type === 'verifyBackup');
  expect(drills.map((h) => h.file)).toContain('verify-backup-passed.json');
  const t0 = performance.now();
  [plain, guarded] = await Promise.all([bundleVariant('plain', false), bundleVariant('guarded', true)]);
  console.log(`determinism guard: two variant bundles in ${(performance.now() - t0).toFixed(0)} ms`);
});

afterAll(() => {
  rmSync(WORK, { recursive: true, force: true });
  // The shared parent goes too once no other run is using it.
  if (readdirSync(dirname(WORK)).length === 0) rmSync(dirname(WORK), { recursive: true, force: true });
});

describe('determinism guard', () => {
  test('a workflow change without patched() fails replay of the committed history with a determinism error', async () => {
    const results = await replay(plain, drills);
    expect(results).toHaveLength(drills.length);
    for (const [i, r] of results.entries()) {
      expect(r.error, drills[i].file).toBeInstanceOf(DeterminismViolationError);
      expect(r.error!.name).toBe('DeterminismViolationError');
      // Core names the mismatch: the history scheduled an activity where the code now starts a timer.
      expect(r.error!.message).toMatch(/[Nn]ondeterminis/);
    }
  });

  test('the same change behind patched() replays every committed drill history', async () => {
    const results = await replay(guarded, drills);
    expect(results.map((r) => [r.workflowId, r.error ? `${r.error.name}: ${r.error.message}` : undefined])).toEqual(
      drills.map((h) => [h.workflowId, undefined]),
    );
  });

  test('the histories are encrypted: without the suite’s test codec they do not replay', async () => {
    const [one] = drills;
    // The SDK's default converter: no codec, so payloads stay "binary/encrypted".
    const results = await replay(guarded, [one], {});
    expect(results).toHaveLength(1);
    expect(results[0].error).toBeDefined();
  });
});
