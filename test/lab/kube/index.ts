// The Kubernetes API double: HTTPS with a real CA, bearer-token auth, the REST paths
// @kubernetes/client-node uses, CRD schema enforcement and simulated controllers.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterSpec, WorkloadRef } from '../../../config/schema.js';
import { makeCerts } from './certs.js';
import { newFaults, type Ctx } from './controllers/ctx.js';
import { HelmController } from './controllers/helm.js';
import { JobController } from './controllers/jobs.js';
import { RestoreController } from './controllers/velero-restore.js';
import { VeleroController, type Snapshots } from './controllers/velero.js';
import { WorkloadController } from './controllers/workloads.js';
import { CrdValidator } from './crd.js';
import { unauthorized } from './errors.js';
import { K3sRegistry } from './k3s.js';
import { Registry } from './resources.js';
import { createHandler, type Reply, type RouteDeps } from './routes.js';
import { seedBuilt } from './seed.js';
import { Store } from './store.js';
import { Timers } from './util.js';
import { Watches } from './watch.js';

export interface KubeDoubleOptions {
  host: string;
  port?: number;
  token: string;
  crdDir: string;
  /** Node NotReady → Ready. Default 300 ms. */
  readyDelayMs?: number;
  /** Job run time; a function gets the HelmChart name for install Jobs, the Job name otherwise. Default 300 ms. */
  jobDelayMs?: number | ((chart: string) => number);
  /** One pod per step during rollouts. Default 100 ms. */
  rolloutStepMs?: number;
  /** Each Velero phase step (backup, restore, delete). Default 150 ms. */
  veleroStepMs?: number;
}

export interface KubeDouble {
  url: string;
  caPem: string;
  token: string;
  setComponentWorkloads(map: Record<string, { namespace: string; workloads: WorkloadRef[] }>): void;
  seedBuilt(spec: ClusterSpec): void;
  counters(): { writes: Record<string, number>; restarts: Record<string, number> };
  faults: {
    failHelmChart(name: string, message?: string): void;
    stallHelmChart(name: string): void;
    stallRollout(ns: string, kind: string, name: string): void;
    backupPartiallyFailed(name?: string): void;
    restoreFailed(name?: string, reason?: string): void;
    bslUnavailable(name: string): void;
    clear(): void;
  };
  get(apiVersion: string, kind: string, ns: string | undefined, name: string): object | undefined;
  stop(): Promise<void>;
}

export async function startKubeDouble(opts: KubeDoubleOptions): Promise<KubeDouble> {
  const dir = await mkdtemp(join(tmpdir(), 'kube-double-'));
  const certs = await makeCerts(dir, opts.host);
  const registry = new Registry();
  const crds = new CrdValidator();
  crds.load(opts.crdDir, registry);
  const timers = new Timers();
  const store = new Store(registry, crds, timers);
  const watches = new Watches(store);
  const jobDelay = opts.jobDelayMs ?? 300;
  const ctx: Ctx = {
    store,
    timers,
    faults: newFaults(),
    restarts: {},
    componentWorkloads: new Map(),
    logs: new Map(),
    jobOutcomes: [],
    onClear: [],
    baseUrl: '',
    delays: {
      readyDelayMs: opts.readyDelayMs ?? 300,
      rolloutStepMs: opts.rolloutStepMs ?? 100,
      veleroStepMs: opts.veleroStepMs ?? 150,
      jobDelayMs: (name) => (typeof jobDelay === 'function' ? jobDelay(name) : jobDelay),
    },
  };
  const workloads = new WorkloadController(ctx);
  new JobController(ctx);
  const helm = new HelmController(ctx);
  const snapshots: Snapshots = new Map();
  const velero = new VeleroController(ctx, snapshots);
  const restores = new RestoreController(ctx, snapshots);
  const k3s = new K3sRegistry(ctx, certs.caPem, workloads);
  const writes: Record<string, number> = {};

  const lab = (method: string, segs: string[], body: unknown, authed: boolean): Reply | undefined => {
    if (segs[1] === 'velero' && segs[2] === 'download' && method === 'GET' && segs.length === 4) {
      const blob = restores.downloads.get(segs[3]);
      if (!blob)
        return {
          status: 404,
          contentType: 'application/xml',
          body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>',
        };
      return { status: 200, body: '', raw: blob, contentType: 'application/octet-stream' };
    }
    if (segs[1] !== 'k3s') return undefined;
    if (!authed) throw unauthorized();
    return k3s.handle(method, segs, body);
  };

  const deps: RouteDeps = {
    store,
    token: opts.token,
    watches,
    serverAddress: '',
    writes,
    k3sVersion: () => k3s.version(),
    lab,
    podLog: (ns, name) =>
      store.get(registry.must('v1', 'Pod'), ns, name) ? (ctx.logs.get(`${ns}/${name}`) ?? '') : undefined,
  };
  const server = createServer({ key: certs.keyPem, cert: certs.certPem }, createHandler(deps));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://${opts.host}:${port}`;
  ctx.baseUrl = url;
  deps.serverAddress = `${opts.host}:${port}`;

  const f = ctx.faults;
  return {
    url,
    caPem: certs.caPem,
    token: opts.token,
    setComponentWorkloads(map) {
      for (const [name, v] of Object.entries(map)) ctx.componentWorkloads.set(name, v);
    },
    seedBuilt: (spec) => seedBuilt({ ctx, k3s, helm, workloads, velero }, spec),
    counters: () => ({ writes: { ...writes }, restarts: { ...ctx.restarts } }),
    faults: {
      failHelmChart: (name, message = `lab: injected failure installing ${name}`) => {
        f.failHelmChart.set(name, message);
      },
      stallHelmChart: (name) => {
        f.stallHelmChart.add(name);
      },
      stallRollout: (ns, kind, name) => {
        f.stallRollout.add(`${ns}/${kind}/${name}`);
      },
      backupPartiallyFailed: (name) => {
        if (name) f.backupPartiallyFailed.names.add(name);
        else f.backupPartiallyFailed.next = true;
      },
      restoreFailed: (name, reason = 'lab: injected restore failure') => {
        if (name) f.restoreFailed.names.set(name, reason);
        else f.restoreFailed.next = reason;
      },
      bslUnavailable: (name) => {
        f.bslUnavailable.add(name);
        for (const bsl of store.list(registry.must('velero.io/v1', 'BackupStorageLocation'))) {
          if (bsl.metadata.name === name) velero.validateLocation(bsl.metadata.namespace!, name);
        }
      },
      clear: () => {
        Object.assign(f, newFaults());
        for (const fn of ctx.onClear) fn();
      },
    },
    get: (apiVersion, kind, ns, name) => store.lookup(apiVersion, kind, ns, name),
    async stop() {
      timers.stopAll();
      watches.closeAll();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
