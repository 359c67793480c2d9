// A real Kubernetes control plane for the lab, on one loopback address: kine (SQLite, what k3s
// itself uses for a single server), kube-apiserver, kube-controller-manager, kube-scheduler at the
// pinned k3s minor, the helm-controller that k3s embeds (v0.16.5), and kwok as the kubelet of every
// Node the k3s stand-in registers. Binaries come
// from scripts/lab-toolchain.sh. Flags are the ones checked in ../shared/REFERENCE.md ("A real
// control plane"); each process is started and stopped by pid.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { freePort } from '../../../scripts/temporal-server.js';
import { REPO_ROOT } from '../cluster-spec.js';
import { makeCerts } from './certs.js';
import { LabApi } from './lab-api.js';
import { NODE_STAGES, POD_STAGES } from './kwok-stages.js';
import { AuditCounters } from './audit.js';
import { egressSelectorConfig } from './tunnel.js';

/** The unix socket (in the control plane's dir) the apiserver's cluster egress dials: tunnel.ts serves it. */
export const EGRESS_SOCKET = 'egress.sock';
import { destroyDatastore, restoreDatastore, snapshotDatastore } from './datastore.js';

const run = promisify(execFile);

/** The user the orchestrator (and an operator's kubectl) acts as; the audit counters count its writes. */
export const ADMIN_USER = 'admin';
/** The lab's own controllers (klipper-helm, Velero, k3s supervisor) act as this user: never counted. */
export const LAB_CONTROLLER_USER = 'lab-controller';
/**
 * The klipper-helm image k3s v1.31.4+k3s1 gives its helm-controller (the lab's Job player keys on the
 * Jobs, not on the image; kept so a Job looks as it would on the cluster).
 */
export const KLIPPER_HELM_IMAGE = 'rancher/klipper-helm:v0.9.4-build20250113';

export interface ControlPlaneOptions {
  host: string;
  dir: string;
  /** Extra serving-cert SANs (k3s's tls-san: the lab's VIP). */
  sans?: string[];
  log?: (line: string) => void;
}

export interface ControlPlane {
  url: string;
  caPem: string;
  /** Admin bearer token (system:masters): what k3s.yaml holds. */
  token: string;
  /** Token of the lab's own controllers. */
  controllerToken: string;
  /** Client for the lab's controllers (user lab-controller). */
  api: LabApi;
  /** Writes of the admin user, from the apiserver's audit log: `verb:Kind` and rollout restarts `ns/Kind/name`. */
  counters(): { writes: Record<string, number>; restarts: Record<string, number> };
  /** Fault: the apiserver process stops (connections refused) until startApiserver(). */
  stopApiserver(): Promise<void>;
  startApiserver(): Promise<void>;
  /** k3s `etcd-snapshot save` in the lab: kine's database copied while kine is paused (datastore.ts). */
  snapshot(): Promise<Buffer>;
  /** `--cluster-reset --cluster-reset-restore-path`: every process restarts on the snapshot's database. */
  restore(snapshot: Buffer): Promise<void>;
  /** Fault: the control-plane node is gone: every process stops and kine's database is deleted. */
  destroy(): Promise<void>;
  /** False after destroy() until restore(). */
  alive(): boolean;
  /** Resident memory of every control-plane process, in KiB. */
  rss(): Record<string, number>;
  pids(): Record<string, number>;
  stop(): Promise<void>;
}

/** Finds the toolchain folder (builds it on first use: minutes on a cold Go cache). */
export async function labToolchainDir(): Promise<string> {
  if (process.env.PEDRO_OPS_LAB_BIN) return process.env.PEDRO_OPS_LAB_BIN;
  const { stdout } = await run('bash', [join(REPO_ROOT, 'scripts/lab-toolchain.sh')], {
    maxBuffer: 1 << 24,
    timeout: 3_600_000,
  });
  return stdout.trim().split('\n').pop()!;
}

interface Proc {
  name: string;
  args: string[];
  child?: ChildProcess;
  logPath: string;
  /** Started again when it exits on its own, as systemd restarts k3s. */
  restart?: boolean;
  /** The child the lab is stopping (a Go process that traps SIGTERM exits with a code, not the signal). */
  stopping?: ChildProcess;
}

function kubeconfig(url: string, caPem: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{name: lab, cluster: {server: '${url}', certificate-authority-data: ${ca}}}]`,
    `users: [{name: u, user: {token: ${token}}}]`,
    'contexts: [{name: lab, context: {cluster: lab, user: u}}]',
    'current-context: lab',
    '',
  ].join('\n');
}

// Level Request for workload patches (a rollout restart is a patch that sets restartedAt),
// Metadata for every other write of the admin user; nothing for anyone else.
// Format: https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/#audit-policy
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
  - level: Request
    users: [${ADMIN_USER}]
    verbs: [patch, update]
    resources: [{group: apps, resources: [deployments, statefulsets, daemonsets]}, {group: batch, resources: [cronjobs]}]
  - level: Metadata
    users: [${ADMIN_USER}]
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`;

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const bin = await labToolchainDir();
  const dir = opts.dir;
  await mkdir(dir, { recursive: true });
  const f = (n: string) => join(dir, n);
  const { host } = opts;
  const [certs, kinePort, apiPort] = await Promise.all([
    makeCerts(dir, host, opts.sans),
    freePort(host),
    freePort(host),
  ]);
  await run('openssl', ['genrsa', '-out', f('sa.key'), '2048']);
  await run('openssl', ['rsa', '-in', f('sa.key'), '-pubout', '-out', f('sa.pub')]);
  const tok = () => randomBytes(24).toString('hex');
  const tokens = { admin: tok(), controller: tok(), kcm: tok(), scheduler: tok(), kwok: tok(), helm: tok() };
  // tokens.csv: token,user,uid,"groups" (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#static-token-file)
  writeFileSync(
    f('tokens.csv'),
    [
      `${tokens.admin},${ADMIN_USER},admin,"system:masters"`,
      `${tokens.controller},${LAB_CONTROLLER_USER},lab-controller,"system:masters"`,
      `${tokens.kcm},system:kube-controller-manager,kcm,"system:masters"`,
      `${tokens.scheduler},system:kube-scheduler,scheduler,"system:masters"`,
      `${tokens.kwok},kwok,kwok,"system:masters"`,
      `${tokens.helm},helm-controller,helm-controller,"system:masters"`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const url = `https://${host}:${apiPort}`;
  for (const [name, t] of [
    ['kcm', tokens.kcm],
    ['scheduler', tokens.scheduler],
    ['kwok', tokens.kwok],
    ['helm-controller', tokens.helm],
  ] as const) {
    writeFileSync(f(`${name}.kubeconfig`), kubeconfig(url, certs.caPem, t), { mode: 0o600 });
  }
  writeFileSync(f('server.crt'), certs.certPem);
  writeFileSync(f('server.key'), certs.keyPem, { mode: 0o600 });
  writeFileSync(f('audit-policy.yaml'), AUDIT_POLICY);
  writeFileSync(f('kwok.yaml'), [POD_STAGES, NODE_STAGES].join('---\n'));
  // Cluster traffic (services/proxy, pods/proxy, kubelets) leaves through k3s's tunnel, as on k3s.
  writeFileSync(f('egress-selector.yaml'), egressSelectorConfig(f(EGRESS_SOCKET)));

  const procs: Record<string, Proc> = {
    kine: {
      name: 'kine',
      args: [
        '--endpoint',
        `sqlite://${f('state.db')}?_journal=WAL&cache=shared`,
        '--listen-address',
        `${host}:${kinePort}`,
        // Its metrics server defaults to :8080 on every address: a second lab could not start.
        '--metrics-bind-address=0',
      ],
      logPath: f('kine.log'),
    },
    apiserver: {
      name: 'kube-apiserver',
      args: [
        `--etcd-servers=http://${host}:${kinePort}`,
        `--bind-address=${host}`,
        `--advertise-address=${host}`,
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${f('server.crt')}`,
        `--tls-private-key-file=${f('server.key')}`,
        `--client-ca-file=${f('ca.crt')}`,
        `--token-auth-file=${f('tokens.csv')}`,
        '--authorization-mode=RBAC',
        `--service-account-key-file=${f('sa.pub')}`,
        `--service-account-signing-key-file=${f('sa.key')}`,
        '--service-account-issuer=https://kubernetes.default.svc',
        // k3s's defaults: cluster CIDR 10.42.0.0/16, service CIDR 10.43.0.0/16
        '--service-cluster-ip-range=10.43.0.0/16',
        `--audit-policy-file=${f('audit-policy.yaml')}`,
        `--audit-log-path=${f('audit.log')}`,
        '--audit-log-mode=blocking',
        '--allow-privileged=true',
        '--profiling=false',
        '--enable-priority-and-fairness=false',
        '--event-ttl=1h',
        `--egress-selector-config-file=${f('egress-selector.yaml')}`,
      ],
      logPath: f('apiserver.log'),
    },
    controllerManager: {
      name: 'kube-controller-manager',
      args: [
        `--kubeconfig=${f('kcm.kubeconfig')}`,
        `--authentication-kubeconfig=${f('kcm.kubeconfig')}`,
        `--authorization-kubeconfig=${f('kcm.kubeconfig')}`,
        '--leader-elect=false',
        // nodeipam needs a cluster CIDR allocator (kwok assigns pod IPs itself); serviceaccount-token
        // needs the legacy token signer. nodelifecycle stays: only it removes the not-ready taint.
        '--controllers=*,-nodeipam,-serviceaccount-token',
        `--service-account-private-key-file=${f('sa.key')}`,
        `--root-ca-file=${f('ca.crt')}`,
        '--secure-port=0',
        '--profiling=false',
      ],
      logPath: f('controller-manager.log'),
    },
    scheduler: {
      name: 'kube-scheduler',
      args: [
        `--kubeconfig=${f('scheduler.kubeconfig')}`,
        '--leader-elect=false',
        '--secure-port=0',
        '--profiling=false',
      ],
      logPath: f('scheduler.log'),
    },
    kwok: {
      name: 'kwok',
      args: [
        `--kubeconfig=${f('kwok.kubeconfig')}`,
        `--config=${f('kwok.yaml')}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--cidr=10.42.0.0/16',
        `--node-ip=${host}`,
      ],
      logPath: f('kwok.log'),
    },
    // k3s runs it in-process for all namespaces with the Job image of its release; its leader lease
    // (helm-controller-lock in kube-system) is released when it stops (wrangler pkg/leader: ReleaseOnCancel).
    helmController: {
      name: 'helm-controller',
      args: [`--kubeconfig=${f('helm-controller.kubeconfig')}`, `--default-job-image=${KLIPPER_HELM_IMAGE}`],
      logPath: f('helm-controller.log'),
      // Losing its lease (an apiserver outage past the renew deadline) is fatal to it, and in k3s to
      // the whole server, which systemd then restarts (install.sh's unit: Restart=always).
      restart: true,
    },
  };

  let stopped = false;
  const start = (p: Proc) => {
    const fd = openSync(p.logPath, 'a');
    p.child = spawn(join(bin, p.name), p.args, { stdio: ['ignore', fd, fd], cwd: dir });
    closeSync(fd);
    const child = p.child;
    child.on('exit', (code, signal) => {
      if (!stopped && p.child === child && p.stopping !== child && signal !== 'SIGTERM' && signal !== 'SIGKILL') {
        log(`${p.name} exited (${code ?? signal}); last lines:\n${tail(p.logPath)}`);
        // RestartSec=5s in k3s's unit; a lab's outage is short, so one second here.
        if (p.restart) setTimeout(() => !stopped && p.child === child && start(p), 1000).unref();
      }
    });
  };
  const kill = async (p: Proc) => {
    const child = p.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    p.stopping = child;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };

  const api = new LabApi(url, certs.caPem, tokens.controller);
  const waitReady = async (what: string, ms: number) => {
    const deadline = Date.now() + ms;
    let last = '';
    while (Date.now() < deadline) {
      const r = await api.request('GET', '/readyz').catch((e: Error) => ({ status: 0, body: e.message }));
      if (r.status === 200) return;
      last = `${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`.slice(0, 300);
      await sleep(100);
    }
    throw new Error(
      `${what}: kube-apiserver not ready after ${ms} ms (${last})\n--- apiserver\n${tail(f('apiserver.log'))}\n--- kine\n${tail(f('kine.log'))}`,
    );
  };

  const all = Object.values(procs);
  try {
    start(procs.kine);
    start(procs.apiserver);
    await waitReady('start', 60_000);
    await installCrds(api);
    start(procs.controllerManager);
    start(procs.scheduler);
    start(procs.kwok);
    start(procs.helmController);
  } catch (err) {
    stopped = true;
    for (const p of all.reverse()) await kill(p);
    throw err;
  }

  const audit = new AuditCounters(f('audit.log'));
  let alive = true;
  // Clients first, storage last (and the reverse to start).
  const stopAll = async () => {
    for (const p of [
      procs.helmController,
      procs.kwok,
      procs.scheduler,
      procs.controllerManager,
      procs.apiserver,
      procs.kine,
    ])
      await kill(p);
  };
  const startAll = async (what: string) => {
    start(procs.kine);
    start(procs.apiserver);
    await waitReady(what, 60_000);
    start(procs.controllerManager);
    start(procs.scheduler);
    start(procs.kwok);
    start(procs.helmController);
  };
  return {
    url,
    caPem: certs.caPem,
    token: tokens.admin,
    controllerToken: tokens.controller,
    api,
    counters: () => audit.read(),
    async stopApiserver() {
      await kill(procs.apiserver);
    },
    async startApiserver() {
      if (procs.apiserver.child && procs.apiserver.child.exitCode === null && !procs.apiserver.child.signalCode) return;
      start(procs.apiserver);
      await waitReady('restart', 60_000);
    },
    async snapshot() {
      const pid = procs.kine.child?.pid;
      if (!alive || !pid) throw new Error('etcd datastore is not running');
      return snapshotDatastore(dir, pid);
    },
    async restore(snapshot) {
      await stopAll();
      await restoreDatastore(dir, snapshot);
      await startAll('restore');
      alive = true;
    },
    async destroy() {
      alive = false;
      await stopAll();
      destroyDatastore(dir);
    },
    alive: () => alive,
    rss() {
      const out: Record<string, number> = {};
      for (const p of all) {
        const pid = p.child?.pid;
        if (!pid) continue;
        try {
          const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
          if (m) out[p.name] = Number(m[1]);
        } catch {
          // exited
        }
      }
      return out;
    },
    pids: () => Object.fromEntries(all.filter((p) => p.child?.pid).map((p) => [p.name, p.child!.pid!] as const)),
    async stop() {
      stopped = true;
      api.close();
      await stopAll();
    },
  };
}

function tail(path: string, n = 15): string {
  if (!existsSync(path)) return '';
  return readFileSync(path, 'utf8').split('\n').slice(-n).join('\n');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CRDs as the pinned k3s (helm-controller) and Velero register them; waits until each is Established. */
async function installCrds(api: LabApi): Promise<void> {
  const { parseAllDocuments } = await import('yaml');
  const { readdirSync } = await import('node:fs');
  const crdDir = join(REPO_ROOT, 'test/lab/crds');
  const names: string[] = [];
  for (const file of readdirSync(crdDir).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(readFileSync(join(crdDir, file), 'utf8'))) {
      const crd = doc.toJS() as { kind?: string; metadata: { name: string } } | null;
      if (!crd || crd.kind !== 'CustomResourceDefinition') continue;
      const r = await api.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      if (r.status !== 201 && r.status !== 409)
        throw new Error(`CRD ${crd.metadata.name} (${file}) refused: ${r.status} ${JSON.stringify(r.body)}`);
      names.push(crd.metadata.name);
    }
  }
  const deadline = Date.now() + 30_000;
  for (const name of names) {
    for (;;) {
      const r = await api.request('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const conds = (r.body as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions;
      if (conds?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established after 30 s`);
      await sleep(50);
    }
  }
}
