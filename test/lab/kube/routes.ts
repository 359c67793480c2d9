// REST routing for the paths @kubernetes/client-node 1.4 generates:
//   /api/v1[/namespaces/{ns}]/{plural}[/{name}[/status|log]]
//   /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/status]]
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { discovery, versionInfo } from './discovery.js';
import {
  badRequest,
  KubeError,
  methodNotAllowed,
  notFound,
  notFoundPath,
  unauthorized,
  unsupportedMediaType,
} from './errors.js';
import { jsonPatch, mergePatch, PATCH_TYPES, strategicMergePatch } from './patch.js';
import { apiVersionOf, type ResourceType } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { Store } from './store.js';
import { isObject, type KObj } from './util.js';
import type { Watches } from './watch.js';

export interface Reply {
  status: number;
  body: unknown;
  contentType?: string;
  raw?: Buffer;
  headers?: Record<string, string>;
}

export interface RouteDeps {
  store: Store;
  token: string;
  watches: Watches;
  serverAddress: string;
  writes: Record<string, number>;
  k3sVersion(): string;
  /** Lab-only endpoints (/lab/...); undefined = not handled. */
  lab(method: string, segs: string[], body: unknown, authed: boolean): Reply | undefined;
  podLog(ns: string, name: string): string | undefined;
}

const PUBLIC = new Set(['/healthz', '/livez', '/readyz', '/version']);

export function createHandler(deps: RouteDeps) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let reply: Reply | undefined;
      try {
        reply = route(deps, req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        if (e instanceof KubeError) reply = { status: e.code, body: e.body() };
        else
          reply = {
            status: 500,
            body: new KubeError(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`).body(),
          };
      }
      if (!reply) return; // a watch owns the response now
      const payload =
        reply.raw ?? Buffer.from(typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body));
      res.writeHead(reply.status, {
        'Content-Type': reply.contentType ?? 'application/json',
        'Content-Length': payload.length,
        ...reply.headers,
      });
      res.end(payload);
    });
  };
}

function route(deps: RouteDeps, req: IncomingMessage, res: ServerResponse, rawBody: string): Reply | undefined {
  const url = new URL(req.url ?? '/', 'https://kube.local');
  const method = req.method ?? 'GET';
  const authed = req.headers.authorization === `Bearer ${deps.token}`;
  const segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (segs[0] === 'lab') {
    const r = deps.lab(method, segs, rawBody ? safeJson(rawBody) : undefined, authed);
    if (r) return r;
  }
  if (!authed && !PUBLIC.has(url.pathname)) throw unauthorized();
  if (['/healthz', '/livez', '/readyz'].includes(url.pathname))
    return { status: 200, body: 'ok', contentType: 'text/plain' };
  if (url.pathname === '/version') return { status: 200, body: versionInfo(deps.k3sVersion()) };
  if (method === 'GET') {
    const d = discovery(deps.store.registry, segs, deps.serverAddress);
    if (d) return { status: 200, body: d };
  }
  const target = resolve(deps, segs);
  if (!target) throw notFoundPath();
  const { rt, ns, name, sub } = target;
  const { store } = deps;

  if (rt.kind === 'Pod' && sub === 'log' && method === 'GET') {
    const log = deps.podLog(ns!, name!);
    if (log === undefined) throw notFound(rt, name!);
    return { status: 200, body: log, contentType: 'text/plain' };
  }
  if (sub && (sub !== 'status' || !rt.statusSubresource)) throw notFoundPath();
  if (rt.readOnly && method !== 'GET') throw methodNotAllowed();
  const count = (verb: string) => {
    deps.writes[`${verb}:${rt.kind}`] = (deps.writes[`${verb}:${rt.kind}`] ?? 0) + 1;
  };

  if (!name) {
    if (method === 'GET') {
      if (['true', '1'].includes(url.searchParams.get('watch') ?? '')) {
        deps.watches.serve(res, rt, ns, url.searchParams);
        return undefined;
      }
      return { status: 200, body: listBody(store, rt, ns, url.searchParams) };
    }
    if (method === 'POST') {
      count('create');
      return { status: 201, body: store.create(rt, ns, checkKind(rt, parseBody(rawBody)), 'api') };
    }
    throw methodNotAllowed();
  }
  const subresource = sub === 'status' ? ('status' as const) : undefined;
  switch (method) {
    case 'GET': {
      const o = store.get(rt, ns, name);
      if (!o) throw notFound(rt, name);
      return { status: 200, body: o };
    }
    case 'PUT': {
      count('update');
      const body = checkKind(rt, parseBody(rawBody));
      if (rt.custom && !body.metadata?.resourceVersion) {
        throw new KubeError(
          422,
          'Invalid',
          `${rt.kind}.${rt.group} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`,
          {
            name,
            group: rt.group,
            kind: rt.kind,
            causes: [
              {
                field: 'metadata.resourceVersion',
                reason: 'FieldValueInvalid',
                message: 'Invalid value: 0x0: must be specified for an update',
              },
            ],
          },
        );
      }
      return { status: 200, body: store.update(rt, ns, name, body, { source: 'api', subresource }) };
    }
    case 'PATCH':
      count('patch');
      return patch(store, rt, ns, name, subresource, req.headers['content-type'], rawBody, url.searchParams);
    case 'DELETE': {
      count('delete');
      const gone = store.delete(rt, ns, name, 'api');
      if (rt.kind === 'Namespace') return { status: 200, body: gone };
      const details = { name, ...(rt.group ? { group: rt.group } : {}), kind: rt.plural, uid: gone.metadata.uid };
      return { status: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details } };
    }
    default:
      throw methodNotAllowed();
  }
}

interface Target {
  rt: ResourceType;
  ns?: string;
  name?: string;
  sub?: string;
}

function resolve(deps: RouteDeps, segs: string[]): Target | undefined {
  const reg = deps.store.registry;
  let group: string, version: string, rest: string[];
  if (segs[0] === 'api' && segs[1] === 'v1') {
    group = '';
    version = 'v1';
    rest = segs.slice(2);
  } else if (segs[0] === 'apis' && segs.length >= 4) {
    group = segs[1];
    version = segs[2];
    rest = segs.slice(3);
  } else return undefined;
  let ns: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const t = reg.byPlural(group, version, rest[2]);
    if (t?.namespaced) {
      ns = rest[1];
      rest = rest.slice(2);
    }
  }
  const rt = reg.byPlural(group, version, rest[0]);
  if (!rt || rest.length > 3) return undefined;
  if (rt.namespaced && !ns && rest.length > 1) return undefined;
  return { rt, ns, name: rest[1], sub: rest[2] };
}

function listBody(store: Store, rt: ResourceType, ns: string | undefined, q: URLSearchParams) {
  const labels = parseLabelSelector(q.get('labelSelector'));
  const fields = parseFieldSelector(q.get('fieldSelector'));
  const items = store
    .list(rt, ns)
    .filter((o) => labels(o.metadata.labels ?? {}) && fields(o))
    // Built-in list items carry no kind/apiVersion on a real apiserver; custom resources do.
    .map((o) => {
      if (!rt.custom) {
        delete o.kind;
        delete o.apiVersion;
      }
      return o;
    });
  return {
    kind: `${rt.kind}List`,
    apiVersion: apiVersionOf(rt),
    metadata: { resourceVersion: store.resourceVersion() },
    items,
  };
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function parseBody(raw: string): KObj {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw badRequest(`the body of the request could not be decoded: ${(e as Error).message}`);
  }
  if (!isObject(v)) throw badRequest('the body of the request must be a JSON object');
  return v as KObj;
}

/** The body must be the endpoint's type; custom resources must say so (they are decoded unstructured). */
function checkKind(rt: ResourceType, body: KObj): KObj {
  const av = apiVersionOf(rt);
  if (rt.custom && !body.kind) throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(body).slice(0, 200)}'`);
  if (rt.custom && !body.apiVersion)
    throw badRequest(`Object 'apiVersion' is missing in '${JSON.stringify(body).slice(0, 200)}'`);
  if ((body.kind && body.kind !== rt.kind) || (body.apiVersion && body.apiVersion !== av)) {
    throw badRequest(
      `the API version in the data (${body.apiVersion ?? ''}) does not match the expected API version (${av}), or kind ${body.kind} is not ${rt.kind}`,
    );
  }
  return body;
}

function patch(
  store: Store,
  rt: ResourceType,
  ns: string | undefined,
  name: string,
  subresource: 'status' | undefined,
  contentTypeHeader: string | undefined,
  raw: string,
  q: URLSearchParams,
): Reply {
  const ct = (contentTypeHeader ?? '').split(';')[0].trim().toLowerCase();
  const accepted = rt.custom
    ? [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.apply]
    : [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.strategic, PATCH_TYPES.apply];
  if (!(accepted as string[]).includes(ct)) throw unsupportedMediaType(accepted);
  let body: unknown;
  try {
    body = ct === PATCH_TYPES.apply ? parseYaml(raw) : JSON.parse(raw);
  } catch (e) {
    throw badRequest(`error decoding patch: ${(e as Error).message}`);
  }
  const existing = store.get(rt, ns, name);
  if (ct === PATCH_TYPES.apply) {
    if (!q.get('fieldManager')) {
      throw new KubeError(
        422,
        'Invalid',
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
        {
          group: 'meta.k8s.io',
          kind: 'PatchOptions',
          causes: [
            {
              field: 'fieldManager',
              reason: 'FieldValueRequired',
              message: 'Required value: is required for apply patch',
            },
          ],
        },
      );
    }
    if (!isObject(body)) throw badRequest('error decoding YAML: apply patch must be an object');
    const obj = checkKind(rt, body as KObj);
    if (obj.metadata?.name && obj.metadata.name !== name)
      throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    if (!existing)
      return { status: 201, body: store.create(rt, ns, { ...obj, metadata: { ...obj.metadata, name } }, 'api') };
    const merged = (rt.custom ? mergePatch(existing, obj) : strategicMergePatch(existing, obj)) as KObj;
    return { status: 200, body: store.update(rt, ns, name, merged, { source: 'api', subresource }) };
  }
  if (!existing) throw notFound(rt, name);
  let patched: unknown;
  if (ct === PATCH_TYPES.json) patched = jsonPatch(existing, body);
  else {
    if (!isObject(body)) throw badRequest('the patch body must be a JSON object');
    patched = ct === PATCH_TYPES.merge ? mergePatch(existing, body) : strategicMergePatch(existing, body);
  }
  if (!isObject(patched)) throw badRequest('the patch produced a non-object');
  return { status: 200, body: store.update(rt, ns, name, patched as KObj, { source: 'api', subresource }) };
}
