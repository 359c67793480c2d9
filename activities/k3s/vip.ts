// The API's virtual IP. k3s creates none (it only signs tls-san addresses into its serving cert), so
// agents joining https://<vip>:6443 and a kubeconfig pointing there need something that answers:
// kube-vip, deployed right after the first server through k3s's auto-deploy manifests folder, which
// needs no API access from here (kube-vip docs/usage/k3s/index.md at v0.6.4, steps 1-3; k3s applies
// every file in /var/lib/rancher/k3s/server/manifests: pkg/deploy/controller.go). Then the build waits
// until the VIP answers /readyz, with the cluster's own credentials, before anything relies on it.
import { request } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { beat, sleep, waitDeadline } from '../heartbeat.js';
import { shellQuote } from '../ssh/client.js';
import { withSession } from '../ssh/session.js';
import { K3S_KUBECONFIG, rewriteKubeconfig } from './kubeconfig.js';
import type { KubeObject } from '../kube/client.js';

/** k3s names the Addon after the file's basename up to its first dot (pkg/deploy/controller.go basename). */
export const VIP_MANIFEST_PATH = '/var/lib/rancher/k3s/server/manifests/pedro-ops-kube-vip.yaml';
export const KUBE_VIP_IMAGE = 'ghcr.io/kube-vip/kube-vip';
/** kube-vip's default lease for control-plane leader election (cmd/kube-vip.go --leaseName). */
export const KUBE_VIP_LEASE = 'plndr-cp-lock';
const DEFAULT_READY_TIMEOUT_S = 180;

export const vipUrl = (spec: ClusterSpec) => `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}`;

/**
 * The RBAC kube-vip needs (docs/manifests/rbac.yaml) and the DaemonSet `kube-vip manifest daemonset
 * --interface <if> --address <vip> --inCluster --taint --controlplane --arp --leaderElection` prints at
 * v0.6.4 (pkg/kubevip/config_generator.go GenerateDaemonsetManifestFromConfig, env in its order, flag
 * defaults from cmd/kube-vip.go). Services stay off: k3s's servicelb is disabled and nothing here asks
 * kube-vip for LoadBalancer addresses. `port` is the API port the VIP fronts.
 */
export function kubeVipManifest(spec: ClusterSpec): string | undefined {
  const docs = kubeVipObjects(spec);
  if (!docs) return undefined;
  return `# Managed by pedro-ops orchestrator (vipProvider); k3s applies this file on every server start.\n${docs.map((d) => stringify(d)).join('---\n')}`;
}

/** The objects of kubeVipManifest: the drift check compares the DaemonSet, its repair applies them. */
export function kubeVipObjects(spec: ClusterSpec): KubeObject[] | undefined {
  const p = spec.vipProvider;
  if (!p) return undefined;
  const image = `${p.image ?? KUBE_VIP_IMAGE}:${p.version}`;
  const labels = { 'app.kubernetes.io/name': 'kube-vip-ds', 'app.kubernetes.io/version': p.version };
  const env: [string, string][] = [
    ['vip_arp', 'true'],
    ['port', String(spec.k3s.apiPort ?? 6443)],
    ['vip_interface', p.interface],
    ['vip_cidr', '32'],
    ['cp_enable', 'true'],
    ['cp_namespace', 'kube-system'],
    ['vip_ddns', 'false'],
    ['vip_leaderelection', 'true'],
    ['vip_leasename', KUBE_VIP_LEASE],
    ['vip_leaseduration', '5'],
    ['vip_renewdeadline', '3'],
    ['vip_retryperiod', '1'],
    ['address', spec.vip],
    ['prometheus_server', ':2112'],
  ];
  const docs = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'kube-vip', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: {
        name: 'system:kube-vip-role',
        annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'true' },
      },
      rules: [
        {
          apiGroups: [''],
          resources: ['services', 'services/status', 'nodes', 'endpoints'],
          verbs: ['list', 'get', 'watch', 'update'],
        },
        {
          apiGroups: ['coordination.k8s.io'],
          resources: ['leases'],
          verbs: ['list', 'get', 'watch', 'update', 'create'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:kube-vip-binding' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kube-vip-role' },
      subjects: [{ kind: 'ServiceAccount', name: 'kube-vip', namespace: 'kube-system' }],
    },
    {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'kube-vip-ds', namespace: 'kube-system', labels },
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': 'kube-vip-ds' } },
        template: {
          metadata: { labels },
          spec: {
            // --taint: control-plane nodes only, whatever taints they carry
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    { matchExpressions: [{ key: 'node-role.kubernetes.io/master', operator: 'Exists' }] },
                    { matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists' }] },
                  ],
                },
              },
            },
            tolerations: [
              { effect: 'NoSchedule', operator: 'Exists' },
              { effect: 'NoExecute', operator: 'Exists' },
            ],
            containers: [
              {
                name: 'kube-vip',
                image,
                imagePullPolicy: 'Always',
                args: ['manager'],
                env: env.map(([name, value]) => ({ name, value })),
                securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } },
              },
            ],
            hostNetwork: true,
            serviceAccountName: 'kube-vip',
          },
        },
      },
    },
  ];
  return docs;
}

export interface VipDeployResult {
  provider: string;
  path?: string;
  changed: boolean;
}

export interface VipReadyResult {
  url: string;
  waitedMs: number;
  alreadyReady: boolean;
}

/** One GET /readyz through the VIP with the cluster's credentials: 'ok', or why not. */
function readyz(kc: KubeConfig, url: string): Promise<{ ok: true } | { ok: false; why: string }> {
  return new Promise((resolve) => {
    const opts: Parameters<typeof request>[1] = { method: 'GET', timeout: 5000 };
    kc.applyToHTTPSOptions(opts).then(
      () => {
        const req = request(url, opts, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () =>
            resolve(
              res.statusCode === 200
                ? { ok: true }
                : { ok: false, why: `HTTP ${res.statusCode}: ${body.trim().split('\n').slice(-1)[0]?.slice(0, 200)}` },
            ),
          );
        });
        req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
        req.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, why: err.code ?? err.message }));
        req.end();
      },
      (err: unknown) => resolve({ ok: false, why: String(err) }),
    );
  });
}

export function vipActivities(deps: ActivityDeps) {
  return {
    /** Writes (or confirms) the VIP provider's manifest on the first server; k3s applies it. */
    async deployVipProvider(input: { cluster: string }): Promise<VipDeployResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const manifest = kubeVipManifest(spec);
      if (!manifest) return { provider: 'external', changed: false };
      const first = spec.nodes.find((n) => n.role === 'server')!;
      return withSession(deps, spec, first, async (s) => {
        beat({ node: first.name, step: 'kube-vip manifest' });
        const cur = await s.exec(`cat ${shellQuote(VIP_MANIFEST_PATH)} 2>/dev/null`);
        const provider = `${spec.vipProvider!.kind} ${spec.vipProvider!.version}`;
        if (cur.code === 0 && cur.stdout === manifest.replace(/\n$/, ''))
          return { provider, path: VIP_MANIFEST_PATH, changed: false };
        const r = await s.exec(`mkdir -p ${shellQuote(VIP_MANIFEST_PATH.replace(/\/[^/]+$/, ''))}`);
        if (r.code !== 0) throw retryable(ErrorType.Transient, `${first.name}: cannot create the manifests folder`);
        // k3s's deploy controller notices a file by its mtime; write-then-rename so it never reads half of one
        await s.putContent(manifest, `${VIP_MANIFEST_PATH}.tmp`, 0o600);
        const mv = await s.exec(`mv -f ${shellQuote(`${VIP_MANIFEST_PATH}.tmp`)} ${shellQuote(VIP_MANIFEST_PATH)}`);
        if (mv.code !== 0) throw retryable(ErrorType.Transient, `${first.name}: cannot write ${VIP_MANIFEST_PATH}`);
        return { provider, path: VIP_MANIFEST_PATH, changed: true };
      });
    },

    /**
     * Drift repair: the manifest's objects applied through the API. k3s's deploy controller applies the
     * file only when its checksum changes or k3s starts (k3s pkg/deploy/controller.go), so a DaemonSet
     * deleted or edited by hand stays so until someone applies it again; this does what it would.
     */
    async applyVipProvider(input: { cluster: string }): Promise<{ applied: string[] }> {
      const spec = clusterOrFail(deps, input.cluster);
      const kube = deps.kube(spec);
      const applied: string[] = [];
      for (const obj of kubeVipObjects(spec) ?? []) {
        await kube.patch(obj, 'apply');
        applied.push(`${obj.kind} ${obj.metadata?.name}`);
      }
      return { applied };
    },

    /**
     * Polls https://<vip>:<port>/readyz with the credentials of the first server's k3s.yaml (they stay
     * in this activity), heartbeating, until it answers 200 or the bound passes. The bound ends in a
     * non-retryable finding that parks the step: a VIP that does not answer is a network or config
     * problem (interface, subnet, a range ARP cannot reach) that retrying does not fix.
     */
    async waitVipReady(input: { cluster: string; timeoutSeconds?: number }): Promise<VipReadyResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const first = spec.nodes.find((n) => n.role === 'server')!;
      const text = await withSession(deps, spec, first, async (s) => {
        const r = await s.exec(`cat ${K3S_KUBECONFIG}`);
        if (r.code !== 0 || !r.stdout.trim())
          throw retryable(ErrorType.NotReady, `${K3S_KUBECONFIG} not written on ${first.name} yet`);
        return r.stdout;
      });
      const kc = new KubeConfig();
      kc.loadFromString(rewriteKubeconfig(text, spec));
      const url = `${vipUrl(spec)}/readyz`;
      const timeoutS = input.timeoutSeconds ?? spec.vipProvider?.readyTimeoutSeconds ?? DEFAULT_READY_TIMEOUT_S;
      const deadline = waitDeadline(timeoutS, 'vip readyz');
      const t0 = Date.now();
      for (let polls = 0; ; polls++) {
        const r = await readyz(kc, url);
        if (r.ok) return { url, waitedMs: Date.now() - t0, alreadyReady: polls === 0 };
        beat({ step: 'waiting for the VIP', url, last: r.why, polls, waiting: 'vip readyz', deadline });
        if (Date.now() > deadline) {
          const p = spec.vipProvider;
          const who = p
            ? `${p.kind} ${p.version} (ARP on ${p.interface}, manifest ${VIP_MANIFEST_PATH} on ${first.name})`
            : 'the external VIP provider (no vipProvider configured)';
          throw nonRetryable(
            ErrorType.ServerUnreachable,
            `VIP unreachable: ${url} did not answer within ${timeoutS}s (last: ${r.why}); nothing answers on ${spec.vip} ` +
              `although ${who} should; agents would join it and the kubeconfig would point at it. Check that the ` +
              `kube-vip pod runs and leads (Lease kube-system/${KUBE_VIP_LEASE}), that ${p?.interface ?? 'its interface'} ` +
              `carries the VIP's subnet, and that this host can reach ${spec.vip}`,
            { vip: spec.vip },
          );
        }
        await sleep(1000);
      }
    },
  };
}
