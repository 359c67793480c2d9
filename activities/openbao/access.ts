// The path from the worker to OpenBAO, as `openbao.access` names it, and node-vault's transport over it.
//
// api-proxy: the Kubernetes API's services/proxy subresource, documented in "Manually constructing
// apiserver proxy URLs" (https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/):
// `<server>/api/v1/namespaces/<ns>/services/<scheme>:<service>:<port>/proxy/<path>`. The apiserver picks
// a ready address of the Service's Endpoints that is a pod's IP (k8s v1.31
// pkg/registry/core/service/storage/storage.go ResourceLocation) and proxies GET/POST/PUT/PATCH/DELETE/
// HEAD/OPTIONS (service/proxy.go proxyMethods: no LIST, so node-vault must send `?list=1`). Its own
// refusals are `kind: Status` bodies ("no endpoints available for service", 503; a dial error, 500),
// which must never be read as OpenBAO's answers (a 503 Status is not "sealed").
// Why not pods/portforward: it needs a kubelet streaming server and a local listener per connection;
// services/proxy is plain HTTP through the same kubeconfig.
//
// url: the address as given, with `caFile` as the CA when it is https.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { ClusterSpec } from '../../config/schema.js';
import { loadKubeConfig } from '../velero/client.js';

export interface OpenBaoAccess {
  /** What node-vault appends `/v1/<path>` to. */
  endpoint: string;
  /** For findings: the path in words, never a credential. */
  describe: string;
  viaApi: boolean;
  agent: http.Agent;
  /** The API's credentials (api-proxy): the apiserver consumes them, OpenBAO never sees them. */
  headers: Record<string, string>;
}

export function openbaoTarget(spec: ClusterSpec): string {
  const a = spec.openbao.access;
  return a.mode === 'api-proxy'
    ? `Service ${spec.openbao.namespace}/${a.service}:${a.port} through the Kubernetes API`
    : spec.openbao.address!;
}

export async function openbaoAccess(spec: ClusterSpec, dataDir: string): Promise<OpenBaoAccess> {
  const a = spec.openbao.access;
  if (a.mode === 'url') {
    const address = spec.openbao.address!;
    const agent = address.startsWith('https:')
      ? new https.Agent(a.caFile ? { ca: readFileSync(a.caFile) } : {})
      : new http.Agent();
    return { endpoint: address, describe: address, viaApi: false, agent, headers: {} };
  }
  const kc = loadKubeConfig(spec, dataDir);
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`the kubeconfig of cluster ${spec.name} names no current cluster`);
  // CA, client certificate or bearer token (exec plugins included), TLS server name and proxy-url: the
  // agent and headers every other API call of this kubeconfig gets (client-node KubeConfig.applyToHTTPSOptions).
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const agent =
    (opts.agent as http.Agent | undefined) ?? new https.Agent({ ca: opts.ca, cert: opts.cert, key: opts.key });
  const headers = Object.fromEntries(
    Object.entries(opts.headers ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]),
  );
  if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  const ns = encodeURIComponent(spec.openbao.namespace);
  return {
    endpoint: `${server.replace(/\/$/, '')}/api/v1/namespaces/${ns}/services/${a.scheme}:${a.service}:${a.port}/proxy`,
    describe: openbaoTarget(spec),
    viaApi: true,
    agent,
    headers,
  };
}

/** The apiserver (not OpenBAO) refused the proxied request: no Service, no endpoints, unreachable pod, RBAC. */
export class AccessPathError extends Error {
  constructor(
    readonly path: string,
    readonly status: number,
    readonly reason: string,
    readonly detail: string,
  ) {
    super(`OpenBAO via ${path}: HTTP ${status}${reason ? ` ${reason}` : ''}: ${detail}`);
    this.name = 'AccessPathError';
  }
}

interface ApiStatus {
  kind: 'Status';
  message?: string;
  reason?: string;
  code?: number;
}
const isApiStatus = (b: unknown): b is ApiStatus =>
  typeof b === 'object' && b !== null && (b as { kind?: unknown }).kind === 'Status' && 'apiVersion' in b;

interface VaultRequest {
  method: string;
  uri: string;
  headers?: Record<string, string>;
  json?: unknown;
}
interface VaultResponse {
  statusCode: number;
  body: unknown;
  request: { path: string };
}

const TIMEOUT_MS = 30_000;

function send(access: OpenBaoAccess, o: VaultRequest): Promise<VaultResponse> {
  const url = new URL(o.uri);
  const payload = o.json !== undefined && typeof o.json === 'object' ? JSON.stringify(o.json) : undefined;
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...o.headers,
    ...access.headers,
    ...(payload !== undefined
      ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
      : {}),
  };
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method, headers, agent: access.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON: an Ingress error page, say; handed on as text
        }
        const statusCode = res.statusCode ?? 0;
        if (access.viaApi && isApiStatus(body))
          return reject(
            new AccessPathError(access.describe, body.code ?? statusCode, body.reason ?? '', body.message ?? text),
          );
        resolve({ statusCode, body, request: { path: url.pathname } });
      });
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${access.describe} in ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** node-vault's `request-promise` hook: its requests go over this access path. */
export function vaultTransport(access: OpenBaoAccess) {
  return { defaults: () => (o: VaultRequest) => send(access, o) };
}
