// CustomResourceDefinitions from the shared crds/ folder, enforced the way the apiserver does for
// structural schemas: drop nulls where not nullable, prune unknown fields, apply defaults, then
// validate (Ajv on a translation of the OpenAPI v3 schema) and report every violation by field path.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import { invalid, type StatusCause } from './errors.js';
import type { Registry, ResourceType } from './resources.js';
import { isObject, type KObj } from './util.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Schema = Record<string, any>;

interface CrdVersion {
  schema: Schema;
  validate: ValidateFunction;
}

export class CrdValidator {
  private readonly versions = new Map<ResourceType, CrdVersion>();
  private readonly ajv = new Ajv({ allErrors: true, strict: false, validateFormats: true });

  constructor() {
    this.ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/);
    this.ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
    this.ajv.addFormat('int', true);
    this.ajv.addFormat('int32', true);
    this.ajv.addFormat('int64', true);
  }

  /** Loads every CRD file in dir and registers its served versions. */
  load(dir: string, registry: Registry): void {
    for (const file of readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort()) {
      const doc = parse(readFileSync(join(dir, file), 'utf8'));
      if (doc?.kind !== 'CustomResourceDefinition') continue;
      const { group, names, scope } = doc.spec;
      const statusSub = (v: Schema) => isObject(v.subresources?.status);
      for (const v of doc.spec.versions ?? []) {
        if (!v.served) continue;
        const rt: ResourceType = {
          group,
          version: v.name,
          kind: names.kind,
          plural: names.plural,
          singular: names.singular ?? names.kind.toLowerCase(),
          namespaced: scope === 'Namespaced',
          shortNames: names.shortNames,
          custom: true,
          statusSubresource: statusSub(v),
        };
        registry.add(rt);
        const schema = v.schema?.openAPIV3Schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
        this.versions.set(registry.byPlural(group, v.name, names.plural)!, {
          schema,
          validate: this.ajv.compile(toAjv(schema, true)),
        });
      }
    }
  }

  /** Prunes and defaults obj in place, then throws 422 Invalid naming every bad field. */
  check(rt: ResourceType, obj: KObj): void {
    const v = this.versions.get(rt);
    if (!v) return;
    const { metadata, ...rest } = obj;
    normalize(rest, v.schema, true);
    Object.assign(obj, rest);
    for (const k of Object.keys(obj)) if (!(k in rest) && k !== 'metadata') delete obj[k];
    if (v.validate(rest)) return;
    throw invalid(rt, metadata.name, dedupe((v.validate.errors ?? []).map((e) => toCause(e, rest))));
  }
}

/** OpenAPI v3 (Kubernetes dialect) → JSON Schema draft-07 that Ajv understands. */
function toAjv(s: Schema, root = false): Schema {
  const out: Schema = {};
  for (const [k, val] of Object.entries(s)) {
    if (k.startsWith('x-kubernetes-') || k === 'nullable' || k === 'description' || k === 'default' || k === 'example')
      continue;
    if (k === 'properties')
      out.properties = Object.fromEntries(Object.entries(val as Schema).map(([p, ps]) => [p, toAjv(ps as Schema)]));
    else if (k === 'items' || (k === 'additionalProperties' && isObject(val))) out[k] = toAjv(val as Schema);
    else if (k === 'anyOf' || k === 'allOf' || k === 'oneOf') out[k] = (val as Schema[]).map((x) => toAjv(x));
    else out[k] = val;
  }
  // int-or-string fields carry a type-less schema with anyOf; nullable widens the type.
  if (s['x-kubernetes-int-or-string']) {
    delete out.type;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (s.nullable && typeof out.type === 'string') out.type = [out.type, 'null'];
  if (root && out.properties) delete out.properties.metadata;
  return out;
}

/** Drop non-nullable nulls, prune fields the schema does not know, apply defaults (in that order, like the apiserver). */
function normalize(value: unknown, s: Schema | undefined, root = false): void {
  if (!s) return;
  if (Array.isArray(value)) {
    if (isObject(s.items)) for (const item of value) normalize(item, s.items);
    return;
  }
  if (!isObject(value)) return;
  const props: Schema | undefined = s.properties;
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  for (const [k, v] of Object.entries(value)) {
    if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
    const ps: Schema | undefined =
      props?.[k] ?? (isObject(s.additionalProperties) ? s.additionalProperties : undefined);
    if (!ps) {
      if (!preserve && s.additionalProperties !== true) delete value[k];
      continue;
    }
    if (v === null && !ps.nullable) {
      delete value[k];
      continue;
    }
    normalize(v, ps);
  }
  for (const [k, ps] of Object.entries(props ?? {})) {
    if (value[k] === undefined && (ps as Schema).default !== undefined)
      value[k] = structuredClone((ps as Schema).default);
  }
}

/** Ajv's `/spec/hooks/resources/0/name` → the apiserver's `spec.hooks.resources[0].name`. */
function fieldPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const p of pointer.split('/').slice(1))
    cur = (cur as Record<string, unknown>)?.[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  return cur;
}

const typeName = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;
const quote = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? 'null'));

function toCause(e: ErrorObject, root: unknown): StatusCause {
  const field = fieldPath(e.instancePath);
  const value = valueAt(root, e.instancePath);
  switch (e.keyword) {
    case 'required': {
      const f = field ? `${field}.${e.params.missingProperty}` : String(e.params.missingProperty);
      return { field: f, reason: 'FieldValueRequired', message: 'Required value' };
    }
    case 'type':
      return {
        field,
        reason: 'FieldValueInvalid',
        message: `Invalid value: "${typeName(value)}": ${field} in body must be of type ${String(e.params.type).split(',')[0]}: ${quote(value)}`,
      };
    case 'enum':
      return {
        field,
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: ${quote(value)}: supported values: ${(e.params.allowedValues as unknown[]).map(quote).join(', ')}`,
      };
    default:
      return {
        field,
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${quote(value)}: ${field} in body ${e.message}`,
      };
  }
}

/** anyOf failures repeat per branch; the apiserver reports each field once. */
function dedupe(causes: StatusCause[]): StatusCause[] {
  const seen = new Set<string>();
  return causes.filter((c) =>
    seen.has(`${c.field}|${c.reason}`) ? false : (seen.add(`${c.field}|${c.reason}`), true),
  );
}
