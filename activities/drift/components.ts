// Component and platform drift, read from the Kubernetes API only: per component its HelmChart
// against the one installComponent would apply (desiredHelmChart), the newest Helm release and the
// declared workloads; then CoreDNS's coredns-custom against what configureSplitDns writes, and
// Velero's BackupStorageLocation and Schedule against the backup policy. A VIP provider (kube-vip)
// is a component like any other, so it is covered by the component check.
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type { ClusterSpec, ComponentSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { desiredHelmChart, HELM_NAMESPACE, helmChartDiff, releases, workloadsReady } from '../components/helmchart.js';
import { covers, desiredSchedule, desiredStorageLocation } from '../components/platform.js';
import { CUSTOM_CONFIGMAP, CUSTOM_KEY, resolveUpstreams, splitDnsServerBlocks } from '../dns/split-dns.js';
import { fileDiff } from './nodes.js';
import { kubeVipObjects } from '../k3s/vip.js';
import type { DriftFinding, DriftObservation } from '../../workflows/drift-types.js';

type Obj = KubeObject & {
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  status?: { phase?: string; message?: string };
};
const VELERO = 'velero.io/v1';

/** Values are compared by hash: they can be long, and the diff a person needs is "changed", not the YAML. */
const valuesHash = (v: unknown) =>
  v === undefined
    ? '(none)'
    : `sha256:${createHash('sha256')
        .update(typeof v === 'string' ? v : JSON.stringify(v))
        .digest('hex')
        .slice(0, 12)}`;
const show = (k: string, v: unknown) =>
  k === 'valuesContent' ? `values ${valuesHash(v)}` : `${k} ${v === undefined ? '(unset)' : JSON.stringify(v)}`;

/** The chart version a release was made from (helm.sh/helm/v3 pkg/storage/driver/util.go decodeRelease). */
async function releaseChartVersion(kube: KubePort, c: ComponentSpec, secret: string): Promise<string | undefined> {
  const s = await kube.read<Obj>('v1', 'Secret', secret, c.namespace);
  const data = s?.data?.release;
  if (!data) return undefined;
  try {
    const inner = Buffer.from(Buffer.from(data, 'base64').toString('utf8'), 'base64');
    const json = inner[0] === 0x1f && inner[1] === 0x8b ? gunzipSync(inner).toString('utf8') : inner.toString('utf8');
    return (JSON.parse(json) as { chart?: { metadata?: { version?: string } } }).chart?.metadata?.version;
  } catch {
    return undefined;
  }
}

export async function componentDrift(
  deps: ActivityDeps,
  spec: ClusterSpec,
  c: ComponentSpec,
): Promise<DriftObservation> {
  const kube = deps.kube(spec);
  const group = `component ${c.name}`;
  const findings: DriftFinding[] = [];
  const repair = { step: 'component' as const, component: c.name };
  const desired = desiredHelmChart(spec, c, deps.clusters.dir);
  const current = await kube.read<Obj>('helm.cattle.io/v1', 'HelmChart', c.name, HELM_NAMESPACE);
  const chartObj = `HelmChart ${HELM_NAMESPACE}/${c.name}`;
  if (!current) {
    findings.push({
      group,
      kind: 'helmchart',
      object: chartObj,
      want: `chart ${c.chart} ${c.version}`,
      have: '(absent)',
      action: `install ${c.name} ${c.version}`,
      repair,
    });
    return { findings, checked: 1 };
  }
  const diff = helmChartDiff(desired, current);
  if (diff.length > 0)
    findings.push({
      group,
      kind: 'helmchart',
      object: chartObj,
      want: diff.map((k) => show(k, desired.spec?.[k])).join('; '),
      have: diff.map((k) => show(k, current.spec?.[k])).join('; '),
      action: `apply the config's HelmChart spec (${diff.join(', ')})`,
      repair,
    });

  const latest = (await releases(kube, c))[0];
  const version = latest ? await releaseChartVersion(kube, c, latest.secret) : undefined;
  if (!latest || latest.status !== 'deployed' || (version !== undefined && version !== c.version))
    findings.push({
      group,
      kind: 'helm-release',
      object: `Helm release ${c.namespace}/${c.name}`,
      want: `deployed, chart ${c.version}`,
      have: latest
        ? `revision ${latest.revision} ${latest.status}${version ? `, chart ${version}` : ''}`
        : '(no release recorded)',
      action: `run helm for ${c.name} ${c.version} again (a failed release is rolled back first)`,
      repair,
    });

  const w = await workloadsReady(kube, c);
  if (w.failed || !w.done)
    findings.push({
      group,
      kind: 'workloads',
      object: `workloads of ${c.name}`,
      want: 'every object of the deployed release ready',
      have: w.list.map((x) => `${x.kind} ${x.namespace}/${x.name}: ${x.message}`).join('; '),
      action: `install ${c.name} again and wait for its workloads`,
      repair,
    });
  return { findings, checked: 3 };
}

export async function platformDrift(deps: ActivityDeps, spec: ClusterSpec): Promise<DriftObservation> {
  const kube = deps.kube(spec);
  const findings: DriftFinding[] = [];

  const want = splitDnsServerBlocks(await resolveUpstreams(kube, spec));
  const cm = await kube.read<Obj>('v1', 'ConfigMap', CUSTOM_CONFIGMAP, 'kube-system');
  const have = cm?.data?.[CUSTOM_KEY];
  if (have !== want)
    findings.push({
      group: 'dns',
      kind: 'coredns-custom',
      object: `ConfigMap kube-system/${CUSTOM_CONFIGMAP} key ${CUSTOM_KEY}`,
      ...(cm
        ? fileDiff(want, have)
        : { want: `${Object.keys(spec.dns.splitDns).length} split-DNS zones`, have: '(absent)' }),
      action: 'write the split-DNS server blocks again',
      repair: { step: 'split-dns' },
    });

  findings.push(...(await vipDrift(kube, spec)));

  const b = spec.backups;
  const bslWant = desiredStorageLocation(spec);
  const bsl = await kube.read<Obj>(VELERO, 'BackupStorageLocation', b.storageLocation, b.veleroNamespace);
  const bslObj = `BackupStorageLocation ${b.veleroNamespace}/${b.storageLocation}`;
  if (!bsl || bsl.status?.phase !== 'Available')
    findings.push({
      group: 'velero',
      kind: 'velero-bsl',
      object: bslObj,
      want: 'Available',
      have: bsl
        ? `${bsl.status?.phase ?? 'Unknown'}${bsl.status?.message ? `: ${bsl.status.message}` : ''}`
        : '(absent)',
      action: bsl ? 'wait for Velero to validate it (configureVelero)' : 'create it from the backup policy',
      repair: { step: 'velero' },
    });
  else if (!covers(bslWant.spec, bsl.spec))
    findings.push({
      group: 'velero',
      kind: 'velero-bsl',
      object: bslObj,
      want: JSON.stringify(bslWant.spec),
      have: JSON.stringify(bsl.spec),
      // The Velero chart owns the location (it renders it from its values): a person decides.
      action: 'edit the location back or fix the Velero values (the chart owns it)',
      repair: { step: 'manual' },
    });

  const schedWant = desiredSchedule(spec);
  const sched = await kube.read<Obj>(VELERO, 'Schedule', b.schedule.name, b.veleroNamespace);
  if (!sched || !covers(schedWant.spec, sched.spec))
    findings.push({
      group: 'velero',
      kind: 'velero-schedule',
      object: `Schedule ${b.veleroNamespace}/${b.schedule.name}`,
      want: JSON.stringify(schedWant.spec),
      have: sched ? JSON.stringify(sched.spec) : '(absent)',
      action: 'write the Schedule from the backup policy',
      repair: { step: 'velero' },
    });
  return { findings, checked: spec.vipProvider ? 5 : 4 };
}

type Container = { name: string; image?: string; env?: { name: string; value?: string }[] };

/**
 * The VIP provider's DaemonSet against the manifest the build writes (activities/k3s/vip.ts): present,
 * the pinned image, and the env that decides what kube-vip serves (address, interface, port, ARP,
 * leader election). k3s re-applies its manifests folder only when a file's checksum changes or k3s
 * starts (k3s pkg/deploy/controller.go listFilesIn/deploy), so a hand edit stays until repaired.
 */
async function vipDrift(kube: KubePort, spec: ClusterSpec): Promise<DriftFinding[]> {
  const objs = kubeVipObjects(spec);
  const ds = objs?.find((o) => o.kind === 'DaemonSet');
  if (!ds?.metadata?.name) return [];
  const name = ds.metadata.name;
  const ns = ds.metadata.namespace ?? 'kube-system';
  const wantC = (ds as { spec: { template: { spec: { containers: Container[] } } } }).spec.template.spec.containers[0];
  const summary = (c: Container | undefined) =>
    c
      ? [
          `image ${c.image}`,
          ...(c.env ?? []).filter((e) => VIP_ENV.includes(e.name)).map((e) => `${e.name}=${e.value}`),
        ]
          .sort()
          .join('\n')
      : '(absent)';
  type Ds = KubeObject & { spec?: { template?: { spec?: { containers?: Container[] } } } };
  const live = await kube.read<Ds>('apps/v1', 'DaemonSet', name, ns);
  const haveC = live?.spec?.template?.spec?.containers?.find((c) => c.name === wantC.name);
  const want = summary(wantC);
  const have = live ? summary(haveC) : '(absent)';
  if (want === have) return [];
  return [
    {
      group: 'vip',
      kind: 'vip-provider',
      object: `DaemonSet ${ns}/${name} (${spec.vipProvider!.kind} for ${spec.vip})`,
      ...(live ? fileDiff(want, have) : { want: `${spec.vipProvider!.kind} ${spec.vipProvider!.version}`, have }),
      action: 'apply the VIP provider again and wait until the VIP answers /readyz',
      repair: { step: 'vip' },
    },
  ];
}

const VIP_ENV = ['address', 'vip_interface', 'port', 'vip_arp', 'cp_enable', 'vip_leaderelection', 'vip_leasename'];
