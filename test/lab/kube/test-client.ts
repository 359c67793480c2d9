// Test helpers: real @kubernetes/client-node clients (and a raw HTTPS caller) for the lab's apiserver.
import { request } from 'node:https';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, PolicyV1Api, KubeConfig } from '@kubernetes/client-node';
import type { KubeDouble } from './index.js';

export function clients(kd: Pick<KubeDouble, 'url' | 'caPem' | 'token'>, token = kd.token) {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'lab', server: kd.url, caData: Buffer.from(kd.caPem).toString('base64') }],
    users: [{ name: 'lab', token }],
    contexts: [{ name: 'lab', cluster: 'lab', user: 'lab' }],
    currentContext: 'lab',
  });
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    batch: kc.makeApiClient(BatchV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    policy: kc.makeApiClient(PolicyV1Api),
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json(): any;
}

/** A plain HTTPS call trusting the double's CA; token undefined = no Authorization header. */
export function raw(
  kd: Pick<KubeDouble, 'url' | 'caPem'>,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; contentType?: string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const payload =
      opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const req = request(new URL(path, kd.url), { method, ca: kd.caPem, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          json: () => JSON.parse(body.toString('utf8')),
        });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** The Status body of a client-node ApiException (string or parsed, depending on the call). */
export function statusOf(e: unknown): { code: number; reason: string; message: string; details?: any } {
  const body = (e as { body?: unknown }).body;
  return typeof body === 'string' ? JSON.parse(body) : (body as any);
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** kubectl's rollout-status rule for Deployments. */
export function deploymentDone(d: any): boolean {
  const s = d.status ?? {};
  const want = d.spec?.replicas ?? 1;
  if ((s.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)) return false;
  if ((s.conditions ?? []).some((c: any) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded'))
    return false;
  return (
    (s.updatedReplicas ?? 0) === want &&
    (s.replicas ?? 0) === (s.updatedReplicas ?? 0) &&
    (s.availableReplicas ?? 0) === (s.updatedReplicas ?? 0)
  );
}

/** What the k3s stand-in sends when `k3s server` starts, straight to the lab's supervisor. */
export const registerServer = (
  kd: Pick<KubeDouble, 'supervisorUrl' | 'caPem' | 'token'>,
  node: string,
  extra: object = {},
) =>
  raw({ url: kd.supervisorUrl, caPem: kd.caPem }, 'POST', '/lab/k3s/server', {
    token: kd.token,
    body: {
      node,
      version: 'v1.31.4+k3s1',
      token: 'cluster-secret',
      nodeIp: '127.0.0.2',
      tlsSans: [],
      clusterInit: true,
      disable: ['traefik'],
      args: [],
      ...extra,
    },
  });
