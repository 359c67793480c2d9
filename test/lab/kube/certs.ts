// A throwaway cluster CA and serving certificate, made with the openssl CLI like k3s makes its own
// (ECDSA P-256, CA:TRUE root, server cert with the API address and loopback in its SANs).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Certs {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** `extraSans`: what k3s adds from `tls-san` (the VIP), so a client connecting through the VIP verifies. */
export async function makeCerts(dir: string, host: string, extraSans: string[] = []): Promise<Certs> {
  const f = (n: string) => join(dir, n);
  const sans = new Set([
    ...[host, ...extraSans].map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)),
    'IP:127.0.0.1',
    'DNS:localhost',
    'DNS:kubernetes',
    'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc.cluster.local',
  ]);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const now = Math.floor(Date.now() / 1000);
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-days',
    '3650',
    '-subj',
    `/CN=k3s-server-ca@${now}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/O=k3s/CN=k3s']);
  await writeFile(
    f('ext.cnf'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${[...sans].join(',')}`,
      '',
    ].join('\n'),
  );
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.crt'),
    '-days',
    '3650',
    '-extfile',
    f('ext.cnf'),
  ]);
  const [caPem, certPem, keyPem] = await Promise.all(
    ['ca.crt', 'server.crt', 'server.key'].map((n) => readFile(f(n), 'utf8')),
  );
  return { caPem, certPem, keyPem };
}
