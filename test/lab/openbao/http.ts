// A deliberately small HTTP/1.1 server for the OpenBAO double. Node's own parser (llhttp) rejects
// the `LIST` verb that OpenBAO and node-vault use for listing keys, so the double parses requests
// itself: request line, headers, Content-Length body, keep-alive. Nothing else is needed by clients.
import net from 'node:net';

export interface RawRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: Buffer;
}
export interface RawResponse {
  status: number;
  body?: unknown;
}
export type Handler = (req: RawRequest) => RawResponse | Promise<RawResponse>;

const REASONS: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  307: 'Temporary Redirect',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  411: 'Length Required',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
  429: 'Too Many Requests',
  472: 'Disaster Recovery Mode',
  473: 'Performance Standby',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};
const MAX_HEAD = 64 * 1024;
const MAX_BODY = 32 * 1024 * 1024; // OpenBAO's default max_request_size

export interface RawServer {
  port: number;
  close(): Promise<void>;
}

export async function listenRaw(host: string, port: number, handler: Handler): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    serveConnection(sock, handler);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function serveConnection(sock: net.Socket, handler: Handler): void {
  let buf: Buffer = Buffer.alloc(0);
  let busy = false;
  let closed = false;

  const pump = async (): Promise<void> => {
    if (busy || closed) return;
    busy = true;
    try {
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) {
          if (buf.length > MAX_HEAD) return fail(431, 'request header too large');
          return;
        }
        const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
        const [method, target, version] = (lines[0] ?? '').split(' ');
        if (!method || !target || !version?.startsWith('HTTP/1.')) return fail(400, 'malformed request line');
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        if (headers['transfer-encoding']) return fail(411, 'chunked bodies are not supported by the lab double');
        const len = Number(headers['content-length'] ?? 0);
        if (!Number.isInteger(len) || len < 0) return fail(400, 'bad content-length');
        if (len > MAX_BODY) return fail(413, 'http: request body too large');
        if (buf.length < headEnd + 4 + len) return;
        const body = buf.subarray(headEnd + 4, headEnd + 4 + len);
        buf = buf.subarray(headEnd + 4 + len);
        const url = new URL(target, 'http://lab');
        let res: RawResponse;
        try {
          res = await handler({
            method: method.toUpperCase(),
            path: url.pathname,
            query: url.searchParams,
            headers,
            body,
          });
        } catch {
          res = { status: 500, body: { errors: ['internal error'] } };
        }
        const close = headers.connection?.toLowerCase() === 'close' || version === 'HTTP/1.0';
        if (sock.destroyed) return;
        sock.write(encode(res, method === 'HEAD', close));
        if (close) {
          closed = true;
          return void sock.end();
        }
      }
    } finally {
      busy = false;
    }
  };

  const fail = (status: number, message: string): void => {
    closed = true;
    buf = Buffer.alloc(0);
    if (!sock.destroyed) sock.end(encode({ status, body: { errors: [message] } }, false, true));
  };

  sock.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    void pump();
  });
}

function encode(res: RawResponse, head: boolean, close: boolean): Buffer {
  const lines = [`HTTP/1.1 ${res.status} ${REASONS[res.status] ?? 'Status'}`, 'Cache-Control: no-store'];
  let payload = Buffer.alloc(0);
  if (res.status !== 204) {
    payload = Buffer.from(res.body === undefined ? '' : `${JSON.stringify(res.body)}\n`);
    lines.push('Content-Type: application/json', `Content-Length: ${payload.length}`);
  }
  lines.push(`Date: ${new Date().toUTCString()}`, close ? 'Connection: close' : 'Connection: keep-alive');
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head ? Buffer.alloc(0) : payload]);
}
