// The drill's sandbox, kept off production (issue 14 item 15). A restored copy of a namespace would
// otherwise claim production hosts (Contour merges Ingresses that share a host and marks both
// HTTPProxies with one fqdn invalid), run its CronJobs, start what talks to production systems, and
// collide on fixed NodePorts. Three layers:
// 1. Velero resource modifiers (vmware-tanzu/velero v1.15.2 internal/resourcemodifiers; the ConfigMap
//    named by Restore spec.resourceModifier, one data key, `version: v1`): hosts rewritten, CronJobs
//    suspended, the config's external-facing workloads at 0 replicas, fixed nodePorts removed,
//    LoadBalancers turned into NodePorts, and egress/ingress rules of restored NetworkPolicies dropped
//    (policies are unions of allows: a restored allow-all would open the sandbox again).
//    Conditions match the item as it is in the backup, in its SOURCE namespace (pkg/restore/restore.go
//    applies modifiers before obj.SetNamespace). JSON patches address array items by index and there
//    is no wildcard, so each index-based rule carries `matches` on the value read from the live source
//    object: a backup whose item differs is simply not matched (matchConditions swallows ErrTestFailed
//    and ErrMissing) instead of failing the restore. Velero itself clears nodePorts the apiserver
//    assigned and keeps only explicitly specified ones (pkg/restore/actions/service_action.go: last-
//    applied-configuration, else managedFields), so the rule removes exactly what Velero would keep.
// 2. The scratch namespaces exist before the Restore, each with a NetworkPolicy: ingress only from the
//    namespace itself, egress only to it and to cluster DNS. Velero restores into an existing namespace
//    (pkg/util/kube/utils.go EnsureNamespaceExistsAndIsReady). k3s enforces NetworkPolicies with its
//    embedded kube-router controller; CoreDNS pods are kube-system/k8s-app=kube-dns (k3s manifests/coredns.yaml).
// 3. After the restore, an audit rewrites any Ingress/HTTPProxy host in the sandbox that is not under
//    the sandbox domain (a backup older than the live objects the rules were built from) and says so.
import { stringify } from 'yaml';
import type { ClusterSpec } from '../../config/schema.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { keepAlive } from '../heartbeat.js';
import { dnsLabel } from './client.js';

export const SANDBOX_POLICY = 'drill-sandbox-isolation';
export const DEFAULT_SANDBOX_DOMAIN = 'drill.invalid';
const CONTOUR_API = 'projectcontour.io/v1';
const MANAGED = { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' };

/** What the rules are built from: the live source objects that carry hosts or nodePorts. */
export interface SourceFacts {
  ingresses: { namespace: string; name: string; hosts: (string | undefined)[]; tls: string[][] }[];
  proxies: { namespace: string; name: string; fqdn: string }[];
  services: { namespace: string; name: string; type?: string; nodePorts: (number | undefined)[] }[];
}

export interface SandboxInfo {
  configMap: string;
  namespaces: string[];
  rules: number;
  /** Production host → sandbox host, for the report. */
  hosts: { from: string; to: string }[];
  domain: string;
}

/** `<host as one label>.<scratch namespace>.<domain>`; a wildcard host keeps its `*.`. */
export function sandboxHost(host: string, scratch: string, domain: string): string {
  const wild = host.startsWith('*.');
  return `${wild ? '*.' : ''}${dnsLabel((wild ? host.slice(2) : host).replace(/\./g, '-'))}.${scratch}.${domain}`;
}

type Rule = Record<string, unknown>;
const cond = (groupResource: string, ns: string, extra: Record<string, unknown> = {}) => ({
  conditions: { groupResource, namespaces: [ns], ...extra },
});
const exact = (name: string) => `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
// Velero decodes `value` into a Go string (UnmarshalStrict) and turns numbers back into JSON numbers.
const str = (v: string | number) => String(v);

/** The resource-modifier document (Velero's YAML format) for a drill of these source namespaces. */
export function sandboxModifiers(
  spec: ClusterSpec,
  mapping: Record<string, string>,
  facts: SourceFacts,
): { yaml: string; rules: number; hosts: SandboxInfo['hosts'] } {
  const domain = spec.backups.drill.sandbox?.domain ?? DEFAULT_SANDBOX_DOMAIN;
  const rules: Rule[] = [];
  const hosts: SandboxInfo['hosts'] = [];
  const to = (h: string, ns: string) => {
    const t = sandboxHost(h, mapping[ns], domain);
    if (!hosts.some((x) => x.from === h)) hosts.push({ from: h, to: t });
    return t;
  };
  const replaceIf = (gr: string, o: { namespace: string; name: string }, path: string, value: string) =>
    rules.push({
      ...cond(gr, o.namespace, { resourceNameRegex: exact(o.name), matches: [{ path, value }] }),
      patches: [{ operation: 'replace', path, value: to(value, o.namespace) }],
    });
  for (const ing of facts.ingresses) {
    ing.hosts.forEach((h, i) => h && replaceIf('ingresses.networking.k8s.io', ing, `/spec/rules/${i}/host`, h));
    ing.tls.forEach((list, i) =>
      list.forEach((h, j) => replaceIf('ingresses.networking.k8s.io', ing, `/spec/tls/${i}/hosts/${j}`, h)),
    );
  }
  for (const p of facts.proxies) replaceIf('httpproxies.projectcontour.io', p, '/spec/virtualhost/fqdn', p.fqdn);
  for (const s of facts.services) {
    s.nodePorts.forEach((port, i) => {
      if (!port) return;
      const path = `/spec/ports/${i}/nodePort`;
      rules.push({
        ...cond('services', s.namespace, { resourceNameRegex: exact(s.name), matches: [{ path, value: str(port) }] }),
        patches: [{ operation: 'remove', path }],
      });
    });
  }
  const merge = (patch: object) => ({ mergePatches: [{ patchData: JSON.stringify(patch) }] });
  for (const ns of Object.keys(mapping)) {
    rules.push({ ...cond('cronjobs.batch', ns), ...merge({ spec: { suspend: true } }) });
    // A restored allow rule would re-open what the sandbox policy closes (allows add up).
    rules.push({
      ...cond('networkpolicies.networking.k8s.io', ns),
      ...merge({ spec: { ingress: null, egress: null } }),
    });
    // A LoadBalancer would get an address (kube-vip, tailscale-operator's proxies): a NodePort at most.
    rules.push({
      ...cond('services', ns, { matches: [{ path: '/spec/type', value: 'LoadBalancer' }] }),
      ...merge({
        spec: {
          type: 'NodePort',
          loadBalancerClass: null,
          loadBalancerIP: null,
          loadBalancerSourceRanges: null,
          allocateLoadBalancerNodePorts: null,
          healthCheckNodePort: null,
          externalIPs: null,
        },
      }),
    });
  }
  for (const w of spec.backups.drill.sandbox?.scaleDown ?? []) {
    if (!mapping[w.namespace]) continue;
    const gr = w.kind === 'Deployment' ? 'deployments.apps' : 'statefulsets.apps';
    rules.push({ ...cond(gr, w.namespace, { resourceNameRegex: exact(w.name) }), ...merge({ spec: { replicas: 0 } }) });
  }
  return { yaml: stringify({ version: 'v1', resourceModifierRules: rules }), rules: rules.length, hosts };
}

/** Same-namespace traffic and DNS; nothing else in or out. */
export function sandboxPolicy(ns: string, runId: string): KubeObject {
  const dns = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } };
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: SANDBOX_POLICY, namespace: ns, labels: { ...MANAGED, 'pedro-ops/drill': runId } },
    spec: {
      podSelector: {},
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ podSelector: {} }] }],
      egress: [
        { to: [{ podSelector: {} }] },
        {
          to: [{ ...dns, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    },
  };
}

/** Lists a kind; [] when the API server does not serve it (Contour's CRD not installed). */
async function listOrNone(kube: KubePort, apiVersion: string, kind: string, ns: string): Promise<KubeObject[]> {
  try {
    return await kube.list(apiVersion, kind, ns);
  } catch (err) {
    if (/Unrecognized API version and kind|404|not found/i.test((err as Error).message)) return [];
    throw err;
  }
}

/** The fields read here of Ingress (networking.k8s.io/v1), HTTPProxy (projectcontour.io/v1) and Service. */
type Routed = KubeObject & {
  spec?: {
    rules?: { host?: string }[];
    tls?: { hosts?: string[] }[];
    virtualhost?: { fqdn?: string };
    type?: string;
    ports?: { nodePort?: number }[];
  };
};

async function readFacts(kube: KubePort, namespaces: string[]): Promise<SourceFacts> {
  const facts: SourceFacts = { ingresses: [], proxies: [], services: [] };
  for (const ns of namespaces) {
    for (const o of (await listOrNone(kube, 'networking.k8s.io/v1', 'Ingress', ns)) as Routed[])
      facts.ingresses.push({
        namespace: ns,
        name: o.metadata!.name!,
        hosts: ((o.spec?.rules ?? []) as { host?: string }[]).map((r) => r.host),
        tls: ((o.spec?.tls ?? []) as { hosts?: string[] }[]).map((t) => t.hosts ?? []),
      });
    for (const o of (await listOrNone(kube, CONTOUR_API, 'HTTPProxy', ns)) as Routed[])
      if (o.spec?.virtualhost?.fqdn)
        facts.proxies.push({ namespace: ns, name: o.metadata!.name!, fqdn: String(o.spec.virtualhost.fqdn) });
    for (const o of await kube.list<Routed>('v1', 'Service', ns)) {
      const nodePorts = ((o.spec?.ports ?? []) as { nodePort?: number }[]).map((p) => p.nodePort);
      if (nodePorts.some(Boolean))
        facts.services.push({ namespace: ns, name: o.metadata!.name!, type: o.spec?.type, nodePorts });
    }
  }
  return facts;
}

export function veleroSandboxActivities(deps: ActivityDeps) {
  const ctx = (cluster: string) => {
    const spec = clusterOrFail(deps, cluster);
    return { spec, kube: deps.kube(spec), velero: spec.backups.veleroNamespace };
  };
  return {
    /**
     * Before the Restore: the modifiers ConfigMap in Velero's namespace, the scratch namespaces and their
     * isolation policy. Idempotent: what exists is left (the ConfigMap is rewritten from the same facts).
     */
    async veleroPrepareSandbox(input: {
      cluster: string;
      runId: string;
      mapping: Record<string, string>;
    }): Promise<SandboxInfo> {
      const { spec, kube, velero } = ctx(input.cluster);
      return keepAlive(async () => {
        const facts = await readFacts(kube, Object.keys(input.mapping));
        const mods = sandboxModifiers(spec, input.mapping, facts);
        const name = dnsLabel(`drill-${input.runId}-sandbox`);
        const cm: KubeObject = {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name, namespace: velero, labels: { ...MANAGED, 'pedro-ops/drill': input.runId } },
          data: { 'sandbox.yaml': mods.yaml },
        };
        if (await kube.read('v1', 'ConfigMap', name, velero)) await kube.replace(cm);
        else await kube.create(cm);
        const namespaces = Object.values(input.mapping);
        for (const ns of namespaces) {
          if (!(await kube.read('v1', 'Namespace', ns)))
            await kube.create({
              apiVersion: 'v1',
              kind: 'Namespace',
              metadata: {
                name: ns,
                labels: { ...MANAGED, 'pedro-ops/drill': input.runId, 'pedro-ops/sandbox': 'true' },
              },
            });
          if (!(await kube.read('networking.k8s.io/v1', 'NetworkPolicy', SANDBOX_POLICY, ns)))
            await kube.create(sandboxPolicy(ns, input.runId));
        }
        deps.log.info(
          { cluster: spec.name, configMap: name, rules: mods.rules, hosts: mods.hosts.length },
          'drill sandbox prepared',
        );
        return {
          configMap: name,
          namespaces,
          rules: mods.rules,
          hosts: mods.hosts,
          domain: spec.backups.drill.sandbox?.domain ?? DEFAULT_SANDBOX_DOMAIN,
        };
      });
    },

    /**
     * After the restore: any Ingress/HTTPProxy host in the sandbox outside the sandbox domain (the
     * backup held an item the rules, built from the live objects, did not match) is rewritten now.
     */
    async veleroAuditSandbox(input: {
      cluster: string;
      namespaces: string[];
      domain: string;
    }): Promise<{ rewritten: string[]; policyMissing: string[] }> {
      const { kube } = ctx(input.cluster);
      return keepAlive(async () => {
        const rewritten: string[] = [];
        const policyMissing: string[] = [];
        const fix = (h: string | undefined, ns: string, where: string) => {
          if (!h || h.endsWith(`.${input.domain}`)) return h;
          rewritten.push(`${where}: ${h}`);
          return sandboxHost(h, ns, input.domain);
        };
        for (const ns of input.namespaces) {
          for (const o of (await listOrNone(kube, 'networking.k8s.io/v1', 'Ingress', ns)) as Routed[]) {
            const before = rewritten.length;
            const id = `Ingress ${ns}/${o.metadata!.name}`;
            for (const r of (o.spec?.rules ?? []) as { host?: string }[]) r.host = fix(r.host, ns, id);
            for (const t of (o.spec?.tls ?? []) as { hosts?: string[] }[])
              t.hosts = t.hosts?.map((h) => fix(h, ns, id)!);
            if (rewritten.length > before)
              await kube.replace({ ...o, apiVersion: 'networking.k8s.io/v1', kind: 'Ingress' });
          }
          for (const o of (await listOrNone(kube, CONTOUR_API, 'HTTPProxy', ns)) as Routed[]) {
            const vh = o.spec?.virtualhost;
            if (!vh?.fqdn) continue;
            const next = fix(vh.fqdn, ns, `HTTPProxy ${ns}/${o.metadata!.name}`);
            if (next !== vh.fqdn) {
              vh.fqdn = next;
              await kube.replace({ ...o, apiVersion: CONTOUR_API, kind: 'HTTPProxy' });
            }
          }
          if (!(await kube.read('networking.k8s.io/v1', 'NetworkPolicy', SANDBOX_POLICY, ns))) {
            policyMissing.push(ns);
            await kube.create(sandboxPolicy(ns, 'audit'));
          }
        }
        return { rewritten, policyMissing };
      });
    },

    async veleroDeleteSandboxConfig(input: { cluster: string; configMap: string }): Promise<boolean> {
      const { kube, velero } = ctx(input.cluster);
      return kube.delete('v1', 'ConfigMap', input.configMap, velero);
    },
  };
}
