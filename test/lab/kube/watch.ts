// `?watch=true` streams: newline-delimited {"type","object"} events, replaying from a short
// history when the client passes the resourceVersion of its last list (what informers do).
import type { ServerResponse } from 'node:http';
import type { ResourceType } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { Store, StoreEvent } from './store.js';
import type { KObj } from './util.js';

const HISTORY = 2000;

export class Watches {
  private readonly history: StoreEvent[] = [];
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly store: Store) {
    store.on((e) => {
      this.history.push(e);
      if (this.history.length > HISTORY) this.history.shift();
    });
  }

  serve(res: ServerResponse, rt: ResourceType, ns: string | undefined, q: URLSearchParams): void {
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'));
    const matches = (o: KObj) =>
      (!ns || !rt.namespaced || o.metadata.namespace === ns) && labels(o.metadata.labels ?? {}) && fields(o);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    this.open.add(res);
    const send = (type: string, object: KObj) => res.write(`${JSON.stringify({ type, object })}\n`);
    const since = q.get('resourceVersion');
    if (!since || since === '0') {
      for (const o of this.store.list(rt, ns)) if (matches(o)) send('ADDED', o);
    } else {
      for (const e of this.history) {
        if (e.rt === rt && Number(e.obj.metadata.resourceVersion) > Number(since) && matches(e.obj))
          send(e.type, e.obj);
      }
    }
    const off = this.store.on((e) => {
      if (e.rt === rt && matches(e.obj)) send(e.type, e.obj);
    });
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      off();
      if (timer) clearTimeout(timer);
      this.open.delete(res);
    });
  }

  closeAll(): void {
    for (const res of this.open) res.end();
    this.open.clear();
  }
}
