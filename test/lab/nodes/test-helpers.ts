// Shared by the nodes' tests: a lab key pair, a node-ssh client pinned to a node's host key, and the
// process / mount census that proves stop() leaves nothing behind.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NodeSSH } from 'node-ssh';
import { K3S_INSTALL_SCRIPT, type LabNode } from './index.js';

export function labKeyPair(): { dir: string; privateKey: string; publicKey: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'lab-nodes-test-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab', '-f', path.join(dir, 'id')]);
  return {
    dir,
    privateKey: readFileSync(path.join(dir, 'id'), 'utf8'),
    publicKey: readFileSync(path.join(dir, 'id.pub'), 'utf8'),
  };
}

/**
 * Connects like the orchestrator does: key auth, host key pinned (a mismatch is refused). Errors the
 * connection raises after the handshake are collected in `errors` (node-ssh leaves them unhandled:
 * the orchestrator's SSH port must listen for them too, or a reset crashes the process).
 */
export async function connect(
  node: Pick<LabNode, 'host' | 'port'>,
  privateKey: string,
  pinnedHostKey: string,
  extra: object = {},
): Promise<NodeSSH & { errors: Error[] }> {
  const pinned = Buffer.from(pinnedHostKey.split(' ')[1], 'base64');
  const ssh = new NodeSSH();
  await ssh.connect({
    host: node.host,
    port: node.port,
    username: 'root',
    privateKey,
    readyTimeout: 5000,
    hostVerifier: (key: Buffer) => key.equals(pinned),
    ...extra,
  });
  const errors: Error[] = [];
  ssh.connection?.on('error', (e: Error) => errors.push(e));
  return Object.assign(ssh, { errors });
}

/** Pids of processes chrooted below dir, and of every process sharing a mount namespace with one. */
export function labProcesses(dir: string): number[] {
  const info = readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map((pid) => {
      try {
        return { pid: Number(pid), root: readlinkSync(`/proc/${pid}/root`), ns: readlinkSync(`/proc/${pid}/ns/mnt`) };
      } catch {
        return undefined;
      }
    })
    .filter((p): p is { pid: number; root: string; ns: string } => p !== undefined);
  const nss = new Set(info.filter((p) => p.root.startsWith(dir)).map((p) => p.ns));
  return info.filter((p) => p.root.startsWith(dir) || nss.has(p.ns)).map((p) => p.pid);
}

/** Host mounts at or below dir (there should never be any: node mounts live in their namespaces). */
export function hostMountsBelow(dir: string): string[] {
  return execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' })
    .split('\n')
    .filter((t) => t.startsWith(dir));
}

/** Uploads the k3s stand-in installer to a node and runs it with env + positional args, like the orchestrator does. */
export async function runInstaller(node: LabNode, privateKey: string, env: string, args = '') {
  const ssh = await connect(node, privateKey, node.hostKey);
  try {
    await ssh.putFile(K3S_INSTALL_SCRIPT, '/root/k3s-install.sh');
    return await ssh.execCommand(`${env} sh /root/k3s-install.sh ${args}`);
  } finally {
    ssh.dispose();
  }
}
