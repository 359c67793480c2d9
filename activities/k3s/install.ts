// K3s install and join. The installer runs detached on the node under a lock (runner script below),
// so an SSH connection dropped mid-install neither kills it nor lets a retry start a second copy:
// the retry waits for the running one, then finds k3s at the pinned version and active and skips.
// Join tokens are read from the server inside the activity that uses them and travel to the node on
// stdin into a 0600 env file; they never enter workflow history, logs or command lines.
import { readFileSync } from 'node:fs';
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { shellQuote, type SshSession } from '../ssh/client.js';
import { beat, sleep } from '../heartbeat.js';
import { must, nodeOrFail, withSession } from '../ssh/session.js';

const WORK = '/var/lib/rancher/pedro-ops';
export const NODE_TOKEN_PATH = '/var/lib/rancher/k3s/server/node-token';
export const SERVER_TOKEN_PATH = '/var/lib/rancher/k3s/server/token';

export interface K3sInstallResult {
  node: string;
  role: 'server' | 'agent';
  version: string;
  /** false: k3s already ran at the pinned version, nothing was executed. */
  installed: boolean;
}

const serviceOf = (node: NodeSpec) => (node.role === 'server' ? 'k3s' : 'k3s-agent');

const RUNNER = `#!/bin/sh
# pedro-ops install runner: one installer at a time; a second copy waits, then skips if k3s is up.
cd ${WORK} || exit 1
exec 9>install.lock
flock 9
if [ "$(k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3)" = "$WANT_VERSION" ] && systemctl is-active --quiet "$WANT_SERVICE"; then
  rm -f install.env; echo 0 >install.rc; exit 0
fi
if [ ! -f install.env ]; then echo "install.env missing (a previous run consumed it)" >install.log; echo 1 >install.rc; exit 1; fi
set -a; . ./install.env; set +a
rm -f install.env
sh ./install.sh >install.log 2>&1
echo $? >install.rc
`;

/** What is installed now: version (or '') and whether the service is active. */
export async function observeK3s(s: SshSession, node: NodeSpec): Promise<{ version: string; active: boolean }> {
  const r = await s.exec(
    `k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3; systemctl is-active ${serviceOf(node)} 2>/dev/null || true`,
  );
  const [version = '', state = ''] = r.stdout.split('\n').map((l) => l.trim());
  return { version, active: state === 'active' };
}

function installScriptContent(spec: ClusterSpec): { content?: string; url?: string } {
  const src = spec.k3s.installScript;
  if (/^https:\/\//.test(src)) return { url: src };
  try {
    return { content: readFileSync(src, 'utf8') };
  } catch (err) {
    throw nonRetryable(ErrorType.BadConfig, `k3s.installScript ${src} cannot be read: ${(err as Error).message}`);
  }
}

function envFile(vars: Record<string, string | undefined>): string {
  return (
    Object.entries(vars)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${k}=${shellQuote(v!)}`)
      .join('\n') + '\n'
  );
}

/**
 * Runs (or waits for) the installer on one node and returns once k3s runs at the pinned version.
 * `env` carries secrets (K3S_TOKEN): written to a 0600 file that the runner deletes once read.
 */
async function runInstaller(
  s: SshSession,
  spec: ClusterSpec,
  node: NodeSpec,
  env: Record<string, string | undefined>,
): Promise<void> {
  const want = spec.k3s.version;
  const svc = serviceOf(node);
  const busy = await s.exec(
    `cd ${WORK} 2>/dev/null && [ -f install.lock ] && ! flock -n install.lock true && echo busy`,
  );
  if (busy.stdout.trim() !== 'busy') {
    beat({ node: node.name, step: 'uploading installer' });
    const script = installScriptContent(spec);
    await must(s, node.name, `mkdir -p ${WORK} && chmod 700 ${WORK} && rm -f ${WORK}/install.rc`);
    if (script.content) await s.putContent(script.content, `${WORK}/install.sh`, 0o700);
    else
      await must(s, node.name, `curl -sfL ${shellQuote(script.url!)} -o ${WORK}/install.sh`, {
        what: 'download install script',
      });
    await s.putContent(RUNNER, `${WORK}/run.sh`, 0o700);
    await s.putContent(envFile(env), `${WORK}/install.env`, 0o600);
    beat({ node: node.name, step: 'starting installer' });
    await must(
      s,
      node.name,
      `cd ${WORK} && WANT_VERSION=${shellQuote(want)} WANT_SERVICE=${svc} nohup setsid sh ./run.sh </dev/null >/dev/null 2>&1 &`,
    );
  }
  for (let i = 0; ; i++) {
    const r = await s.exec(`cat ${WORK}/install.rc 2>/dev/null`);
    const rc = r.stdout.trim();
    if (rc !== '') {
      if (rc === '0') return;
      const log = await s.exec(`tail -n 5 ${WORK}/install.log 2>/dev/null`);
      throw nonRetryable(
        ErrorType.InstallFailed,
        `k3s installer on ${node.name} exited ${rc}: ${log.stdout.trim().split('\n').slice(-3).join(' | ')}`,
        { node: node.name },
      );
    }
    beat({ node: node.name, step: 'installer running', polls: i });
    await sleep(500);
  }
}

async function installOn(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
  env: () => Promise<Record<string, string | undefined>>,
): Promise<K3sInstallResult> {
  return withSession(deps, spec, node, async (s) => {
    beat({ node: node.name, step: 'observing' });
    const before = await observeK3s(s, node);
    const base = { node: node.name, role: node.role, version: spec.k3s.version };
    if (before.version === spec.k3s.version && before.active) return { ...base, installed: false };
    await runInstaller(s, spec, node, await env());
    const after = await observeK3s(s, node);
    if (after.version !== spec.k3s.version || !after.active) {
      throw retryable(
        ErrorType.NotReady,
        `k3s on ${node.name} is ${after.version || 'absent'} (${after.active ? 'active' : 'inactive'}) after install; want ${spec.k3s.version} active`,
      );
    }
    return { ...base, installed: true };
  });
}

async function readToken(deps: ActivityDeps, spec: ClusterSpec, server: NodeSpec, path: string): Promise<string> {
  return withSession(deps, spec, server, async (s) => {
    const r = await s.exec(`cat ${path}`);
    const token = r.stdout.trim();
    if (r.code !== 0 || !token) throw retryable(ErrorType.NotReady, `no join token at ${path} on ${server.name} yet`);
    return token;
  });
}

export function k3sActivities(deps: ActivityDeps) {
  return {
    /** First server: --cluster-init. Further servers join the first (embedded etcd). */
    async installK3sServer(input: { cluster: string; node: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      const first = spec.nodes.find((n) => n.role === 'server')!;
      const apiPort = spec.k3s.apiPort ?? 6443;
      return installOn(deps, spec, node, async () => {
        if (first.name === node.name)
          return { INSTALL_K3S_VERSION: spec.k3s.version, INSTALL_K3S_EXEC: 'server --cluster-init' };
        return {
          INSTALL_K3S_VERSION: spec.k3s.version,
          INSTALL_K3S_EXEC: `server --server https://${first.nodeIp}:${apiPort}`,
          K3S_TOKEN: await readToken(deps, spec, first, SERVER_TOKEN_PATH),
        };
      });
    },

    /** Agent join: the token is read from the first server here and never leaves this activity. */
    async joinK3sAgent(input: { cluster: string; node: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'agent') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not an agent`);
      const server = spec.nodes.find((n) => n.role === 'server')!;
      return installOn(deps, spec, node, async () => ({
        INSTALL_K3S_VERSION: spec.k3s.version,
        INSTALL_K3S_EXEC: 'agent',
        K3S_URL: `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}`,
        K3S_TOKEN: await readToken(deps, spec, server, NODE_TOKEN_PATH),
      }));
    },
  };
}
