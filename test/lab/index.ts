// startLab(): pedro-ops in miniature. Wires the pieces (SSH nodes, Kubernetes double, OpenBAO double,
// 1Password double) on a loopback address of its own, writes the cluster definition the orchestrator
// reads, and serves the control API. Two labs can run at once: every lab has its own 127.x.y.1
// address, OS-assigned ports and temp dir.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomInt } from 'node:crypto';
import type { ClusterSpec } from '../../config/schema.js';
import { REPO_ROOT, componentWorkloads, labClusterSpec, writeClusterFile } from './cluster-spec.js';
import { startControlServer, type ControlServer, type LabCounters, type LabFaults } from './control.js';
import { seedBuiltState, type BuiltSecrets } from './built.js';
import { driftFaults } from './drift-faults.js';
import { startNodes, type LabNode, type LabNodes, type NodeFacts } from './nodes/index.js';
import { startKubeLab, type KubeLab } from './kube/index.js';
import { K3sDeployController } from './kube/controllers/k3s-deploy.js';
import { KubeVipDouble } from './kube/controllers/kube-vip.js';
import { startOpenBaoDouble, type OpenBaoDouble } from './openbao.js';
import { fixtureSecretValues, startOnePasswordDouble, type OnePasswordDouble } from './onepassword/index.js';

import { kubeconfigYaml, removeLabDir, subtractCounters } from './lab-util.js';

export type { LabCounters, LabFaults } from './control.js';
export { labProcesses, subtractCounters } from './lab-util.js';
export type { LabNode, NodeCounters, NodeFacts } from './nodes/index.js';

const run = promisify(execFile);
export const NODE_NAMES = ['control-plane', 'worker-1', 'worker-2'];
export const FIXTURE_PATH = join(REPO_ROOT, 'test/lab/fixtures/onepassword.json');

export interface StartLabOptions {
  /** Start as an already-provisioned cluster (k3s installed, components up, OpenBAO unsealed and filled). */
  built?: boolean;
  /** With `built`: OpenBAO as its chart leaves it (uninitialised, sealed, no unseal item, no secrets). */
  openbaoFresh?: boolean;
  facts?: Record<string, Partial<NodeFacts>>;
  /** Parent folder of the lab's fresh temp dir (default os.tmpdir()). The lab never deletes this folder itself. */
  dir?: string;
  /** Also write the cluster definition here (e.g. config/clusters/lab.yaml); removed again by stop(). */
  writeClusterFile?: string;
  /** How long HelmChart install Jobs run (default 300 ms), by chart name. */
  kubeDelays?: { jobDelayMs?: number | ((chart: string) => number) };
  /** Where the start time and progress go (default: stderr). Never receives secret values. */
  log?: (line: string) => void;
}

export interface Lab {
  dir: string;
  /** The lab's own loopback address; the apiserver and the doubles listen here. */
  host: string;
  /**
   * The lab's VIP, another loopback address: like a real VIP nothing answers there until kube-vip runs
   * and leads (kube/controllers/kube-vip.ts); then it forwards to the apiserver.
   */
  vip: string;
  spec: ClusterSpec;
  clusterFile: string;
  sshKeyPath: string;
  /** known_hosts lines for the pinned node keys (for the ssh CLI). */
  knownHostsPath: string;
  nodes: LabNode[];
  /** kubeconfigPath: an admin kubeconfig (CA + bearer token, 0600) for kubectl or a client. */
  kube: { url: string; caPem: string; token: string; kubeconfigPath: string };
  built: boolean;
  openbao: { url: string; /** built labs only */ rootToken?: string };
  onepassword: { url: string; fixturePath: string; statePath: string };
  control: { url: string };
  faults: LabFaults;
  /** What each piece did since the lab started (or since the built state was seeded, or the last reset). */
  counters(): LabCounters;
  resetCounters(): void;
  /** Every secret value the lab holds (1Password fixture values, unseal keys, root token): for leak scans. */
  secretValues(): string[];
  startMs: number;
  pieces: { nodes: LabNodes; kube: KubeLab; openbao: OpenBaoDouble; onepassword: OnePasswordDouble };
  stop(): Promise<void>;
}

export async function startLab(opts: StartLabOptions = {}): Promise<Lab> {
  const t0 = performance.now();
  const log = opts.log ?? ((line: string) => process.stderr.write(`[lab] ${line}\n`));
  const host = `127.${randomInt(1, 255)}.${randomInt(0, 256)}.1`;
  const vip = host.replace(/\.1$/, '.100');
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'pedro-ops-lab-'));
  // Undo stack: a lab that fails half way still leaves nothing behind.
  const undo: Array<{ what: string; fn: () => Promise<void> | void }> = [];
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopAll());
  const stopAll = async () => {
    const errors: string[] = [];
    for (const u of undo.reverse()) {
      try {
        await u.fn();
      } catch (err) {
        errors.push(`${u.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    errors.push(...(await removeLabDir(dir)));
    if (errors.length > 0) throw new Error(`lab stop left problems:\n${errors.join('\n')}`);
  };

  try {
    const sshKeyPath = join(dir, 'id_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `pedro-ops-lab@${host}`, '-f', sshKeyPath]);
    await chmod(sshKeyPath, 0o600);
    const publicKey = (await readFile(`${sshKeyPath}.pub`, 'utf8')).trim();

    // OpenBAO first: the Kubernetes side asks it whether OpenBAO pods are ready (their `bao status` probe).
    const [openbao, onepassword] = await Promise.all([
      startOpenBaoDouble({ host }).then((o) => (undo.push({ what: 'openbao', fn: () => o.stop() }), o)),
      startOnePasswordDouble({
        host,
        fixturePath: FIXTURE_PATH,
        statePath: join(dir, 'onepassword-state.json'),
      }).then((o) => (undo.push({ what: 'onepassword', fn: () => o.stop() }), o)),
    ]);
    const kube: KubeLab = await startKubeLab({
      host,
      vip,
      dir: join(dir, 'kube'),
      openbaoUrl: openbao.url,
      // A restarted OpenBAO pod comes back sealed (its keys live only in memory).
      onOpenBaoPodStart: () => openbao.faults.seal(),
      jobDelayMs: opts.kubeDelays?.jobDelayMs,
      log,
    });
    undo.push({ what: 'kube', fn: () => kube.stop() });
    const nodes = await startNodes({
      dir: join(dir, 'nodes'),
      names: NODE_NAMES,
      authorizedKey: publicKey,
      // The stand-in joins through the lab's k3s supervisor; its k3s.yaml holds the apiserver's token.
      kube: { url: kube.supervisorUrl, token: kube.token, caPem: kube.caPem },
      facts: opts.facts,
    });
    undo.push({ what: 'nodes', fn: () => nodes.stop() });
    // k3s's deploy controller (manifests folder) and kube-vip: they decide whether the VIP answers.
    const deploy = new K3sDeployController(kube.controlPlane.api, () => nodes.nodes, log);
    deploy.start();
    undo.push({ what: 'k3s deploy', fn: () => deploy.stop() });
    const kubeUrl0 = new URL(kube.url);
    const kubeVip = new KubeVipDouble(kube.controlPlane.api, {
      vip,
      target: { host: kubeUrl0.hostname, port: Number(kubeUrl0.port) },
      nodes: () => nodes.nodes,
      log,
    });
    kubeVip.start();
    undo.push({ what: 'kube-vip', fn: () => kubeVip.stop() });

    const kubeUrl = new URL(kube.url);
    const spec0 = labClusterSpec({
      kube: { host: kubeUrl.hostname, port: Number(kubeUrl.port) },
      vip,
      nodes: nodes.nodes,
      sshKeyPath,
      objectStoreUrl: kube.objectStoreUrl,
      onepasswordUrl: onepassword.url,
      kubeconfigPath: join(dir, 'kubeconfig.yaml'),
    });
    const clusterFile = join(dir, `${spec0.name}.yaml`);
    const spec = writeClusterFile(spec0, clusterFile);
    if (opts.writeClusterFile) {
      const extra = opts.writeClusterFile;
      writeClusterFile(spec, extra);
      undo.push({ what: 'cluster file', fn: () => rmSync(extra, { force: true }) });
    }
    kube.setComponentWorkloads(componentWorkloads(spec));
    // For people at a terminal: `ssh -o UserKnownHostsFile=<this>` checks the same pinned keys the spec holds.
    const knownHostsPath = join(dir, 'known_hosts');
    writeFileSync(knownHostsPath, spec.nodes.map((n) => `[${n.address}]:${n.port} ${n.hostKey}\n`).join(''));
    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(adminKubeconfig, kubeconfigYaml(kube), { mode: 0o600 });

    let built: BuiltSecrets | undefined;
    if (opts.built) {
      built = await seedBuiltState({
        spec,
        nodes: nodes.nodes,
        sshKeyPath,
        kube,
        openbao,
        onepasswordUrl: onepassword.url,
        log,
        openbaoFresh: opts.openbaoFresh,
      });
    }

    const statePath = join(dir, 'onepassword-state.json');
    const fixtureValues = fixtureSecretValues(FIXTURE_PATH);
    const secretValues = () => {
      // The state file (same shape as the fixture) holds values written since start: rotations, the unseal item.
      const state = existsSync(statePath) ? fixtureSecretValues(statePath) : [];
      const extra = built ? [...built.unsealKeys, built.rootToken] : [];
      return [...new Set([...fixtureValues, ...state, ...extra])];
    };

    const raw = (): LabCounters => ({
      nodes: nodes.counters(),
      kube: kube.counters(),
      openbao: openbao.counters(),
      onepassword: onepassword.counters(),
    });
    let baseline = raw();
    const counters = () => subtractCounters(raw(), baseline);
    const resetCounters = () => void (baseline = raw());

    const faults: LabFaults = {
      ssh: {
        refuse: (n) => nodes.faults.refuse(n),
        drop: (n) => nodes.faults.drop(n),
        dropAfter: (n, count) => nodes.faults.dropAfter(n, count),
        slow: (n, ms) => nodes.faults.slow(n, ms),
        rotateHostKey: (n) => nodes.faults.rotateHostKey(n),
        restoreHostKey: (n) => nodes.faults.restoreHostKey(n),
        clear: (n) => nodes.faults.clear(n),
      },
      setFacts: (n, f) => nodes.faults.setFacts(n, f),
      replaceNode: (n) => nodes.replace(n),
      helmcharts: {
        fail: (name, msg) => kube.faults.failHelmChart(name, msg),
        failVersion: (name, version, msg) => kube.faults.failHelmChartVersion(name, version, msg),
        stall: (name) => kube.faults.stallHelmChart(name),
      },
      upgrade: {
        blockDrain: (ns, labels) => kube.faults.blockDrain(ns, labels),
        nodeNotReadyOn: (node, version) => kube.faults.nodeNotReadyOn(node, version),
      },
      openbao: {
        seal: () => openbao.faults.seal(),
        standby: (on) => openbao.faults.standby(on),
        clear: () => openbao.faults.clear(),
      },
      onepassword: {
        rateLimit: (calls) => onepassword.faults.rateLimit(calls),
        expireAuth: () => onepassword.faults.expireAuth(),
        clear: () => onepassword.faults.clear(),
      },
      velero: {
        backupPartiallyFailed: (name) => kube.faults.backupPartiallyFailed(name),
        restoreFailed: (name, reason) => kube.faults.restoreFailed(name, reason),
        restoreSlow: (ms) => kube.faults.restoreSlow(ms),
        restoreItemError: (item, message) => kube.faults.restoreItemError(item, message),
        restoreWithoutVolumeData: (backup) => kube.faults.restoreWithoutVolumeData(backup),
        bslUnavailable: (name) => kube.faults.bslUnavailable(name),
      },
      rollouts: { stall: (ns, kind, name) => kube.faults.stallRollout(ns, kind, name) },
      drift: driftFaults({ spec, nodes: nodes.nodes, sshKeyPath, kube }),
      kube: {
        apiserverDown: () => kube.faults.apiserverDown(),
        apiserverUp: () => kube.faults.apiserverUp(),
        destroyControlPlane: async () => {
          await kube.controlPlane.destroy();
          const server = nodes.nodes.find((n) => n.name === NODE_NAMES[0])!;
          // The directories are bind mounts into the node's root: empty them, keep the mount points.
          for (const d of ['var/lib/rancher', 'etc/rancher'])
            for (const e of readdirSync(join(server.rootDir, d)))
              rmSync(join(server.rootDir, d, e), { recursive: true, force: true });
          for (const f of ['usr/local/bin/k3s', 'etc/systemd/system/k3s.service', 'etc/systemd/system/k3s.service.env'])
            rmSync(join(server.rootDir, f), { force: true });
        },
        rejectWrites: (resource, message) => kube.faults.rejectWrites(resource, message),
      },
      clear: async () => {
        nodes.faults.clear();
        openbao.faults.clear();
        onepassword.faults.clear();
        await kube.faults.clear();
      },
    };

    const control: ControlServer = await startControlServer({
      host,
      target: { nodeNames: NODE_NAMES, faults, counters, resetCounters },
    });
    undo.push({ what: 'control', fn: () => control.stop() });

    const startMs = Math.round(performance.now() - t0);
    log(`${opts.built ? 'built ' : ''}lab on ${host} started in ${startMs} ms (dir ${dir})`);
    return {
      dir,
      host,
      vip,
      spec,
      clusterFile,
      sshKeyPath,
      knownHostsPath,
      nodes: nodes.nodes,
      kube: { url: kube.url, caPem: kube.caPem, token: kube.token, kubeconfigPath: adminKubeconfig },
      built: Boolean(opts.built),
      openbao: { url: openbao.url, rootToken: built?.rootToken },
      onepassword: { url: onepassword.url, fixturePath: FIXTURE_PATH, statePath },
      control: { url: control.url },
      faults,
      counters,
      resetCounters,
      secretValues,
      startMs,
      pieces: { nodes, kube, openbao, onepassword },
      stop,
    };
  } catch (err) {
    await stop().catch((e: unknown) =>
      log(`cleanup after failed start: ${e instanceof Error ? e.message : String(e)}`),
    );
    throw err;
  }
}
