// Velero's restore-time object rewriting, as the lab's Velero applies it. Copies vmware-tanzu/velero v1.15.2:
// - Resource modifiers (internal/resourcemodifiers/resource_modifiers.go, json_patch.go, json_merge_patch.go,
//   resource_modifiers_validator.go): a ConfigMap in Velero's namespace named by the Restore's
//   spec.resourceModifier {kind: ConfigMap}, exactly one data key holding YAML {version: v1,
//   resourceModifierRules: [{conditions, patches | mergePatches | strategicPatches}]}, decoded strictly
//   (sigs.k8s.io/yaml UnmarshalStrict: unknown fields and non-string values are errors). A missing or invalid
//   ConfigMap fails validation (pkg/controller/restore_controller.go validateAndComplete). Conditions match the
//   object as it came from the backup, so `namespaces` names the SOURCE namespace: pkg/restore/restore.go
//   applies the modifiers after the restore item actions and before obj.SetNamespace(remapped). With more
//   than one rule every rule is matched against the object before any rule patched it. A rule's patch error
//   is a restore error of the target namespace (errs.Add(namespace, err)); a JSON patch whose `test`
//   fails leaves the object as it was; `matches` that fail or miss a path mean "not matched".
//   Strategic merge patches need the Go scheme: the lab refuses them rather than guessing.
// - Service nodePorts (pkg/restore/actions/service_action.go): cleared unless spec.preserveNodePorts, or
//   unless explicitly specified: in the kubectl last-applied-configuration annotation (by port name, or by
//   value for unnamed ports), else in any managedFields entry (f:spec.f:ports.k:{port,protocol}.f:nodePort).
//   So a fixed nodePort Helm set (its field manager owns it) comes back fixed and collides.
import { parse } from 'yaml';
import { nsIncluded } from './velero.js';
import type { KObj } from '../lab-api.js';

type Json = unknown;
interface Patch {
  operation: string;
  from?: string;
  path: string;
  value?: string;
}
interface Rule {
  conditions: {
    namespaces?: string[];
    groupResource: string;
    resourceNameRegex?: string;
    labelSelector?: { matchLabels?: Record<string, string>; matchExpressions?: Expr[] };
    matches?: { path: string; value?: string }[];
  };
  patches?: Patch[];
  mergePatches?: { patchData?: string }[];
  strategicPatches?: { patchData?: string }[];
}
interface Expr {
  key: string;
  operator: string;
  values?: string[];
}
export interface ResourceModifiers {
  rules: Rule[];
}

const FIELDS: Record<string, string[]> = {
  top: ['version', 'resourceModifierRules'],
  rule: ['conditions', 'patches', 'mergePatches', 'strategicPatches'],
  conditions: ['namespaces', 'groupResource', 'resourceNameRegex', 'labelSelector', 'matches'],
  patch: ['operation', 'from', 'path', 'value'],
  match: ['path', 'value'],
  merge: ['patchData'],
};

/** GetResourceModifiersFromConfig + Validate, with Velero's messages; a string is the validation error. */
export function loadModifiers(cm: KObj | undefined, ns: string, name: string): ResourceModifiers | string {
  if (!cm) return `failed to get resource modifiers configmap ${ns}/${name}`;
  const prefix = (what: string, err: string) => `${what} provided in configmap ${ns}/${name}: ${err}`;
  const data = Object.values((cm.data ?? {}) as Record<string, string>);
  if (data.length !== 1)
    return prefix('Error in parsing resource modifiers', `illegal resource modifiers ${ns}/${name} configmap`);
  let doc: any;
  try {
    doc = parse(data[0]);
    strict(doc, 'top');
    for (const r of doc.resourceModifierRules ?? []) {
      strict(r, 'rule');
      strict(r.conditions ?? {}, 'conditions');
      for (const m of r.conditions?.matches ?? []) strict(m, 'match');
      for (const p of r.patches ?? []) strict(p, 'patch');
      for (const p of [...(r.mergePatches ?? []), ...(r.strategicPatches ?? [])]) strict(p, 'merge');
    }
  } catch (err) {
    return prefix(
      'Error in parsing resource modifiers',
      `failed to decode yaml data into resource modifiers, err: ${(err as Error).message}`,
    );
  }
  const invalid = (e: string) => prefix('Validation error in resource modifiers', e);
  if (String(doc?.version ?? '').toLowerCase() !== 'v1')
    return invalid(`unsupported resource modifier version ${doc?.version ?? ''}`);
  const rules: Rule[] = doc.resourceModifierRules ?? [];
  if (rules.length === 0) return invalid('resource modifier rules cannot be empty');
  for (const r of rules) {
    if (!r.conditions?.groupResource) return invalid('groupkResource cannot be empty');
    if ([r.patches, r.mergePatches, r.strategicPatches].filter((p) => p?.length).length >= 2)
      return invalid('only one of patches, mergePatches, strategicPatches can be specified');
    for (const p of r.patches ?? []) {
      if (!p.operation) return invalid('operation cannot be empty');
      if (!['add', 'remove', 'replace', 'test', 'move', 'copy'].includes(p.operation.toLowerCase()))
        return invalid(`unsupported operation ${p.operation}`);
      if (!p.path) return invalid('path cannot be empty');
    }
  }
  return { rules };
}

/** UnmarshalStrict into Velero's structs: unknown fields fail, and every leaf of a patch is a string. */
function strict(o: any, kind: string): void {
  if (o === null || typeof o !== 'object') return;
  for (const k of Object.keys(o)) {
    if (!FIELDS[kind].includes(k)) throw new Error(`error unmarshaling JSON: json: unknown field "${k}"`);
    if (['patch', 'match', 'merge'].includes(kind) && typeof o[k] !== 'string')
      throw new Error(`json: cannot unmarshal ${typeof o[k]} into Go struct field .${k} of type string`);
  }
}

/** Velero's groupResource string: "services", "deployments.apps", "ingresses.networking.k8s.io". */
export function groupResource(apiVersion: string, plural: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? plural : `${plural}.${apiVersion.slice(0, slash)}`;
}

/** ApplyResourceModifierRules: patches `obj` (as it came from the backup) in place; returns the errors. */
export function applyModifiers(mods: ResourceModifiers, obj: KObj, gr: string): string[] {
  const errs: string[] = [];
  const origin = mods.rules.length > 1 ? structuredClone(obj) : obj;
  for (const rule of mods.rules) {
    let matched: boolean;
    try {
      matched = matches(rule, origin, gr);
    } catch (err) {
      errs.push((err as Error).message);
      continue;
    }
    if (!matched) continue;
    try {
      const updated = patchWith(rule, obj);
      for (const k of Object.keys(obj)) delete obj[k];
      Object.assign(obj, updated);
    } catch (err) {
      errs.push(`error in applying patch ${(err as Error).message}`);
    }
  }
  return errs;
}

function matches(rule: Rule, obj: KObj, gr: string): boolean {
  const c = rule.conditions;
  const ns = obj.metadata.namespace;
  if (ns && !nsIncluded(ns, c.namespaces, [])) return false;
  if (!globDots(c.groupResource).test(gr)) return false;
  if (c.resourceNameRegex && !new RegExp(c.resourceNameRegex).test(obj.metadata.name)) return false;
  if (c.labelSelector && !selects(c.labelSelector, obj.metadata.labels ?? {})) return false;
  for (const m of c.matches ?? []) {
    if (!m.path) throw new Error('path is required for match rule');
    try {
      jsonPatch(obj, [{ operation: 'test', path: m.path, value: m.value ?? '' }]);
    } catch (err) {
      if (err instanceof PatchMiss) return false;
      throw err;
    }
  }
  return true;
}

function patchWith(rule: Rule, obj: KObj): KObj {
  if (rule.patches?.length) {
    try {
      return jsonPatch(obj, rule.patches);
    } catch (err) {
      // JSONPatcher.Patch: a failed `test` leaves the object unchanged; a missing path is an error.
      if (err instanceof PatchMiss && err.testFailed) return structuredClone(obj);
      throw new Error(`error in applying JSON Patch ${(err as Error).message}`, { cause: err });
    }
  }
  if (rule.mergePatches?.length) {
    let cur: Json = structuredClone(obj);
    for (const p of rule.mergePatches) cur = mergePatch(cur, parse(p.patchData ?? '') ?? {});
    return cur as KObj;
  }
  if (rule.strategicPatches?.length) throw new Error('lab: strategic merge patches are not modelled');
  throw new Error('no patch data found');
}

/** gobwas/glob compiled with '.' as separator: `*` stays within a dot-separated part, `**` crosses them. */
function globDots(p: string): RegExp {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === '*' && p[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (ch === '*') re += '[^.]*';
    else if (ch === '?') re += '[^.]';
    else if (ch === '{') re += '(?:';
    else if (ch === '}') re += ')';
    else if (ch === ',' && re.includes('(?:')) re += '|';
    else re += ch.replace(/[.+^$()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function selects(sel: NonNullable<Rule['conditions']['labelSelector']>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).includes(labels[e.key]);
    const ok =
      e.operator === 'In'
        ? inValues
        : e.operator === 'NotIn'
          ? !inValues
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

/** json_patch.go addQuotes: a value is JSON (number, bool, null, object, array) unless it is quoted or text. */
function patchValue(v: string | undefined): Json {
  const s = v ?? '';
  if (s === '') return '';
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) return s.slice(1, -1);
  if (s === 'null') return null;
  if (/^(true|false)$/i.test(s)) return s.toLowerCase() === 'true';
  if (s.startsWith('{') || s.startsWith('[')) return JSON.parse(s) as Json;
  if (s.trim() !== '' && !Number.isNaN(Number(s))) return Number(s);
  return s;
}

class PatchMiss extends Error {
  constructor(
    message: string,
    readonly testFailed: boolean,
  ) {
    super(message);
  }
}

/** RFC 6902 as evanphx/json-patch v5 applies it (ErrTestFailed vs ErrMissing). */
function jsonPatch(doc: KObj, patches: Patch[]): KObj {
  const root: any = structuredClone(doc);
  const split = (p: string) =>
    p
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const parentOf = (path: string) => {
    const parts = split(path);
    const key = parts.pop()!;
    let cur: any = root;
    for (const part of parts) {
      cur = Array.isArray(cur) ? cur[Number(part)] : cur?.[part];
      if (cur === undefined || cur === null || typeof cur !== 'object')
        throw new PatchMiss(`doc is missing path: "${path}": missing value`, false);
    }
    return { cur, key };
  };
  const get = (path: string): Json => {
    const { cur, key } = parentOf(path);
    const v = Array.isArray(cur) ? cur[Number(key)] : cur[key];
    if (v === undefined) throw new PatchMiss(`doc is missing path: "${path}": missing value`, false);
    return v;
  };
  const remove = (path: string) => {
    const { cur, key } = parentOf(path);
    get(path);
    if (Array.isArray(cur)) cur.splice(Number(key), 1);
    else delete cur[key];
  };
  const add = (path: string, v: Json) => {
    const { cur, key } = parentOf(path);
    if (!Array.isArray(cur)) cur[key] = v;
    else if (key === '-') cur.push(v);
    else if (Number(key) <= cur.length) cur.splice(Number(key), 0, v);
    else throw new PatchMiss(`Unable to access invalid index: ${key}: invalid index referenced`, false);
  };
  for (const p of patches) {
    const op = p.operation.toLowerCase();
    if (op === 'test') {
      let cur: Json;
      try {
        cur = get(p.path);
      } catch {
        cur = undefined;
      }
      if (cur === undefined) throw new PatchMiss(`test operation does not apply: is missing path: ${p.path}`, false);
      if (JSON.stringify(cur) !== JSON.stringify(patchValue(p.value)))
        throw new PatchMiss(`testing value ${p.path} failed: test failed`, true);
    } else if (op === 'add') add(p.path, patchValue(p.value));
    else if (op === 'remove') remove(p.path);
    else if (op === 'replace') {
      get(p.path);
      const { cur, key } = parentOf(p.path);
      cur[Array.isArray(cur) ? Number(key) : key] = patchValue(p.value);
    } else if (op === 'move' || op === 'copy') {
      const v = structuredClone(get(p.from ?? ''));
      if (op === 'move') remove(p.from ?? '');
      add(p.path, v);
    }
  }
  return root as KObj;
}

/** RFC 7386 (jsonpatch.MergePatch): objects merge, null deletes, anything else replaces. */
function mergePatch(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, Json> =
    target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, Json>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, Json>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** service_action.go deleteNodePorts (unless preserveNodePorts): keep only explicitly specified nodePorts. */
export function clearNodePorts(svc: KObj, managedFields: unknown, preserve: boolean): void {
  if (preserve || svc.spec?.type === 'ExternalName') return;
  const ports: { name?: string; port: number; protocol?: string; nodePort?: number }[] = svc.spec?.ports ?? [];
  const applied = svc.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'];
  let keep: (p: (typeof ports)[number]) => boolean;
  if (applied) {
    const spec = (JSON.parse(applied) as { spec?: { ports?: { name?: string; nodePort?: number | string }[] } }).spec;
    const named = new Set<string>();
    const unnamed = new Set<number>();
    for (const p of spec?.ports ?? []) {
      const n = Number(p.nodePort ?? 0);
      if (n <= 0) continue;
      if (p.name !== undefined) named.add(p.name);
      else unnamed.add(n);
    }
    keep = (p) => (p.name ? named.has(p.name) : unnamed.has(p.nodePort ?? 0));
  } else {
    const explicit = new Set<string>();
    for (const e of (managedFields ?? []) as { fieldsV1?: any }[]) {
      for (const [k, v] of Object.entries((e.fieldsV1?.['f:spec']?.['f:ports'] ?? {}) as Record<string, any>))
        if (v && typeof v === 'object' && 'f:nodePort' in v) explicit.add(k);
    }
    keep = (p) => explicit.has(`k:{"port":${p.port},"protocol":"${p.protocol ?? 'TCP'}"}`);
  }
  for (const p of ports) if (!keep(p)) delete p.nodePort;
  // deleteHealthCheckNodePort: an auto-assigned one is cleared too (LoadBalancer + Local only).
  if (svc.spec?.healthCheckNodePort && !applied?.includes('healthCheckNodePort')) {
    const owned = ((managedFields ?? []) as { fieldsV1?: any }[]).some(
      (e) => e.fieldsV1?.['f:spec']?.['f:healthCheckNodePort'],
    );
    if (!owned) delete svc.spec.healthCheckNodePort;
  }
}
