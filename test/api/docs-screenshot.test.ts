// Swagger UI at /docs renders (issue 7 item 3): the real app listens on loopback and Debian's
// headless Chromium loads /docs, once for a screenshot and once for the rendered DOM. Skipped where
// /usr/bin/chromium is absent (apt-get install -y chromium). The PNG goes to a temp dir, never the repo.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, parseTokens } from '../../api/auth.js';
import { ClusterRegistry } from '../../config/registry.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const run = promisify(execFile);

let t: TestTemporal | undefined;
let app: FastifyInstance | undefined;
let base = '';
let dir = '';

beforeAll(async () => {
  if (!hasChromium) return;
  t = await testTemporal({ taskQueuePrefix: 'api-docs' });
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: new ClusterRegistry(),
    auth: { tokens: parseTokens(`ops:operator:${hashToken('docs-test-token-0123456789')}`) },
    codec: testCodec,
  });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  dir = mkdtempSync(join(tmpdir(), 'pedro-docs-'));
});
afterAll(async () => {
  await app?.close();
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One headless Chromium run with a fresh profile; nothing leaves loopback. */
async function chromium(args: string[], profile: string): Promise<string> {
  const { stdout } = await run(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${join(dir, profile)}`,
      '--window-size=1280,1600',
      '--virtual-time-budget=5000',
      ...args,
    ],
    { timeout: 90_000, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, HOME: dir } },
  );
  return stdout;
}

describe('Swagger UI at /docs in headless Chromium', () => {
  it.skipIf(!hasChromium)(
    'renders: the screenshot is a real page, the DOM holds the title and the routes',
    async () => {
      // PEDRO_OPS_DOCS_SCREENSHOT_DIR keeps the PNG for a human to look at.
      const png = join(process.env.PEDRO_OPS_DOCS_SCREENSHOT_DIR ?? dir, 'api-docs.png');
      await chromium([`--screenshot=${png}`, `${base}/docs`], 'shot');
      expect(existsSync(png)).toBe(true);
      // A blank 1280x1600 page compresses to a few KB; the rendered UI is far larger.
      expect(statSync(png).size).toBeGreaterThan(20 * 1024);

      const dom = await chromium(['--dump-dom', `${base}/docs`], 'dom');
      expect(dom).toContain('pedro-ops orchestrator');
      expect(dom).toContain('/clusters/{name}/secrets/rotate');
      expect(dom).toContain('/workflows/{id}/events');
      // Operation blocks exist only once Swagger UI has fetched and rendered the document.
      expect(dom).toMatch(/class="[^"]*opblock/);
    },
    200_000,
  );
});
