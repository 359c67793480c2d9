// The lab controllers' client for the real kube-apiserver: JSON over HTTPS with a bearer token, and
// watches that resume from the last resourceVersion and relist after 410 Gone, as client-go's
// reflector does (k8s.io/client-go/tools/cache/reflector.go). Kept apart from the orchestrator's
// client on purpose: the lab must not share code paths with the code it tests.
import { Agent, request } from 'node:https';

export interface KObj {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
    finalizers?: string[];
    deletionTimestamp?: string;
    creationTimestamp?: string;
    [k: string]: unknown;
  };
  spec?: any;
  status?: any;
  [k: string]: any;
}

export interface Reply {
  status: number;
  body: any;
}

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: KObj };

export class LabApi {
  private readonly agent: Agent;
  private readonly watches = new Set<{ stop(): void }>();

  constructor(
    readonly url: string,
    readonly caPem: string,
    readonly token: string,
  ) {
    this.agent = new Agent({ keepAlive: true, ca: caPem, maxSockets: 16 });
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
      if (payload !== undefined) headers['content-type'] = contentType;
      const req = request(new URL(path, this.url), { method, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // plain text (/readyz, logs)
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Throws on a non-2xx answer, with the Status message. */
  async must(method: string, path: string, body?: unknown, contentType?: string): Promise<any> {
    const r = await this.request(method, path, body, contentType);
    if (r.status >= 200 && r.status < 300) return r.body;
    throw new ApiError(r.status, `${method} ${path}: ${r.status} ${r.body?.message ?? JSON.stringify(r.body)}`);
  }

  async get(path: string): Promise<KObj | undefined> {
    const r = await this.request('GET', path);
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw new ApiError(r.status, `GET ${path}: ${r.status} ${r.body?.message ?? ''}`);
    return r.body as KObj;
  }

  async list(path: string): Promise<KObj[]> {
    const r = await this.request('GET', path);
    if (r.status === 404) return [];
    if (r.status >= 300) throw new ApiError(r.status, `GET ${path}: ${r.status} ${r.body?.message ?? ''}`);
    return (r.body?.items ?? []) as KObj[];
  }

  /** Create, or 409 → leave as is; returns whether it was created. */
  async createIfAbsent(path: string, obj: unknown): Promise<boolean> {
    const r = await this.request('POST', path, obj);
    if (r.status === 409) return false;
    if (r.status >= 300) throw new ApiError(r.status, `POST ${path}: ${r.status} ${r.body?.message ?? ''}`);
    return true;
  }

  mergePatch(path: string, patch: unknown): Promise<any> {
    return this.must('PATCH', path, patch, 'application/merge-patch+json');
  }

  /** Deletes; a missing object is fine. */
  async delete(path: string, propagationPolicy: 'Background' | 'Foreground' | 'Orphan' = 'Background'): Promise<void> {
    // As a query parameter, not a DeleteOptions body: an apiserver that answers 404 without reading a
    // body leaves it on a kept-alive connection, and the next request there gets a bare 400.
    const r = await this.request(
      'DELETE',
      `${path}${path.includes('?') ? '&' : '?'}propagationPolicy=${propagationPolicy}`,
    );
    if (r.status >= 300 && r.status !== 404) throw new ApiError(r.status, `DELETE ${path}: ${r.status}`);
  }

  /**
   * List then watch `collection` (e.g. /apis/apps/v1/deployments), calling onEvent for every object
   * (the initial list as ADDED). Reconnects from the last resourceVersion; relists on 410 Gone.
   */
  watch(collection: string, onEvent: (e: WatchEvent) => void | Promise<void>): { stop(): void } {
    let stopped = false;
    let current: { destroy(): void } | undefined;
    const handle = {
      stop: () => {
        stopped = true;
        current?.destroy();
        this.watches.delete(handle);
      },
    };
    this.watches.add(handle);
    const sep = collection.includes('?') ? '&' : '?';
    const loop = async () => {
      let rv: string | undefined;
      while (!stopped) {
        try {
          if (!rv) {
            const r = await this.request('GET', collection);
            if (r.status !== 200) throw new Error(`list ${collection}: ${r.status}`);
            rv = r.body.metadata?.resourceVersion;
            for (const o of r.body.items ?? []) await onEvent({ type: 'ADDED', object: o });
          }
          rv = await new Promise<string | undefined>((resolve, reject) => {
            const path = `${collection}${sep}watch=true&allowWatchBookmarks=true&resourceVersion=${rv}&timeoutSeconds=300`;
            const req = request(
              new URL(path, this.url),
              { method: 'GET', agent: this.agent, headers: { authorization: `Bearer ${this.token}` } },
              (res) => {
                if (res.statusCode === 410) return resolve(undefined);
                if (res.statusCode !== 200) {
                  res.resume();
                  return reject(new Error(`watch ${collection}: ${res.statusCode}`));
                }
                let buf = '';
                let last = rv;
                let chain = Promise.resolve();
                res.setEncoding('utf8');
                res.on('data', (chunk: string) => {
                  buf += chunk;
                  let i: number;
                  while ((i = buf.indexOf('\n')) >= 0) {
                    const line = buf.slice(0, i);
                    buf = buf.slice(i + 1);
                    if (!line.trim()) continue;
                    const e = JSON.parse(line) as { type: string; object: KObj };
                    if (e.type === 'ERROR') {
                      // 410 Expired inside the stream: relist.
                      last = undefined;
                      res.destroy();
                      return;
                    }
                    last = e.object.metadata?.resourceVersion ?? last;
                    if (e.type === 'BOOKMARK') continue;
                    chain = chain.then(() => onEvent(e as WatchEvent)).catch(() => {});
                  }
                });
                const done = () => void chain.then(() => resolve(last));
                res.on('end', done);
                res.on('close', done);
                res.on('error', done);
              },
            );
            current = req;
            req.on('error', (err) => (stopped ? resolve(rv) : reject(err)));
            req.end();
          });
        } catch {
          if (stopped) return;
          await new Promise((r) => setTimeout(r, 200)); // apiserver down or restarting
        }
      }
    };
    void loop();
    return handle;
  }

  close(): void {
    for (const w of [...this.watches]) w.stop();
    this.agent.destroy();
  }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** REST path of an object or a collection. */
export function pathOf(apiVersion: string, plural: string, namespace?: string, name?: string): string {
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = namespace ? `/namespaces/${namespace}` : '';
  return `${base}${ns}/${plural}${name ? `/${name}` : ''}`;
}
