// The lab's three SSH nodes: real OpenSSH sshd processes, each in its own mount + UTS namespace with a
// private root (node-root.sh), behind a TCP fault proxy (proxy.ts). Facts shims and the k3s stand-in
// live in shims/ and k3s/. Contract: test/lab/README.md, "Nodes".
import { chmod, copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultProxy } from './proxy.js';
import { NodeProcesses, generateHostKey, sshdConfig } from './node.js';
import { defaultFacts, labHostname, validateFacts, writeFacts, type NodeFacts } from './facts.js';

export type { NodeFacts } from './facts.js';
export { STORAGE_PATH, LAB_HOSTNAMES, labHostname } from './facts.js';

/** The k3s stand-in's installer: upload and run it like get.k3s.io (`sh -s - server ...` or with env). */
export const K3S_INSTALL_SCRIPT = fileURLToPath(new URL('./k3s/install.sh', import.meta.url));
/** The version the stand-in installs when INSTALL_K3S_VERSION is unset (the "stable channel"). */
export const K3S_DEFAULT_VERSION = 'v1.31.4+k3s1';
/**
 * The releases the lab's "GitHub" serves, one stand-in binary each (INSTALL_K3S_VERSION picks it; any
 * other version is a 404 like github.com/k3s-io/k3s/releases/download/<version>/k3s). Patch releases
 * of the pinned minor for upgrades, the next minor for the server-before-agent and minor-skip rules,
 * and a few more so the chaos suite can upgrade the same lab run after run (test/chaos/scenarios.ts).
 */
export const K3S_RELEASES = [
  'v1.30.8+k3s1',
  'v1.31.4+k3s1',
  'v1.31.5+k3s1',
  'v1.31.6+k3s1',
  'v1.32.1+k3s1',
  'v1.32.2+k3s1',
  'v1.32.3+k3s1',
  'v1.33.1+k3s1',
];

const HERE = fileURLToPath(new URL('.', import.meta.url));

export interface LabNode {
  name: string;
  host: string;
  port: number;
  hostKey: string; // "ssh-ed25519 AAAA…" (current key: changes with rotateHostKey/restoreHostKey)
  hostname: string; // the machine's hostname (`hostname` on the node): not the config's node name
  lanIp: string; // eth0's address in the default facts (what `ip -4 route show default` leads to)
  rootDir: string; // host path mirroring the node's private paths (rootDir/etc/rancher, …)
}

export interface NodeCounters {
  installerRuns: number;
  sshSessions: number; // exec, shell and sftp sessions sshd ran
  connections: number; // TCP connections the proxy accepted (refused ones included)
  aptInstalls: number; // `apt-get install` runs that installed something
}

export interface LabNodes {
  nodes: LabNode[];
  faults: {
    refuse(node: string): void;
    drop(node: string): void;
    dropAfter(node: string, n: number): void;
    slow(node: string, ms: number): void;
    rotateHostKey(node: string): Promise<string>;
    restoreHostKey(node: string): Promise<void>;
    setFacts(node: string, facts: Partial<NodeFacts>): Promise<void>;
    clear(node?: string): void;
  };
  /**
   * The machine is gone and a new one takes its place under the same name: the old sshd and every
   * process of its namespace are killed and its root removed; the new node gets a loopback address,
   * LAN address and host key of its own, a fresh empty root and the same sshd setup. `nodes` is updated
   * in place (the lab's controllers read it).
   */
  replace(node: string): Promise<LabNode>;
  counters(): Record<string, NodeCounters>;
  stop(): Promise<void>;
}

export interface StartNodesOptions {
  dir: string;
  names: string[];
  authorizedKey: string;
  kube: { url: string; token: string; caPem: string };
  facts?: Record<string, Partial<NodeFacts>>;
}

interface NodeState {
  node: LabNode;
  procs: NodeProcesses;
  proxy: FaultProxy;
  lab: string; // <rootDir>/.lab: sshd config, host keys, session log (the node's /run/lab)
  sessionsRead: number; // bytes of sessions.log already seen by dropAfter
  dropAfter?: { remaining: number; timer: NodeJS.Timeout };
}

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function countLines(file: string): number {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

async function prepareNodeDir(
  rootDir: string,
  name: string,
  host: string,
  index: number,
  opts: StartNodesOptions,
): Promise<string> {
  const lab = path.join(rootDir, '.lab');
  const varLibLab = path.join(rootDir, 'var/lib/lab');
  await mkdir(path.join(lab, 'k3s-release'), { recursive: true });
  await mkdir(varLibLab, { recursive: true });
  await mkdir(path.join(rootDir, 'usr/local/bin'), { recursive: true });
  await mkdir(path.join(rootDir, 'etc'), { recursive: true });

  await generateHostKey(path.join(lab, 'ssh_host_ed25519_key'));
  await writeFile(path.join(lab, 'authorized_keys'), `${opts.authorizedKey.trim()}\n`, { mode: 0o600 });
  await writeFile(path.join(lab, 'sshd_config'), sshdConfig());
  await writeFile(path.join(lab, 'sessions.log'), '');
  await copyFile(path.join(HERE, 'session.sh'), path.join(lab, 'session.sh'));
  await chmod(path.join(lab, 'session.sh'), 0o755);
  // the "GitHub releases" the installer downloads the k3s binary from: one binary per version
  const standIn = await readFile(path.join(HERE, 'k3s/k3s'), 'utf8');
  for (const v of K3S_RELEASES) {
    await mkdir(path.join(lab, 'k3s-release', v), { recursive: true });
    await writeFile(path.join(lab, 'k3s-release', v, 'k3s'), standIn.replace('@VERSION@', v), { mode: 0o755 });
  }
  // the stand-in's etcd snapshot side, sourced from the lab's dir (k3s/etcd-snapshot.sh)
  await copyFile(path.join(HERE, 'k3s/etcd-snapshot.sh'), path.join(lab, 'k3s-etcd-snapshot.sh'));

  for (const shim of await readdir(path.join(HERE, 'shims'))) {
    const dest = path.join(rootDir, 'usr/local/bin', shim);
    await copyFile(path.join(HERE, 'shims', shim), dest);
    await chmod(dest, 0o755);
  }

  const facts: NodeFacts = { ...defaultFacts(name, index), ...(opts.facts?.[name] ?? {}) };
  validateFacts(facts);
  await writeFacts(varLibLab, path.join(rootDir, 'etc/os-release'), facts);

  // what the k3s stand-in needs to register with the Kubernetes double (lab-only endpoints)
  await writeFile(path.join(varLibLab, 'kube-ca.pem'), opts.kube.caPem);
  await writeFile(
    path.join(varLibLab, 'kube.env'),
    `KUBE_URL='${opts.kube.url.replace(/\/+$/, '')}'\nNODE_DEFAULT_IP='${host}'\n`,
  );
  await writeFile(path.join(varLibLab, 'kube-auth-header'), `Authorization: Bearer ${opts.kube.token}\n`, {
    mode: 0o600,
  });
  await writeFile(path.join(varLibLab, 'kube-token'), opts.kube.token, { mode: 0o600 });
  return lab;
}

async function readHostKey(lab: string): Promise<string> {
  return (await readFile(path.join(lab, 'ssh_host_ed25519_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
}

export async function startNodes(opts: StartNodesOptions): Promise<LabNodes> {
  if (!path.isAbsolute(opts.dir)) throw new Error('startNodes: dir must be an absolute path');
  if (opts.names.length === 0 || opts.names.length > 100) throw new Error('startNodes: names must list 1..100 nodes');
  for (const n of opts.names)
    if (!HOSTNAME.test(n)) throw new Error(`startNodes: ${JSON.stringify(n)} is not a valid hostname`);
  if (new Set(opts.names).size !== opts.names.length) throw new Error('startNodes: duplicate node names');
  if (!/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) \S+/.test(opts.authorizedKey.trim()))
    throw new Error('startNodes: authorizedKey must be a public key line');
  for (const n of Object.keys(opts.facts ?? {}))
    if (!opts.names.includes(n)) throw new Error(`startNodes: facts for unknown node ${n}`);

  // every node's private root lives directly below dir: <dir>/<name>
  const nodesDir = opts.dir;
  await mkdir(nodesDir, { recursive: true });
  const states = new Map<string, NodeState>();

  // a replacement machine takes the next index: its own loopback and LAN addresses
  let nextIndex = opts.names.length;
  const startOne = async (name: string, i: number): Promise<void> => {
    const host = `127.0.0.${11 + i}`;
    const rootDir = path.join(nodesDir, name);
    const lab = await prepareNodeDir(rootDir, name, host, i, opts);
    const hostname = labHostname(name);
    const procs = new NodeProcesses(name, rootDir, hostname);
    // registered before start so a failure half-way is still cleaned up
    const partial = { procs } as NodeState;
    states.set(name, partial);
    await procs.start();
    const { proxy, port } = await FaultProxy.listen(host, { host: '127.0.0.1', port: procs.sshdPort });
    Object.assign(partial, {
      proxy,
      lab,
      sessionsRead: 0,
      node: {
        name,
        host,
        port,
        hostKey: await readHostKey(lab),
        hostname,
        lanIp: defaultFacts(name, i)
          .interfaces.find((f) => f.name === 'eth0')!
          .address.split('/')[0],
        rootDir,
      },
    });
  };

  const stop = async (): Promise<void> => {
    await Promise.all(
      [...states.values()].map(async (s) => {
        if (s.dropAfter) clearInterval(s.dropAfter.timer);
        await s.proxy?.close();
        await s.procs.stop();
        await rm(s.procs.dir, { recursive: true, force: true, maxRetries: 5 });
      }),
    );
    states.clear();
  };

  const started = await Promise.allSettled(opts.names.map((n, i) => startOne(n, i)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }

  const get = (name: string): NodeState => {
    const s = states.get(name);
    if (!s) throw new Error(`lab nodes: unknown node ${JSON.stringify(name)} (have ${opts.names.join(', ')})`);
    return s;
  };

  const newExecSessions = (s: NodeState): number[] => {
    const buf = readFileSync(path.join(s.lab, 'sessions.log'));
    const fresh = buf.subarray(s.sessionsRead);
    const end = fresh.lastIndexOf(0x0a) + 1; // whole lines only
    s.sessionsRead += end;
    return fresh
      .subarray(0, end)
      .toString()
      .split('\n')
      .map((l) => l.split(' '))
      .filter(([kind, port]) => kind === 'exec' && port)
      .map(([, port]) => Number(port));
  };

  const faults: LabNodes['faults'] = {
    refuse: (name) => {
      get(name).proxy.refusing = true;
    },
    drop: (name) => {
      get(name).proxy.dropAll();
    },
    dropAfter: (name, n) => {
      if (!Number.isInteger(n) || n < 1) throw new Error('dropAfter: n must be an integer >= 1');
      const s = get(name);
      if (s.dropAfter) clearInterval(s.dropAfter.timer);
      newExecSessions(s); // sessions that started before arming do not count
      // sessions are found through the log session.sh writes; 10 ms polling keeps the cut mid-command
      const plan = {
        remaining: n,
        timer: setInterval(() => {
          for (const port of newExecSessions(s)) {
            if (--plan.remaining === 0) {
              clearInterval(plan.timer);
              s.dropAfter = undefined;
              s.proxy.dropByUpstreamPort(port);
              return;
            }
          }
        }, 10),
      };
      plan.timer.unref();
      s.dropAfter = plan;
    },
    slow: (name, ms) => {
      if (!Number.isFinite(ms) || ms < 0) throw new Error('slow: ms must be >= 0');
      get(name).proxy.delayMs = ms;
    },
    rotateHostKey: async (name) => {
      const s = get(name);
      const key = path.join(s.lab, 'ssh_host_ed25519_key');
      const orig = path.join(s.lab, 'orig_host_key');
      if (
        !(await readFile(`${orig}.pub`).then(
          () => true,
          () => false,
        ))
      ) {
        await copyFile(key, orig);
        await copyFile(`${key}.pub`, `${orig}.pub`);
      }
      s.node.hostKey = await generateHostKey(key);
      await s.procs.restartSshd();
      return s.node.hostKey;
    },
    restoreHostKey: async (name) => {
      const s = get(name);
      const key = path.join(s.lab, 'ssh_host_ed25519_key');
      const orig = path.join(s.lab, 'orig_host_key');
      if (
        !(await readFile(`${orig}.pub`).then(
          () => true,
          () => false,
        ))
      )
        return; // never rotated
      await copyFile(orig, key);
      await copyFile(`${orig}.pub`, `${key}.pub`);
      s.node.hostKey = await readHostKey(s.lab);
      await s.procs.restartSshd();
    },
    setFacts: async (name, partial) => {
      const s = get(name);
      validateFacts(partial);
      const varLibLab = path.join(s.node.rootDir, 'var/lib/lab');
      // start from the node's current file: apt-get/swapoff on the node may have changed it
      const current = JSON.parse(await readFile(path.join(varLibLab, 'facts.json'), 'utf8')) as NodeFacts;
      await writeFacts(varLibLab, path.join(s.node.rootDir, 'etc/os-release'), { ...current, ...partial });
    },
    clear: (name) => {
      for (const s of name === undefined ? states.values() : [get(name)]) {
        s.proxy.refusing = false;
        s.proxy.delayMs = 0;
        if (s.dropAfter) clearInterval(s.dropAfter.timer);
        s.dropAfter = undefined;
      }
    },
  };

  const nodes = opts.names.map((n) => get(n).node);
  const replace = async (name: string): Promise<LabNode> => {
    const old = get(name);
    if (old.dropAfter) clearInterval(old.dropAfter.timer);
    await old.proxy.close();
    await old.procs.stop();
    await rm(old.procs.dir, { recursive: true, force: true, maxRetries: 5 });
    states.delete(name);
    await startOne(name, nextIndex++);
    const fresh = get(name).node;
    nodes[nodes.findIndex((n) => n.name === name)] = fresh;
    return fresh;
  };

  return {
    nodes,
    faults,
    replace,
    counters: () =>
      Object.fromEntries(
        [...states.values()].map((s) => [
          s.node.name,
          {
            installerRuns: countLines(path.join(s.node.rootDir, 'var/lib/lab/installer-runs')),
            sshSessions: countLines(path.join(s.lab, 'sessions.log')),
            connections: s.proxy.connections,
            aptInstalls: countLines(path.join(s.node.rootDir, 'var/lib/lab/apt.log')),
          },
        ]),
      ),
    stop,
  };
}
