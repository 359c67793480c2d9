// OpenAPI (issue 7 item 3): /openapi.json is a valid OpenAPI 3 document, lists every route the app
// actually serves (compared with Fastify's own route table), and documents each operation: summary,
// tags, auth, and the error responses that can happen there, all in the one error shape.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helpers/app.js';
import { hashToken, parseTokens, PUBLIC_PATHS } from '../../api/auth.js';
import { ClusterRegistry } from '../../config/registry.js';
import { temporalSettings } from '../../worker/settings.js';
import { testCodec, testTemporal, type TestTemporal } from '../helpers/temporal.js';

type Op = {
  summary?: string;
  tags?: string[];
  parameters?: { in: string }[];
  requestBody?: unknown;
  security?: unknown[];
  responses: Record<string, { content?: Record<string, { schema?: { required?: string[] } }> }>;
};
type Doc = { openapi: string; info: { title: string }; paths: Record<string, Record<string, Op>> };

let t: TestTemporal;
let app: FastifyInstance;
let doc: Doc;

beforeAll(async () => {
  t = await testTemporal({ taskQueuePrefix: 'api-openapi' });
  app = await buildTestApp({
    client: t.client,
    settings: { ...temporalSettings({}), address: t.address, taskQueue: t.taskQueue },
    clusters: new ClusterRegistry(),
    auth: { tokens: parseTokens(`ops:operator:${hashToken('openapi-test-token-0123456789')}`) },
    codec: testCodec,
  });
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  expect(res.statusCode).toBe(200);
  doc = res.json();
});
afterAll(async () => {
  await app?.close();
  await t?.close();
});

/** "METHOD /path/{param}" for every route in Fastify's route tree (printRoutes, one segment per node). */
function servedRoutes(tree: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(.+?)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1].length / 4;
    stack.length = depth;
    stack.push(m[2]);
    const path = stack.join('').replace(/:(\w+)/g, '{$1}');
    for (const method of (m[3] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean))
      out.push(`${method} ${path}`);
  }
  return out;
}

const strictAjv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true });
addFormats.default(strictAjv);
strictAjv.addVocabulary(['example', 'discriminator', 'xml', 'externalDocs']);
// Many operations share schemas (ErrorBody above all): compile each distinct one once.
const schemaErrors = new Map<string, string | undefined>();

/**
 * swagger-parser checks the document against the OpenAPI 3.1 schema, which leaves Schema Objects
 * (JSON Schema 2020-12) and path templates unchecked — so those are checked here too.
 */
async function problems(d: Doc): Promise<string[]> {
  const out: string[] = [];
  try {
    await SwaggerParser.validate(structuredClone(d) as never); // validate() dereferences in place
  } catch (err) {
    out.push(`swagger-parser: ${(err as Error).message.slice(0, 2000)}`);
  }
  const check = (schema: unknown, where: string) => {
    const key = JSON.stringify(schema);
    if (!schemaErrors.has(key)) {
      try {
        strictAjv.compile(schema as object);
        schemaErrors.set(key, undefined);
      } catch (err) {
        schemaErrors.set(key, (err as Error).message);
      }
    }
    const error = schemaErrors.get(key);
    if (error) out.push(`${where}: ${error}`);
  };
  for (const [path, item] of Object.entries(d.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const where = `${method.toUpperCase()} ${path}`;
      const declared = new Set(
        (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => (p as { name?: string }).name),
      );
      for (const [, name] of path.matchAll(/\{(\w+)\}/g))
        if (!declared.has(name)) out.push(`${where}: path param ${name} not declared`);
      (op.parameters ?? []).forEach((p, i) =>
        check((p as { schema?: unknown }).schema ?? {}, `${where} parameters[${i}]`),
      );
      for (const [ct, media] of Object.entries(
        (op.requestBody as { content?: Record<string, { schema?: unknown }> } | undefined)?.content ?? {},
      ))
        check(media.schema ?? {}, `${where} requestBody ${ct}`);
      for (const [code, res] of Object.entries(op.responses ?? {}))
        for (const [ct, media] of Object.entries(res.content ?? {}))
          check(media.schema ?? {}, `${where} response ${code} ${ct}`);
    }
  }
  return out;
}

const isPublic = (path: string) => PUBLIC_PATHS.some((p) => path === p || path.startsWith(`${p}/`));
const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
  );

describe('OpenAPI document', () => {
  it('validates as OpenAPI 3.1: swagger-parser, declared path params, every schema valid JSON Schema 2020-12', async () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.info.title).toBe('pedro-ops orchestrator');
    expect(await problems(doc)).toEqual([]);
  });

  it('broken documents are refused (the checks really check)', async () => {
    type Broken = {
      info: { title?: string };
      paths: Record<string, Record<string, { parameters: { in: string; schema?: unknown }[] }>>;
    };
    const breakages: ((d: Broken) => void)[] = [
      (d) => delete d.info.title,
      (d) => (d.paths['/clusters/{name}'].get.parameters[0].in = 'body'),
      (d) => (d.paths['/clusters/{name}'].get.parameters = []),
      (d) => (d.paths['/clusters/{name}'].get.parameters[0].schema = { type: 'strin' }),
    ];
    for (const breakIt of breakages) {
      const broken = structuredClone(doc) as unknown as Broken;
      breakIt(broken);
      expect(await problems(broken as unknown as Doc), breakIt.toString()).not.toEqual([]);
    }
  });

  it('lists every route Fastify serves, and only those', () => {
    const served = servedRoutes(app.printRoutes({ commonPrefix: false }));
    expect(served).toContain('POST /clusters/{name}/secrets/rotate');
    // Hidden on purpose: HEAD twins of GETs, CORS preflights, the document itself and Swagger UI's files.
    const hidden = (r: string) =>
      r.startsWith('HEAD ') ||
      r.startsWith('OPTIONS /codec/') ||
      r === 'GET /openapi.json' ||
      /^GET \/docs(\/|$)/.test(r);
    const documented = new Set(operations().map((o) => `${o.method} ${o.path}`));
    expect(served.filter((r) => !hidden(r) && !documented.has(r))).toEqual([]);
    for (const o of operations()) {
      const url = o.path.replace(/\{(\w+)\}/g, ':$1');
      expect(app.hasRoute({ method: o.method, url }), `${o.method} ${o.path} is documented but not served`).toBe(true);
    }
    expect(documented.size).toBeGreaterThanOrEqual(15);
    for (const core of [
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /clusters',
      'GET /clusters/{name}',
      'GET /workflows/{id}',
      'GET /workflows/{id}/events',
      'POST /codec/decode',
      'POST /codec/encode',
    ]) {
      expect(documented).toContain(core);
    }
  });

  it('every operation has a summary, tags, its auth and its error responses in the one error shape', () => {
    const gaps: string[] = [];
    for (const { path, method, op } of operations()) {
      const id = `${method} ${path}`;
      if (!op.summary?.trim()) gaps.push(`${id}: no summary`);
      if (!op.tags?.length) gaps.push(`${id}: no tags`);
      const codes = Object.keys(op.responses);
      const want = ['500'];
      const publicRoute = isPublic(path) && !path.startsWith('/codec/');
      if (!publicRoute) want.push('401', '429');
      if (method !== 'GET' && !publicRoute) want.push('403');
      if (path.startsWith('/codec/')) want.push('403');
      if (path.includes('{')) want.push('400', '404');
      if (op.requestBody) want.push('400', '413', '415');
      for (const c of want) if (!codes.includes(c)) gaps.push(`${id}: response ${c} not documented`);
      if (!codes.some((c) => /^2\d\d$/.test(c))) gaps.push(`${id}: no success response`);
      for (const c of codes.filter((x) => Number(x) >= 400 && !(path === '/readyz' && x === '503'))) {
        const required = op.responses[c].content?.['application/json']?.schema?.required ?? [];
        if (!required.includes('error') || !required.includes('message'))
          gaps.push(`${id}: response ${c} is not the error shape`);
      }
      const bearer = JSON.stringify(op.security ?? null) === JSON.stringify([{ bearer: [] }]);
      if (publicRoute === bearer)
        gaps.push(`${id}: security ${JSON.stringify(op.security)} does not match the route's auth`);
    }
    expect(gaps).toEqual([]);
  });

  it('the documented 401 is what an unauthenticated caller gets, in the documented shape', async () => {
    const res = await app.inject({ method: 'GET', url: '/clusters' });
    expect(res.statusCode).toBe(401);
    expect(doc.paths['/clusters'].get.responses['401']).toBeDefined();
    expect(res.json()).toMatchObject({ error: 'Unauthorized', message: expect.any(String) });
  });
});
