// How tests build the API: api/app.ts's `buildApp`, plus the harness's own plugins. The response
// audit appends every response body to the run's audit directory, so the suite-wide leak audit
// (test/leak-audit.ts, run by test/global-setup.ts) can search them for secret values. It lives
// here, not in api/: product code has no test-only paths.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { buildApp, type BuildAppOptions } from '../../api/app.js';

export const RESPONSES_FILE = 'responses.txt';

/** Appends every string or Buffer response body, of every route, to `<dir>/responses.txt`. */
export function responseAudit(dir: string): FastifyPluginAsync {
  const plugin: FastifyPluginAsync = async (app) => {
    app.addHook('onSend', async (_req, _reply, payload) => {
      if (typeof payload === 'string' || Buffer.isBuffer(payload))
        appendFileSync(join(dir, RESPONSES_FILE), `${payload.toString()}\n`);
      return payload;
    });
  };
  // Not encapsulated, so the hook reaches the routes registered after it in sibling plugins: what
  // fastify-plugin does (fastify docs/Reference/Plugins.md, "Handle the scope"; lib/plugin-utils.js).
  Object.assign(plugin, { [Symbol.for('skip-override')]: true });
  return plugin;
}

/** `buildApp` with the response audit registered when the run has an audit directory (test/global-setup.ts). */
export function buildTestApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const dir = process.env.PEDRO_OPS_AUDIT_DIR;
  return buildApp({ ...opts, plugins: [...(dir ? [responseAudit(dir)] : []), ...(opts.plugins ?? [])] });
}
