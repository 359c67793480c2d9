// Split DNS: forward blocks for spec.dns.splitDns in the kube-system/coredns Corefile, between
// markers so a re-run replaces exactly what it wrote and leaves k3s's own server block alone.
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import type { KubeObject } from '../kube/client.js';

const BEGIN = '# BEGIN pedro-ops split-dns';
const END = '# END pedro-ops split-dns';

export function splitDnsBlock(spec: ClusterSpec): string {
  const blocks = Object.entries(spec.dns.splitDns)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([domain, upstream]) => `${domain}:53 {\n    errors\n    cache 30\n    forward . ${upstream}\n}`);
  return `${BEGIN}\n${blocks.join('\n')}\n${END}`;
}

/** The Corefile with our block in place of the old one (or appended). */
export function withSplitDns(corefile: string, block: string): string {
  const start = corefile.indexOf(BEGIN);
  const end = corefile.indexOf(END);
  if (start >= 0 && end > start) return `${corefile.slice(0, start)}${block}${corefile.slice(end + END.length)}`;
  return `${corefile.replace(/\s*$/, '')}\n${block}\n`;
}

type ConfigMap = KubeObject & { data?: Record<string, string> };

export function dnsActivities(deps: ActivityDeps) {
  return {
    async configureSplitDns(input: { cluster: string }): Promise<{ domains: string[]; changed: boolean }> {
      const spec = clusterOrFail(deps, input.cluster);
      const kube = deps.kube(spec);
      const cm = await kube.read<ConfigMap>('v1', 'ConfigMap', 'coredns', 'kube-system');
      // k3s deploys CoreDNS itself shortly after the server starts: absent means "not yet".
      if (!cm?.data?.Corefile)
        throw retryable(ErrorType.NotReady, 'kube-system/coredns ConfigMap (Corefile) not present yet');
      const next = withSplitDns(cm.data.Corefile, splitDnsBlock(spec));
      const domains = Object.keys(spec.dns.splitDns).sort();
      if (next === cm.data.Corefile) return { domains, changed: false };
      await kube.patch(
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'coredns', namespace: 'kube-system', resourceVersion: cm.metadata?.resourceVersion },
          data: { Corefile: next },
        },
        'merge',
      );
      return { domains, changed: true };
    },
  };
}
