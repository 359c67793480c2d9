// Split DNS: one CoreDNS server block per spec.dns.splitDns domain, in the `coredns-custom`
// ConfigMap (key `split-dns.server`). k3s's own Corefile ends with
// `import /etc/coredns/custom/*.server` and mounts coredns-custom there (k3s manifests/coredns.yaml);
// the `coredns` ConfigMap itself is k3s's and is rewritten on every server start, so nothing of ours
// may live in it. CoreDNS `forward` takes IP addresses (or a resolv.conf file), never a hostname
// (coredns plugin/forward/setup.go: "not an IP address or file"; coredns/coredns#4500): an upstream
// given as a cluster Service name is resolved here to the Service's ClusterIP, read from the API.
import { isIP } from 'node:net';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { serviceName } from '../../workflows/provision-plan.js';

export const CUSTOM_CONFIGMAP = 'coredns-custom';
export const CUSTOM_KEY = 'split-dns.server';
// What older versions of this activity wrote into the `coredns` ConfigMap; removed when found.
const BEGIN = '# BEGIN pedro-ops split-dns';
const END = '# END pedro-ops split-dns';

type ConfigMap = KubeObject & { data?: Record<string, string> };
type Service = KubeObject & {
  spec?: { clusterIP?: string; ports?: { name?: string; port: number; protocol?: string }[] };
};

/** An upstream CoreDNS's forward accepts as is: an IP, optionally `:port` (IPv6 in brackets). */
export function isForwardAddress(upstream: string): boolean {
  if (isIP(upstream)) return true;
  const m = /^(?:\[([0-9a-f:]+)\]|([0-9.]+)):(\d{1,5})$/i.exec(upstream);
  return Boolean(m && isIP(m[1] ?? m[2]) && Number(m[3]) > 0 && Number(m[3]) < 65536);
}

export function splitDnsServerBlocks(upstreams: Record<string, string>): string {
  return `${Object.entries(upstreams)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([domain, upstream]) => `${domain}:53 {\n    errors\n    cache 30\n    forward . ${upstream}\n}`)
    .join('\n')}\n`;
}

/** The Corefile without the block older versions wrote. */
export function withoutOldBlock(corefile: string): string {
  const start = corefile.indexOf(BEGIN);
  const end = corefile.indexOf(END);
  if (start < 0 || end < start) return corefile;
  return `${corefile.slice(0, start).replace(/\n*$/, '\n')}${corefile.slice(end + END.length).replace(/^\n/, '')}`;
}

/** Each domain's upstream as an address CoreDNS accepts: a Service name becomes its ClusterIP:port. */
export async function resolveUpstreams(kube: KubePort, spec: ClusterSpec): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [domain, upstream] of Object.entries(spec.dns.splitDns)) {
    if (isForwardAddress(upstream)) {
      out[domain] = upstream;
      continue;
    }
    const svc = serviceName(upstream);
    if (!svc)
      throw nonRetryable(
        ErrorType.BadConfig,
        `dns.splitDns.${domain}: "${upstream}" is neither an IP address nor a cluster Service name (<svc>.<ns>.svc.cluster.local); CoreDNS forward accepts no other hostname`,
      );
    const s = await kube.read<Service>('v1', 'Service', svc.name, svc.namespace);
    const ip = s?.spec?.clusterIP;
    if (!s || !ip || ip === 'None')
      throw retryable(
        ErrorType.NotReady,
        `dns.splitDns.${domain}: Service ${svc.namespace}/${svc.name} ${s ? 'has no ClusterIP' : 'not found'} yet`,
      );
    const ports = s.spec?.ports ?? [];
    const port =
      (ports.find((p) => p.name === 'dns' || p.port === 53) ?? ports.find((p) => p.protocol === 'UDP'))?.port ?? 53;
    out[domain] = port === 53 ? ip : `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
  }
  return out;
}

export function dnsActivities(deps: ActivityDeps) {
  return {
    async configureSplitDns(input: {
      cluster: string;
    }): Promise<{ domains: string[]; changed: boolean; upstreams: Record<string, string> }> {
      const spec = clusterOrFail(deps, input.cluster);
      const kube = deps.kube(spec);
      const core = await kube.read<ConfigMap>('v1', 'ConfigMap', 'coredns', 'kube-system');
      // k3s deploys CoreDNS itself shortly after the server starts: absent means "not yet".
      if (!core?.data?.Corefile)
        throw retryable(ErrorType.NotReady, 'kube-system/coredns ConfigMap (Corefile) not present yet');
      if (!core.data.Corefile.includes('/etc/coredns/custom/*.server'))
        throw nonRetryable(
          ErrorType.BadConfig,
          'kube-system/coredns Corefile does not import /etc/coredns/custom/*.server: not the Corefile k3s ships',
        );
      const upstreams = await resolveUpstreams(kube, spec);
      const blocks = splitDnsServerBlocks(upstreams);
      const domains = Object.keys(upstreams).sort();
      let changed = false;
      const custom = await kube.read<ConfigMap>('v1', 'ConfigMap', CUSTOM_CONFIGMAP, 'kube-system');
      if (!custom) {
        await kube.create({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: CUSTOM_CONFIGMAP,
            namespace: 'kube-system',
            labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
          },
          data: { [CUSTOM_KEY]: blocks },
        });
        changed = true;
      } else if (custom.data?.[CUSTOM_KEY] !== blocks) {
        // Only our key: an operator's own *.server / *.override keys stay.
        await kube.patch(
          {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name: CUSTOM_CONFIGMAP, namespace: 'kube-system' },
            data: { [CUSTOM_KEY]: blocks },
          },
          'merge',
        );
        changed = true;
      }
      const cleaned = withoutOldBlock(core.data.Corefile);
      if (cleaned !== core.data.Corefile) {
        await kube.patch(
          {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name: 'coredns', namespace: 'kube-system', resourceVersion: core.metadata?.resourceVersion },
            data: { Corefile: cleaned },
          },
          'merge',
        );
        changed = true;
      }
      return { domains, changed, upstreams };
    },
  };
}
