// The drill sandbox's resource modifiers, decoded and applied by the lab's copy of Velero's
// resourcemodifiers package (velero-modifiers.ts): our YAML must survive Velero's strict decoder
// (every patch value a string) and do what it says on items as they come from the backup.
import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { loadClusterFile } from '../../config/loader.js';
import { sandboxHost, sandboxModifiers, type SourceFacts } from '../../activities/velero/sandbox.js';
import { shorten, summarise } from '../../activities/velero/evidence.js';
import { applyModifiers, loadModifiers } from '../lab/kube/controllers/velero-modifiers.js';
import type { KObj } from '../lab/kube/lab-api.js';

const spec = loadClusterFile(join(import.meta.dirname, '../../config/clusters/pedro-ops.yaml'));
const SRC = 'eleduck-analytics';
const SCRATCH = 'drill-eleduck-analytics-abc123';
const facts: SourceFacts = {
  ingresses: [
    {
      namespace: SRC,
      name: 'metabase',
      hosts: ['analytics.soypetetech.local', undefined],
      tls: [['analytics.soypetetech.local']],
    },
  ],
  proxies: [{ namespace: SRC, name: 'api', fqdn: 'api.soypetetech.local' }],
  services: [{ namespace: SRC, name: 'web', type: 'NodePort', nodePorts: [30500, undefined] }],
};

function modifiers() {
  const m = sandboxModifiers(spec, { [SRC]: SCRATCH }, facts);
  const loaded = loadModifiers({ metadata: { name: 'm' }, data: { 'sandbox.yaml': m.yaml } }, 'velero', 'm');
  if (typeof loaded === 'string') throw new Error(loaded);
  return { m, loaded };
}
const item = (o: Partial<KObj> & { metadata: KObj['metadata'] }): KObj => structuredClone<KObj>(o);

describe('drill sandbox resource modifiers', () => {
  test('pass Velero’s strict decoder and validation', () => {
    const { m } = modifiers();
    expect(m.rules).toBeGreaterThan(5);
    expect(m.hosts).toEqual([
      { from: 'analytics.soypetetech.local', to: `analytics-soypetetech-local.${SCRATCH}.drill.invalid` },
      { from: 'api.soypetetech.local', to: `api-soypetetech-local.${SCRATCH}.drill.invalid` },
    ]);
  });

  test('move hosts, suspend CronJobs, scale down Airbyte, drop fixed nodePorts and LoadBalancers', () => {
    const { loaded } = modifiers();
    const ing = item({
      metadata: { name: 'metabase', namespace: SRC },
      spec: {
        rules: [{ host: 'analytics.soypetetech.local' }, { http: {} }],
        tls: [{ hosts: ['analytics.soypetetech.local'] }],
      },
    });
    expect(applyModifiers(loaded, ing, 'ingresses.networking.k8s.io')).toEqual([]);
    expect(ing.spec.rules).toEqual([{ host: `analytics-soypetetech-local.${SCRATCH}.drill.invalid` }, { http: {} }]);
    expect(ing.spec.tls[0].hosts).toEqual([`analytics-soypetetech-local.${SCRATCH}.drill.invalid`]);

    const proxy = item({
      metadata: { name: 'api', namespace: SRC },
      spec: { virtualhost: { fqdn: 'api.soypetetech.local' } },
    });
    applyModifiers(loaded, proxy, 'httpproxies.projectcontour.io');
    expect(proxy.spec.virtualhost.fqdn).toBe(`api-soypetetech-local.${SCRATCH}.drill.invalid`);

    const cron = item({ metadata: { name: 'sqlmesh', namespace: SRC }, spec: { schedule: '0 6 * * *' } });
    applyModifiers(loaded, cron, 'cronjobs.batch');
    expect(cron.spec.suspend).toBe(true);

    const airbyte = item({ metadata: { name: 'airbyte-worker', namespace: SRC }, spec: { replicas: 2 } });
    const metabase = item({ metadata: { name: 'metabase', namespace: SRC }, spec: { replicas: 1 } });
    applyModifiers(loaded, airbyte, 'deployments.apps');
    applyModifiers(loaded, metabase, 'deployments.apps');
    expect([airbyte.spec.replicas, metabase.spec.replicas]).toEqual([0, 1]);

    const svc = item({
      metadata: { name: 'web', namespace: SRC },
      spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 30500 }, { port: 81 }] },
    });
    expect(applyModifiers(loaded, svc, 'services')).toEqual([]);
    expect(svc.spec.ports).toEqual([{ port: 80 }, { port: 81 }]);
    // A backup whose nodePort differs from the live one is not matched (no restore error).
    const older = item({
      metadata: { name: 'web', namespace: SRC },
      spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 30999 }] },
    });
    expect(applyModifiers(loaded, older, 'services')).toEqual([]);
    expect(older.spec.ports[0].nodePort).toBe(30999);

    const lb = item({
      metadata: { name: 'tailnet', namespace: SRC },
      spec: { type: 'LoadBalancer', loadBalancerClass: 'tailscale', ports: [{ port: 80 }] },
    });
    applyModifiers(loaded, lb, 'services');
    expect(lb.spec).toEqual({ type: 'NodePort', ports: [{ port: 80 }] });

    const np = item({
      metadata: { name: 'allow-all', namespace: SRC },
      spec: { podSelector: {}, egress: [{}], ingress: [{}] },
    });
    applyModifiers(loaded, np, 'networkpolicies.networking.k8s.io');
    expect(np.spec).toEqual({ podSelector: {} });
  });

  test('a wildcard host keeps its wildcard; other namespaces are untouched', () => {
    expect(sandboxHost('*.soypetetech.local', SCRATCH, 'drill.invalid')).toBe(
      `*.soypetetech-local.${SCRATCH}.drill.invalid`,
    );
    const { loaded } = modifiers();
    const cron = item({ metadata: { name: 'x', namespace: 'monitoring' }, spec: {} });
    applyModifiers(loaded, cron, 'cronjobs.batch');
    expect(cron.spec.suspend).toBeUndefined();
  });
});

describe('restore results summary', () => {
  test('counts per namespace, keeps a few shortened messages and masks credential-looking values', () => {
    const s = summarise({
      velero: ['error from restore item operation: x'],
      namespaces: { a: Array.from({ length: 7 }, (_, i) => `error ${i} password=hunter${i} token: "abc"`) },
    });
    expect(s.total).toBe(8);
    expect(s.by.a.count).toBe(7);
    expect(s.by.a.messages).toHaveLength(5);
    expect(s.by.a.messages[0]).toBe('error 0 password=*** token: ***');
    expect(shorten('x'.repeat(500))).toHaveLength(240);
  });
});
