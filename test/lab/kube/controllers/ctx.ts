// What the simulated controllers share: the store, timers, delays, fault switches and counters.
import type { WorkloadRef } from '../../../../config/schema.js';
import { KubeError } from '../errors.js';
import type { ResourceType } from '../resources.js';
import type { Store } from '../store.js';
import { timestamp, type KObj, type Timers } from '../util.js';

export interface Delays {
  readyDelayMs: number;
  rolloutStepMs: number;
  veleroStepMs: number;
  /** HelmChart install Jobs are keyed by chart name; other Jobs by their own name. */
  jobDelayMs(name: string): number;
}

export interface Faults {
  failHelmChart: Map<string, string>;
  stallHelmChart: Set<string>;
  stallRollout: Set<string>; // ns/Kind/name
  bslUnavailable: Set<string>;
  backupPartiallyFailed: { next: boolean; names: Set<string> };
  restoreFailed: { next?: string; names: Map<string, string> };
}

export const newFaults = (): Faults => ({
  failHelmChart: new Map(),
  stallHelmChart: new Set(),
  stallRollout: new Set(),
  bslUnavailable: new Set(),
  backupPartiallyFailed: { next: false, names: new Set() },
  restoreFailed: { names: new Map() },
});

export type JobOutcome =
  { result: 'succeed' } | { result: 'stall' } | { result: 'fail'; message: string; log?: string };

export interface Ctx {
  store: Store;
  timers: Timers;
  delays: Delays;
  faults: Faults;
  restarts: Record<string, number>;
  componentWorkloads: Map<string, { namespace: string; workloads: WorkloadRef[] }>;
  /** Pod name → log text, served at /api/v1/namespaces/{ns}/pods/{name}/log. */
  logs: Map<string, string>;
  /** Controllers that own a Job's outcome (the HelmChart one) register here. */
  jobOutcomes: ((job: KObj) => JobOutcome | undefined)[];
  /** Called when faults are cleared, so stalled work resumes. */
  onClear: (() => void)[];
  baseUrl: string;
}

export const rtOf = (ctx: Ctx, apiVersion: string, kind: string): ResourceType =>
  ctx.store.registry.must(apiVersion, kind);

/** Runs fn after the current store event has been delivered to everyone (controllers never write re-entrantly). */
export const defer = (ctx: Ctx, fn: () => void) => ctx.timers.after(0, fn);

/** Create-or-update as a controller; returns the stored object. */
export function apply(ctx: Ctx, obj: KObj): KObj {
  const rt = rtOf(ctx, obj.apiVersion!, obj.kind!);
  const ns = rt.namespaced ? obj.metadata.namespace : undefined;
  const cur = ctx.store.get(rt, ns, obj.metadata.name);
  if (!cur) return ctx.store.create(rt, ns, obj, 'controller');
  const status = obj.status ?? cur.status;
  return ctx.store.update(
    rt,
    ns,
    obj.metadata.name,
    {
      ...obj,
      ...(status !== undefined ? { status } : {}),
      metadata: { ...cur.metadata, ...obj.metadata, resourceVersion: undefined },
    },
    { source: 'controller' },
  );
}

/** Replace status of an existing object (ignores objects deleted meanwhile). */
export function setStatus(
  ctx: Ctx,
  rt: ResourceType,
  ns: string | undefined,
  name: string,
  status: (cur: KObj) => object,
): KObj | undefined {
  const cur = ctx.store.get(rt, ns, name);
  if (!cur) return undefined;
  try {
    return ctx.store.update(
      rt,
      ns,
      name,
      { ...cur, status: status(cur) },
      { source: 'controller', subresource: rt.statusSubresource ? 'status' : undefined },
    );
  } catch (e) {
    if (e instanceof KubeError && e.code === 404) return undefined;
    throw e;
  }
}

export function ensureNamespace(ctx: Ctx, name: string, labels?: Record<string, string>): void {
  const rt = rtOf(ctx, 'v1', 'Namespace');
  const cur = ctx.store.get(rt, undefined, name);
  if (!cur) ctx.store.create(rt, undefined, { metadata: { name, ...(labels ? { labels } : {}) } }, 'controller');
}

export const condition = (type: string, status: 'True' | 'False', reason?: string, message?: string) => ({
  type,
  status,
  lastTransitionTime: timestamp(),
  ...(reason ? { reason } : {}),
  ...(message ? { message } : {}),
});

export const ownerRef = (o: KObj) => ({
  apiVersion: o.apiVersion!,
  kind: o.kind!,
  name: o.metadata.name,
  uid: o.metadata.uid!,
  controller: true,
  blockOwnerDeletion: true,
});
