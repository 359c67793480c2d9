// Small helpers shared by the double's modules.
import { createHash, randomBytes } from 'node:crypto';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KObj = { apiVersion?: string; kind?: string; metadata: Meta; [key: string]: any };
export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  generateName?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  [key: string]: unknown;
}

export const clone = <T>(v: T): T => structuredClone(v);

/** Kubernetes timestamps have second precision (RFC 3339, UTC, no fraction). */
export const timestamp = (d = new Date()) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

const ALNUM = 'bcdfghjklmnpqrstvwxz2456789';
/** The apiserver's generateName / ReplicaSet suffix alphabet (no vowels, no confusable digits). */
export function randSuffix(n = 5): string {
  const bytes = randomBytes(n);
  return [...bytes].map((b) => ALNUM[b % ALNUM.length]).join('');
}

export const shortHash = (v: unknown, n = 10) =>
  createHash('sha256')
    .update(JSON.stringify(v) ?? '')
    .digest('hex')
    .slice(0, n);

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every timer the double starts goes through here so stop() can cancel all of them. */
export class Timers {
  private pending = new Set<NodeJS.Timeout>();
  private stopped = false;
  after(ms: number, fn: () => void): NodeJS.Timeout | undefined {
    if (this.stopped) return undefined;
    const t = setTimeout(
      () => {
        this.pending.delete(t);
        if (this.stopped) return;
        // A controller bug must surface in the test output, not kill the process hosting the lab.
        try {
          fn();
        } catch (e) {
          console.error('[kube double] controller error:', e);
        }
      },
      Math.max(0, ms),
    );
    this.pending.add(t);
    return t;
  }
  cancel(t: NodeJS.Timeout | undefined): void {
    if (t) {
      clearTimeout(t);
      this.pending.delete(t);
    }
  }
  stopAll(): void {
    this.stopped = true;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
  }
}
