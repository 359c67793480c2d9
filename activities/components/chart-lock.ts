// The chart lock: what real Helm rendered for every component, made by `npm run charts:lock`
// (scripts/charts-lock.ts) from the real chart at its pinned version with the values the
// orchestrator sends (the HelmChart's valuesContent), and recorded with where the chart came from.
// `npm run config:check` refuses a cluster file whose components changed since their render or whose
// render failed, so a chart that cannot template, a wrong workload name, a node-pinned workload or a
// PDB is seen before anything touches the cluster. The lab installs these renders (DESIGN rule 12).
//
// Helm is the version klipper-helm bundles (k3s-io/klipper-helm v0.9.4-build20250113
// package/Dockerfile: helm-v3.16.4), the Job image helm-controller v0.16.5 runs in k3s v1.31.4+k3s1.
// A render is `helm template` with `--include-crds` (an install applies a chart's crds/ folder unless
// --skip-crds: helm v3.16.4 pkg/action/install.go:260) and `--skip-tests` (an install runs only its
// install hooks; test hooks run on `helm test`), `--kube-version` of the pinned k3s.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { ClusterSpec, ComponentSpec } from '../../config/schema.js';
import { desiredHelmChart, stableJson } from './helmchart.js';

export const LOCK_VERSION = 1;

/** Where a chart came from: a chart repository's package, or an upstream git tree at its release tag. */
export interface ChartSource {
  /** `helm pull`: the package's sha256 (the `digest` of the repository's index.yaml entry). */
  pulled?: { repo: string; digest: string };
  /** Read at its release tag from its upstream repository (the repository could not be reached). */
  git?: { repo: string; tag: string; commit: string; path: string };
  dependencies?: { name: string; version: string; condition?: string; git?: ChartSource['git']; note?: string }[];
  /** Dependencies removed from Chart.yaml because they could not be had, each disabled by our values. */
  stripped?: { name: string; version: string; condition?: string; reason: string }[];
  /** Steps besides extracting (e.g. the upstream release process filling a templated Chart.yaml). */
  prepared?: string[];
  /** sha256 over the chart directory as rendered (sorted paths and contents, dependencies included). */
  treeDigest: string;
  notes?: string;
}

/** One rendered object, reduced to what the orchestrator and the lab depend on. */
export interface LockedObject {
  apiVersion: string;
  kind: string;
  name: string;
  /** Absent for cluster-scoped kinds; the release namespace when the template sets none. */
  namespace?: string;
  /** helm.sh/hook annotations: hooks run outside the release's manifest. */
  hook?: { events: string[]; weight?: number; deletePolicy?: string[] };
  replicas?: number;
  selector?: Record<string, string>;
  podLabels?: Record<string, string>;
  nodeSelector?: Record<string, string>;
  affinity?: Record<string, unknown>;
  tolerations?: Record<string, unknown>[];
  containers?: LockedContainer[];
  initContainers?: LockedContainer[];
  updateStrategy?: string;
  serviceName?: string;
  podManagementPolicy?: string;
  volumeClaimTemplates?: { name: string; storage?: string; storageClassName?: string }[];
  schedule?: string;
  /** Service */
  type?: string;
  ports?: { name?: string; port: number; targetPort?: number | string; protocol?: string; nodePort?: number }[];
  publishNotReadyAddresses?: boolean;
  clusterIP?: string;
  /** PodDisruptionBudget */
  minAvailable?: number | string;
  maxUnavailable?: number | string;
  /** PersistentVolumeClaim */
  storage?: string;
  storageClassName?: string;
}

export interface LockedContainer {
  name: string;
  image: string;
  ports?: { containerPort: number; name?: string; protocol?: string }[];
  /** The probe's handler (httpGet, exec, tcpSocket, grpc), when the container has one. */
  readinessProbe?: string;
  livenessProbe?: string;
  startupProbe?: string;
}

export type LockedRender =
  | { ok: true; objects: LockedObject[] }
  /** `missing`: the chart itself could not be had (no repository answered, no local copy). */
  | { ok: false; error: string; missing?: boolean };

export interface LockEntry {
  chart: string;
  version: string;
  repo?: string;
  namespace: string;
  /** sha256 of everything the render depended on (renderInputs); config:check recomputes it. */
  inputs: string;
  source?: ChartSource;
  render: LockedRender;
}

export interface ChartLock {
  lockVersion: number;
  cluster: string;
  generatedBy: string;
  helm: string;
  kubeVersion: string;
  components: Record<string, LockEntry>;
}

/** The lock of a cluster file: `<dir>/<name>.charts-lock.json` beside `<dir>/<name>.yaml`. */
export function lockPathFor(clusterFile: string): string {
  return join(dirname(clusterFile), `${basename(clusterFile).replace(/\.ya?ml$/, '')}.charts-lock.json`);
}

export function readChartLock(path: string): ChartLock | undefined {
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as ChartLock;
}

/** The Kubernetes version a chart is rendered for: the pinned k3s's (v1.31.4+k3s1 → v1.31.4). */
export function kubeVersionOf(spec: ClusterSpec): string {
  return spec.k3s.version.replace(/\+.*$/, '');
}

/** What a render depends on: release name, namespace, chart, repository, version, values, Kubernetes version. */
export function renderInputs(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string) {
  const chart = desiredHelmChart(spec, c, clustersDir).spec!;
  return {
    release: c.name,
    namespace: c.namespace,
    chart: c.chart,
    repo: c.repo ?? null,
    version: c.version,
    valuesContent: (chart.valuesContent as string | undefined) ?? '',
    kubeVersion: kubeVersionOf(spec),
  };
}

export function inputsDigest(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string): string {
  return `sha256:${createHash('sha256')
    .update(stableJson(renderInputs(spec, c, clustersDir)))
    .digest('hex')}`;
}

/**
 * What is wrong with a cluster's lock, one line per problem, each naming the component or entry: a
 * component with no entry, inputs changed since the render (version, values, repository, namespace,
 * Kubernetes version), a render that failed (unless the component is pendingChart and its chart could
 * not be had), a `workloads` entry the render does not contain, or a secret consumer no render has.
 */
export function chartLockProblems(
  spec: ClusterSpec,
  lock: ChartLock | undefined,
  lockFile: string,
  clustersDir?: string,
): string[] {
  if (!lock) return [`${lockFile}: no chart lock; run npm run charts:lock`];
  const out: string[] = [];
  if (lock.lockVersion !== LOCK_VERSION)
    out.push(`${lockFile}: lockVersion ${lock.lockVersion}, expected ${LOCK_VERSION}`);
  spec.components.forEach((c, i) => {
    const at = `components[${i}] (${c.name})`;
    const e = lock.components[c.name];
    if (!e) {
      out.push(`${at}: not in the chart lock; run npm run charts:lock`);
      return;
    }
    if (e.inputs !== inputsDigest(spec, c, clustersDir)) {
      const was = `${e.chart} ${e.version}`;
      const now = `${c.chart} ${c.version}`;
      out.push(
        `${at}: ${was === now ? 'values, repository, namespace or Kubernetes version' : `chart ${was} -> ${now}`} changed since the chart lock was rendered; run npm run charts:lock and review the render`,
      );
      return;
    }
    if (!e.render.ok) {
      // pending: listed by config:check (pendingCharts), not refused
      if (!(c.pendingChart && e.render.missing))
        out.push(`${at}: chart ${e.chart} ${e.version} does not render: ${e.render.error}`);
      return;
    }
    const objects = e.render.objects;
    for (const w of c.workloads) {
      const ns = w.namespace ?? c.namespace;
      if (!objects.some((o) => !o.hook && o.kind === w.kind && o.name === w.name && (o.namespace ?? ns) === ns))
        out.push(
          `${at}: workloads names ${w.kind} ${ns}/${w.name}, which chart ${e.chart} ${e.version} does not render (it renders: ${
            objects
              .filter((o) => WORKLOAD_KINDS.has(o.kind) && !o.hook)
              .map((o) => `${o.kind} ${o.name}`)
              .join(', ') || 'no workloads'
          })`,
        );
    }
  });
  // A secret's consumers are restarted by name: each must be an object some chart renders (or one a
  // pending chart's config names).
  const rendered = Object.values(lock.components).flatMap((e) => (e.render.ok ? e.render.objects : []));
  spec.secrets.entries.forEach((e, i) => {
    for (const w of e.consumers) {
      const ns = w.namespace ?? e.kubernetes?.namespace;
      const found =
        rendered.some((o) => !o.hook && o.kind === w.kind && o.name === w.name && o.namespace === ns) ||
        spec.components.some(
          (c) =>
            c.pendingChart &&
            c.workloads.some((x) => x.kind === w.kind && x.name === w.name && (x.namespace ?? c.namespace) === ns),
        );
      if (!found)
        out.push(
          `secrets.entries[${i}] (${e.id}): consumer ${w.kind} ${ns}/${w.name} is rendered by no component's chart`,
        );
    }
  });
  for (const name of Object.keys(lock.components))
    if (!spec.components.some((c) => c.name === name))
      out.push(`${name}: in the chart lock but not a component; run npm run charts:lock`);
  return out;
}

/** Components marked pendingChart whose chart the lock could not get: what config:check lists. */
export function pendingCharts(spec: ClusterSpec, lock: ChartLock | undefined): string[] {
  return spec.components
    .filter((c) => {
      const r = lock?.components[c.name]?.render;
      return c.pendingChart && r && !r.ok && r.missing;
    })
    .map((c) => `${c.name}: chart ${c.chart} ${c.version} pending, not rendered until it exists: ${c.pendingChart}`);
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob']);

/** Kinds a Helm install creates without a namespace (the rest get the release namespace). */
const CLUSTER_SCOPED = new Set([
  'APIService',
  'CSIDriver',
  'ClusterIssuer',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'GatewayClass',
  'IngressClass',
  'MutatingWebhookConfiguration',
  'Namespace',
  'PersistentVolume',
  'PriorityClass',
  'StorageClass',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
  'ValidatingWebhookConfiguration',
]);

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A nested field of parsed YAML, or undefined where any step is missing. */
const at = (o: unknown, ...path: string[]): unknown =>
  path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);

const probeKind = (p: Raw | undefined) =>
  p ? (['httpGet', 'exec', 'tcpSocket', 'grpc'].find((k) => p[k] !== undefined) ?? 'unknown') : undefined;

function container(c: Raw): LockedContainer {
  const out: LockedContainer = { name: String(c.name), image: String(c.image ?? '') };
  const ports = ((c.ports ?? []) as Raw[])
    .filter((p) => Number.isFinite(Number(p.containerPort)))
    .map((p) =>
      defined({
        containerPort: Number(p.containerPort),
        name: p.name as string | undefined,
        protocol: p.protocol as string | undefined,
      }),
    );
  if (ports.length) out.ports = ports;
  for (const k of ['readinessProbe', 'livenessProbe', 'startupProbe'] as const) {
    const kind = probeKind(c[k] as Raw | undefined);
    if (kind) out[k] = kind;
  }
  return out;
}

const defined = <T extends object>(o: T): T =>
  Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0)),
  ) as T;

/**
 * One rendered object as the lock records it. Never a Secret's or ConfigMap's data, nor annotations
 * (checksums of generated passwords change on every render).
 */
export function lockedObject(o: Raw, releaseNamespace: string): LockedObject {
  const meta = (o.metadata ?? {}) as Raw;
  const ann = (meta.annotations ?? {}) as Record<string, string>;
  const kind = String(o.kind);
  const base: LockedObject = {
    apiVersion: String(o.apiVersion),
    kind,
    name: String(meta.name),
    namespace: CLUSTER_SCOPED.has(kind) ? undefined : ((meta.namespace as string | undefined) ?? releaseNamespace),
  };
  const hook = ann['helm.sh/hook'];
  if (hook) {
    base.hook = defined({
      events: hook.split(',').map((s) => s.trim()),
      weight: ann['helm.sh/hook-weight'] !== undefined ? Number(ann['helm.sh/hook-weight']) : undefined,
      deletePolicy: ann['helm.sh/hook-delete-policy']?.split(',').map((s) => s.trim()),
    });
  }
  const spec = (o.spec ?? {}) as Raw;
  if (WORKLOAD_KINDS.has(kind)) {
    const podTemplate = (kind === 'CronJob' ? at(spec, 'jobTemplate', 'spec', 'template') : spec.template) as
      Raw | undefined;
    const pod = (at(podTemplate, 'spec') ?? {}) as Raw;
    return defined({
      ...base,
      replicas:
        kind === 'Deployment' || kind === 'StatefulSet' ? ((spec.replicas as number | undefined) ?? 1) : undefined,
      selector: at(spec, 'selector', 'matchLabels') as Record<string, string> | undefined,
      podLabels: at(podTemplate, 'metadata', 'labels') as Record<string, string> | undefined,
      nodeSelector: pod.nodeSelector as Record<string, string> | undefined,
      affinity: pod.affinity as Record<string, unknown> | undefined,
      tolerations: pod.tolerations as Record<string, unknown>[] | undefined,
      containers: ((pod.containers ?? []) as Raw[]).map(container),
      initContainers: ((pod.initContainers ?? []) as Raw[]).map(container),
      updateStrategy: at(spec.updateStrategy ?? spec.strategy, 'type') as string | undefined,
      serviceName: spec.serviceName as string | undefined,
      podManagementPolicy: spec.podManagementPolicy as string | undefined,
      volumeClaimTemplates: ((spec.volumeClaimTemplates ?? []) as Raw[]).map((t) =>
        defined({
          name: String(at(t, 'metadata', 'name')),
          storage: at(t, 'spec', 'resources', 'requests', 'storage') as string | undefined,
          storageClassName: at(t, 'spec', 'storageClassName') as string | undefined,
        }),
      ),
      schedule: spec.schedule as string | undefined,
    });
  }
  switch (kind) {
    case 'Service':
      return defined({
        ...base,
        type: (spec.type as string | undefined) ?? 'ClusterIP',
        clusterIP: spec.clusterIP as string | undefined,
        selector: spec.selector as Record<string, string> | undefined,
        publishNotReadyAddresses: spec.publishNotReadyAddresses as boolean | undefined,
        ports: ((spec.ports ?? []) as Raw[]).map((p) =>
          defined({
            name: p.name as string | undefined,
            port: Number(p.port),
            targetPort: p.targetPort as number | string | undefined,
            protocol: p.protocol as string | undefined,
            nodePort: p.nodePort as number | undefined,
          }),
        ),
      });
    case 'PodDisruptionBudget':
      return defined({
        ...base,
        minAvailable: spec.minAvailable as number | string | undefined,
        maxUnavailable: spec.maxUnavailable as number | string | undefined,
        selector: at(spec, 'selector', 'matchLabels') as Record<string, string> | undefined,
      });
    case 'PersistentVolumeClaim':
      return defined({
        ...base,
        storage: at(spec, 'resources', 'requests', 'storage') as string | undefined,
        storageClassName: spec.storageClassName as string | undefined,
      });
    default:
      return defined(base);
  }
}

/** `helm template` output → the lock's objects, in Helm's install order as rendered. */
export function lockedObjects(manifest: string, releaseNamespace: string): LockedObject[] {
  const out: LockedObject[] = [];
  for (const doc of parseAllDocuments(manifest)) {
    const o = doc.toJSON() as Raw | null;
    if (!o || typeof o !== 'object' || !o.kind) continue;
    if (o.kind === 'List' && Array.isArray(o.items)) {
      for (const item of o.items as Raw[]) out.push(lockedObject(item, releaseNamespace));
    } else out.push(lockedObject(o, releaseNamespace));
  }
  return out;
}
