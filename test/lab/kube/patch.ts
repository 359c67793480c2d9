// The four patch formats the apiserver accepts, chosen by Content-Type like the real one.
import { badRequest, KubeError } from './errors.js';
import { clone, isObject } from './util.js';

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

// Merge keys from the Kubernetes API's patchMergeKey tags, for the lists this project patches.
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  conditions: 'type',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  envFrom: '',
  ownerReferences: 'uid',
};
// Lists of scalars merged as sets (patchStrategy: merge).
const SET_LISTS = new Set(['finalizers']);

function mergeKeyFor(field: string, parent: string): string | undefined {
  // A container's ports merge by containerPort; a Service's by port.
  if (field === 'ports') return parent === 'containers' || parent === 'initContainers' ? 'containerPort' : 'port';
  return MERGE_KEYS[field] || undefined;
}

/** Strategic merge patch: maps merge, listed lists merge by key, `$patch: delete|replace` directives. */
export function strategicMergePatch(target: unknown, patch: unknown, field = ''): unknown {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _d, ...rest } = patch;
    return clone(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue;
    if (v === null) {
      delete out[k];
      continue;
    }
    if (Array.isArray(v)) {
      const mk = mergeKeyFor(k, field);
      if (mk) out[k] = mergeList(Array.isArray(out[k]) ? (out[k] as unknown[]) : [], v, mk, k);
      else if (SET_LISTS.has(k)) out[k] = [...new Set([...(Array.isArray(out[k]) ? (out[k] as unknown[]) : []), ...v])];
      else out[k] = clone(v);
      continue;
    }
    const merged = strategicMergePatch(out[k], v, k);
    if (merged === undefined) delete out[k];
    else out[k] = merged;
  }
  return out;
}

function mergeList(target: unknown[], patch: unknown[], mk: string, field: string): unknown[] {
  const out = target.map((x) => clone(x));
  for (const item of patch) {
    if (!isObject(item) || item[mk] === undefined) {
      out.push(clone(item));
      continue;
    }
    const i = out.findIndex((x) => isObject(x) && x[mk] === item[mk]);
    if (item.$patch === 'delete') {
      if (i >= 0) out.splice(i, 1);
      continue;
    }
    if (i >= 0) out[i] = strategicMergePatch(out[i], item, field);
    else out.push(strategicMergePatch({}, item, field));
  }
  return out;
}

const invalidPatch = (message: string) => new KubeError(422, 'Invalid', message);

/** RFC 6902 JSON patch. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let doc = clone(target);
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string')
      throw badRequest('invalid JSON patch operation');
    const path = op.path;
    switch (op.op) {
      case 'add':
        doc = put(doc, path, clone(op.value), 'add');
        break;
      case 'replace':
        get(doc, path);
        doc = put(doc, path, clone(op.value), 'replace');
        break;
      case 'remove':
        get(doc, path);
        doc = remove(doc, path);
        break;
      case 'copy':
        doc = put(doc, path, clone(get(doc, String(op.from))), 'add');
        break;
      case 'move': {
        const v = get(doc, String(op.from));
        doc = put(remove(doc, String(op.from)), path, v, 'add');
        break;
      }
      case 'test':
        if (JSON.stringify(get(doc, path)) !== JSON.stringify(op.value))
          throw invalidPatch(
            `the server rejected our request due to an error in our request: testing value ${path} failed`,
          );
        break;
      default:
        throw badRequest(`Unexpected kind: ${op.op}`);
    }
  }
  return doc;
}

const tokens = (path: string) =>
  path === ''
    ? []
    : path
        .split('/')
        .slice(1)
        .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));

function get(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const t of tokens(path)) {
    if (Array.isArray(cur) && /^\d+$/.test(t) && Number(t) < cur.length) cur = cur[Number(t)];
    else if (isObject(cur) && t in cur) cur = cur[t];
    else throw invalidPatch(`the server rejected our request due to an error in our request: missing path ${path}`);
  }
  return cur;
}

function parentOf(doc: unknown, path: string): [unknown, string] {
  const ts = tokens(path);
  if (ts.length === 0) return [undefined, ''];
  const parentPath = ts
    .slice(0, -1)
    .map((t) => `/${t.replace(/~/g, '~0').replace(/\//g, '~1')}`)
    .join('');
  return [get(doc, parentPath), ts[ts.length - 1]];
}

function put(doc: unknown, path: string, value: unknown, mode: 'add' | 'replace'): unknown {
  const [parent, last] = parentOf(doc, path);
  if (parent === undefined && path === '') return value;
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i > parent.length)
      throw invalidPatch(
        `the server rejected our request due to an error in our request: index out of range in ${path}`,
      );
    if (mode === 'add') parent.splice(i, 0, value);
    else parent[i] = value;
  } else if (isObject(parent)) parent[last] = value;
  else throw invalidPatch(`the server rejected our request due to an error in our request: missing path ${path}`);
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  const [parent, last] = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else if (isObject(parent)) delete parent[last];
  return doc;
}
