// Test helper: the smallest HTTPS server implementing the k3s supervisor's lab endpoints
// (test/lab/README.md), so the nodes' tests need no control plane (the real one: test/lab/kube/supervisor.ts).
import https from 'node:https';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

const run = promisify(execFile);

export interface FakeKube {
  url: string;
  token: string;
  caPem: string;
  registered: Map<string, { role: 'server' | 'agent'; body: Record<string, unknown> }>;
  deleted: string[];
  stop(): Promise<void>;
}

const semver = (v: string) => (v.match(/^v(\d+)\.(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
const newer = (a: string, b: string) => {
  const [x, y] = [semver(a), semver(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
  return false;
};

export async function startFakeKube(host = '127.0.0.1'): Promise<FakeKube> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fake-kube-'));
  const o = (...a: string[]) => run('openssl', a, { cwd: dir });
  await o(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=k3s-server-ca',
  );
  await o(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'srv.key',
    '-out',
    'srv.csr',
    '-subj',
    '/CN=kube',
  );
  // SAN must name the address curl connects to
  await run(
    'sh',
    [
      '-c',
      `printf 'subjectAltName=IP:${host}' > san.ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 -extfile san.ext`,
    ],
    { cwd: dir },
  );
  const caPem = await readFile(path.join(dir, 'ca.pem'), 'utf8');
  const caHash = createHash('sha256').update(caPem).digest('hex');
  const token = 'lab-kube-token-' + Math.random().toString(16).slice(2);
  const registered: FakeKube['registered'] = new Map();
  const deleted: string[] = [];
  let server: { token: string; agentToken: string; version: string } | undefined;

  const tokenOk = (t: string): boolean => {
    if (!server) return false;
    const m = /^K10([0-9a-f]{64})::[^:]+:(.+)$/.exec(t);
    if (m) return m[1] === caHash && [server.token, server.agentToken].includes(m[2]);
    return [server.token, server.agentToken].includes(t);
  };

  const srv = https.createServer(
    { key: await readFile(path.join(dir, 'srv.key')), cert: await readFile(path.join(dir, 'srv.pem')) },
    (req, res) => {
      const send = (code: number, body: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${token}`) return send(401, { message: 'Unauthorized' });
      let data = '';
      req.on('data', (c) => {
        data += c;
      });
      req.on('end', () => {
        const url = req.url ?? '';
        if (req.method === 'DELETE' && url.startsWith('/lab/k3s/nodes/')) {
          const name = decodeURIComponent(url.slice('/lab/k3s/nodes/'.length));
          deleted.push(name);
          registered.delete(name);
          return send(200, {});
        }
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(data);
        } catch {
          return send(400, { message: 'bad json' });
        }
        if (req.method === 'POST' && url === '/lab/k3s/server') {
          const t = String(body.token);
          if (server && server.token !== t)
            return send(401, { message: 'token CA hash does not match the Cluster CA certificate hash' });
          server ??= { token: t, agentToken: `agent${t}`, version: String(body.version) };
          registered.set(String(body.node), { role: 'server', body });
          return send(200, { agentToken: server.agentToken });
        }
        if (req.method === 'POST' && url === '/lab/k3s/agent') {
          if (!tokenOk(String(body.token)))
            return send(401, { message: 'token CA hash does not match the Cluster CA certificate hash' });
          if (newer(String(body.version), server!.version)) {
            return send(400, {
              message: `agent version ${String(body.version)} is newer than server version ${server!.version}`,
            });
          }
          registered.set(String(body.node), { role: 'agent', body });
          return send(200, {});
        }
        send(404, { message: 'not found' });
      });
    },
  );
  await new Promise<void>((r) => srv.listen(0, host, () => r()));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `https://${host}:${port}`,
    token,
    caPem,
    registered,
    deleted,
    stop: async () => {
      await new Promise<void>((r) => srv.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
