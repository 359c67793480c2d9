// The "already provisioned" lab: brought about the way provisioning would do it (k3s installed over
// SSH with the stand-in installer, the k3s server token kept in 1Password, OpenBAO initialised and
// unsealed through its HTTP API, the unseal material kept in 1Password, secrets copied 1Password ->
// OpenBAO -> Kubernetes), so tests that start from a built cluster see the same world a real
// provision leaves behind.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { NodeSSH } from 'node-ssh';
import * as k8s from '@kubernetes/client-node';
import type { ClusterSpec } from '../../config/schema.js';
import type { LabNode } from './nodes/index.js';
import type { KubeLab } from './kube/index.js';
import type { OpenBaoDouble } from './openbao.js';
import { createLabOnePasswordClient } from './onepassword/index.js';
import { K3S_CONFIG_PATH, K3S_REGISTRIES_PATH, k3sConfig, registriesYaml } from '../../activities/ssh/prepare.js';
import { K3S_KUBECONFIG, rewriteKubeconfig } from '../../activities/k3s/kubeconfig.js';
import { kubeVipManifest, VIP_MANIFEST_PATH } from '../../activities/k3s/vip.js';
import { SERVER_TOKEN_FILE, tokenItemTitle } from '../../activities/k3s/server-token.js';
import { connect } from 'node:net';
import {
  CUSTOM_CONFIGMAP,
  CUSTOM_KEY,
  resolveUpstreams,
  splitDnsServerBlocks,
} from '../../activities/dns/split-dns.js';
import { kubeFromKubeConfig } from '../../activities/kube/client.js';

export interface BuiltSecrets {
  unsealKeys: string[];
  rootToken: string;
}

interface SeedContext {
  spec: ClusterSpec;
  nodes: LabNode[];
  sshKeyPath: string;
  kube: KubeLab;
  openbao: OpenBaoDouble;
  onepasswordUrl: string;
  log: (line: string) => void;
}

/** SSH with the node's host key pinned, exactly as the orchestrator must connect. */
export async function connectNode(node: LabNode, privateKeyPath: string, hostKey = node.hostKey): Promise<NodeSSH> {
  const pinned = Buffer.from(hostKey.trim().split(/\s+/)[1], 'base64');
  const ssh = await new NodeSSH().connect({
    host: node.host,
    port: node.port,
    username: 'root',
    privateKey: readFileSync(privateKeyPath, 'utf8'),
    readyTimeout: 10_000,
    hostVerifier: (key: Buffer) => key.equals(pinned),
  });
  // A dropped connection (a lab fault) must fail the running command, not crash the process with an
  // unhandled 'error' event: the exec promise reports it.
  ssh.connection?.on('error', () => undefined);
  return ssh;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function sh(ssh: NodeSSH, node: string, command: string, stdin?: string): Promise<string> {
  const r = await ssh.execCommand(command, { stdin });
  if (r.code !== 0)
    throw new Error(`${node}: \`${command.split('\n')[0].slice(0, 120)}\` exited ${r.code}: ${r.stderr.slice(-500)}`);
  return r.stdout;
}

/** The curl | sh shape of the real install, with the stand-in script fed on stdin. */
export async function installK3s(
  ctx: Pick<SeedContext, 'spec' | 'nodes' | 'sshKeyPath'>,
): Promise<{ serverToken: string }> {
  const { spec } = ctx;
  const script = readFileSync(spec.k3s.installScript, 'utf8');
  const byName = new Map(ctx.nodes.map((n) => [n.name, n]));
  const serverUrl = `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}`;
  const clusterToken = `lab-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  const server = spec.nodes.find((n) => n.role === 'server')!;
  const disable = spec.k3s.disable.map((d) => `--disable=${d}`).join(' ');

  // The k3s config files exactly as node preparation writes them (node-name, the LAN node-ip,
  // registries.yaml), so a provision over the built lab finds them unchanged and restarts nothing.
  const writeK3sFiles = async (c: NodeSSH, n: ClusterSpec['nodes'][number]) => {
    const lab = byName.get(n.name)!;
    const files: [string, string | undefined][] = [
      [K3S_CONFIG_PATH, k3sConfig(spec, n, n.nodeIp ?? lab.lanIp)],
      [K3S_REGISTRIES_PATH, registriesYaml(spec)],
    ];
    for (const [path, content] of files)
      if (content !== undefined) await sh(c, n.name, `mkdir -p /etc/rancher/k3s && umask 077 && cat >${path}`, content);
  };
  const ssh = await connectNode(byName.get(server.name)!, ctx.sshKeyPath);
  let agentToken: string;
  let serverToken: string;
  try {
    await writeK3sFiles(ssh, server);
    const exec = `server --cluster-init --tls-san ${spec.vip} ${disable}`;
    await sh(
      ssh,
      server.name,
      `INSTALL_K3S_VERSION=${q(spec.k3s.version)} K3S_TOKEN=${q(clusterToken)} INSTALL_K3S_EXEC=${q(exec)} sh -s -`,
      script,
    );
    agentToken = (await sh(ssh, server.name, 'cat /var/lib/rancher/k3s/server/node-token')).trim();
    serverToken = (await sh(ssh, server.name, `cat ${SERVER_TOKEN_FILE}`)).trim();
    // The VIP provider as the provision's VIP step leaves it: its manifest in k3s's manifests folder
    // (k3s applies it, kube-vip leads, the VIP answers), before the agents join through the VIP.
    const manifest = kubeVipManifest(spec);
    if (manifest)
      await sh(
        ssh,
        server.name,
        `mkdir -p ${dirname(VIP_MANIFEST_PATH)} && umask 077 && cat >${VIP_MANIFEST_PATH}`,
        manifest,
      );
  } finally {
    ssh.dispose();
  }
  await waitTcp(spec.vip, spec.k3s.apiPort ?? 6443, 60_000);
  await Promise.all(
    spec.nodes
      .filter((n) => n.role === 'agent')
      .map(async (n) => {
        const c = await connectNode(byName.get(n.name)!, ctx.sshKeyPath);
        try {
          await writeK3sFiles(c, n);
          const env = `INSTALL_K3S_VERSION=${q(spec.k3s.version)} K3S_URL=${q(serverUrl)} K3S_TOKEN=${q(agentToken)} INSTALL_K3S_EXEC=agent`;
          await sh(c, n.name, `${env} sh -s -`, script);
        } finally {
          c.dispose();
        }
      }),
  );
  return { serverToken };
}

/** Until something accepts connections on host:port (the VIP, once kube-vip leads). */
async function waitTcp(host: string, port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect({ host, port }, () => (c.destroy(), resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`built lab: nothing answers on the VIP ${host}:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function bao(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/v1/${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`OpenBAO ${method} /v1/${path}: ${res.status} ${text.slice(0, 300)}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

async function initOpenBao(ctx: SeedContext): Promise<BuiltSecrets> {
  const { spec, openbao } = ctx;
  const init = openbao.initialize(spec.openbao.shares, spec.openbao.threshold);
  for (const key of init.keys.slice(0, spec.openbao.threshold)) {
    const r = await bao(openbao.url, 'PUT', 'sys/unseal', { key });
    if (r.sealed === false) break;
  }
  const mounts = await bao(openbao.url, 'GET', 'sys/mounts', undefined, init.rootToken);
  const table = (mounts.data ?? mounts) as Record<string, unknown>;
  // The built state's mount was enabled long ago, so its KV v2 upgrade window is over (enableKv).
  if (!table[`${spec.openbao.kvMount}/`]) openbao.enableKv(spec.openbao.kvMount);
  return { unsealKeys: init.keys, rootToken: init.rootToken };
}

type OpClient = ReturnType<typeof createLabOnePasswordClient>;

/** Item openbao-unseal in the vault: unseal-key-1..n and root-token, all concealed. */
async function storeUnsealItem(op: OpClient, spec: ClusterSpec, secrets: BuiltSecrets): Promise<void> {
  const vaults = await op.vaults.list();
  const vault = vaults.find((v) => v.title.toLowerCase() === spec.onepassword.vault.toLowerCase());
  if (!vault) throw new Error(`1Password double has no vault "${spec.onepassword.vault}"`);
  const field = (id: string, value: string) => ({ id, title: id, fieldType: 'Concealed', value }) as never;
  const fields = [
    ...secrets.unsealKeys.map((k, i) => field(`unseal-key-${i + 1}`, k)),
    field('root-token', secrets.rootToken),
  ];
  await op.items.create({
    category: 'Password' as never,
    vaultId: vault.id,
    title: spec.openbao.unsealItem,
    fields,
    sections: [],
    tags: ['openbao'],
  });
}

/** The server token kept off-node, as the first server's install leaves it (activities/k3s/server-token.ts). */
async function storeTokenItem(op: OpClient, spec: ClusterSpec, token: string): Promise<void> {
  const vault = (await op.vaults.list()).find((v) => v.title.toLowerCase() === spec.onepassword.vault.toLowerCase());
  if (!vault) throw new Error(`1Password double has no vault "${spec.onepassword.vault}"`);
  await op.items.create({
    category: 'Password' as never,
    vaultId: vault.id,
    title: tokenItemTitle(spec),
    fields: [{ id: 'token', title: 'token', fieldType: 'Concealed', value: token } as never],
    sections: [],
    tags: ['k3s', spec.name],
  });
}

/** Every mapped field's value, 1Password -> OpenBAO version 1 -> Kubernetes Secret. */
async function copySecrets(ctx: SeedContext, op: OpClient, rootToken: string): Promise<void> {
  const { spec } = ctx;
  // Entries marked pendingSource read 1Password items the owner does not have yet: nothing to copy.
  const live = spec.secrets.entries.filter((e) => !e.pendingSource);
  const refs = [...new Set(live.flatMap((e) => Object.values(e.fields)))];
  const resolved = await op.secrets.resolveAll(refs);
  const value = (ref: string): string => {
    const r = resolved.individualResponses[ref];
    if (!r?.content) throw new Error(`fixture cannot resolve ${ref}: ${r?.error?.type ?? 'no response'}`);
    return r.content.secret;
  };

  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'lab', server: ctx.kube.url, caData: Buffer.from(ctx.kube.caPem).toString('base64') }],
    users: [{ name: 'lab', token: ctx.kube.token }],
    contexts: [{ name: 'lab', cluster: 'lab', user: 'lab' }],
    currentContext: 'lab',
  });
  const core = kc.makeApiClient(k8s.CoreV1Api);

  for (const entry of live) {
    const data = Object.fromEntries(Object.entries(entry.fields).map(([k, ref]) => [k, value(ref)]));
    await bao(
      ctx.openbao.url,
      'POST',
      `${spec.openbao.kvMount}/data/${entry.openbaoPath}`,
      { options: { cas: 0 }, data },
      rootToken,
    );
    if (!entry.kubernetes) continue;
    const { namespace, name, keys } = entry.kubernetes;
    const body: k8s.V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' } },
      type: 'Opaque',
      data: Object.fromEntries(
        Object.entries(keys).map(([k, baoKey]) => [k, Buffer.from(data[baoKey]).toString('base64')]),
      ),
    };
    try {
      await core.createNamespacedSecret({ namespace, body });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      await core.replaceNamespacedSecret({ name, namespace, body });
    }
  }
}

/**
 * The kubeconfig a provisioned cluster has: the server's k3s.yaml, server URL rewritten to the VIP,
 * 0600 at the spec's kubeconfig path — what the fetchKubeconfig activity (activities/k3s/kubeconfig.ts)
 * leaves behind, so rotate, drift, verify-backup and dr-restore work on a built lab without a provision.
 */
export async function writeBuiltKubeconfig(ctx: Pick<SeedContext, 'spec' | 'nodes' | 'sshKeyPath'>): Promise<void> {
  const path = ctx.spec.kubernetes?.kubeconfigPath;
  if (!path) return;
  const server = ctx.spec.nodes.find((n) => n.role === 'server')!;
  const ssh = await connectNode(
    ctx.nodes.find((n) => n.name === server.name)!,
    ctx.sshKeyPath,
  );
  let text: string;
  try {
    text = await sh(ssh, server.name, `cat ${K3S_KUBECONFIG}`);
  } finally {
    ssh.dispose();
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(`${path}.tmp`, rewriteKubeconfig(text, ctx.spec), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** The OpenBAO Service lists a pod (sealed pods too: the chart publishes not-ready addresses). */
async function waitOpenBaoEndpoint(ctx: SeedContext, timeoutMs = 60_000): Promise<void> {
  const { namespace } = ctx.spec.openbao;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const eps = (await ctx.kube.get('v1', 'endpoints', namespace, ctx.spec.openbao.access.service)) as
      { subsets?: { addresses?: unknown[] }[] } | undefined;
    if (eps?.subsets?.some((s) => (s.addresses?.length ?? 0) > 0)) return;
    if (Date.now() > deadline) throw new Error(`built lab: no endpoint for the OpenBAO Service in ${namespace}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The split-DNS zones in coredns-custom, as the provision's DNS step writes them (its renderer and
 * upstream resolution), so a drift check of a built lab finds CoreDNS as provisioned.
 */
async function seedSplitDns(ctx: SeedContext): Promise<void> {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'lab', server: ctx.kube.url, caData: Buffer.from(ctx.kube.caPem).toString('base64') }],
    users: [{ name: 'lab', token: ctx.kube.token }],
    contexts: [{ name: 'lab', cluster: 'lab', user: 'lab' }],
    currentContext: 'lab',
  });
  const blocks = splitDnsServerBlocks(await resolveUpstreams(kubeFromKubeConfig(kc), ctx.spec));
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const body: k8s.V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: CUSTOM_CONFIGMAP,
      namespace: 'kube-system',
      labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
    },
    data: { [CUSTOM_KEY]: blocks },
  };
  try {
    await core.createNamespacedConfigMap({ namespace: 'kube-system', body });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}

/**
 * `openbaoFresh`: everything built except OpenBAO, which is as its chart leaves it (uninitialised,
 * sealed, no unseal item in 1Password, no secrets copied): what bootstrap meets during a provision.
 */
export async function seedBuiltState(ctx: SeedContext & { openbaoFresh?: boolean }): Promise<BuiltSecrets | undefined> {
  const t0 = performance.now();
  const { serverToken } = await installK3s(ctx);
  const op = createLabOnePasswordClient(ctx.onepasswordUrl);
  await storeTokenItem(op, ctx.spec, serverToken);
  await writeBuiltKubeconfig(ctx);
  await ctx.kube.seedBuilt(ctx.spec);
  await seedSplitDns(ctx);
  if (ctx.openbaoFresh) {
    await waitOpenBaoEndpoint(ctx);
    ctx.log(`built state (OpenBAO uninitialised) seeded in ${Math.round(performance.now() - t0)} ms`);
    return undefined;
  }
  const secrets = await initOpenBao(ctx);
  // OpenBAO's pods turn Ready once it is unsealed, like every other workload by now.
  await ctx.kube.waitWorkloadsReady(ctx.spec);
  await storeUnsealItem(op, ctx.spec, secrets);
  await copySecrets(ctx, op, secrets.rootToken);
  ctx.log(`built state seeded in ${Math.round(performance.now() - t0)} ms`);
  return secrets;
}
