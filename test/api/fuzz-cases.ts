// Deterministic generator of malformed and hostile requests for every operation in the OpenAPI
// document. Every generated request is invalid or unauthorised by construction: bodies are checked
// against the documented schema with a strict (non-coercing) Ajv before they are kept, and path
// params other than the cluster name name resources that do not exist, so nothing legitimate can
// happen even where a route would accept more than it documents.
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { scalarText } from '../lab/lab-util.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = Record<string, unknown>;

export interface Operation {
  method: string;
  path: string;
  pathParams: { name: string; schema: Schema }[];
  body?: Schema;
  hasQuerySchema: boolean;
  isPublic: boolean;
  documented: number[];
}

export interface FuzzRequest {
  kind: string;
  op: string;
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  payload?: string | Buffer;
  /** 'reject': must be 4xx; 'safe': must not be 5xx (a read that ignores junk may answer 200). */
  expect: 'reject' | 'safe';
  /** Exact status when the outcome is certain (auth refusals, size limits). */
  status?: number;
}

/** mulberry32: small, fast, and the same sequence on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const HOSTILE_STRINGS = [
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '\u0000',
  'a\u0000b',
  '\u202eevil.exe',
  '\u200f\u05e9\u05dc\u05d5\u05dd',
  '💣🔥👩‍💻',
  'Ⅻ𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  '\u0007\u001b[31mred',
  '\r\nX-Injected: 1',
  '$(reboot)',
  '`id`',
  "'; DROP TABLE t;--",
  '{{7*7}}',
  '${jndi:ldap://127.0.0.1/x}',
  '<script>alert(1)</script>',
  '%00',
  '%2e%2e%2f',
  '\ud800',
  'x'.repeat(5000),
];

const PARAM_ATTACKS = [
  '..%2F..%2Fetc%2Fpasswd',
  '..',
  '.',
  '%2e%2e',
  '%00',
  'a%00b',
  '%2F',
  'a%2F..%2F..%2Fb',
  '%252e%252e%252f',
  'A'.repeat(64),
  'a'.repeat(300),
  'b'.repeat(5000),
  '%E2%80%AE',
  '%F0%9F%92%A3',
  '%D0%BF%D1%80%D0%B8%D0%BC%D0%B5%D1%80',
  '-leading',
  'UPPER',
  'a%20b',
  '%0d%0aX-Injected:%201',
  '%7B%7D',
  '*',
  '%zz',
  '%E0%A4%A',
  'null',
  'undefined',
  '__proto__',
  'constructor',
];

const WRONG_VALUES: Json[] = [
  'str',
  '',
  'true',
  '1',
  12345,
  0,
  1,
  -1,
  1.5,
  1e308,
  true,
  false,
  null,
  [],
  [1],
  ['x', 'x'],
  {},
  { a: 1 },
];

const INVALID_JSON = [
  '{',
  '{"a":}',
  "{'a':1}",
  '{"a":1,}',
  '[1,2',
  'NaN',
  '{"a":1}{"b":2}',
  '{"a":"\\x41"}',
  'undefined',
  '\u0000',
];

export interface Tokens {
  operator: string;
  viewer: string;
}

export function strictAjv(): Ajv {
  const ajv = new Ajv({
    strict: false,
    allErrors: false,
    coerceTypes: false,
    useDefaults: false,
    removeAdditional: false,
  });
  addFormats.default(ajv);
  return ajv;
}

/** Operations from an OpenAPI 3 document. */
export function operations(
  doc: { paths: Record<string, Record<string, Schema>> },
  publicPaths: Set<string>,
): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const params = (op.parameters ?? []) as { in: string; name: string; schema: Schema }[];
      const body = (op.requestBody as { content?: Record<string, { schema?: Schema }> } | undefined)?.content?.[
        'application/json'
      ]?.schema;
      ops.push({
        method: method.toUpperCase(),
        path,
        pathParams: params.filter((p) => p.in === 'path').map((p) => ({ name: p.name, schema: p.schema })),
        body,
        hasQuerySchema: params.some((p) => p.in === 'query'),
        isPublic: publicPaths.has(path),
        documented: Object.keys(op.responses ?? {}).map(Number),
      });
    }
  }
  return ops;
}

/** A value the schema accepts, as plain as possible (best effort; used only as the base for one mutation). */
export function sample(schema: Schema, ajv: Ajv): Json {
  if (Array.isArray(schema.enum)) return schema.enum[0] as Json;
  if (schema.anyOf || schema.oneOf) return sample(((schema.anyOf ?? schema.oneOf) as Schema[])[0], ajv);
  switch (schema.type) {
    case 'object': {
      const out: Record<string, Json> = {};
      for (const k of (schema.required as string[] | undefined) ?? [])
        out[k] = sample(((schema.properties ?? {}) as Record<string, Schema>)[k] ?? {}, ajv);
      return out;
    }
    case 'array':
      return Array.from({ length: Number(schema.minItems ?? 0) }, (_, i) => {
        const v = sample((schema.items ?? {}) as Schema, ajv);
        return typeof v === 'string' ? `${v}${i || ''}` : v;
      });
    case 'integer':
    case 'number':
      return Number(schema.minimum ?? 1);
    case 'boolean':
      return false;
    case 'string': {
      if (schema.format === 'date-time') return '2020-01-01T00:00:00Z';
      const check = ajv.compile(schema);
      const candidates = ['fuzz-absent', 'fuzzabsent', 'a', '30m', 'x'.repeat(Number(schema.minLength ?? 1))];
      return candidates.find((c) => check(c)) ?? 'fuzz-absent';
    }
    default:
      return 'fuzz';
  }
}

const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

/** Every hostile request for the given operations, in a seeded shuffle. */
export function generate(ops: Operation[], tokens: Tokens, seed: number): FuzzRequest[] {
  const rnd = prng(seed);
  const ajv = strictAjv();
  const huge = Buffer.alloc(4.5 * 1024 * 1024, 0x7b); // '{' x 4.5 MiB: over every body limit, including the codec's 4 MiB
  const out: FuzzRequest[] = [];
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const json = { 'content-type': 'application/json' };

  for (const op of ops) {
    const opName = `${op.method} ${op.path}`;
    const mutating = op.method !== 'GET';
    // The cluster resolves (pedro-ops); every other param names something that does not exist.
    const valid: Record<string, string> = {};
    for (const p of op.pathParams)
      valid[p.name] =
        p.name === 'name'
          ? 'pedro-ops'
          : scalarText(sample(p.schema, ajv)).replace('fuzz-absent', `fuzz-absent-${p.name.toLowerCase()}`);
    const urlWith = (vals: Record<string, string>, raw = false) =>
      op.path.replace(/\{(\w+)\}/g, (_, n: string) => (raw ? vals[n] : encodeURIComponent(vals[n])));
    const url = urlWith(valid);
    const validate: ValidateFunction | undefined = op.body ? ajv.compile(op.body) : undefined;
    const base: Json = op.body ? sample(op.body, ajv) : {};
    const add = (r: Omit<FuzzRequest, 'op'>) => out.push({ ...r, op: opName });
    // A JSON body the route must refuse: schema-invalid if documented; otherwise sent only to absent resources.
    const invalidBodies: { kind: string; body: Json }[] = [];
    const keep = (kind: string, body: Json) => {
      if (!validate || !validate(body)) invalidBodies.push({ kind, body });
    };

    if (op.body) {
      const props = (op.body.properties ?? {}) as Record<string, Schema>;
      for (const [field, fs] of Object.entries(props)) {
        for (const v of WRONG_VALUES) keep(`wrong-type:${field}`, { ...(base as object), [field]: v });
        for (const s of HOSTILE_STRINGS) keep(`hostile-string:${field}`, { ...(base as object), [field]: s });
        if (fs.type === 'array')
          keep(`hostile-items:${field}`, { ...(base as object), [field]: [pick(rnd, HOSTILE_STRINGS), 7, null] });
      }
      for (const req of (op.body.required as string[] | undefined) ?? []) {
        const b = { ...(base as Record<string, Json>) };
        delete b[req];
        keep(`missing:${req}`, b);
      }
    }
    for (const k of [
      'extra',
      'dryRun ',
      '',
      '\u202e',
      '💣',
      'constructor',
      'x'.repeat(2000),
      '$where',
      'requestedBy',
      'cluster',
    ]) {
      keep('extra-field', { ...(base as object), [k]: pick(rnd, HOSTILE_STRINGS) });
    }
    for (const b of [[], [base], 'str', 42, null, true]) keep('non-object', b);

    if (mutating) {
      for (const { kind, body } of invalidBodies)
        add({
          kind,
          method: op.method,
          url,
          headers: { ...bearer(tokens.operator), ...json },
          payload: JSON.stringify(body),
          expect: 'reject',
        });
      for (const text of INVALID_JSON)
        add({
          kind: 'invalid-json',
          method: op.method,
          url,
          headers: { ...bearer(tokens.operator), ...json },
          payload: text,
          expect: 'reject',
          status: 400,
        });
      add({
        kind: 'proto-poison',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: '{"__proto__":{"isAdmin":true}}',
        expect: 'reject',
        status: 400,
      });
      add({
        kind: 'proto-poison',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: '{"constructor":{"prototype":{"isAdmin":true}}}',
        expect: 'reject',
        status: 400,
      });
      add({
        kind: 'bom-json',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: `\ufeff${JSON.stringify(invalidBodies[0]?.body ?? { extra: 1 })}`,
        expect: 'reject',
      });
      add({
        kind: 'empty-json',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: '',
        expect: 'reject',
        status: 400,
      });
      const depth = 20_000 + Math.floor(rnd() * 5000);
      add({
        kind: 'deep-nesting',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: `{"x":${'['.repeat(depth)}${']'.repeat(depth)}}`,
        expect: 'reject',
      });
      add({
        kind: 'deep-nesting',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
        expect: 'reject',
      });
      const pad = 'A'.repeat(70 * 1024 + Math.floor(rnd() * 1024));
      add({
        kind: 'huge-body',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: JSON.stringify({ pad }),
        expect: 'reject',
        status: op.path.startsWith('/codec/') ? undefined : 413,
      });
      add({
        kind: 'huge-body',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), ...json },
        payload: huge,
        expect: 'reject',
        status: 413,
      });
      const junk = JSON.stringify(invalidBodies[0]?.body ?? { extra: 1 });
      for (const ct of [
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'text/html',
        'application/octet-stream',
        'application/json; charset=latin1',
        'application/jsonx',
        'image/png',
      ]) {
        add({
          kind: 'content-type',
          method: op.method,
          url,
          headers: { ...bearer(tokens.operator), 'content-type': ct },
          payload: junk,
          expect: 'reject',
        });
      }
      add({
        kind: 'content-type',
        method: op.method,
        url,
        headers: { ...bearer(tokens.operator), 'content-type': 'text/plain' },
        payload: junk,
        expect: 'reject',
      });
      add({
        kind: 'content-type',
        method: op.method,
        url,
        headers: bearer(tokens.operator),
        payload: junk,
        expect: 'reject',
      });
    }

    // Auth: absent, garbage, wrong scheme, duplicated, or too weak — with an invalid body, so even a
    // bypass could not start anything.
    const body = mutating ? JSON.stringify(invalidBodies[0]?.body ?? { extra: 1 }) : undefined;
    const authCases: [string, Record<string, string | string[]>, number | undefined][] = [
      ['none', {}, 401],
      ['empty', { authorization: '' }, 401],
      ['scheme-only', { authorization: 'Bearer' }, 401],
      [
        'garbage',
        { authorization: `Bearer ${pick(rnd, ['x', 'null', 'undefined', '*', '💣', 'a'.repeat(4000)])}` },
        401,
      ],
      ['basic', { authorization: `Basic ${Buffer.from(`ops:${tokens.operator}`).toString('base64')}` }, 401],
      ['token-no-scheme', { authorization: tokens.operator }, 401],
      ['token-plus-junk', { authorization: `Bearer ${tokens.operator} junk` }, 401],
      ['token-prefix', { authorization: `Bearer ${tokens.operator.slice(0, -1)}` }, 401],
      ['duplicate-valid', { authorization: [`Bearer ${tokens.operator}`, `Bearer ${tokens.operator}`] }, 401],
      ['duplicate-mixed', { authorization: [`Bearer ${tokens.viewer}`, `Bearer ${tokens.operator}`] }, 401],
      ['other-header', { 'x-api-key': tokens.operator, cookie: `token=${tokens.operator}` }, 401],
      ['query-token', {}, 401],
    ];
    if (mutating && !op.path.startsWith('/codec/decode'))
      authCases.push(['viewer-on-mutation', bearer(tokens.viewer), 403]);
    for (const [kind, headers, status] of authCases) {
      const u = kind === 'query-token' ? `${url}?access_token=${tokens.operator}&token=${tokens.operator}` : url;
      const expectStatus = op.isPublic ? undefined : op.path.startsWith('/codec/') && status === 403 ? 403 : status;
      add({
        kind: `auth:${kind}`,
        method: op.method,
        url: u,
        headers: { ...headers, ...(body ? json : {}) },
        payload: body,
        expect: op.isPublic ? 'safe' : 'reject',
        status: expectStatus,
      });
    }

    // Path params: traversal, NUL, encodings, length, unicode — each alone, with a valid token.
    for (const p of op.pathParams) {
      for (const attack of PARAM_ATTACKS) {
        add({
          kind: `param:${p.name}`,
          method: op.method,
          url: urlWith({ ...valid, [p.name]: attack }, true),
          headers: { ...bearer(tokens.operator), ...(body ? json : {}) },
          payload: body,
          expect: 'reject',
        });
      }
    }

    const queries = [
      'a=1&a=2',
      '__proto__[x]=1',
      'constructor[prototype][x]=1',
      '%00=%00',
      `q=${'x'.repeat(8000)}`,
      'after=-1',
      'after=abc',
      'after[]=1',
      'dryRun=false',
      '&&&==',
      '%zz=1',
    ];
    for (const q of queries) {
      add({
        kind: 'query-junk',
        method: op.method,
        url: `${url}?${q}`,
        headers: { ...bearer(tokens.operator), ...(body ? json : {}) },
        payload: body,
        expect: mutating || op.hasQuerySchema ? 'reject' : 'safe',
      });
    }
  }

  // Methods no route has, on every documented path.
  const byPath = new Map<string, Operation[]>();
  for (const op of ops) byPath.set(op.path, [...(byPath.get(op.path) ?? []), op]);
  for (const [path, pops] of byPath) {
    const url = path.replace(/\{(\w+)\}/g, (_, n: string) =>
      n === 'name' ? 'pedro-ops' : `fuzz-absent-${n.toLowerCase()}`,
    );
    for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'OPTIONS']) {
      if (pops.some((o) => o.method === m) || (m === 'OPTIONS' && path.startsWith('/codec/'))) continue;
      for (const headers of [{}, bearer(tokens.operator)]) {
        out.push({
          kind: 'bad-method',
          op: `${m} ${path}`,
          method: m,
          url,
          headers: { ...headers, ...json },
          payload: m === 'GET' || m === 'TRACE' ? undefined : '{"extra":1}',
          expect: 'reject',
        });
      }
    }
  }

  // Shuffle so requests of different kinds interleave (state leaks between requests would show).
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
