// KV secrets engine of the OpenBAO double: v2 (versions, check-and-set, soft delete, metadata) and
// the plain v1 store you get when `kv` is mounted without options.version = "2". Messages and
// status codes follow OpenBAO's (= Vault's) kv plugin, because callers branch on them.
import { randomUUID } from 'node:crypto';

export type KvOp = 'read' | 'list' | 'write' | 'delete';
export interface KvResult {
  status: number;
  body?: unknown;
  /** What the request did, for the counters; absent for requests rejected before touching data. */
  op?: KvOp;
}
export interface KvRequest {
  method: string;
  path: string; // below the mount, no leading slash
  query: URLSearchParams;
  contentType: string;
  body: Record<string, unknown>;
}

interface Version {
  data: Record<string, unknown> | null;
  created: string;
  deleted: string;
  destroyed: boolean;
}
interface Entry {
  versions: Map<number, Version>;
  current: number;
  maxVersions: number;
  casRequired: boolean;
  deleteVersionAfter: string;
  custom: Record<string, string>;
  created: string;
  updated: string;
}

export const NOT_FOUND: KvResult = { status: 404, body: { errors: [] } };
const bad = (message: string): KvResult => ({ status: 400, body: { errors: [message] } });
const noContent = (op: KvOp): KvResult => ({ status: 204, op });
const DEFAULT_MAX_VERSIONS = 10;

export function envelope(data: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: null,
    auth: null,
    ...extra,
  };
}

const now = (): string => new Date().toISOString();
const isList = (req: KvRequest): boolean =>
  req.method === 'LIST' || (req.method === 'GET' && ['true', '1'].includes(req.query.get('list') ?? ''));
const trimSlashes = (p: string): string => p.replace(/^\/+|\/+$/g, '');

function listKeys(keys: Iterable<string>, prefix: string): KvResult {
  const base = trimSlashes(prefix);
  const start = base ? `${base}/` : '';
  const children = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(start) || key === base) continue;
    const rest = key.slice(start.length);
    const slash = rest.indexOf('/');
    children.add(slash < 0 ? rest : rest.slice(0, slash + 1));
  }
  if (children.size === 0) return { ...NOT_FOUND, op: 'list' };
  return { status: 200, body: envelope({ keys: [...children].sort() }), op: 'list' };
}

export class KvV1 {
  private readonly store = new Map<string, Record<string, unknown>>();

  handle(req: KvRequest): KvResult {
    const key = trimSlashes(req.path);
    if (isList(req)) return listKeys(this.store.keys(), key);
    if (!key) return { status: 405, body: { errors: ['1 error occurred:\n\t* unsupported operation\n\n'] } };
    switch (req.method) {
      case 'GET': {
        const data = this.store.get(key);
        return data ? { status: 200, body: envelope(data), op: 'read' } : { ...NOT_FOUND, op: 'read' };
      }
      case 'POST':
      case 'PUT':
        this.store.set(key, { ...req.body });
        return noContent('write');
      case 'DELETE':
        this.store.delete(key);
        return noContent('delete');
      default:
        return { status: 405, body: { errors: ['1 error occurred:\n\t* unsupported operation\n\n'] } };
    }
  }
}

export class KvV2 {
  private readonly entries = new Map<string, Entry>();
  private readonly config = { max_versions: 0, cas_required: false, delete_version_after: '0s' };

  handle(req: KvRequest): KvResult {
    const slash = req.path.indexOf('/');
    const section = slash < 0 ? req.path : req.path.slice(0, slash);
    const key = slash < 0 ? '' : trimSlashes(req.path.slice(slash + 1));
    if (section === 'config' && !key) return this.handleConfig(req);
    if (section === 'metadata') return this.handleMetadata(req, key);
    if (!key) return unsupported(req.path);
    switch (section) {
      case 'data':
        return this.handleData(req, key);
      case 'delete':
        return this.handleVersions(req, key, (v) => {
          if (!v.destroyed && !v.deleted) v.deleted = now();
        });
      case 'undelete':
        return this.handleVersions(req, key, (v) => {
          if (!v.destroyed) v.deleted = '';
        });
      case 'destroy':
        return this.handleVersions(req, key, (v) => {
          v.destroyed = true;
          v.data = null;
        });
      default:
        return unsupported(req.path);
    }
  }

  private handleConfig(req: KvRequest): KvResult {
    if (req.method === 'GET') return { status: 200, body: envelope({ ...this.config }), op: 'read' };
    if (req.method !== 'POST' && req.method !== 'PUT') return unsupported(req.path);
    const { max_versions, cas_required, delete_version_after } = req.body;
    if (max_versions !== undefined) this.config.max_versions = Number(max_versions);
    if (cas_required !== undefined) this.config.cas_required = cas_required === true || cas_required === 'true';
    if (typeof delete_version_after === 'string') this.config.delete_version_after = delete_version_after;
    return noContent('write');
  }

  private handleData(req: KvRequest, key: string): KvResult {
    const entry = this.entries.get(key);
    switch (req.method) {
      case 'GET': {
        if (!entry) return { ...NOT_FOUND, op: 'read' };
        const wanted = Number(req.query.get('version') ?? 0) || entry.current;
        const v = entry.versions.get(wanted);
        if (!v) return { ...NOT_FOUND, op: 'read' };
        const body = envelope({
          data: v.data && !v.deleted ? v.data : null,
          metadata: this.versionMeta(entry, wanted, v),
        });
        // A deleted or destroyed version answers 404 but still shows its metadata, as OpenBAO does.
        return { status: v.deleted || v.destroyed ? 404 : 200, body, op: 'read' };
      }
      case 'POST':
      case 'PUT':
        return this.writeVersion(key, entry, req.body, (_old, data) => data);
      case 'PATCH': {
        if (!req.contentType.startsWith('application/merge-patch+json')) {
          return { status: 415, body: { errors: ['PATCH requires Content-Type application/merge-patch+json'] } };
        }
        const cur = entry?.versions.get(entry.current);
        if (!entry || !cur || cur.deleted || cur.destroyed || !cur.data) return { ...NOT_FOUND, op: 'write' };
        return this.writeVersion(key, entry, req.body, (old, patch) => mergePatch(old ?? {}, patch));
      }
      case 'DELETE': {
        const cur = entry?.versions.get(entry.current);
        if (cur && !cur.destroyed && !cur.deleted) cur.deleted = now();
        return noContent('delete');
      }
      default:
        return unsupported(`data/${key}`);
    }
  }

  private writeVersion(
    key: string,
    existing: Entry | undefined,
    body: Record<string, unknown>,
    build: (old: Record<string, unknown> | null, data: Record<string, unknown>) => Record<string, unknown>,
  ): KvResult {
    const data = body.data;
    if (!data || typeof data !== 'object' || Array.isArray(data)) return { ...bad('no data provided'), op: 'write' };
    const options = (body.options ?? {}) as Record<string, unknown>;
    const entry = existing ?? this.newEntry();
    const cas = options.cas === undefined || options.cas === null ? undefined : Number(options.cas);
    if ((entry.casRequired || this.config.cas_required) && cas === undefined) {
      return { ...bad('check-and-set parameter required for this call'), op: 'write' };
    }
    if (cas !== undefined && cas !== entry.current) {
      return { ...bad('check-and-set parameter did not match the current version'), op: 'write' };
    }
    const previous = entry.versions.get(entry.current)?.data ?? null;
    const version = entry.current + 1;
    const v: Version = {
      data: build(previous, data as Record<string, unknown>),
      created: now(),
      deleted: '',
      destroyed: false,
    };
    entry.versions.set(version, v);
    entry.current = version;
    entry.updated = v.created;
    this.entries.set(key, entry);
    this.trim(entry);
    return { status: 200, body: envelope(this.versionMeta(entry, version, v)), op: 'write' };
  }

  private handleVersions(req: KvRequest, key: string, apply: (v: Version) => void): KvResult {
    if (req.method !== 'POST' && req.method !== 'PUT') return unsupported(req.path);
    const versions = req.body.versions;
    if (!Array.isArray(versions) || versions.length === 0) return bad('no version number provided');
    const entry = this.entries.get(key);
    for (const n of versions) {
      const v = entry?.versions.get(Number(n));
      if (v) apply(v);
    }
    if (entry) entry.updated = now();
    return noContent(req.path.startsWith('undelete') ? 'write' : 'delete');
  }

  private handleMetadata(req: KvRequest, key: string): KvResult {
    if (isList(req)) return listKeys(this.entries.keys(), key);
    if (!key) return unsupported(req.path);
    const entry = this.entries.get(key);
    switch (req.method) {
      case 'GET':
        return entry
          ? { status: 200, body: envelope(this.metadataView(entry)), op: 'read' }
          : { ...NOT_FOUND, op: 'read' };
      case 'POST':
      case 'PUT':
      case 'PATCH': {
        const target = entry ?? this.newEntry();
        const error = applyMetadata(target, req.body, req.method === 'PATCH');
        if (error) return { ...bad(error), op: 'write' };
        target.updated = now();
        this.entries.set(key, target);
        this.trim(target);
        return noContent('write');
      }
      case 'DELETE':
        this.entries.delete(key);
        return noContent('delete');
      default:
        return unsupported(req.path);
    }
  }

  private newEntry(): Entry {
    const t = now();
    return {
      versions: new Map(),
      current: 0,
      maxVersions: 0,
      casRequired: false,
      deleteVersionAfter: '0s',
      custom: {},
      created: t,
      updated: t,
    };
  }

  // OpenBAO permanently removes the oldest versions once a key holds more than max_versions.
  private trim(entry: Entry): void {
    const max = entry.maxVersions || this.config.max_versions || DEFAULT_MAX_VERSIONS;
    const numbers = [...entry.versions.keys()].sort((a, b) => a - b);
    for (const n of numbers.slice(0, Math.max(0, numbers.length - max))) entry.versions.delete(n);
  }

  private versionMeta(entry: Entry, version: number, v: Version): Record<string, unknown> {
    return {
      created_time: v.created,
      custom_metadata: Object.keys(entry.custom).length ? { ...entry.custom } : null,
      deletion_time: v.deleted,
      destroyed: v.destroyed,
      version,
    };
  }

  private metadataView(entry: Entry): Record<string, unknown> {
    const versions: Record<string, unknown> = {};
    for (const [n, v] of entry.versions)
      versions[String(n)] = { created_time: v.created, deletion_time: v.deleted, destroyed: v.destroyed };
    return {
      cas_required: entry.casRequired,
      created_time: entry.created,
      current_version: entry.current,
      custom_metadata: Object.keys(entry.custom).length ? { ...entry.custom } : null,
      delete_version_after: entry.deleteVersionAfter,
      max_versions: entry.maxVersions,
      oldest_version: entry.versions.size ? Math.min(...entry.versions.keys()) : 0,
      updated_time: entry.updated,
      versions,
    };
  }
}

function applyMetadata(entry: Entry, body: Record<string, unknown>, patch: boolean): string | undefined {
  const { max_versions, cas_required, custom_metadata, delete_version_after } = body;
  if (max_versions !== undefined) {
    const n = Number(max_versions);
    if (!Number.isInteger(n) || n < 0) return 'max_versions must be a non-negative integer';
    entry.maxVersions = n;
  }
  if (cas_required !== undefined) entry.casRequired = cas_required === true || cas_required === 'true';
  if (typeof delete_version_after === 'string') entry.deleteVersionAfter = delete_version_after;
  if (custom_metadata !== undefined && custom_metadata !== null) {
    if (typeof custom_metadata !== 'object' || Array.isArray(custom_metadata))
      return 'custom_metadata must be a map of strings';
    const next: Record<string, string> = patch ? { ...entry.custom } : {};
    for (const [k, val] of Object.entries(custom_metadata)) {
      if (val === null && patch) {
        delete next[k];
        continue;
      }
      if (typeof val !== 'string') return `custom_metadata values must be strings: key "${k}"`;
      if (k.length > 128) return 'custom_metadata keys are limited to 128 characters';
      if (Buffer.byteLength(val) > 512) return 'custom_metadata values are limited to 512 bytes';
      next[k] = val;
    }
    if (Object.keys(next).length > 64) return 'custom_metadata can contain at most 64 keys';
    entry.custom = next;
  }
  return undefined;
}

function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (
      typeof v === 'object' &&
      !Array.isArray(v) &&
      typeof out[k] === 'object' &&
      out[k] !== null &&
      !Array.isArray(out[k])
    ) {
      out[k] = mergePatch(out[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}

export function unsupported(path: string): KvResult {
  return { status: 404, body: { errors: [`no handler for route "${path}". route entry not found.`] } };
}
