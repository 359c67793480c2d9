// One lab node's processes: the namespace holder (node-root.sh) and the sshd started into it.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const NODE_ROOT_SH = fileURLToPath(new URL('./node-root.sh', import.meta.url));

export function sshdConfig(): string {
  // Paths are as seen inside the node's chroot; /run/lab is the node's control dir bound from <node>/.lab.
  return `# lab node sshd (started by test/lab/nodes, never the system service)
ListenAddress 127.0.0.1
HostKey /run/lab/ssh_host_ed25519_key
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# no PAM stack in the lab: with UsePAM yes sshd would need /etc/pam.d/sshd sessions and a login service
UsePAM no
# the key files live under the lab temp dir (below world-writable /tmp on the host): StrictModes would refuse them
StrictModes no
AuthorizedKeysFile /run/lab/authorized_keys
ForceCommand /run/lab/session.sh
Subsystem sftp /usr/lib/openssh/sftp-server
AcceptEnv LANG LC_*
PrintMotd no
UseDNS no
LogLevel INFO
MaxStartups 100:30:200
MaxSessions 50
`;
}

/** Collects a process's output lines and resolves when one matches (or rejects when it exits first). */
function waitForLine(
  child: ChildProcess,
  stream: 'stdout' | 'stderr',
  match: RegExp,
  log: string[],
  timeoutMs = 10_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => finish(new Error(`timed out waiting for ${match}: ${log.slice(-5).join(' | ')}`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (match.test(l)) finish();
    };
    const onExit = (code: number | null) =>
      finish(new Error(`exited (${code}) before ready: ${log.slice(-5).join(' | ')}`));
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child[stream]?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    child[stream]?.on('data', onData);
    child.once('exit', onExit);
  });
}

function keepLog(child: ChildProcess, log: string[]): void {
  // the pipes must be drained or sshd blocks once the pipe buffer is full
  const add = (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (l) log.push(l);
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function killAndWait(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(t);
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host, port: 0 }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function generateHostKey(file: string): Promise<string> {
  await rm(file, { force: true });
  await rm(`${file}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-node', '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
}

export class NodeProcesses {
  readonly log: string[] = [];
  private holder?: ChildProcess;
  private sshd?: ChildProcess;
  sshdPort = 0;

  constructor(
    readonly name: string,
    readonly dir: string,
    /** The machine's hostname (differs from the config's node name, as on real machines). */
    readonly hostname: string = name,
  ) {}

  get sshdPid(): number | undefined {
    return this.sshd?.pid;
  }

  async start(): Promise<void> {
    const holder = spawn(
      'unshare',
      ['--mount', '--uts', '--propagation', 'private', '--', '/bin/sh', NODE_ROOT_SH, this.dir, this.hostname],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    this.holder = holder;
    keepLog(holder, this.log);
    await waitForLine(holder, 'stdout', /^lab-node-ready$/, this.log);
    for (let attempt = 0; ; attempt++) {
      this.sshdPort = await freePort();
      try {
        await this.startSshd();
        return;
      } catch (err) {
        // another process may grab the free port between probe and bind
        if (attempt >= 4) throw err;
      }
    }
  }

  private async startSshd(): Promise<void> {
    if (!this.holder?.pid) throw new Error(`node ${this.name}: namespace holder is not running`);
    // nsenter execs (no fork without a pid namespace) and so does chroot: the child pid is sshd's pid.
    // -D keeps sshd in the foreground (we own its pid), -e logs to our pipe instead of syslog.
    const sshd = spawn(
      'nsenter',
      [
        '--target',
        String(this.holder.pid),
        '--mount',
        '--uts',
        '--',
        '/usr/sbin/chroot',
        `${this.dir}/.root`,
        '/usr/sbin/sshd',
        '-D',
        '-e',
        '-f',
        '/run/lab/sshd_config',
        '-o',
        `Port=${this.sshdPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.sshd = sshd;
    keepLog(sshd, this.log);
    try {
      await waitForLine(sshd, 'stderr', /^Server listening on 127\.0\.0\.1 port \d+/, this.log);
    } catch (err) {
      await killAndWait(sshd);
      throw new Error(`node ${this.name}: sshd did not start: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Restarts only sshd (like `systemctl restart ssh`): live sessions survive, new ones see a fresh daemon. */
  async restartSshd(): Promise<void> {
    if (this.sshd) await killAndWait(this.sshd);
    await this.startSshd();
  }

  /** Every pid still living in this node's mount namespace (sessions outlive their sshd listener). */
  private async namespacePids(): Promise<number[]> {
    const holderPid = this.holder?.pid;
    if (!holderPid) return [];
    let ns: string;
    try {
      ns = await readlink(`/proc/${holderPid}/ns/mnt`);
    } catch {
      return [];
    }
    const pids: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === holderPid) continue;
      try {
        if ((await readlink(`/proc/${entry}/ns/mnt`)) === ns) pids.push(Number(entry));
      } catch {
        /* exited */
      }
    }
    return pids;
  }

  async stop(): Promise<void> {
    if (this.sshd) await killAndWait(this.sshd);
    const pids = await this.namespacePids();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    if (this.holder) {
      this.holder.stdin?.end();
      await killAndWait(this.holder, 500);
    }
    // the namespace (and every mount in it) is gone once its last process has exited
    const alive = async (pid: number) =>
      stat(`/proc/${pid}`).then(
        () => true,
        () => false,
      );
    for (let i = 0; i < 50; i++) {
      const left = await Promise.all(pids.map(alive));
      if (!left.includes(true)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
