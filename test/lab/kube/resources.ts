// The resource types the double serves: the built-ins this project touches plus the CRDs loaded
// from the shared crds/ folder. Discovery documents and URL routing both read this one table.

export interface ResourceType {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames?: string[];
  /** CRDs only: the API server refuses strategic merge for them. */
  custom: boolean;
  /** status is written only through /status (built-ins and CRDs declaring subresources.status). */
  statusSubresource: boolean;
  /** Pods are produced by the controllers; clients may only read them. */
  readOnly?: boolean;
}

export const apiVersionOf = (t: { group: string; version: string }) =>
  t.group ? `${t.group}/${t.version}` : t.version;

const core = (kind: string, plural: string, namespaced: boolean, extra: Partial<ResourceType> = {}): ResourceType => ({
  group: '',
  version: 'v1',
  kind,
  plural,
  singular: kind.toLowerCase(),
  namespaced,
  custom: false,
  statusSubresource: true,
  ...extra,
});
const apps = (kind: string, plural: string, shortNames: string[]): ResourceType => ({
  group: 'apps',
  version: 'v1',
  kind,
  plural,
  singular: kind.toLowerCase(),
  namespaced: true,
  custom: false,
  statusSubresource: true,
  shortNames,
});
const batch = (kind: string, plural: string, shortNames: string[]): ResourceType => ({
  group: 'batch',
  version: 'v1',
  kind,
  plural,
  singular: kind.toLowerCase(),
  namespaced: true,
  custom: false,
  statusSubresource: true,
  shortNames,
});

export const BUILTIN_TYPES: ResourceType[] = [
  core('Namespace', 'namespaces', false, { shortNames: ['ns'] }),
  core('Node', 'nodes', false, { shortNames: ['no'] }),
  core('Secret', 'secrets', true, { statusSubresource: false }),
  core('ConfigMap', 'configmaps', true, { shortNames: ['cm'], statusSubresource: false }),
  core('Service', 'services', true, { shortNames: ['svc'] }),
  core('Pod', 'pods', true, { shortNames: ['po'], readOnly: true }),
  core('Event', 'events', true, { shortNames: ['ev'], statusSubresource: false }),
  apps('Deployment', 'deployments', ['deploy']),
  apps('StatefulSet', 'statefulsets', ['sts']),
  apps('DaemonSet', 'daemonsets', ['ds']),
  batch('Job', 'jobs', []),
  batch('CronJob', 'cronjobs', ['cj']),
];

export class Registry {
  readonly types: ResourceType[] = [...BUILTIN_TYPES];

  add(t: ResourceType): void {
    if (!this.byPlural(t.group, t.version, t.plural)) this.types.push(t);
  }
  byPlural(group: string, version: string, plural: string): ResourceType | undefined {
    return this.types.find((t) => t.group === group && t.version === version && t.plural === plural);
  }
  byKind(apiVersion: string, kind: string): ResourceType | undefined {
    return this.types.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
  }
  must(apiVersion: string, kind: string): ResourceType {
    const t = this.byKind(apiVersion, kind);
    if (!t) throw new Error(`kube double: unknown type ${apiVersion} ${kind}`);
    return t;
  }
  groups(): { group: string; versions: string[] }[] {
    const out = new Map<string, string[]>();
    for (const t of this.types) {
      if (!t.group) continue;
      const vs = out.get(t.group) ?? [];
      if (!vs.includes(t.version)) vs.push(t.version);
      out.set(t.group, vs);
    }
    return [...out].map(([group, versions]) => ({ group, versions }));
  }
}

/** The verbs each type advertises in discovery (pods are read-only here). */
export function verbsOf(t: ResourceType): string[] {
  if (t.readOnly) return ['get', 'list', 'watch'];
  return ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
}
