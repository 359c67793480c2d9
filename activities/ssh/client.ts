// The SSH port: node-ssh with the host key pinned from the cluster config (DESIGN: host-key
// mismatch is non-retryable), errors typed, private key read from a file or an agent and never logged.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { NodeSSH } from 'node-ssh';
import type { ApplicationFailure } from '@temporalio/common';
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SshSession {
  exec(command: string, opts?: { stdin?: string; env?: Record<string, string> }): Promise<ExecResult>;
  putFile(localPath: string, remotePath: string): Promise<void>;
  putContent(content: string, remotePath: string, mode?: number): Promise<void>;
  dispose(): void;
}

export interface SshConnectOptions {
  /** Trust-on-first-use: accept an unpinned node's key and report it. Never for a pinned node. */
  allowTofu?: boolean;
}

export interface SshConnector {
  connect(spec: ClusterSpec, node: NodeSpec, opts?: SshConnectOptions): Promise<SshSession & { hostKey: string }>;
}

export function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p;
}

/** "ssh-ed25519 AAAA..." from the raw key blob the server presented. */
export function hostKeyLine(blob: Buffer): string {
  const typeLen = blob.readUInt32BE(0);
  const type = blob.subarray(4, 4 + typeLen).toString('ascii');
  return `${type} ${blob.toString('base64')}`;
}

export function fingerprint(line: string): string {
  const b64 = line.split(/\s+/)[1] ?? '';
  return `SHA256:${createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

function classify(err: unknown, node: NodeSpec, presented: string | undefined): ApplicationFailure {
  const e = err as { level?: string; code?: string; message?: string };
  const where = `${node.name} (${node.address}:${node.port ?? ''})`;
  if (presented !== undefined) {
    return nonRetryable(
      ErrorType.HostKeyMismatch,
      `host key of ${where} does not match the pinned key: presented ${fingerprint(presented)}`,
      {
        node: node.name,
        presentedFingerprint: fingerprint(presented),
      },
    );
  }
  if (e?.level === 'client-authentication')
    return nonRetryable(ErrorType.AuthDenied, `SSH authentication refused by ${where}`, { node: node.name });
  return retryable(
    ErrorType.Transient,
    `SSH to ${where} failed: ${e?.code ?? ''} ${e?.message ?? String(err)}`.trim(),
    { node: node.name },
  );
}

/** Keys recorded by trust-on-first-use: "<node> <address>:<port> <type> <base64>" lines per cluster. */
export class KnownHosts {
  constructor(readonly dir: string) {}
  private file(cluster: string) {
    return join(this.dir, `${cluster}.known_hosts`);
  }
  get(cluster: string, node: NodeSpec, port: number): string | undefined {
    const f = this.file(cluster);
    if (!existsSync(f)) return undefined;
    const want = `${node.name} ${node.address}:${port} `;
    const line = readFileSync(f, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(want));
    return line?.slice(want.length).trim();
  }
  record(cluster: string, node: NodeSpec, port: number, key: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    appendFileSync(this.file(cluster), `${node.name} ${node.address}:${port} ${key}\n`, { mode: 0o600 });
  }
}

/**
 * Host keys: the config's pinned `hostKey` wins; else a key recorded earlier by TOFU is pinned; else
 * the connection is refused unless `allowTofu` was given explicitly, in which case the presented key
 * is accepted and recorded (when a KnownHosts store is configured) so every later connection pins it.
 */
export function createSshConnector(opts: { knownHosts?: KnownHosts } = {}): SshConnector {
  return {
    connect: (spec, node, o = {}) => connectNode(spec, node, o, opts.knownHosts),
  };
}

async function connectNode(
  spec: ClusterSpec,
  configured: NodeSpec,
  opts: SshConnectOptions,
  knownHosts: KnownHosts | undefined,
): Promise<SshSession & { hostKey: string }> {
  const port = configured.port ?? spec.ssh.port;
  const recorded = configured.hostKey ? undefined : knownHosts?.get(spec.name, configured, port);
  const node: NodeSpec = recorded ? { ...configured, hostKey: recorded } : configured;
  const ssh = new NodeSSH();
  let mismatch: string | undefined;
  let seen: string | undefined;
  const privateKeyPath = expandHome(spec.ssh.privateKey);
  if (spec.ssh.privateKey !== 'agent' && !existsSync(privateKeyPath)) {
    throw nonRetryable(ErrorType.BadConfig, `SSH private key file not found: ${privateKeyPath}`);
  }
  if (!node.hostKey && !opts.allowTofu) {
    throw nonRetryable(
      ErrorType.HostKeyMismatch,
      `no pinned host key for ${node.name}: add nodes[].hostKey or run with allowTofu to record it`,
      { node: node.name },
    );
  }
  try {
    await ssh.connect({
      host: node.address,
      port,
      username: node.user ?? spec.ssh.user,
      ...(spec.ssh.privateKey === 'agent' ? { agent: process.env.SSH_AUTH_SOCK } : { privateKeyPath }),
      readyTimeout: (spec.ssh.connectTimeoutSeconds ?? 10) * 1000,
      tryKeyboard: false,
      hostVerifier: (key: Buffer | string) => {
        const line = hostKeyLine(Buffer.isBuffer(key) ? key : Buffer.from(key, 'base64'));
        seen = line;
        if (!node.hostKey) return true;
        const [wantType, wantKey] = node.hostKey.trim().split(/\s+/);
        const ok = line === `${wantType} ${wantKey}`;
        if (!ok) mismatch = line;
        return ok;
      },
    });
  } catch (err) {
    ssh.dispose();
    throw classify(err, node, mismatch);
  }
  // node-ssh attaches no 'error' listener after connecting: a reset mid-command would otherwise
  // crash the worker process instead of failing the one activity as a retryable Transient.
  // Read through a function: TypeScript does not see the listener's write and would narrow a `let` to undefined.
  let lostErr: Error | undefined;
  ssh.connection?.on('error', (err: Error) => {
    lostErr = err;
  });
  const lost = (): Error | undefined => lostErr;
  const session = {
    hostKey: seen ?? '',
    async exec(command: string, o: { stdin?: string; env?: Record<string, string> } = {}) {
      try {
        const envPrefix = o.env
          ? Object.entries(o.env)
              .map(([k, v]) => `${k}=${shellQuote(v)} `)
              .join('')
          : '';
        const before = lost();
        if (before) throw before;
        const r = await ssh.execCommand(`${envPrefix}${command}`, { stdin: o.stdin });
        const after = lost();
        if (after) throw after;
        return { code: r.code ?? 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        throw classify(err, node, undefined);
      }
    },
    async putFile(localPath: string, remotePath: string) {
      try {
        await ssh.putFile(localPath, remotePath);
      } catch (err) {
        throw classify(err, node, undefined);
      }
    },
    async putContent(content: string, remotePath: string, mode = 0o644) {
      // stdin keeps the content out of the command line (and out of `ps` on the node).
      const dir = remotePath.replace(/\/[^/]*$/, '') || '/';
      const r = await session.exec(
        `mkdir -p ${shellQuote(dir)} && umask 077 && cat > ${shellQuote(remotePath)}.tmp && chmod ${mode.toString(8)} ${shellQuote(remotePath)}.tmp && mv ${shellQuote(remotePath)}.tmp ${shellQuote(remotePath)}`,
        { stdin: content },
      );
      if (r.code !== 0)
        throw retryable(ErrorType.Transient, `writing ${remotePath} on ${node.name} failed: ${r.stderr.trim()}`);
    },
    dispose() {
      ssh.dispose();
    },
  };
  if (!node.hostKey && opts.allowTofu && knownHosts && seen) knownHosts.record(spec.name, node, port, seen);
  return session;
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
