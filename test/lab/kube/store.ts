// The object store: the apiserver's registry semantics (uid, global resourceVersion, generation,
// status subresource, namespace lifecycle, owner-reference garbage collection) and a change feed
// the simulated controllers and watches subscribe to.
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { applyBuiltinDefaults, validateBuiltin } from './builtins.js';
import type { CrdValidator } from './crd.js';
import {
  alreadyExists,
  badRequest,
  conflict,
  forbiddenTerminating,
  invalid,
  namespaceNotFound,
  notFound,
} from './errors.js';
import { apiVersionOf, type Registry, type ResourceType } from './resources.js';
import { clone, randSuffix, timestamp, type KObj, type Timers } from './util.js';

export type Source = 'api' | 'controller';
export interface StoreEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  rt: ResourceType;
  obj: KObj;
  old?: KObj;
  source: Source;
}

export interface UpdateOptions {
  source: Source;
  subresource?: 'status';
}

const key = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`;

export class Store {
  private rv = 100;
  private readonly data = new Map<ResourceType, Map<string, KObj>>();
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  namespaceTerminateMs = 150;

  constructor(
    readonly registry: Registry,
    private readonly crds: CrdValidator,
    private readonly timers: Timers,
  ) {}

  resourceVersion(): string {
    return String(this.rv);
  }

  on(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private bucket(rt: ResourceType): Map<string, KObj> {
    let b = this.data.get(rt);
    if (!b) this.data.set(rt, (b = new Map()));
    return b;
  }

  private emit(e: StoreEvent): void {
    for (const l of [...this.listeners]) l({ ...e, obj: clone(e.obj), old: e.old && clone(e.old) });
  }

  get(rt: ResourceType, ns: string | undefined, name: string): KObj | undefined {
    const o = this.bucket(rt).get(key(rt.namespaced ? ns : undefined, name));
    return o && clone(o);
  }

  /** Sorted by namespace then name, like etcd's key order. */
  list(rt: ResourceType, ns?: string): KObj[] {
    return [...this.bucket(rt).entries()]
      .filter(([, o]) => !ns || !rt.namespaced || o.metadata.namespace === ns)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => clone(o));
  }

  lookup(apiVersion: string, kind: string, ns: string | undefined, name: string): KObj | undefined {
    const rt = this.registry.byKind(apiVersion, kind);
    return rt && this.get(rt, ns, name);
  }

  private checkNamespace(rt: ResourceType, ns: string | undefined, name: string): void {
    if (!rt.namespaced) return;
    const nsObj = this.bucket(this.registry.must('v1', 'Namespace')).get(key(undefined, ns!));
    if (!nsObj) throw namespaceNotFound(ns!);
    if (nsObj.status?.phase === 'Terminating') throw forbiddenTerminating(rt, name, ns!);
  }

  private prepare(rt: ResourceType, obj: KObj, source: Source, old?: KObj): void {
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    if (rt.custom) {
      if (source === 'api') this.crds.check(rt, obj);
    } else {
      applyBuiltinDefaults(rt, obj, old);
      if (source === 'api') validateBuiltin(rt, obj, old);
    }
  }

  create(rt: ResourceType, ns: string | undefined, input: KObj, source: Source): KObj {
    const obj = clone(input);
    obj.metadata ??= { name: '' };
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randSuffix()}`;
    if (!meta.name)
      throw invalid(rt, '', [
        {
          field: 'metadata.name',
          reason: 'FieldValueRequired',
          message: 'Required value: name or generateName is required',
        },
      ]);
    if (rt.namespaced) {
      if (meta.namespace && meta.namespace !== ns)
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      meta.namespace = ns;
    } else delete meta.namespace;
    this.checkNamespace(rt, ns, meta.name);
    const b = this.bucket(rt);
    if (b.has(key(meta.namespace, meta.name))) throw alreadyExists(rt, meta.name);
    if (source === 'api' && rt.statusSubresource && rt.kind !== 'Namespace') delete obj.status;
    for (const f of ['uid', 'resourceVersion', 'deletionTimestamp', 'managedFields', 'selfLink']) delete meta[f];
    meta.uid = randomUUID();
    meta.creationTimestamp = timestamp();
    this.prepare(rt, obj, source);
    if (hasGeneration(rt)) meta.generation = 1;
    else delete meta.generation;
    meta.resourceVersion = String(++this.rv);
    b.set(key(meta.namespace, meta.name), obj);
    this.emit({ type: 'ADDED', rt, obj, source });
    return clone(obj);
  }

  /** Replaces the stored object; a resourceVersion in the input is an optimistic-lock precondition. */
  update(rt: ResourceType, ns: string | undefined, name: string, input: KObj, opts: UpdateOptions): KObj {
    const b = this.bucket(rt);
    const k = key(rt.namespaced ? ns : undefined, name);
    const old = b.get(k);
    if (!old) throw notFound(rt, name);
    const inRv = input.metadata?.resourceVersion;
    if (inRv && inRv !== old.metadata.resourceVersion) throw conflict(rt, name);
    let obj: KObj;
    if (opts.subresource === 'status') {
      obj = clone(old);
      obj.status = clone(input.status);
    } else {
      obj = clone(input);
      obj.metadata ??= { name };
      if (obj.metadata.name && obj.metadata.name !== name)
        throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
      if (rt.statusSubresource && opts.source === 'api') obj.status = clone(old.status);
      if (obj.status === undefined) delete obj.status;
    }
    const meta = obj.metadata;
    for (const f of ['name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp', 'generation'] as const) {
      if (old.metadata[f] === undefined) delete meta[f];
      else (meta as Record<string, unknown>)[f] = old.metadata[f];
    }
    this.prepare(rt, obj, opts.source, old);
    if (hasGeneration(rt) && specChanged(rt, old, obj)) meta.generation = (old.metadata.generation ?? 0) + 1;
    meta.resourceVersion = old.metadata.resourceVersion;
    // A no-op write keeps the resourceVersion and notifies nobody, as on a real apiserver.
    if (isDeepStrictEqual(stripManaged(obj), stripManaged(old))) return clone(old);
    meta.resourceVersion = String(++this.rv);
    b.set(k, obj);
    this.emit({ type: 'MODIFIED', rt, obj, old, source: opts.source });
    return clone(obj);
  }

  /** Deletes (namespaces: Terminating first), cascading to objects owned through ownerReferences. */
  delete(rt: ResourceType, ns: string | undefined, name: string, source: Source): KObj {
    const b = this.bucket(rt);
    const k = key(rt.namespaced ? ns : undefined, name);
    const old = b.get(k);
    if (!old) throw notFound(rt, name);
    if (rt.kind === 'Namespace') return this.terminateNamespace(rt, old, source);
    b.delete(k);
    this.rv++;
    const gone = { ...clone(old), metadata: { ...clone(old.metadata), resourceVersion: String(this.rv) } };
    this.emit({ type: 'DELETED', rt, obj: gone, source });
    this.collectOwned(old.metadata.uid!, ns);
    return gone;
  }

  private collectOwned(uid: string, ns: string | undefined): void {
    for (const [rt, b] of this.data) {
      for (const o of [...b.values()]) {
        if (o.metadata.namespace === ns && o.metadata.ownerReferences?.some((r) => r.uid === uid)) {
          this.delete(rt, o.metadata.namespace, o.metadata.name, 'controller');
        }
      }
    }
  }

  private terminateNamespace(rt: ResourceType, old: KObj, source: Source): KObj {
    const ns = old.metadata.name;
    if (old.status?.phase === 'Terminating') return clone(old);
    const obj = clone(old);
    obj.metadata.deletionTimestamp = timestamp();
    obj.status = { phase: 'Terminating' };
    obj.metadata.resourceVersion = String(++this.rv);
    this.bucket(rt).set(key(undefined, ns), obj);
    this.emit({ type: 'MODIFIED', rt, obj, old, source });
    // The namespace controller empties the namespace, then the finalizer lets it go.
    this.timers.after(this.namespaceTerminateMs / 2, () => {
      for (const [t, b] of this.data) {
        if (!t.namespaced) continue;
        for (const o of [...b.values()])
          if (o.metadata.namespace === ns && b.has(key(ns, o.metadata.name)))
            this.delete(t, ns, o.metadata.name, 'controller');
      }
      this.timers.after(this.namespaceTerminateMs / 2, () => {
        if (this.bucket(rt).get(key(undefined, ns))?.metadata.uid !== obj.metadata.uid) return;
        this.bucket(rt).delete(key(undefined, ns));
        this.rv++;
        this.emit({
          type: 'DELETED',
          rt,
          obj: { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } },
          source: 'controller',
        });
      });
    });
    return clone(obj);
  }

  /** All namespaced objects (Events and Pods aside) in the given namespaces, for Velero. */
  snapshot(namespaces: string[] | undefined): KObj[] {
    const out: KObj[] = [];
    const all = !namespaces || namespaces.length === 0 || namespaces.includes('*');
    for (const [rt, b] of this.data) {
      if (rt.kind === 'Event') continue;
      for (const o of b.values()) {
        if (
          rt.kind === 'Namespace'
            ? all || namespaces!.includes(o.metadata.name)
            : rt.namespaced && (all || namespaces!.includes(o.metadata.namespace!))
        )
          out.push(clone(o));
      }
    }
    return out;
  }
}

const hasGeneration = (rt: ResourceType) =>
  rt.custom || ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'].includes(rt.kind);

function specChanged(rt: ResourceType, a: KObj, b: KObj): boolean {
  if (rt.custom && !rt.statusSubresource) {
    const strip = ({ metadata: _m, ...rest }: KObj) => rest;
    return !isDeepStrictEqual(strip(a), strip(b));
  }
  return !isDeepStrictEqual(a.spec, b.spec);
}

const stripManaged = (o: KObj) => ({ ...o, metadata: { ...o.metadata, managedFields: undefined } });
