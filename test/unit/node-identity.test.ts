// Pure parts of the node-side build (issue 13): the config check for node-ip and the registry, the
// LAN-address choice from iproute2 output, preflight's judgement of the SSH user, and the HelmChart
// of an OCI chart in the plain-HTTP registry.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadClusterFile, parseClusterSpec, ConfigError } from '../../config/loader.js';
import { judge } from '../../activities/ssh/preflight.js';
import { lanAddressFrom } from '../../activities/ssh/node-ip.js';
import { desiredHelmChart } from '../../activities/components/helmchart.js';
import { k3sConfig, registriesYaml } from '../../activities/ssh/prepare.js';
import { PEDRO_OPS_FILE } from '../lab/cluster-spec.js';

const raw = () => parse(readFileSync(PEDRO_OPS_FILE, 'utf8'));
const problemsOf = (doc: unknown) => {
  try {
    parseClusterSpec(stringify(doc), '/x/pedro-ops.yaml');
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
};

describe('node-ip in the config (item 3)', () => {
  it('pedro-ops.yaml pins no node-ip (the Tailscale addresses were wrong; the LAN ones are unknown)', () => {
    expect(loadClusterFile(PEDRO_OPS_FILE).nodes.map((n) => n.nodeIp)).toEqual([undefined, undefined, undefined]);
  });

  it('a nodeIp inside 100.64.0.0/10 is refused unless allowCgnatNodeIp is set', () => {
    const doc = raw();
    doc.nodes[1].nodeIp = doc.nodes[1].address; // 100.70.90.12: the old, wrong value
    expect(problemsOf(doc)).toEqual([
      { path: 'nodes[1].nodeIp', reason: expect.stringMatching(/100\.64\.0\.0\/10.*LAN address.*allowCgnatNodeIp/) },
    ]);
    doc.nodes[1].allowCgnatNodeIp = true;
    expect(problemsOf(doc)).toEqual([]);
    doc.nodes[1] = { ...doc.nodes[1], nodeIp: '192.168.1.12', allowCgnatNodeIp: undefined };
    expect(problemsOf(doc)).toEqual([]);
    doc.nodes[1].nodeIp = '100.128.0.1'; // just outside the range
    expect(problemsOf(doc)).toEqual([]);
  });
});

describe('LAN address from iproute2 output (item 3)', () => {
  // as printed by iproute2 6.1 (Debian 12): `ip -o -4 route show default`, `ip -o -4 addr show`
  const addrs = [
    '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
    '2: enp3s0    inet 192.168.1.62/24 brd 192.168.1.255 scope global dynamic noprefixroute enp3s0\\       valid_lft 84120sec preferred_lft 84120sec',
    '4: tailscale0    inet 100.81.89.62/32 scope global tailscale0\\       valid_lft forever preferred_lft forever',
  ].join('\n');
  it('takes the default-route interface, never tailscale0, lowest metric first', () => {
    const routes = [
      'default dev tailscale0 table main scope link metric 10 ',
      'default via 192.168.1.1 dev enp3s0 proto dhcp src 192.168.1.62 metric 100 ',
    ].join('\n');
    expect(lanAddressFrom(routes, addrs)).toEqual({ address: '192.168.1.62', dev: 'enp3s0' });
    // no src on the route: the interface's address
    expect(lanAddressFrom('default via 192.168.1.1 dev enp3s0 proto static ', addrs)).toEqual({
      address: '192.168.1.62',
      dev: 'enp3s0',
    });
  });
  it('says what to do when only tailscale0 (or nothing) has a default route', () => {
    expect(lanAddressFrom('default dev tailscale0 scope link ', addrs)).toEqual({
      error: expect.stringMatching(/only default route goes via tailscale0; set nodeIp/),
    });
    expect(lanAddressFrom('', addrs)).toEqual({ error: expect.stringMatching(/no default route; set nodeIp/) });
  });
});

describe('node identity in the k3s config (item 2)', () => {
  it('sets node-name to the config name and node-ip to the given LAN address', () => {
    const spec = loadClusterFile(PEDRO_OPS_FILE);
    const cfg = parse(k3sConfig(spec, spec.nodes[0], '192.168.1.62'));
    expect(cfg).toMatchObject({ 'node-name': 'control-plane', 'node-ip': '192.168.1.62' });
  });
});

describe('the plain-HTTP registry (item 4)', () => {
  const spec = loadClusterFile(PEDRO_OPS_FILE);
  it('is explicit in the config, and the zot chart serves it on that NodePort', () => {
    expect(spec.registry).toEqual({ host: '100.81.89.62', port: 30500, tls: false });
    const zot = spec.components.find((c) => c.name === 'zot')!;
    expect(zot.values).toMatchObject({ service: { type: 'NodePort', nodePort: 30500 } });
  });
  it('an oci:// chart from it gets plainHTTP: true (helm-controller v0.16.5 HelmChartSpec.PlainHTTP)', () => {
    const c = spec.components.find((x) => x.name === 'eleduck-jobs')!;
    const hc = desiredHelmChart(spec, c);
    expect(hc.spec).toMatchObject({ chart: 'oci://100.81.89.62:30500/charts/eleduck-jobs', plainHTTP: true });
    expect(desiredHelmChart(spec, spec.components[0]).spec).not.toHaveProperty('plainHTTP');
    // a public OCI registry speaks TLS: powerdns from ghcr.io is pulled without --plain-http
    const pdns = desiredHelmChart(
      spec,
      spec.components.find((x) => x.name === 'powerdns')!,
    );
    expect(pdns.spec).toMatchObject({ chart: 'oci://ghcr.io/unbyte-de/powerdns-chart/powerdns' });
    expect(pdns.spec).not.toHaveProperty('plainHTTP');
  });
  it('registries.yaml uses the k3s docs format with an http:// endpoint', () => {
    expect(parse(registriesYaml(spec)!)).toEqual({
      mirrors: { '100.81.89.62:30500': { endpoint: ['http://100.81.89.62:30500'] } },
    });
  });
  it('an oci:// repo that is not the configured registry is refused', () => {
    const doc = raw();
    const i = doc.components.findIndex((c: { repo?: string }) => c.repo?.startsWith('oci://100.81.89.62'));
    doc.components[i].repo = 'oci://100.81.89.62:5000/charts';
    expect(problemsOf(doc)).toEqual([
      {
        path: `components[${i}].repo`,
        reason: 'oci registry 100.81.89.62:5000 is not the configured registry 100.81.89.62:30500',
      },
    ]);
  });
});

describe('preflight refuses what prepare cannot do (item 10)', () => {
  const spec = loadClusterFile(PEDRO_OPS_FILE);
  const node = spec.nodes[2];
  const facts = {
    uid: '0',
    user: 'root',
    sudo: 'no',
    arch: 'x86_64',
    os: 'debian 12',
    cpus: '4',
    mem: '8192',
    disk: '100',
    swap: '0',
    ntp: 'yes',
    ports: '',
    routes: 'default via 192.168.1.1 dev eth0 src 192.168.1.13 ',
  };
  it('a root Debian node passes', () => {
    expect(judge(spec, node, facts, [], undefined).findings).toEqual([]);
  });
  it('a sudo user is refused: nothing in prepare or install uses sudo', () => {
    const r = judge(spec, node, { ...facts, uid: '1000', user: 'pedro', sudo: 'yes' }, [], undefined);
    expect(r.findings).toEqual([
      expect.stringMatching(/SSH user pedro is not root.*sudo is not supported.*connect as root/),
    ]);
  });
  it('RHEL, Fedora and SUSE are refused with the reason', () => {
    for (const [os, tool] of [
      ['rhel 9.4', 'dnf'],
      ['fedora 40', 'dnf'],
      ['opensuse-leap 15.6', 'zypper'],
      ['sles 15.6', 'zypper'],
    ])
      expect(judge(spec, node, { ...facts, os }, [], undefined).findings).toEqual([
        expect.stringMatching(new RegExp(`uses ${tool}; node preparation installs packages with apt-get only`)),
      ]);
  });
});
