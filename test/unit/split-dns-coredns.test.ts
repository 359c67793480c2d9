// The split-DNS server blocks we write, loaded by a real CoreDNS (v1.11.4 from scripts/lab-toolchain.sh)
// the way k3s's Corefile imports them (`import /etc/coredns/custom/*.server`). The old form, a
// forward to a Service hostname, is refused by CoreDNS itself: that is why it moved.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isForwardAddress, splitDnsServerBlocks, withoutOldBlock } from '../../activities/dns/split-dns.js';
import { serviceName } from '../../workflows/provision-plan.js';
import { freePort } from '../../scripts/temporal-server.js';
import { labToolchainDir } from '../lab/kube/control-plane.js';

const dir = mkdtempSync(join(tmpdir(), 'coredns-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts CoreDNS on a Corefile; resolves with its output once it serves, or once it exits. */
async function coredns(blocks: string): Promise<{ started: boolean; output: string }> {
  const bin = join(await labToolchainDir(), 'coredns');
  const port = await freePort();
  const custom = join(dir, `custom-${port}`);
  mkdirSync(custom);
  // Our blocks as CoreDNS would see them, on a free loopback port instead of :53.
  writeFileSync(join(custom, 'split-dns.server'), blocks.replaceAll(':53 {', `:${port} {\n    bind 127.0.0.1`));
  const conf = join(dir, `Corefile-${port}`);
  writeFileSync(conf, `import ${custom}/*.server\n`);
  const child = spawn(bin, ['-conf', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve) => {
    const done = (started: boolean) => {
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGTERM');
      resolve({ started, output });
    };
    const onData = (d: Buffer) => {
      output += d.toString();
      if (/CoreDNS-1\.11\.4/.test(output)) done(true);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', () => done(false));
    const timer = setTimeout(() => done(false), 20_000);
  });
}

describe('split DNS for CoreDNS', () => {
  it('writes server blocks a real CoreDNS loads: forward to the ClusterIP', async () => {
    const blocks = splitDnsServerBlocks({ 'soypetetech.local': '10.43.12.34', 'lan.example': '192.168.50.1:5353' });
    const r = await coredns(blocks);
    expect(r.output).not.toMatch(/not an IP address or file/);
    expect(r.started).toBe(true);
  }, 60_000);

  it('a forward to a Service hostname (what the old code wrote) is refused by CoreDNS', async () => {
    const r = await coredns(
      'soypetetech.local:53 {\n    errors\n    cache 30\n    forward . powerdns.powerdns-system.svc.cluster.local\n}\n',
    );
    expect(r.started).toBe(false);
    expect(r.output).toContain('not an IP address or file');
  }, 60_000);

  it('knows what it must resolve first, and removes the block older versions left in the coredns Corefile', () => {
    expect(isForwardAddress('10.43.0.10')).toBe(true);
    expect(isForwardAddress('[fd00::1]:53')).toBe(true);
    expect(isForwardAddress('powerdns.powerdns-system.svc.cluster.local')).toBe(false);
    expect(serviceName('powerdns.powerdns-system.svc.cluster.local')).toEqual({
      name: 'powerdns',
      namespace: 'powerdns-system',
    });
    expect(serviceName('dns.example.com')).toBeUndefined();
    const k3s = '.:53 {\n    forward . /etc/resolv.conf\n}\nimport /etc/coredns/custom/*.server\n';
    const old = `${k3s}# BEGIN pedro-ops split-dns\nx:53 {\n}\n# END pedro-ops split-dns\n`;
    expect(withoutOldBlock(old)).toBe(k3s);
    expect(withoutOldBlock(k3s)).toBe(k3s);
  });
});
