// Worker processes for the chaos tests: spawn (warm standby), start, SIGKILL by pid, stop. Every
// process this module starts is tracked and ended by pid in stopAll(); nothing is killed by name.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./worker-process.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface WorkerTarget {
  address: string;
  taskQueue: string;
  dataDir: string;
}

interface Msg {
  event: 'warm' | 'ready' | 'stopped' | 'fatal';
  at: number;
  ms?: number;
  goMs?: number;
  error?: string;
}

/** One worker process. Times are epoch ms on this machine's clock (the dev server shares it). */
export class WorkerProc {
  readonly child: ChildProcess;
  readonly spawnedAt = Date.now();
  warmAt?: number;
  readyAt?: number;
  exitCode?: number | null;
  exitSignal?: NodeJS.Signals | null;
  fatal?: string;
  private readonly waiters: Array<{ event: Msg['event']; resolve: (m: Msg) => void; reject: (e: Error) => void }> = [];
  readonly exited: Promise<void>;
  stderr = '';

  constructor(
    readonly target: WorkerTarget,
    readonly identity: string,
    /** More environment for this process (worker-process.ts test hooks such as CHAOS_HOLD_FILE). */
    extraEnv: Record<string, string> = {},
  ) {
    this.child = spawn(process.execPath, ['--import', 'tsx', SCRIPT], {
      cwd: REPO,
      env: {
        ...process.env,
        ...extraEnv,
        CHAOS_ADDRESS: target.address,
        CHAOS_TASK_QUEUE: target.taskQueue,
        CHAOS_DATA_DIR: target.dataDir,
        CHAOS_IDENTITY: identity,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString('utf8')).slice(-4000);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: Msg;
      try {
        msg = JSON.parse(line) as Msg;
      } catch {
        return; // stray output from a library
      }
      if (msg.event === 'warm') this.warmAt = msg.at;
      if (msg.event === 'ready') this.readyAt = msg.at;
      if (msg.event === 'fatal') this.fatal = msg.error;
      for (const w of this.waiters.filter((x) => x.event === msg.event)) w.resolve(msg);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        const why = new Error(
          `worker ${identity} exited (code ${code}, signal ${signal})${this.fatal ? `: ${this.fatal}` : ''}; stderr: ${this.stderr.slice(-1500)}`,
        );
        for (const w of this.waiters.splice(0)) w.reject(why);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  private wait(event: Msg['event'], timeoutMs: number): Promise<Msg> {
    if (!this.alive)
      return Promise.reject(new Error(`worker ${this.identity} is not running${this.fatal ? `: ${this.fatal}` : ''}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `worker ${this.identity}: no "${event}" within ${timeoutMs} ms; stderr: ${this.stderr.slice(-1500)}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        event,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  async untilWarm(timeoutMs = 90_000): Promise<void> {
    if (this.warmAt === undefined) await this.wait('warm', timeoutMs);
  }

  /** Connects and starts polling; resolves at "ready". */
  async go(timeoutMs = 30_000): Promise<number> {
    const ready = this.wait('ready', timeoutMs);
    this.child.stdin!.write('go\n');
    return (await ready).at;
  }

  /** SIGKILL by pid: no shutdown, no completions, exactly like an OOM kill. */
  async kill(): Promise<number> {
    const at = Date.now();
    if (this.alive) process.kill(this.pid, 'SIGKILL');
    await this.exited;
    return at;
  }

  /** Graceful: SIGTERM (the worker drains, worker/shutdown.ts), SIGKILL after its force time and a margin. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    process.kill(this.pid, 'SIGTERM');
    const timer = setTimeout(() => this.alive && process.kill(this.pid, 'SIGKILL'), 25_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Keeps one worker running and `standbys` warm ones: start() promotes a warm standby (or spawns one
 * when none is left) and tops the pool up in the background.
 */
export class WorkerSupervisor {
  current?: WorkerProc;
  private pool: WorkerProc[] = [];
  private readonly all: WorkerProc[] = [];
  private n = 0;

  constructor(
    readonly target: WorkerTarget,
    readonly tag: string,
    private readonly standbys = 2,
  ) {}

  private spawnOne(): WorkerProc {
    const p = new WorkerProc(this.target, `chaos-${this.tag}-w${this.n++}`);
    this.all.push(p);
    return p;
  }

  async start(): Promise<WorkerProc> {
    this.pool = this.pool.filter((p) => p.alive);
    const i = this.pool.findIndex((p) => p.warmAt !== undefined);
    const next = i >= 0 ? this.pool.splice(i, 1)[0] : (this.pool.shift() ?? this.spawnOne());
    await next.untilWarm();
    await next.go();
    this.current = next;
    while (this.pool.length < this.standbys) this.pool.push(this.spawnOne());
    return next;
  }

  /** Resolves once a standby finished its cold start, so a kill is followed by a warm replacement. */
  async standbyWarm(): Promise<void> {
    const p = this.pool.find((x) => x.alive);
    if (p && !this.pool.some((x) => x.alive && x.warmAt !== undefined)) await p.untilWarm();
  }

  async killCurrent(): Promise<{ worker: WorkerProc; killedAt: number }> {
    const worker = this.current;
    if (!worker) throw new Error('no worker running');
    const killedAt = await worker.kill();
    this.current = undefined;
    return { worker, killedAt };
  }

  /** Cold start statistics of every worker that reached "warm". */
  coldStarts(): number[] {
    return this.all.filter((w) => w.warmAt !== undefined).map((w) => w.warmAt! - w.spawnedAt);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.all.map((w) => w.stop()));
  }
}
