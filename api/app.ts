// The Fastify app factory: route modules registered as encapsulated plugins, schemas on every
// route, one error shape. Tests build it with `buildApp` (through test/helpers/app.ts, which adds the
// harness's plugins) and use `inject`.
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { AppContext } from './context.js';
import { HttpError, documentErrors, installErrorHandler } from './errors.js';
import { healthRoutes } from './routes/health.js';
import { clusterRoutes } from './routes/clusters.js';
import { provisionRoutes } from './routes/provision.js';
import { upgradeRoutes } from './routes/upgrade.js';
import { workflowRoutes } from './routes/workflows.js';
import { runRoutes } from './routes/runs.js';
import { parkedRunCounts } from './runs.js';
import { installMetrics } from './metrics.js';
import { secretRoutes } from './routes/secrets.js';
import { backupRoutes } from './routes/backups.js';
import { drRoutes } from './routes/dr.js';
import { controlPlaneRoutes } from './routes/control-plane.js';
import { driftRoutes } from './routes/drift.js';
import { scheduleRoutes } from './routes/schedules.js';
import { codecRoutes } from './routes/codec.js';
import type { PayloadCodec } from '@temporalio/common';
import rateLimit from '@fastify/rate-limit';
import { codecAuthorizer, installAuth, type AuthConfig } from './auth.js';
import { bodiesWithoutCoercion } from './validation.js';

export interface BuildAppOptions extends AppContext {
  logger?: FastifyServerOptions['loggerInstance'] | boolean;
  bodyLimit?: number;
  /** Serves Temporal's remote codec protocol at /codec for Temporal Web. */
  codec?: PayloadCodec;
  /** Temporal Web origins allowed to call /codec from a browser. */
  codecOrigins?: string[];
  /** Bearer-token auth. The processes always pass it (api/server.ts); tests of single routes may omit it. */
  auth?: AuthConfig;
  /** Mutating requests per identity per minute. */
  mutationRateLimit?: number;
  /** Worker Prometheus endpoints folded into /metrics. */
  workerMetricsUrls?: string[];
  /**
   * Plugins registered on the root before auth and the routes (the test harness's response audit,
   * test/helpers/app.ts). One that hooks every route must skip encapsulation, as fastify-plugin does.
   */
  plugins?: FastifyPluginAsync[];
}

export async function buildApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const ctx: AppContext = { client: opts.client, settings: opts.settings, clusters: opts.clusters };
  const app = Fastify({
    ...(typeof opts.logger === 'object' ? { loggerInstance: opts.logger } : { logger: opts.logger ?? false }),
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    ajv: { customOptions: { allErrors: false, removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    schemaController: { compilersFactory: { buildValidator: bodiesWithoutCoercion() } },
  }) as unknown as FastifyInstance;
  installErrorHandler(app);
  for (const plugin of opts.plugins ?? []) await app.register(plugin);
  if (opts.auth) installAuth(app, opts.auth);
  const unlimited = (url: string) => url === '/healthz' || url === '/readyz';
  app.addHook('onRoute', (route) => {
    if (!unlimited(route.url)) documentErrors(route, [429]);
  });
  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler', // after auth, so the key is the caller's identity
    timeWindow: '1 minute',
    max: (req) =>
      req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS' ? 1200 : (opts.mutationRateLimit ?? 60),
    keyGenerator: (req) => req.identity?.name ?? req.ip,
    allowList: (req) => unlimited(req.url),
    errorResponseBuilder: (_req, ctx) =>
      new HttpError(429, 'TooManyRequests', `rate limit: ${ctx.max} requests per ${ctx.after}`),
  });
  // The OpenAPI document is generated from the route schemas: they are the contract.
  await app.register(swagger, {
    openapi: {
      // 3.1: its schemas are JSON Schema, so route schemas (propertyNames, const, type arrays) document as written.
      openapi: '3.1.0',
      info: {
        title: 'pedro-ops orchestrator',
        version: '0.1.0',
        description: 'Starts and queries the durable workflows that build and operate homelab clusters.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await installMetrics(app, { workerMetricsUrls: opts.workerMetricsUrls, parkedRuns: () => parkedRunCounts(ctx) });
  await app.register(healthRoutes(ctx));
  await app.register(clusterRoutes(ctx));
  await app.register(provisionRoutes(ctx));
  await app.register(upgradeRoutes(ctx));
  await app.register(workflowRoutes(ctx));
  await app.register(runRoutes(ctx));
  await app.register(secretRoutes(ctx));
  await app.register(backupRoutes(ctx));
  await app.register(drRoutes(ctx));
  await app.register(controlPlaneRoutes(ctx));
  await app.register(driftRoutes(ctx));
  await app.register(scheduleRoutes(ctx));
  if (opts.codec) {
    await app.register(codecRoutes, {
      codec: opts.codec,
      authorize: opts.auth ? codecAuthorizer(opts.auth) : undefined,
      allowedOrigins: opts.codecOrigins ?? [],
      namespaces: [opts.settings.namespace],
    });
  }
  return app;
}
