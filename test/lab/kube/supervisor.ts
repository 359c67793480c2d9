// The k3s supervisor side of joining, which has no real counterpart here (k3s serves it on :6443
// beside the apiserver: pkg/server/router.go, /cacerts and /v1-k3s/*). The k3s stand-in on each node
// calls these lab endpoints when `k3s server` / `k3s agent` starts (contract: test/lab/README.md):
//   POST /lab/k3s/server {node, version, token, nodeIp, tlsSans, clusterInit, disable, args} → {agentToken}
//   POST /lab/k3s/agent  {node, version, serverUrl, token, nodeIp}
//   DELETE /lab/k3s/nodes/:name (uninstall)
//   POST /lab/k3s/etcd-snapshot/save → the datastore snapshot (bytes); POST .../restore (bytes) → {}
// Token checks copy k3s (pkg/clientaccess/token.go: `K10<sha256 of the CA>::<user>:<password>`).
// A node that joins is created in the real apiserver as the kubelet would register it, under its
// node-name or hostname, with the kwok annotation so kwok acts as its kubelet. A server start also
// (re)applies k3s's packaged CoreDNS manifest (manifests/coredns.yaml, re-applied by the deploy
// controller on every start: pkg/deploy/controller.go), which overwrites the `coredns` ConfigMap.
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { LabApi, KObj } from './lab-api.js';
import { ObjectStore } from './object-store.js';

export const COREDNS_COREFILE = `.:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts /etc/coredns/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom/*.override
}
import /etc/coredns/custom/*.server
`;

const HASH_MISMATCH = 'token CA hash does not match the Cluster CA certificate hash';

/** v1.31.4+k3s1 → [1, 31, 4, 1] for ordering. */
export function parseK3sVersion(v: string): number[] | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)] : undefined;
}
const newer = (a: number[], b: number[]) => {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return false;
};

/** A string field of a JSON body ('' when absent or not a string). */
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** What k3s records in the `k3s.io/node-args` annotation: the subcommand and its flags. */
function nodeArgs(role: string, b: Record<string, unknown>): string[] {
  const args = Array.isArray(b.args) ? b.args.map(String) : [];
  const out = [role, ...args];
  if (b.clusterInit && !args.includes('--cluster-init')) out.push('--cluster-init');
  for (const d of Array.isArray(b.disable) ? b.disable.map(String) : []) {
    if (!args.some((a) => a === `--disable=${d}` || a === d)) out.push('--disable', d);
  }
  for (const san of Array.isArray(b.tlsSans) ? b.tlsSans.map(String) : []) {
    if (!args.includes(san)) out.push('--tls-san', san);
  }
  if (str(b.nodeIp) && !args.some((a) => a.includes(str(b.nodeIp)))) out.push('--node-ip', str(b.nodeIp));
  return out;
}

type Reply = { status: number; body: unknown; raw?: Buffer; contentType?: string };

export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource: { group: string; version: string; resource: string };
  namespace?: string;
  name?: string;
  operation: string;
  object?: KObj;
  dryRun?: boolean;
  userInfo?: { username?: string };
}

export const WEBHOOK_PODS_PATH = '/lab/webhook/pods';
/** Pods of helm-controller's Jobs: klipper-helm's outcome, decided at admission (controllers/helm.ts). */
export const WEBHOOK_HELM_JOB_PODS_PATH = '/lab/webhook/helm-job-pods';
export const WEBHOOK_VALIDATE_PATH = '/lab/webhook/validate';

export interface Supervisor {
  url: string;
  version(): string;
  adoptVersion(v: string): void;
  /** Registers (or refreshes) a node as its kubelet would. */
  register(
    name: string,
    version: string,
    nodeIp: string,
    server: boolean,
    etcd: boolean,
    args?: string[],
  ): Promise<void>;
  bootstrap(): Promise<void>;
  /**
   * Fault: when `node`'s kubelet registers at `version`, it never reports Ready (kwok's own chaos stage
   * node-not-ready, kustomize/stage/node/chaos at v0.6.1, selected by its label); registering at any
   * other version (a rollback) makes it Ready again. Undefined version: the fault is off for the node.
   */
  notReadyOn(node: string, version: string | undefined): Promise<void>;
  clearFaults(): Promise<void>;
  /** The lab's S3 object store (plain HTTP, like SeaweedFS's S3 gateway): what a BSL's publicUrl points at. */
  objectStoreUrl: string;
  /**
   * Stores a blob and returns the presigned URL Velero would hand out, signed for `base` (the BSL's
   * publicUrl, else its s3Url: pkg/persistence/object_store.go), so it works only when `base` is this store.
   */
  serveDownload(body: Buffer | undefined, base: string, key: string): string;
  /** The object store's S3 API (PUT/GET/DELETE/ListObjectsV2) for a bucket, used by k3s's etcd-s3. */
  objectStore: ObjectStore;
  stop(): Promise<void>;
}

export async function startSupervisor(opts: {
  host: string;
  api: LabApi;
  token: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** Mutating admission for pods: the readiness annotation a new pod starts with. */
  admitPod?: (pod: KObj) => Promise<{ ready: 'true' | 'false'; stalled: boolean } | undefined>;
  /** Mutating admission for helm Job pods: annotations that say how the pod ends. */
  admitHelmJobPod?: (pod: KObj) => Promise<Record<string, string> | undefined>;
  /** Validating admission: a message rejects the write (the "webhook rejects" fault). */
  validate?: (review: AdmissionRequest) => string | undefined;
  /** The datastore side of `k3s etcd-snapshot save` and `k3s server --cluster-reset` (datastore.ts). */
  datastore?: { snapshot(): Promise<Buffer>; restore(snapshot: Buffer): Promise<void>; alive(): boolean };
}): Promise<Supervisor> {
  const { api } = opts;
  const caHash = createHash('sha256').update(opts.caPem).digest('hex');
  let serverPassword: string | undefined;
  let agentPassword: string | undefined;
  let serverVersion: string | undefined;
  const servers = new Set<string>();
  const downloads = new Map<string, Buffer>();
  const notReady = new Map<string, string>();
  const NOT_READY_LABEL = 'node-not-ready.stage.kwok.x-k8s.io';
  /** Label and annotations of kwok's node-not-ready stage, or their removal (null) when the fault does not apply. */
  const notReadyMeta = (name: string, version: string) => {
    const on = notReady.get(name) === version;
    return {
      labels: { [NOT_READY_LABEL]: on ? 'true' : null },
      annotations: {
        [`${NOT_READY_LABEL}/reason`]: on ? 'KubeletNotReady' : null,
        [`${NOT_READY_LABEL}/message`]: on
          ? 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized'
          : null,
      },
    };
  };

  const password = (token: unknown): string | undefined => {
    if (typeof token !== 'string' || !token) return undefined;
    const m = /^K10([0-9a-f]{64})::[^:]+:(.+)$/.exec(token);
    if (!m) return token;
    return m[1] === caHash ? m[2] : undefined;
  };
  const fail = (status: number, message: string): Reply => ({ status, body: { message } });

  const bootstrap = async () => {
    // manifests/coredns.yaml of k3s v1.31 (ConfigMap + Deployment; the Service and RBAC are left out).
    const cm = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coredns', namespace: 'kube-system', labels: { 'objectset.rio.cattle.io/hash': 'bce2832988' } },
      data: { Corefile: COREDNS_COREFILE, NodeHosts: await nodeHosts() },
    };
    const cur = await api.get('/api/v1/namespaces/kube-system/configmaps/coredns');
    if (cur)
      await api.must('PUT', '/api/v1/namespaces/kube-system/configmaps/coredns', {
        ...cm,
        metadata: { ...cur.metadata, ...cm.metadata },
      });
    else await api.createIfAbsent('/api/v1/namespaces/kube-system/configmaps', cm);
    const labels = { 'k8s-app': 'kube-dns' };
    await api.createIfAbsent('/apis/apps/v1/namespaces/kube-system/deployments', {
      metadata: { name: 'coredns', labels: { ...labels, 'kubernetes.io/name': 'CoreDNS' } },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [{ name: 'coredns', image: 'rancher/mirrored-coredns-coredns:1.12.0' }],
            volumes: [
              { name: 'config-volume', configMap: { name: 'coredns' } },
              { name: 'custom-config-volume', configMap: { name: 'coredns-custom', optional: true } },
            ],
          },
        },
      },
    });
  };

  const nodeHosts = async () => {
    const nodes = await api.list('/api/v1/nodes').catch(() => [] as KObj[]);
    return nodes
      .map(
        (n) =>
          `${n.status?.addresses?.find((a: { type: string }) => a.type === 'InternalIP')?.address} ${n.metadata.name}`,
      )
      .join('\n');
  };

  const register = async (
    name: string,
    version: string,
    nodeIp: string,
    server: boolean,
    etcd: boolean,
    args: string[] = [server ? 'server' : 'agent'],
  ) => {
    const labels: Record<string, string> = {
      'kubernetes.io/hostname': name,
      'kubernetes.io/os': 'linux',
      'kubernetes.io/arch': 'amd64',
      'beta.kubernetes.io/os': 'linux',
      'beta.kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': 'k3s',
      ...(server ? { 'node-role.kubernetes.io/control-plane': 'true', 'node-role.kubernetes.io/master': 'true' } : {}),
      ...(etcd ? { 'node-role.kubernetes.io/etcd': 'true' } : {}),
    };
    const annotations = {
      'kwok.x-k8s.io/node': 'fake',
      'k3s.io/node-args': JSON.stringify(args),
      'k3s.io/internal-ip': nodeIp,
      'flannel.alpha.coreos.com/public-ip': nodeIp,
      'node.alpha.kubernetes.io/ttl': '0',
    };
    const nodeInfo = {
      kubeletVersion: version,
      kubeProxyVersion: version,
      containerRuntimeVersion: 'containerd://1.7.23-k3s2',
      osImage: 'Debian GNU/Linux 12 (bookworm)',
      operatingSystem: 'linux',
      architecture: 'amd64',
      kernelVersion: '6.1.0-28-amd64',
      machineID: '',
      systemUUID: '',
      bootID: '',
    };
    const status = {
      addresses: [
        { type: 'InternalIP', address: nodeIp },
        { type: 'Hostname', address: name },
      ],
      nodeInfo,
      capacity: { cpu: '4', memory: '8024512Ki', pods: '110' },
      allocatable: { cpu: '4', memory: '8024512Ki', pods: '110' },
    };
    const cur = await api.get(`/api/v1/nodes/${name}`);
    const fault = notReadyMeta(name, version);
    if (!cur) {
      // The kubelet registers with its status (pkg/kubelet/kubelet_node_status.go registerWithAPIServer).
      const drop = (m: Record<string, string | null>) =>
        Object.fromEntries(Object.entries(m).filter((e): e is [string, string] => e[1] !== null));
      await api.must('POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name,
          labels: { ...labels, ...drop(fault.labels) },
          annotations: { ...annotations, ...drop(fault.annotations) },
        },
        spec: { providerID: `k3s://${name}` },
        status,
      });
    } else {
      await api.mergePatch(`/api/v1/nodes/${name}`, {
        metadata: { labels: { ...labels, ...fault.labels }, annotations: { ...annotations, ...fault.annotations } },
      });
      // A restarted kubelet reports its (possibly new) version in status, and its Ready condition in the
      // same update (pkg/kubelet/kubelet_node_status.go setNodeStatus, nodestatus.ReadyCondition): a
      // kubelet that comes up NotReady never shows the new version beside the old Ready=True. kwok's
      // node-not-ready stage then keeps it so. Strategic merge: conditions merge by type.
      const now = new Date().toISOString();
      const conditions = fault.labels[NOT_READY_LABEL]
        ? [
            {
              type: 'Ready',
              status: 'False',
              reason: 'KubeletNotReady',
              message: fault.annotations[`${NOT_READY_LABEL}/message`] ?? 'kubelet is not ready',
              lastHeartbeatTime: now,
              lastTransitionTime: now,
            },
          ]
        : undefined;
      await api.must(
        'PATCH',
        `/api/v1/nodes/${name}/status`,
        { status: { nodeInfo, addresses: status.addresses, ...(conditions ? { conditions } : {}) } },
        'application/strategic-merge-patch+json',
      );
    }
  };

  const handle = async (method: string, segs: string[], body: Record<string, unknown>): Promise<Reply | undefined> => {
    if (segs[1] === 'k3s' && segs[2] === 'server' && opts.datastore && !opts.datastore.alive())
      return fail(503, 'the etcd datastore is gone: restore it with --cluster-reset --cluster-reset-restore-path');
    if (segs[1] === 'k3s' && method === 'POST' && segs[2] === 'server' && segs.length === 3) {
      const version = str(body.version);
      if (!body.node || !parseK3sVersion(version))
        return fail(400, 'node and a k3s version (vX.Y.Z+k3sN) are required');
      const pw = password(body.token);
      if (pw === undefined) return fail(401, HASH_MISMATCH);
      if (serverPassword !== undefined && pw !== serverPassword) return fail(401, HASH_MISMATCH);
      const first = serverPassword === undefined;
      serverPassword = pw;
      agentPassword ??= randomBytes(16).toString('hex');
      if (!serverVersion || first || newer(parseK3sVersion(version)!, parseK3sVersion(serverVersion)!))
        serverVersion = version;
      servers.add(str(body.node));
      await register(
        str(body.node),
        version,
        str(body.nodeIp),
        true,
        Boolean(body.clusterInit),
        nodeArgs('server', body),
      );
      await bootstrap();
      return { status: 200, body: { agentToken: `K10${caHash}::node:${agentPassword}` } };
    }
    if (segs[1] === 'k3s' && method === 'POST' && segs[2] === 'agent' && segs.length === 3) {
      const version = str(body.version);
      if (!body.node || !parseK3sVersion(version))
        return fail(400, 'node and a k3s version (vX.Y.Z+k3sN) are required');
      if (serverPassword === undefined) return fail(503, 'no k3s server has registered yet: connection refused');
      const pw = password(body.token);
      if (pw === undefined || (pw !== serverPassword && pw !== agentPassword)) return fail(401, HASH_MISMATCH);
      if (newer(parseK3sVersion(version)!, parseK3sVersion(serverVersion!)!)) {
        return fail(
          400,
          `agent version ${version} is newer than server version ${serverVersion}: upgrade servers before agents`,
        );
      }
      await register(str(body.node), version, str(body.nodeIp), false, false, nodeArgs('agent', body));
      return { status: 200, body: {} };
    }
    if (segs[1] === 'k3s' && method === 'DELETE' && segs[2] === 'nodes' && segs.length === 4) {
      const name = segs[3];
      const existed = Boolean(await api.get(`/api/v1/nodes/${name}`));
      if (existed) await api.delete(`/api/v1/nodes/${name}`);
      servers.delete(name);
      // Uninstalling the last server wipes the cluster's token: a fresh install may pick a new one.
      if (servers.size === 0) {
        serverPassword = undefined;
        agentPassword = undefined;
      }
      return { status: 200, body: { deleted: existed } };
    }
    return undefined;
  };

  const server: Server = createServer({ key: opts.keyPem, cert: opts.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const u = new URL(req.url ?? '/', 'https://lab');
        const segs = u.pathname.split('/').filter(Boolean);
        let reply: Reply | undefined;
        try {
          if (
            u.pathname === WEBHOOK_PODS_PATH ||
            u.pathname === WEBHOOK_VALIDATE_PATH ||
            u.pathname === WEBHOOK_HELM_JOB_PODS_PATH
          ) {
            // AdmissionReview v1 (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request);
            // the apiserver authenticates us by the CA bundle, we accept any caller on loopback.
            const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request: AdmissionRequest };
            const rq = review.request;
            const response: Record<string, unknown> = { uid: rq.uid, allowed: true };
            if (u.pathname === WEBHOOK_PODS_PATH && rq.object && opts.admitPod) {
              const verdict = await opts.admitPod(rq.object);
              if (verdict) {
                const { ready, stalled } = verdict;
                const ops: unknown[] = [];
                if (!rq.object.metadata.annotations) ops.push({ op: 'add', path: '/metadata/annotations', value: {} });
                ops.push({ op: 'add', path: '/metadata/annotations/lab.pedro-ops.io~1ready', value: ready });
                if (stalled) {
                  if (!rq.object.metadata.labels) ops.push({ op: 'add', path: '/metadata/labels', value: {} });
                  ops.push({ op: 'add', path: '/metadata/labels/lab.pedro-ops.io~1stalled', value: 'true' });
                }
                response.patchType = 'JSONPatch';
                response.patch = Buffer.from(JSON.stringify(ops)).toString('base64');
              }
            }
            if (u.pathname === WEBHOOK_HELM_JOB_PODS_PATH && rq.object && !rq.dryRun && opts.admitHelmJobPod) {
              const annotations = await opts.admitHelmJobPod(rq.object);
              if (annotations) {
                const ops: unknown[] = [];
                if (!rq.object.metadata.annotations) ops.push({ op: 'add', path: '/metadata/annotations', value: {} });
                for (const [k, v] of Object.entries(annotations))
                  ops.push({
                    op: 'add',
                    path: `/metadata/annotations/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`,
                    value: v,
                  });
                response.patchType = 'JSONPatch';
                response.patch = Buffer.from(JSON.stringify(ops)).toString('base64');
              }
            }
            if (u.pathname === WEBHOOK_VALIDATE_PATH) {
              const message = opts.validate?.(rq);
              if (message) Object.assign(response, { allowed: false, status: { code: 403, message } });
            }
            reply = { status: 200, body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response } };
          } else if (segs[0] === 'lab') {
            if (req.headers.authorization !== `Bearer ${opts.token}`) reply = fail(401, 'Unauthorized');
            else if (segs[1] === 'k3s' && segs[2] === 'etcd-snapshot') {
              reply = await etcdSnapshotRoute(opts.datastore, req.method ?? 'GET', segs[3], Buffer.concat(chunks));
            } else {
              let body: Record<string, unknown> = {};
              try {
                const text = Buffer.concat(chunks).toString('utf8');
                body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
              } catch {
                reply = fail(400, 'body is not JSON');
              }
              reply ??= await handle(req.method ?? 'GET', segs, body);
            }
          }
        } catch (err) {
          reply = fail(500, err instanceof Error ? err.message : String(err));
        }
        reply ??= fail(404, 'not found');
        res.writeHead(reply.status, { 'content-type': reply.contentType ?? 'application/json' });
        res.end(reply.raw ?? (typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body)));
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.host, () => resolve());
  });
  const url = `https://${opts.host}:${(server.address() as AddressInfo).port}`;
  // Presigned GETs: /<bucket>/<key>?X-Amz-Signature=<token>; a missing or unsigned key answers like S3.
  // Requests signed with an access key (k3s's etcd-s3) go to the S3 API of object-store.ts.
  const objects = new ObjectStore();
  const store = createHttpServer((req, res) => {
    if (objects.handles(req)) {
      objects.serve(req, res);
      return;
    }
    const blob = downloads.get(new URL(req.url ?? '/', 'http://store').searchParams.get('X-Amz-Signature') ?? '');
    if (req.method !== 'GET' || !blob) {
      res.writeHead(404, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(blob);
  });
  await new Promise<void>((resolve, reject) => {
    store.once('error', reject);
    store.listen(0, opts.host, () => resolve());
  });
  const objectStoreUrl = `http://${opts.host}:${(store.address() as AddressInfo).port}`;
  return {
    url,
    version: () => serverVersion ?? 'v1.31.4+k3s1',
    adoptVersion: (v) => void (serverVersion = v),
    register: (name, version, nodeIp, srv, etcd, args) => register(name, version, nodeIp, srv, etcd, args),
    bootstrap,
    async notReadyOn(node, version) {
      if (version === undefined) notReady.delete(node);
      else notReady.set(node, version);
      const cur = await api.get(`/api/v1/nodes/${node}`);
      const v = (cur?.status as { nodeInfo?: { kubeletVersion?: string } } | undefined)?.nodeInfo?.kubeletVersion;
      // A node already running the faulted version goes NotReady now; otherwise at its next registration.
      if (cur && v) await api.mergePatch(`/api/v1/nodes/${node}`, { metadata: notReadyMeta(node, v) });
    },
    async clearFaults() {
      const nodes = [...notReady.keys()];
      notReady.clear();
      for (const n of nodes) {
        const cur = await api.get(`/api/v1/nodes/${n}`);
        if (cur) await api.mergePatch(`/api/v1/nodes/${n}`, { metadata: notReadyMeta(n, '') });
      }
    },
    objectStoreUrl,
    objectStore: objects,
    serveDownload(body, base, key) {
      const token = randomBytes(16).toString('hex');
      if (body) downloads.set(token, body);
      return `${base.replace(/\/+$/, '')}/${key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600&X-Amz-Signature=${token}`;
    },
    async stop() {
      for (const srv of [server, store]) {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeAllConnections();
        });
      }
    },
  };
}

/** `k3s etcd-snapshot save` and `--cluster-reset-restore-path` on the datastore (raw bodies both ways). */
async function etcdSnapshotRoute(
  ds: { snapshot(): Promise<Buffer>; restore(snapshot: Buffer): Promise<void> } | undefined,
  method: string,
  op: string | undefined,
  body: Buffer,
): Promise<Reply> {
  const fail = (status: number, message: string): Reply => ({ status, body: { message } });
  if (!ds) return fail(501, 'this lab has no datastore to snapshot');
  if (method === 'POST' && op === 'save') {
    const raw = await ds.snapshot();
    return { status: 200, body: undefined, raw, contentType: 'application/octet-stream' };
  }
  if (method === 'POST' && op === 'restore') {
    if (body.length === 0) return fail(400, 'empty snapshot');
    await ds.restore(body);
    return { status: 200, body: { restored: body.length } };
  }
  return fail(404, 'not found');
}
