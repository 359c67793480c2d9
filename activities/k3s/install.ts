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
import { resolveNodeIp } from '../ssh/node-ip.js';
import { RESTART_MARKER } from '../ssh/prepare.js';
import { keepServerTokenOffNode, type ServerTokenCopy } from './server-token.js';

const WORK = '/var/lib/rancher/pedro-ops';
export const NODE_TOKEN_PATH = '/var/lib/rancher/k3s/server/node-token';
export const SERVER_TOKEN_PATH = '/var/lib/rancher/k3s/server/token';

export interface K3sInstallResult {
  node: string;
  role: 'server' | 'agent';
  version: string;
  /** false: k3s already ran at the pinned version, the installer was not run. */
  installed: boolean;
  /** installed: the installer ran; started: it was stopped; restarted: its config changed; unchanged. */
  action?: 'installed' | 'started' | 'restarted' | 'unchanged';
  /** What was done and why, for the step detail. */
  detail?: string;
  /** First server: its token kept in 1Password (reference and fingerprint, never the value). */
  tokenCopy?: ServerTokenCopy;
}

const DEFAULT_START_TIMEOUT_S = 300;

const serviceOf = (node: NodeSpec) => (node.role === 'server' ? 'k3s' : 'k3s-agent');

const RUNNER = `#!/bin/sh
# pedro-ops install runner: one installer at a time; a second copy waits, then skips if k3s is up.
cd ${WORK} || exit 1
exec 9>install.lock
flock 9
# WANT_ACTIVE=no (INSTALL_K3S_SKIP_START): installed with its unit is enough, and nothing is started.
if [ "$(k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3)" = "$WANT_VERSION" ] && \
  { systemctl is-active --quiet "$WANT_SERVICE" || { [ "$WANT_ACTIVE" = no ] && [ -f "/etc/systemd/system/$WANT_SERVICE.service" ]; }; }; then
  rm -f install.env; echo 0 >install.rc; exit 0
fi
if [ ! -f install.env ]; then echo "install.env missing (a previous run consumed it)" >install.log; echo 1 >install.rc; exit 1; fi
set -a; . ./install.env; set +a
rm -f install.env
sh ./install.sh >install.log 2>&1
rc=$?
# With binary, unit and env unchanged the installer prints "No change detected so skipping service
# start" and leaves a stopped service stopped (k3s-io/k3s install.sh service_enable_and_start): start it.
if [ "$rc" = 0 ] && [ "$WANT_ACTIVE" != no ] && ! systemctl is-active --quiet "$WANT_SERVICE"; then
  echo "[pedro-ops] $WANT_SERVICE is not active after the installer: systemctl start $WANT_SERVICE" >>install.log
  systemctl start "$WANT_SERVICE" >>install.log 2>&1
  rc=$?
fi
echo $rc >install.rc
`;

/** What is installed now: version (or ''), the unit's state, and the config changes k3s has not started with. */
export async function observeK3s(
  s: SshSession,
  node: NodeSpec,
): Promise<{ version: string; active: boolean; state: string; unit: boolean; pendingRestart: string[] }> {
  const svc = serviceOf(node);
  const r = await s.exec(
    `k3s --version 2>/dev/null | head -n 1 | cut -d' ' -f3; systemctl is-active ${svc} 2>/dev/null || true; ` +
      `[ -f /etc/systemd/system/${svc}.service ] && echo unit || echo none; cat ${RESTART_MARKER} 2>/dev/null || true`,
  );
  const [version = '', state = '', unit = '', ...marker] = r.stdout.split('\n').map((l) => l.trim());
  const pendingRestart = [...new Set(marker.filter(Boolean))];
  return { version, active: state === 'active', state: state || 'inactive', unit: unit === 'unit', pendingRestart };
}

/** The last thing k3s complained about, from its journal (logrus `msg="..."`), for the finding. */
async function lastComplaint(s: SshSession, svc: string): Promise<string | undefined> {
  const j = await s.exec(`journalctl -u ${svc} -n 50 --no-pager 2>/dev/null | tail -n 50`);
  const bad = j.stdout.split('\n').filter((l) => /level=(error|fatal|warning)/.test(l));
  const last = bad.at(-1);
  if (!last) return undefined;
  return (/msg="((?:[^"\\]|\\.)*)"/.exec(last)?.[1] ?? last).replace(/\\"/g, '"');
}

/**
 * Waits for `rcFile` (written when the installer or a systemctl start/restart finished), bounded by
 * k3s.startTimeoutSeconds. k3s units are Type=notify with TimeoutStartSec=0 (k3s-io/k3s install.sh
 * create_systemd_service_file): an agent that cannot validate its token against the server keeps
 * retrying (pkg/agent/run.go), so `systemctl restart k3s-agent` blocks forever. At the bound the
 * unit is stopped (the blocked start is cancelled and the lock freed, so a retry starts over with
 * the current config) and a non-retryable finding names the cause, which parks the step.
 */
async function waitForRc(
  s: SshSession,
  spec: ClusterSpec,
  node: NodeSpec,
  rcFile: string,
  what: string,
): Promise<string> {
  const timeoutS = spec.k3s.startTimeoutSeconds ?? DEFAULT_START_TIMEOUT_S;
  const deadline = Date.now() + timeoutS * 1000;
  const svc = serviceOf(node);
  for (let i = 0; ; i++) {
    const r = await s.exec(`cat ${rcFile} 2>/dev/null`);
    const rc = r.stdout.trim();
    if (rc !== '') return rc;
    if (Date.now() > deadline) {
      const state = (await s.exec(`systemctl is-active ${svc} 2>/dev/null || true`)).stdout.trim();
      const why = await lastComplaint(s, svc);
      await s.exec(`systemctl stop ${svc} 2>/dev/null || true`);
      const tail = `${svc} was ${state || 'unknown'} after ${timeoutS}s${why ? `, last error: ${why}` : ''}; stopped ${svc} so a retry starts over`;
      if (node.role === 'agent' || spec.nodes.find((n) => n.role === 'server')?.name !== node.name) {
        const url = node.role === 'agent' ? `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}` : 'the first server';
        throw nonRetryable(ErrorType.ServerUnreachable, `server unreachable from ${node.name}: ${url} (${tail})`, {
          node: node.name,
        });
      }
      throw nonRetryable(ErrorType.InstallFailed, `k3s on ${node.name} did not report ready (${what}): ${tail}`, {
        node: node.name,
      });
    }
    beat({ node: node.name, step: what, polls: i });
    await sleep(500);
  }
}

/** `systemctl start|restart` detached (it blocks until k3s is ready), then the bounded wait. */
async function startService(s: SshSession, spec: ClusterSpec, node: NodeSpec, verb: 'start' | 'restart') {
  const svc = serviceOf(node);
  await must(s, node.name, `mkdir -p ${WORK} && chmod 700 ${WORK} && rm -f ${WORK}/start.rc`);
  await must(
    s,
    node.name,
    `(cd ${WORK} && exec nohup setsid sh -c 'systemctl ${verb} ${svc} >start.log 2>&1; echo $? >start.rc') </dev/null >/dev/null 2>&1 &`,
  );
  const rc = await waitForRc(s, spec, node, `${WORK}/start.rc`, `systemctl ${verb} ${svc}`);
  if (rc !== '0') {
    const log = await s.exec(`tail -n 3 ${WORK}/start.log 2>/dev/null`);
    throw nonRetryable(
      ErrorType.InstallFailed,
      `systemctl ${verb} ${svc} on ${node.name} exited ${rc}: ${log.stdout.trim().split('\n').join(' | ')}`,
      { node: node.name },
    );
  }
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
  want: string,
  active = true,
): Promise<void> {
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
      // The whole list goes to the background with its output detached: `cd && nohup ... &` would
      // leave a subshell holding the session's stdout until the installer ends, blocking this exec.
      `(cd ${WORK} && WANT_VERSION=${shellQuote(want)} WANT_SERVICE=${svc} WANT_ACTIVE=${active ? 'yes' : 'no'} exec nohup setsid sh ./run.sh) </dev/null >/dev/null 2>&1 &`,
    );
  }
  const rc = await waitForRc(s, spec, node, `${WORK}/install.rc`, 'installer running');
  if (rc === '0') return;
  const log = await s.exec(`tail -n 5 ${WORK}/install.log 2>/dev/null`);
  throw nonRetryable(
    ErrorType.InstallFailed,
    `k3s installer on ${node.name} exited ${rc}: ${log.stdout.trim().split('\n').slice(-3).join(' | ')}`,
    { node: node.name },
  );
}

/**
 * Brings `node` to k3s `version` (default: the pinned one) and active. An upgrade or a rollback is the
 * same call with another version: the installer with INSTALL_K3S_VERSION replaces the binary, and a
 * changed binary hash makes it restart the service (k3s-io/k3s install.sh service_enable_and_start).
 */
export async function installOn(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
  env: () => Promise<Record<string, string | undefined>>,
  version: string = spec.k3s.version,
): Promise<K3sInstallResult> {
  return withSession(deps, spec, node, async (s) => {
    beat({ node: node.name, step: 'observing' });
    const before = await observeK3s(s, node);
    const svc = serviceOf(node);
    const base = { node: node.name, role: node.role, version };
    const clearMarker = () => s.exec(`rm -f ${RESTART_MARKER}`);
    if (before.version === version && before.active) {
      if (before.pendingRestart.length === 0) return { ...base, installed: false, action: 'unchanged' as const };
      // k3s reads config.yaml / registries.yaml only at start, and the installer hashes neither (it
      // would print "No change detected" and leave the running service alone: k3s-io/k3s install.sh
      // service_enable_and_start), so restart it here. The workflow runs servers one at a time.
      beat({ node: node.name, step: `systemctl restart ${svc}` });
      await startService(s, spec, node, 'restart');
      await clearMarker();
      return {
        ...base,
        installed: false,
        action: 'restarted' as const,
        detail: `restarted ${svc} at ${version} to apply its config (${before.pendingRestart.join(', ')})`,
      };
    }
    // Not running at the pinned version: the installer (re)writes binary, unit and env from the current
    // config; when it finds nothing changed it leaves a stopped service stopped, and the runner starts it.
    await runInstaller(s, spec, node, { ...(await env()), INSTALL_K3S_VERSION: version }, version);
    const after = await observeK3s(s, node);
    if (after.version !== version || !after.active) {
      throw retryable(
        ErrorType.NotReady,
        `k3s on ${node.name} is ${after.version || 'absent'} (${after.state}) after install; want ${version} active`,
      );
    }
    await clearMarker();
    if (before.version === version)
      return {
        ...base,
        installed: false,
        action: 'started' as const,
        detail: `started ${svc} at ${version} (it was ${before.state}; the installer leaves a stopped service stopped)`,
      };
    return {
      ...base,
      installed: true,
      action: 'installed' as const,
      detail: before.version ? `installed ${version} (was ${before.version})` : `installed ${version}`,
    };
  });
}

/**
 * Installs k3s at the pinned version on an empty server without starting it (INSTALL_K3S_SKIP_START,
 * k3s-io/k3s install.sh service_enable_and_start): a restore onto a new machine, whose first start must
 * be `k3s server --cluster-reset --cluster-reset-restore-path`, not a fresh cluster of its own
 * (docs.k3s.io/datastore/backup-restore). Same installer environment as the provision's, so the unit
 * comes out as it was on the machine it replaces.
 */
export async function installWithoutStart(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
): Promise<K3sInstallResult> {
  const version = spec.k3s.version;
  return withSession(deps, spec, node, async (s) => {
    const before = await observeK3s(s, node);
    const base = { node: node.name, role: node.role, version };
    if (before.version === version && before.unit)
      return { ...base, installed: false, action: 'unchanged' as const, detail: `${version} already installed` };
    await runInstaller(
      s,
      spec,
      node,
      { ...(await installEnv(deps, spec, node)()), INSTALL_K3S_VERSION: version, INSTALL_K3S_SKIP_START: 'true' },
      version,
      false,
    );
    const after = await observeK3s(s, node);
    if (after.version !== version || !after.unit)
      throw retryable(
        ErrorType.NotReady,
        `k3s on ${node.name} is ${after.version || 'absent'} after install; want ${version}`,
      );
    return { ...base, installed: true, action: 'installed' as const, detail: `installed ${version}, not started` };
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

/**
 * The installer's environment for `node`, the same at install, upgrade and rollback (the unit and its
 * env file must come out as they were, or the node would restart as something else). Secrets (tokens)
 * are read here, inside the calling activity.
 */
export function installEnv(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
): () => Promise<Record<string, string | undefined>> {
  const first = spec.nodes.find((n) => n.role === 'server')!;
  const apiPort = spec.k3s.apiPort ?? 6443;
  if (node.role === 'server')
    return async () => {
      if (first.name === node.name)
        return { INSTALL_K3S_VERSION: spec.k3s.version, INSTALL_K3S_EXEC: 'server --cluster-init' };
      const firstIp = await withSession(deps, spec, first, (s) => resolveNodeIp(s, first));
      return {
        INSTALL_K3S_VERSION: spec.k3s.version,
        INSTALL_K3S_EXEC: `server --server https://${firstIp}:${apiPort}`,
        K3S_TOKEN: await readToken(deps, spec, first, SERVER_TOKEN_PATH),
      };
    };
  return async () => ({
    INSTALL_K3S_VERSION: spec.k3s.version,
    INSTALL_K3S_EXEC: 'agent',
    K3S_URL: `https://${spec.vip}:${apiPort}`,
    K3S_TOKEN: await readToken(deps, spec, first, NODE_TOKEN_PATH),
  });
}

export function k3sActivities(deps: ActivityDeps) {
  return {
    /** First server: --cluster-init. Further servers join the first (embedded etcd). */
    async installK3sServer(input: { cluster: string; node: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      const r = await installOn(deps, spec, node, installEnv(deps, spec, node));
      // The token the first server created (or runs with) goes off-node on every run: a cluster built
      // before this existed gets its copy on its next provision; a matching copy is left as it is.
      if (spec.nodes.find((n) => n.role === 'server')?.name !== node.name) return r;
      return { ...r, tokenCopy: await keepServerTokenOffNode(deps, spec, node) };
    },

    /** Agent join: the token is read from the first server here and never leaves this activity. */
    async joinK3sAgent(input: { cluster: string; node: string }): Promise<K3sInstallResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'agent') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not an agent`);
      return installOn(deps, spec, node, installEnv(deps, spec, node));
    },
  };
}
