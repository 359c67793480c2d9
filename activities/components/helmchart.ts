// Platform components as k3s HelmChart resources. The desired HelmChart carries a spec-hash
// annotation: an existing chart with the same hash whose install Job completed is left untouched
// (no write), a different hash is applied (server-side apply: helm-controller's finalizer and
// annotations stay). Success = Job helm-install-<name> Complete and every declared workload up.
// Failure is judged by the Job and the Helm release, as upstream sets them: helm-controller v0.16
// marks the HelmChart Failed only when it cannot generate the Job (pkg/controllers/chart/chart.go),
// and klipper-helm with failurePolicy abort never reruns a release left `failed` ("waiting for
// operator intervention", klipper-helm `entry`). So a retry first rolls the release back: the
// failed revisions are removed, leaving the last deployed one (retry = upgrade again from it) or
// none (a first install that failed: retry = install again), then the failed Job is deleted and
// helm-controller applies it anew. The parked finding says which it will be.
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ociHostPort, registryHostPort } from '../../config/addresses.js';
import type { ClusterSpec, ComponentSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { rolloutStatus, WORKLOAD_API_VERSION } from '../kube/rollout.js';
import { beat, sleep, waitDeadline } from '../heartbeat.js';

export const HELM_NAMESPACE = 'kube-system';
export const SPEC_HASH = 'pedro-ops.dev/spec-hash';
/** helm-controller's annotation on the Job's pod template: a hash of the values it mounts. */
const CONFIG_HASH = 'helmcharts.helm.cattle.io/configHash';
const API = 'helm.cattle.io/v1';

/** A HelmChart (helm.cattle.io/v1) or its batch/v1 Job: the spec is ours, the status fields are the ones read here. */
type Obj = KubeObject & {
  spec?: Record<string, unknown> & { selector?: { matchLabels?: Record<string, string> } };
  status?: { phase?: string; conditions?: { type: string; status: string; message?: string }[] };
};

export interface ComponentResult {
  name: string;
  version: string;
  /** created | updated | retriggered (a failed release rolled back and run again) | unchanged */
  action: 'created' | 'updated' | 'retriggered' | 'unchanged';
  /** What a retry did to the failed release, when it did something. */
  retry?: string;
  satisfied: boolean;
  workloads: { kind: string; name: string; namespace: string; message: string }[];
  durationMs: number;
}

function valuesOf(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string): Record<string, unknown> | undefined {
  if (c.values) return c.values;
  if (!c.valuesFile) return undefined;
  const path = resolve(clustersDir ?? '.', c.valuesFile);
  if (!existsSync(path))
    throw nonRetryable(ErrorType.BadConfig, `values file ${c.valuesFile} of ${c.name} not found at ${path}`);
  return parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  void spec;
}

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * The Velero chart owns the BackupStorageLocation (velero 8.0.0 templates/backupstoragelocation.yaml
 * renders one per `configuration.backupStorageLocation` entry, copying every `config` key), so the
 * backup policy's publicUrl goes into the entry for its storage location; set anywhere else it would
 * never reach the BSL the chart keeps in place.
 */
function withBackupPublicUrl(
  spec: ClusterSpec,
  c: ComponentSpec,
  values: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  const b = spec.backups;
  if (!values || !b.publicUrl || c.namespace !== b.veleroNamespace) return values;
  const configuration = values.configuration as { backupStorageLocation?: unknown } | undefined;
  const list = configuration?.backupStorageLocation;
  if (!Array.isArray(list)) return values;
  // An entry without a name is named `default` by the chart.
  const at = list.findIndex((l: { name?: string }) => (l?.name ?? 'default') === b.storageLocation);
  if (at < 0) return values;
  const out = structuredClone(values) as { configuration: { backupStorageLocation: Record<string, unknown>[] } };
  const entry = out.configuration.backupStorageLocation[at];
  entry.config = { ...(entry.config as Record<string, unknown> | undefined), publicUrl: b.publicUrl };
  return out;
}

export function desiredHelmChart(spec: ClusterSpec, c: ComponentSpec, clustersDir?: string): Obj {
  const values = withBackupPublicUrl(spec, c, valuesOf(spec, c, clustersDir));
  const chartSpec: Record<string, unknown> = {
    chart: c.chart,
    version: c.version,
    targetNamespace: c.namespace,
    createNamespace: true,
    // Bounded: the default (1000) would keep a broken chart retrying for hours.
    backOffLimit: 2,
    // Go's form: helm-controller writes the whole HelmChart back when it claims it (shouldManage's
    // typed Update) and spec.timeout, a *metav1.Duration, marshals with Duration.String(): "600s"
    // would come back as "10m0s" (k3s-io/helm-controller v0.16.5 pkg/controllers/chart/chart.go).
    timeout: goDuration(c.timeoutSeconds),
    failurePolicy: 'abort',
  };
  if (c.repo && !c.repo.startsWith('oci://')) chartSpec.repo = c.repo;
  if (c.repo?.startsWith('oci://')) {
    chartSpec.chart = `${c.repo.replace(/\/$/, '')}/${c.chart}`;
    // helm-controller v0.16.5 (k3s v1.31's) HelmChartSpec.PlainHTTP -> the job's PLAIN_HTTP env, i.e.
    // `helm pull --plain-http`: without it Helm speaks TLS to a plain-HTTP registry and the pull fails.
    // (k3s-io/helm-controller pkg/apis/helm.cattle.io/v1/types.go, pkg/controllers/chart/chart.go)
    // Only for the cluster's own registry: a public one (ghcr.io) speaks TLS.
    if (spec.registry && !spec.registry.tls && ociHostPort(c.repo) === registryHostPort(spec))
      chartSpec.plainHTTP = true;
  }
  if (values && Object.keys(values).length > 0) chartSpec.valuesContent = stringify(values);
  const hash = createHash('sha256').update(stableJson(chartSpec)).digest('hex').slice(0, 32);
  return {
    apiVersion: API,
    kind: 'HelmChart',
    metadata: {
      name: c.name,
      namespace: HELM_NAMESPACE,
      labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
      annotations: { [SPEC_HASH]: hash },
    },
    spec: chartSpec,
  };
}

/** Go's time.Duration.String() of whole seconds: 30 → "30s", 600 → "10m0s", 3600 → "1h0m0s". */
export function goDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h > 0 ? `${h}h` : ''}${m}m${s % 60}s`;
}

const DURATION_UNITS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, µs: 1e-6, ns: 1e-9 };

/** Seconds of a Go duration string (time.ParseDuration's units), or undefined when it is not one. */
export function parseGoDuration(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^(\d+(\.\d+)?(h|ms|m|s|us|µs|ns))+$/.test(v)) return v === '0' ? 0 : undefined;
  let total = 0;
  for (const [, n, , unit] of v.matchAll(/(\d+(\.\d+)?)(h|ms|m|s|us|µs|ns)/g))
    total += Number(n) * DURATION_UNITS[unit];
  return total;
}

/** Equal as the HelmChart holds them: durations by value ("600s" is "10m0s"), the rest by JSON. */
function sameField(key: string, a: unknown, b: unknown): boolean {
  if (key === 'timeout') {
    const x = parseGoDuration(a);
    const y = parseGoDuration(b);
    if (x !== undefined && y !== undefined) return Math.abs(x - y) < 1e-9;
  }
  return stableJson(a) === stableJson(b);
}

/**
 * The fields of our spec the live HelmChart does not hold as we wrote them (a `kubectl edit`, a hand
 * upgrade). The spec-hash annotation alone would miss those: an edit keeps it.
 */
export function helmChartDiff(desired: Obj, current: Obj | undefined): string[] {
  const want = desired.spec ?? {};
  const have = current?.spec ?? {};
  // The CRD helm-controller v0.16.5 registers has no defaults, so a key we do not set was added by hand.
  const keys = [...new Set([...Object.keys(want), ...Object.keys(have)])];
  return keys.filter((k) => !sameField(k, have[k], want[k]));
}

type JobContainer = { name?: string; args?: string[]; env?: { name: string; value?: string }[] };
type JobObj = Obj & {
  spec?: {
    backoffLimit?: number;
    template?: { metadata?: { annotations?: Record<string, string> }; spec?: { containers?: JobContainer[] } };
  };
};

/**
 * What helm-controller v0.16.5 puts into Job helm-install-<name> for a HelmChart spec: the env and
 * args klipper-helm runs with, the backoffLimit, and the configHash annotation (pkg/controllers/chart/
 * chart.go: job(), args(), setFailurePolicy(), setBackOffLimit(), hashObjects()). A HelmChartConfig of
 * the same name adds its values and may override the failure policy (getJobAndRelatedResources).
 * Only the parts our spec decides are kept: two Jobs that agree on them run the same helm command.
 */
export function expectedInstallJob(
  desired: Obj,
  config?: { spec?: { valuesContent?: string; failurePolicy?: string } },
): { env: Record<string, string>; args: string[]; backoffLimit: number; configHash: string } {
  const spec: Record<string, unknown> = desired.spec ?? {};
  const str = (k: string) => (typeof spec[k] === 'string' ? String(spec[k]) : '');
  const name = desired.metadata!.name!;
  const env: Record<string, string> = {
    NAME: name,
    VERSION: str('version'),
    REPO: str('repo'),
    CHART: spec.repo ? `${name}/${str('chart')}` : str('chart'),
    TARGET_NAMESPACE: str('targetNamespace') || desired.metadata!.namespace!,
    PLAIN_HTTP: String(Boolean(spec.plainHTTP)),
    FAILURE_POLICY: config?.spec?.failurePolicy || str('failurePolicy') || 'reinstall',
  };
  const seconds = parseGoDuration(spec.timeout);
  if (seconds !== undefined) env.TIMEOUT = goDuration(seconds);
  const args = ['install'];
  if (str('targetNamespace')) args.push('--namespace', str('targetNamespace'));
  if (spec.createNamespace) args.push('--create-namespace');
  if (str('version')) args.push('--version', str('version'));
  // hashObjects(job, contentConfigMap, valuesSecret): each object's `data` with sorted keys, key then
  // value; a Secret's []byte values are base64 in its unstructured form. We set no chartContent.
  const hash = createHash('sha256');
  const values: [string, string][] = [];
  if (str('valuesContent')) values.push(['values-01_HelmChart.yaml', str('valuesContent')]);
  if (config?.spec?.valuesContent) values.push(['values-10_HelmChartConfig.yaml', config.spec.valuesContent]);
  for (const [k, v] of values.sort(([a], [b]) => (a < b ? -1 : 1))) {
    hash.update(k);
    hash.update(Buffer.from(v, 'utf8').toString('base64'));
  }
  return {
    env,
    args,
    backoffLimit: typeof spec.backOffLimit === 'number' ? spec.backOffLimit : 1000,
    configHash: `SHA256=${hash.digest('hex').toUpperCase()}`,
  };
}

/** Which of the Job's helm inputs differ from the expected ones (empty: it is the Job we want). */
export function installJobDiff(job: JobObj | undefined, want: ReturnType<typeof expectedInstallJob>): string[] {
  if (!job) return ['(no Job)'];
  const container = job.spec?.template?.spec?.containers?.find((x) => x.name === 'helm');
  const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value ?? '']));
  const out = Object.entries(want.env)
    .filter(([k, v]) => (env[k] ?? '') !== v)
    .map(([k]) => `env ${k}`);
  if (!want.env.TIMEOUT && env.TIMEOUT) out.push('env TIMEOUT');
  if (stableJson(container?.args ?? []) !== stableJson(want.args)) out.push('args');
  if (job.spec?.backoffLimit !== want.backoffLimit) out.push('backoffLimit');
  if (job.spec?.template?.metadata?.annotations?.[CONFIG_HASH] !== want.configHash) out.push('configHash');
  return out;
}

const cond = (o: Obj | undefined, type: string) =>
  (o?.status?.conditions ?? []).find((c) => c.type === type && c.status === 'True');

/**
 * What Helm waits for after an install (helm.sh/helm/v3 v3.16 pkg/kube/ready.go ReadyChecker.IsReady),
 * by kind. Workloads use kubectl's rollout rules (kube/rollout.ts: Helm's own check is looser, it
 * accepts maxUnavailable fewer ready pods); a Job must complete, a claim be Bound, a CRD Established.
 * Other kinds (Services, ConfigMaps, RBAC, …) are ready once they exist, and Helm created them.
 */
const WAITED_KINDS: Record<string, string> = {
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  Job: 'batch/v1',
  PersistentVolumeClaim: 'v1',
  CustomResourceDefinition: 'apiextensions.k8s.io/v1',
};

/** Release.Manifest as Helm stored it: one YAML document per template, hooks kept apart (not here). */
export function manifestObjects(
  manifest: string,
  releaseNamespace: string,
): { kind: string; name: string; namespace?: string }[] {
  const out: { kind: string; name: string; namespace?: string }[] = [];
  for (const doc of parseAllDocuments(manifest)) {
    const o = doc.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } } | null;
    if (!o?.kind || !o.metadata?.name) continue;
    // Helm installs an object that names no namespace into the release's (helm v3.16 pkg/kube/client.go
    // newBuilder: NamespaceParam(release namespace).DefaultNamespace()); a CRD is cluster-scoped.
    const namespace = o.kind === 'CustomResourceDefinition' ? undefined : (o.metadata.namespace ?? releaseNamespace);
    out.push({ kind: o.kind, name: o.metadata.name, ...(namespace ? { namespace } : {}) });
  }
  return out;
}

function objectStatus(kind: string, obj: Obj): { done: boolean; failed: boolean; message: string } {
  const conds = obj.status?.conditions ?? [];
  switch (kind) {
    case 'Job':
      if (conds.some((x) => x.type === 'Failed' && x.status === 'True'))
        return { done: false, failed: true, message: 'job failed' };
      return conds.some((x) => x.type === 'Complete' && x.status === 'True')
        ? { done: true, failed: false, message: 'complete' }
        : { done: false, failed: false, message: 'not complete yet' };
    case 'PersistentVolumeClaim':
      return obj.status?.phase === 'Bound'
        ? { done: true, failed: false, message: 'Bound' }
        : { done: false, failed: false, message: `${obj.status?.phase ?? 'Pending'}, not Bound yet` };
    case 'CustomResourceDefinition':
      // ready.go crdReady: Established, or NamesAccepted False (a naming conflict is not Helm's to fail on)
      return conds.some((x) => x.type === 'Established' && x.status === 'True') ||
        conds.some((x) => x.type === 'NamesAccepted' && x.status === 'False')
        ? { done: true, failed: false, message: 'Established' }
        : { done: false, failed: false, message: 'not Established yet' };
    default:
      return rolloutStatus(kind, obj);
  }
}

/**
 * Readiness from what Helm actually deployed, as `helm --wait`, Flux and Argo CD judge it: the
 * objects in the newest release's manifest (Secret sh.helm.release.v1.<name>.v<N>), each by its
 * kind's rule. The component's `workloads` in config are only exceptions: `readyWhen: running`
 * (OpenBAO before its unseal) for the object of that kind and name. An exception that names no
 * deployed object is a config error, said with what the chart did deploy.
 */
export async function workloadsReady(
  kube: KubePort,
  c: ComponentSpec,
): Promise<{ done: boolean; failed?: string; list: ComponentResult['workloads'] }> {
  const latest = (await releases(kube, c))[0];
  if (!latest)
    return {
      done: false,
      list: [{ kind: 'Release', name: c.name, namespace: c.namespace, message: 'no Helm release recorded yet' }],
    };
  if (latest.status !== 'deployed')
    return {
      done: false,
      list: [
        {
          kind: 'Release',
          name: c.name,
          namespace: c.namespace,
          message: `revision ${latest.revision} is ${latest.status}`,
        },
      ],
    };
  const objects = manifestObjects(latest.manifest ?? '', c.namespace).filter((o) => WAITED_KINDS[o.kind]);
  const exceptions = c.workloads.filter((w) => w.readyWhen === 'running');
  for (const w of exceptions) {
    const ns = w.namespace ?? c.namespace;
    if (!objects.some((o) => o.kind === w.kind && o.name === w.name && o.namespace === ns)) {
      const deployed = objects
        .filter((o) => WORKLOAD_API_VERSION[o.kind])
        .map((o) => `${o.kind} ${o.namespace}/${o.name}`);
      return {
        done: false,
        failed: `config says ${w.kind} ${ns}/${w.name} is ready when running, but release ${c.name} revision ${latest.revision} deployed no such object (it deployed: ${deployed.join(', ') || 'no workloads'})`,
        list: [],
      };
    }
  }
  const list: ComponentResult['workloads'] = [];
  let done = true;
  for (const o of objects) {
    const ns = o.namespace ?? '';
    const obj = await kube.read<Obj>(WAITED_KINDS[o.kind], o.kind, o.name, o.namespace);
    if (!obj) {
      list.push({ kind: o.kind, name: o.name, namespace: ns, message: 'not created yet' });
      done = false;
      continue;
    }
    const exception = exceptions.find(
      (w) => w.kind === o.kind && w.name === o.name && (w.namespace ?? c.namespace) === ns,
    );
    const st = exception
      ? await podsRunning(kube, obj, (obj.spec?.replicas as number | undefined) ?? exception.replicas ?? 1)
      : objectStatus(o.kind, obj);
    list.push({ kind: o.kind, name: o.name, namespace: ns, message: st.message });
    if (st.failed) return { done: false, failed: `${o.kind} ${ns}/${o.name}: ${st.message}`, list };
    if (!st.done) done = false;
  }
  return { done, list };
}

/** `readyWhen: running`: every pod of the workload Running, Ready or not (OpenBAO before its unseal). */
async function podsRunning(
  kube: KubePort,
  obj: Obj,
  want: number,
): Promise<{ done: boolean; failed: boolean; message: string }> {
  const match = obj.spec?.selector?.matchLabels ?? {};
  const selector = Object.entries(match)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const pods = (await kube.list<Obj>('v1', 'Pod', obj.metadata?.namespace, selector)).filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
  const running = pods.filter((p) => p.status?.phase === 'Running').length;
  const ready = pods.filter((p) =>
    (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
  ).length;
  return {
    done: running >= want,
    failed: false,
    message: `${running} of ${want} pods running, ${ready} ready${ready < running ? ' (readiness waits for a later step)' : ''}`,
  };
}

/**
 * A merge patch of our labels, annotations and spec: helm-controller's finalizer
 * (wrangler.cattle.io/on-helm-chart-remove) and annotations stay, which a replace would drop. Spec
 * keys we no longer set are removed explicitly (null).
 */
export async function applyHelmChart(kube: KubePort, current: Obj, desired: Obj): Promise<void> {
  const gone = Object.keys(current.spec ?? {}).filter((k) => !(k in (desired.spec ?? {})));
  await kube.patch(
    {
      apiVersion: desired.apiVersion,
      kind: desired.kind,
      metadata: {
        name: desired.metadata!.name,
        namespace: desired.metadata!.namespace,
        labels: desired.metadata!.labels,
        annotations: desired.metadata!.annotations,
      },
      spec: { ...Object.fromEntries(gone.map((k) => [k, null])), ...desired.spec },
    },
    'merge',
  );
}

interface Release {
  revision: number;
  status: string;
  secret: string;
  description?: string;
  /** Release.Manifest: the rendered templates Helm applied (hooks are kept apart). */
  manifest?: string;
}

/** Helm's release records (secret driver, helm.sh/helm/v3 pkg/storage/driver/secrets.go), newest first. */
export async function releases(kube: KubePort, c: ComponentSpec): Promise<Release[]> {
  const secrets = await kube.list<Obj>('v1', 'Secret', c.namespace, `owner=helm,name=${c.name}`);
  return secrets
    .map((sec) => {
      const body = decodeRelease((sec as { data?: Record<string, string> }).data?.release);
      return {
        revision: Number(sec.metadata?.labels?.version ?? 0),
        status: sec.metadata?.labels?.status ?? 'unknown',
        secret: sec.metadata!.name!,
        description: body?.info?.description,
        manifest: body?.manifest,
      };
    })
    .sort((a, b) => b.revision - a.revision);
}

/** data.release is base64 (the API) of base64(gzip(JSON)) (pkg/storage/driver/util.go encodeRelease). */
export function decodeRelease(
  data: string | undefined,
): { info?: { description?: string }; manifest?: string } | undefined {
  if (!data) return undefined;
  try {
    const inner = Buffer.from(Buffer.from(data, 'base64').toString('utf8'), 'base64');
    const json = inner[0] === 0x1f && inner[1] === 0x8b ? gunzipSync(inner).toString('utf8') : inner.toString('utf8');
    return JSON.parse(json) as { info?: { description?: string }; manifest?: string };
  } catch {
    return undefined;
  }
}

const latestRelease = async (kube: KubePort, c: ComponentSpec) => (await releases(kube, c))[0];
const isBad = (status: string) => status !== 'deployed' && status !== 'superseded';

/** What a retry will do to the release, for the operator's finding. */
async function retryPlan(kube: KubePort, c: ComponentSpec): Promise<string> {
  const all = await releases(kube, c);
  const good = all.find((r) => !isBad(r.status));
  return good
    ? `rolls the release back to deployed revision ${good.revision} (the failed revisions are removed) and upgrades again`
    : 'removes the failed release (it never deployed) and installs again';
}

/** Removes the failed (or interrupted) revisions on top of the last deployed one; says what it did. */
export async function rollBackFailedRelease(kube: KubePort, c: ComponentSpec): Promise<string | undefined> {
  const all = await releases(kube, c);
  const bad: Release[] = [];
  for (const r of all) {
    if (!isBad(r.status)) break;
    bad.push(r);
  }
  if (bad.length === 0) return undefined;
  for (const r of bad) await kube.delete('v1', 'Secret', r.secret, c.namespace);
  const good = all.find((r) => !isBad(r.status));
  const revs = bad.map((r) => `${r.revision} (${r.status})`).join(', ');
  return good
    ? `rolled release ${c.name} back to deployed revision ${good.revision}: removed revision ${revs}`
    : `removed the failed first install of ${c.name}: revision ${revs}`;
}

export function componentActivities(deps: ActivityDeps) {
  return {
    /**
     * `failedJobIsOutcome`: a failed Job found for the current spec is this install's result (the caller
     * wrote that spec in an earlier attempt, so the Job is its own), not a reason to run helm again.
     */
    async installComponent(
      input: { cluster: string; component: string },
      opts: { failedJobIsOutcome?: boolean } = {},
    ): Promise<ComponentResult> {
      const t0 = Date.now();
      const spec = clusterOrFail(deps, input.cluster);
      const c = spec.components.find((x) => x.name === input.component);
      if (!c) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no component "${input.component}"`);
      const kube = deps.kube(spec);
      const desired = desiredHelmChart(spec, c, deps.clusters.dir);
      const hash = (desired.metadata!.annotations as Record<string, string>)[SPEC_HASH];
      const jobName = `helm-install-${c.name}`;

      beat({ component: c.name, step: 'observing' });
      const current = await kube.read<Obj>(API, 'HelmChart', c.name, HELM_NAMESPACE);
      const oldJob = await kube.read<JobObj>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
      // The Job helm-controller will run for our spec; it tells a Job that is ours from a stale one.
      const wantJob = expectedInstallJob(
        desired,
        await kube.read<Obj & { spec?: { valuesContent?: string; failurePolicy?: string } }>(
          API,
          'HelmChartConfig',
          c.name,
          HELM_NAMESPACE,
        ),
      );
      let action: ComponentResult['action'] = 'unchanged';
      let retry: string | undefined;
      const failedBefore = Boolean(cond(oldJob, 'Failed'));
      if (!current) {
        await kube.create(desired);
        action = 'created';
      } else if (current.metadata?.annotations?.[SPEC_HASH] !== hash || helmChartDiff(desired, current).length > 0) {
        // A new spec over a failed release would meet klipper-helm's "waiting for operator intervention".
        retry = await rollBackFailedRelease(kube, c);
        await applyHelmChart(kube, current, desired);
        action = 'updated';
      } else if ((failedBefore && !opts.failedJobIsOutcome) || (!oldJob && !(await workloadsReady(kube, c)).done)) {
        // A previous install failed (or its Job vanished): roll the release back, then let
        // helm-controller apply the Job again (it re-creates a deleted Job; a failed one never reruns).
        retry = await rollBackFailedRelease(kube, c);
        if (oldJob) await kube.delete('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        action = 'retriggered';
      }
      if (retry) {
        deps.log.info({ component: c.name, retry }, 'failed Helm release rolled back before running helm again');
        beat({ component: c.name, step: retry });
      }
      // A Job is stale when it is not the one our spec makes (helm-controller replaces it: jobPatcher),
      // or when we deleted it to run helm again. An update that leaves the Job as it was (only labels,
      // or a timeout written in another form) keeps its result: helm-controller makes no new Job.
      const staleJobUid =
        action === 'created' ||
        action === 'retriggered' ||
        (action === 'updated' && installJobDiff(oldJob, wantJob).length > 0)
          ? oldJob?.metadata?.uid
          : undefined;

      // The component's timeout covers the whole install, also across a crash (heartbeat details).
      const waiting = `component ${c.name}`;
      const deadline = waitDeadline(c.timeoutSeconds, waiting);
      for (let polls = 0; ; polls++) {
        const job = await kube.read<JobObj>('batch/v1', 'Job', jobName, HELM_NAMESPACE);
        const fresh =
          job &&
          job.metadata?.uid !== staleJobUid &&
          !job.metadata?.deletionTimestamp &&
          installJobDiff(job, wantJob).length === 0;
        if (fresh && cond(job, 'Failed')) {
          const rel = await latestRelease(kube, c);
          const what = rel
            ? `release ${c.name} revision ${rel.revision} is ${rel.status}${rel.description ? `: ${rel.description}` : ''}`
            : `no Helm release recorded (${cond(job, 'Failed')?.message ?? 'no message'})`;
          throw nonRetryable(
            ErrorType.InstallFailed,
            `${c.name}: Job ${HELM_NAMESPACE}/${jobName} failed; ${what}. Retry ${await retryPlan(kube, c)}`,
            { component: c.name },
          );
        }
        // No Job but the chart unchanged and its workloads up: installed before Jobs were kept (or cleaned up).
        if ((fresh && cond(job, 'Complete')) || (action === 'unchanged' && !job)) {
          const w = await workloadsReady(kube, c);
          if (w.failed) throw nonRetryable(ErrorType.InstallFailed, `${c.name}: ${w.failed}`, { component: c.name });
          if (w.done)
            return {
              name: c.name,
              version: c.version,
              action,
              ...(retry ? { retry } : {}),
              satisfied: action === 'unchanged',
              workloads: w.list,
              durationMs: Date.now() - t0,
            };
          beat({
            component: c.name,
            step: 'waiting for workloads',
            waiting,
            deadline,
            workloads: w.list.map((x) => `${x.kind}/${x.name}: ${x.message}`),
          });
        } else {
          const differs = job ? installJobDiff(job, wantJob) : [];
          beat({
            component: c.name,
            step: `waiting for Job ${jobName}${differs.length ? ` (the one there differs in ${differs.join(', ')})` : ''}`,
            polls,
            waiting,
            deadline,
          });
        }
        if (Date.now() > deadline) {
          throw nonRetryable(
            ErrorType.InstallFailed,
            `${c.name}: not ready within its timeout of ${c.timeoutSeconds}s`,
            { component: c.name },
          );
        }
        await sleep(200);
      }
    },
  };
}
