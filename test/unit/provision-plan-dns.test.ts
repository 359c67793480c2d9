// Split DNS reads the ClusterIP of the Service it forwards a zone to (activities/dns/split-dns.ts),
// so the step waits for the component whose chart creates that Service. Before, it ran right after
// the nodes were Ready and used up its retries on every first build ("Service … not found yet").
import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { DEFAULT_CLUSTERS_DIR, loadClusterFile } from '../../config/loader.js';
import { buildProvisionPlan, dnsUpstreamComponents, serviceName } from '../../workflows/provision-plan.js';

const real = loadClusterFile(join(DEFAULT_CLUSTERS_DIR, 'pedro-ops.yaml'));
const dnsDeps = (plan: ReturnType<typeof buildProvisionPlan>) => plan.steps.find((s) => s.id === 'dns')!.dependsOn;

describe('the split-DNS step in the plan', () => {
  test('waits for the component that serves the zone (pedro-ops: powerdns), not for IP upstreams', () => {
    expect(real.dns.splitDns['soypetetech.local']).toBe('powerdns-auth.powerdns-system.svc.cluster.local');
    expect(dnsUpstreamComponents(real)).toEqual(['powerdns']);
    expect(dnsDeps(buildProvisionPlan(real))).toEqual(['nodes-ready', 'component/powerdns']);
    // the critical path now runs through powerdns, and dns is in a later layer than the nodes
    const plan = buildProvisionPlan(real);
    const layer = (id: string) => plan.layers.findIndex((l) => l.includes(id));
    expect(layer('dns')).toBe(layer('component/powerdns') + 1);
  });

  test('a namespace with several components: the one named like the Service; none named: all of them', () => {
    const spec = structuredClone(real);
    const pdns = spec.components.find((c) => c.name === 'powerdns')!;
    spec.components.push({ ...structuredClone(pdns), name: 'powerdns-admin' });
    spec.dns.splitDns = { 'soypetetech.local': 'powerdns.powerdns-system.svc' };
    expect(dnsUpstreamComponents(spec)).toEqual(['powerdns']);
    // pedro-ops's own upstream (Service powerdns-auth) is named like no component: all of the namespace's
    spec.dns.splitDns = { 'soypetetech.local': 'powerdns-auth.powerdns-system.svc' };
    expect(dnsUpstreamComponents(spec)).toEqual(['powerdns', 'powerdns-admin']);
    spec.dns.splitDns = { 'soypetetech.local': '10.43.0.53', 'ts.net': '100.100.100.100' };
    expect(dnsDeps(buildProvisionPlan(spec))).toEqual(['nodes-ready']);
  });

  test('runs recorded before keep their plan; names that are not cluster Services are not matched', () => {
    expect(dnsDeps(buildProvisionPlan(real, { dnsAfterService: false }))).toEqual(['nodes-ready']);
    expect(serviceName('powerdns.powerdns-system.svc')).toEqual({ name: 'powerdns', namespace: 'powerdns-system' });
    expect(serviceName('dns.example.com')).toBeUndefined();
    expect(serviceName('100.100.100.100')).toBeUndefined();
  });
});
