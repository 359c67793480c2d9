// The TCP fault proxy in front of one node's sshd. It owns the node's public address, so every fault
// the orchestrator can meet on a real network (refused, reset mid-command, slow links) is injected
// here without touching sshd.
import net from 'node:net';

interface Conn {
  client: net.Socket;
  upstream: net.Socket;
  upstreamPort?: number; // local port of the proxy→sshd socket = the port sshd reports in SSH_CLIENT
  onServerData?: () => void;
}

export class FaultProxy {
  private server: net.Server;
  private conns = new Set<Conn>();
  refusing = false;
  delayMs = 0;
  connections = 0;

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async listen(
    host: string,
    target: { host: string; port: number },
  ): Promise<{ proxy: FaultProxy; port: number }> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen({ host, port: 0 }, () => resolve());
    });
    return { proxy, port: (proxy.server.address() as net.AddressInfo).port };
  }

  private accept(client: net.Socket): void {
    this.connections++;
    if (this.refusing) {
      // RST before the SSH banner: the client sees ECONNRESET / "connection reset"
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const conn: Conn = { client, upstream };
    this.conns.add(conn);
    upstream.once('connect', () => {
      conn.upstreamPort = upstream.localPort;
    });
    const pipe = (from: net.Socket, to: net.Socket, serverSide: boolean) => {
      from.on('data', (chunk) => {
        if (serverSide) conn.onServerData?.();
        if (this.delayMs > 0) {
          // equal delays fire in insertion order, so the byte stream stays ordered
          setTimeout(() => {
            if (!to.destroyed) to.write(chunk);
          }, this.delayMs);
        } else if (!to.destroyed) {
          to.write(chunk);
        }
      });
      from.on('end', () => {
        const end = () => {
          if (!to.destroyed) to.end();
        };
        if (this.delayMs > 0) setTimeout(end, this.delayMs);
        else end();
      });
    };
    pipe(client, upstream, false);
    pipe(upstream, client, true);
    const close = () => {
      this.conns.delete(conn);
      if (!client.destroyed) client.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream
      .on('error', () => {
        if (!client.destroyed) client.resetAndDestroy();
        close();
      })
      .on('close', close);
  }

  /** Resets every live connection now: clients see ECONNRESET mid-stream. */
  dropAll(): number {
    const n = this.conns.size;
    for (const c of [...this.conns]) this.reset(c);
    return n;
  }

  /**
   * Resets the connection carrying the SSH session whose sshd-side peer port is `upstreamPort`, once a
   * little more server output has gone through (or after `maxWaitMs` if the command is silent).
   */
  dropByUpstreamPort(upstreamPort: number, maxWaitMs = 150): boolean {
    const conn = [...this.conns].find((c) => c.upstreamPort === upstreamPort);
    if (!conn) return false;
    const timer = setTimeout(() => this.reset(conn), maxWaitMs);
    conn.onServerData = () => {
      conn.onServerData = undefined;
      clearTimeout(timer);
      // let this chunk reach the client first: it is the "little data" before the cut. Resetting in
      // the same tick as the write made the client see a clean EOF instead of ECONNRESET.
      setTimeout(() => this.reset(conn), 25);
    };
    return true;
  }

  private reset(c: Conn): void {
    this.conns.delete(c);
    if (!c.client.destroyed) c.client.resetAndDestroy();
    if (!c.upstream.destroyed) c.upstream.destroy();
  }

  liveConnections(): number {
    return this.conns.size;
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
