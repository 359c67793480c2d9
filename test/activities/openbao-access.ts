// The path to OpenBAO (openbao.access) and its preflight, against the built lab of
// openbao-bootstrap.test.ts (issue 14 item 2). Each cluster variant breaks one hop: the Service, its
// port, its endpoints, publishNotReadyAddresses, the pod's port; and in url mode TLS without and with
// the CA (an https front of the double, as an Ingress with a cert-manager certificate would be).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, test } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import type { ClusterSpec } from '../../config/schema.js';
import { kubeForCluster, type KubeObject, type KubePort } from '../../activities/kube/client.js';
import type { openbaoBootstrapActivities } from '../../activities/openbao/bootstrap.js';
import type { Lab } from '../lab/index.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { rotationActivities } from '../../activities/rotation.js';
import { makeCerts } from '../lab/kube/certs.js';

let front: https.Server | undefined;
let certDir: string | undefined;
let kube: KubePort;

/** An https server in front of the double with a certificate from its own CA. */
async function startTlsFront(lab: Lab): Promise<{ url: string; caFile: string }> {
  certDir = mkdtempSync(join(tmpdir(), 'bao-front-'));
  const certs = await makeCerts(certDir, lab.host);
  const caFile = join(certDir, 'front-ca.pem');
  writeFileSync(caFile, certs.caPem);
  const target = new URL(lab.openbao.url);
  front = https.createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => {
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((ok) => front!.listen(0, lab.host, ok));
  return { url: `https://${lab.host}:${(front.address() as AddressInfo).port}`, caFile };
}

/** Writes lab-<variant>.yaml cluster files next to lab.yaml and the Services they name. */
export async function accessVariants(lab: Lab, clustersDir: string): Promise<void> {
  const base = parse(readFileSync(lab.clusterFile, 'utf8')) as ClusterSpec;
  const ns = base.openbao.namespace;
  const write = (name: string, openbao: Partial<ClusterSpec['openbao']>) =>
    writeFileSync(
      join(clustersDir, `${name}.yaml`),
      stringify({ ...base, name, openbao: { ...base.openbao, ...openbao } }, { lineWidth: 0 }),
    );
  const proxy = (service: string, port = 8200) => ({ access: { ...base.openbao.access, service, port } });
  write('lab-svc-missing', proxy('openbao-missing'));
  write('lab-svc-port', proxy('openbao', 8300));
  write('lab-svc-empty', proxy('bao-empty'));
  write('lab-svc-strict', proxy('bao-strict'));
  write('lab-svc-deadport', proxy('bao-deadport'));
  const tls = await startTlsFront(lab);
  write('lab-url-noca', { access: { mode: 'url', service: 'openbao', port: 8200, scheme: 'http' }, address: tls.url });
  write('lab-url-ca', {
    access: { mode: 'url', service: 'openbao', port: 8200, scheme: 'http', caFile: tls.caFile },
    address: tls.url,
  });
  kube = kubeForCluster(lab.spec, lab.dir);
  const selector = { 'app.kubernetes.io/name': 'openbao', 'app.kubernetes.io/instance': 'openbao' };
  const service = (name: string, spec: Record<string, unknown>) =>
    kube.create({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec });
  await service('bao-empty', { selector: { app: 'nothing-here' }, ports: [{ name: 'http', port: 8200 }] });
  // Without publishNotReadyAddresses a sealed (NotReady) OpenBAO pod is no endpoint of the Service.
  await service('bao-strict', { selector, ports: [{ name: 'http', port: 8200 }] });
  await service('bao-deadport', {
    selector,
    publishNotReadyAddresses: true,
    ports: [{ name: 'http', port: 8200, targetPort: 8300 }],
  });
}

type Acts = ReturnType<typeof openbaoBootstrapActivities>;

export function describeAccessPreflight(ctx: () => { lab: Lab; acts: Acts; deps: ActivityDeps }) {
  afterAll(async () => {
    if (front) await new Promise<void>((ok) => front!.close(() => ok()));
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  const failure = async (cluster: string) => {
    const err = await ctx()
      .acts.bootstrapOpenBao({ cluster })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  };

  describe('the path to OpenBAO (openbao.access) and its preflight', () => {
    test('the lab spec gives no address: the double answers through services/proxy to its pod', async () => {
      const { lab } = ctx();
      expect(lab.spec.openbao.access.mode).toBe('api-proxy');
      expect(lab.spec.openbao.address).toBeUndefined();
      const path = '/api/v1/namespaces/openbao-system/services/http:openbao:8200/proxy/v1/sys/health';
      const res = await new Promise<{ status: number; body: string }>((ok, fail) => {
        const req = https.request(
          `${lab.kube.url}${path}`,
          { ca: lab.kube.caPem, headers: { authorization: `Bearer ${lab.kube.token}` } },
          (r) => {
            let body = '';
            r.on('data', (c: Buffer) => (body += c.toString()));
            r.on('end', () => ok({ status: r.statusCode ?? 0, body }));
          },
        );
        req.on('error', fail);
        req.end();
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ initialized: true, sealed: false });
    });

    test('no such Service: NotFound, not retried, naming the Service', async () => {
      const f = await failure('lab-svc-missing');
      expect(f).toMatchObject({ type: 'NotFound', nonRetryable: true });
      expect(f.message).toContain('no Service openbao-system/openbao-missing');
    });

    test('a rotation preflights the path too, before anything is generated or written', async () => {
      const { lab, deps } = ctx();
      lab.resetCounters();
      const err = await rotationActivities(deps)
        .rotationPreflight({ cluster: 'lab-svc-missing', entryIds: ['github'] })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ type: 'NotFound', nonRetryable: true });
      expect((err as Error).message).toContain('no Service openbao-system/openbao-missing');
      expect(lab.counters().onepassword.itemsPut).toBe(0);
      expect(await rotationActivities(deps).rotationPreflight({ cluster: 'lab', entryIds: ['github'] })).toMatchObject({
        entries: [],
      });
    });

    test('a port the Service does not have: BadConfig naming its ports', async () => {
      const f = await failure('lab-svc-port');
      expect(f).toMatchObject({ type: 'BadConfig', nonRetryable: true });
      // openbao-helm's Service: http 8200 and https-internal 8201 (the chart lock's render)
      expect(f.message).toContain(
        'Service openbao-system/openbao has no port 8300 (openbao.access.port); it has 8200, 8201',
      );
    });

    test('a Service without endpoints: NotReady, retried', async () => {
      const f = await failure('lab-svc-empty');
      expect(f).toMatchObject({ type: 'NotReady', nonRetryable: false });
      expect(f.message).toContain('Service openbao-system/bao-empty has no endpoints');
    });

    test('a sealed pod behind a Service that does not publish not-ready addresses: BadConfig', async () => {
      const { lab, acts } = ctx();
      lab.faults.openbao.seal();
      const deadline = Date.now() + 20_000;
      for (;;) {
        const eps = await kube.read<{ subsets?: { notReadyAddresses?: unknown[] }[] } & KubeObject>(
          'v1',
          'Endpoints',
          'bao-strict',
          'openbao-system',
        );
        if (eps?.subsets?.some((s) => s.notReadyAddresses?.length)) break;
        if (Date.now() > deadline) throw new Error('the sealed OpenBAO pod never turned NotReady');
        await new Promise((r) => setTimeout(r, 200));
      }
      const f = await failure('lab-svc-strict');
      expect(f).toMatchObject({ type: 'BadConfig', nonRetryable: true });
      expect(f.message).toContain('publishNotReadyAddresses: true');
      // The chart's own Service publishes it: unsealed through the path.
      expect((await acts.bootstrapOpenBao({ cluster: 'lab' })).unsealed).toBe('now');
    });

    test('the pod does not answer on the target port: retried, the finding names the path', async () => {
      const f = await failure('lab-svc-deadport');
      expect(f).toMatchObject({ type: 'Transient', nonRetryable: false });
      expect(f.message).toContain(
        'OpenBAO via Service openbao-system/bao-deadport:8200 through the Kubernetes API: HTTP',
      );
    });

    test('url mode over https: without the CA a TLS finding; with caFile the bootstrap runs through it', async () => {
      const f = await failure('lab-url-noca');
      expect(f).toMatchObject({ type: 'BadConfig', nonRetryable: true });
      expect(f.message).toMatch(/TLS: \w+.*set openbao.access.caFile/);
      expect(await ctx().acts.bootstrapOpenBao({ cluster: 'lab-url-ca' })).toMatchObject({ satisfied: true });
    });
  });
}
