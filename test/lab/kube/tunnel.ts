// k3s's tunnel server, the apiserver's egress for "cluster" traffic (what services/proxy, pods/proxy and
// kubelet connections dial). k3s writes the apiserver an EgressSelectorConfiguration whose `cluster`
// connection is HTTPConnect to its supervisor (k3s pkg/daemons/control/deps/deps.go
// genEgressSelectorConfig) and answers each `CONNECT host:port` by dialing the pod or node, through the
// agent's tunnel or directly, or with 502 and the dial error (pkg/daemons/control/tunnel.go
// serveConnect/dialBackend). The kube-apiserver side is k8s.io/apiserver
// pkg/server/egressselector/egress_selector.go (tunnelHTTPConnect: any status but 200 fails the dial).
//
// Here no pod runs a process (kwok), so a connection to a pod IP reaches something only where the lab
// plays the container: an OpenBAO server pod's port 8200 is the OpenBAO double. Everything else is
// refused, as a pod that listens on nothing refuses. The transport is a unix socket (UDS HTTPConnect,
// which the apiserver supports beside k3s's TLS over TCP): it keeps the lab free of one more cert.
import { connect, createServer, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import type { KObj, LabApi } from './lab-api.js';

export interface Backend {
  host: string;
  port: number;
}

export interface Tunnel {
  socketPath: string;
  /** CONNECTs answered, by outcome: `ns/pod:port` for dialed pods, `refused` otherwise. */
  counters(): Record<string, number>;
  stop(): Promise<void>;
}

export async function startTunnel(opts: {
  socketPath: string;
  api: LabApi;
  /** What listens in this pod on this port, if anything. */
  backend(pod: KObj, port: number): Backend | undefined;
}): Promise<Tunnel> {
  const counts: Record<string, number> = {};
  const count = (k: string) => void (counts[k] = (counts[k] ?? 0) + 1);
  const sockets = new Set<Socket>();

  const resolve = async (host: string, port: number): Promise<{ backend: Backend; id: string } | undefined> => {
    const pods = await opts.api.list(`/api/v1/pods?fieldSelector=${encodeURIComponent(`status.podIP=${host}`)}`);
    const pod = pods.find((p) => !p.metadata.deletionTimestamp && p.status?.phase === 'Running');
    const backend = pod && opts.backend(pod, port);
    return backend && { backend, id: `${pod.metadata.namespace}/${pod.metadata.name}:${port}` };
  };

  const refuse = (client: Socket, target: string) => {
    count('refused');
    const body = `dial tcp ${target}: connect: connection refused\n`;
    client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  };

  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      client.pause();
      const rest = head.subarray(end + 4);
      const m = /^CONNECT (\S+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.subarray(0, end + 2).toString('latin1'));
      if (!m) {
        client.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const [, host, portText] = m;
      const target = `${host}:${portText}`;
      resolve(host, Number(portText)).then(
        (found) => {
          if (!found) return refuse(client, target);
          const upstream = connect(found.backend.port, found.backend.host);
          sockets.add(upstream);
          upstream.on('close', () => sockets.delete(upstream));
          upstream.once('error', () => (upstream.readyState === 'opening' ? refuse(client, target) : client.destroy()));
          upstream.once('connect', () => {
            count(found.id);
            client.write('HTTP/1.1 200 OK\r\n\r\n');
            if (rest.length > 0) upstream.write(rest);
            client.pipe(upstream).on('error', () => undefined);
            upstream.pipe(client);
            client.resume();
          });
          client.on('close', () => upstream.destroy());
        },
        () => refuse(client, target),
      );
    };
    client.on('data', onData);
  });
  rmSync(opts.socketPath, { force: true });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.socketPath, () => ok());
  });
  return {
    socketPath: opts.socketPath,
    counters: () => ({ ...counts }),
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
      rmSync(opts.socketPath, { force: true });
    },
  };
}

/** The apiserver's egress config: cluster traffic through the tunnel (apiserver.k8s.io/v1beta1). */
export function egressSelectorConfig(socketPath: string): string {
  return `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: ${socketPath}
`;
}
