// The SSH port against the lab's real sshd nodes: pinned host keys, TOFU only on request (and then
// recorded and pinned), typed failures, and a dropped connection that fails one call instead of the process.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { startLab, type Lab } from '../lab/index.js';
import { createSshConnector, KnownHosts, fingerprint } from '../../activities/ssh/client.js';
import type { ClusterSpec } from '../../config/schema.js';

let lab: Lab;
beforeAll(async () => {
  lab = await startLab();
});
afterAll(async () => {
  await lab?.stop();
});

const failureOf = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
};

describe('SSH port', () => {
  it('connects with the pinned key and runs commands on the right node', async () => {
    const ssh = createSshConnector();
    const node = lab.spec.nodes[1];
    const s = await ssh.connect(lab.spec, node);
    const r = await s.exec('hostname');
    // the machine's hostname, not the config's node name (as on the owner's machines)
    expect(r).toMatchObject({ code: 0, stdout: lab.nodes[1].hostname });
    expect(r.stdout).not.toBe(node.name);
    expect(s.hostKey).toBe(node.hostKey!.split(' ').slice(0, 2).join(' '));
    s.dispose();
  });

  it('refuses a changed host key as a non-retryable HostKeyMismatch naming the node (no TOFU)', async () => {
    const node = lab.spec.nodes[2];
    await lab.faults.ssh.rotateHostKey(node.name);
    try {
      const f = await failureOf(createSshConnector().connect(lab.spec, node));
      expect(f.type).toBe('HostKeyMismatch');
      expect(f.nonRetryable).toBe(true);
      expect(f.message).toContain(node.name);
      expect(f.message).toMatch(/presented SHA256:/);
      // allowTofu never overrides a pinned key
      expect((await failureOf(createSshConnector().connect(lab.spec, node, { allowTofu: true }))).type).toBe(
        'HostKeyMismatch',
      );
    } finally {
      await lab.faults.ssh.restoreHostKey(node.name);
    }
  });

  it('without a pinned key: refused, unless allowTofu, which records the key and pins it from then on', async () => {
    const unpinned: ClusterSpec = { ...lab.spec, nodes: lab.spec.nodes.map((n) => ({ ...n, hostKey: undefined })) };
    const node = unpinned.nodes[0];
    const known = new KnownHosts(mkdtempSync(join(tmpdir(), 'pedro-known-')));
    const ssh = createSshConnector({ knownHosts: known });
    expect((await failureOf(ssh.connect(unpinned, node))).type).toBe('HostKeyMismatch');
    const s = await ssh.connect(unpinned, node, { allowTofu: true });
    s.dispose();
    const recorded = known.get(unpinned.name, node, node.port!);
    expect(recorded).toBe(lab.spec.nodes[0].hostKey!.split(' ').slice(0, 2).join(' '));
    // recorded key now pinned: works without the flag...
    (await ssh.connect(unpinned, node)).dispose();
    // ...and a changed key is refused even with the flag
    await lab.faults.ssh.rotateHostKey(node.name);
    try {
      const f = await failureOf(ssh.connect(unpinned, node, { allowTofu: true }));
      expect(f.type).toBe('HostKeyMismatch');
      expect(f.message).toMatch(/presented SHA256:/);
      expect(f.message).not.toContain(fingerprint(recorded!)); // it names the new key, not the recorded one
    } finally {
      await lab.faults.ssh.restoreHostKey(node.name);
    }
  });

  it('a dropped connection fails that call as retryable Transient and the process survives', async () => {
    const node = lab.spec.nodes[0];
    const s = await createSshConnector().connect(lab.spec, node);
    lab.faults.ssh.dropAfter(node.name, 1);
    const f = await failureOf(s.exec('sleep 1; echo done'));
    expect(f.type).toBe('Transient');
    expect(f.nonRetryable).toBe(false);
    s.dispose();
    lab.faults.ssh.clear(node.name);
    const again = await createSshConnector().connect(lab.spec, node);
    expect((await again.exec('echo ok')).stdout).toBe('ok');
    again.dispose();
  });

  it('a refused connection is Transient; a missing key file is BadConfig; a wrong key is AuthDenied', async () => {
    const node = lab.spec.nodes[1];
    lab.faults.ssh.refuse(node.name);
    try {
      expect((await failureOf(createSshConnector().connect(lab.spec, node))).type).toBe('Transient');
    } finally {
      lab.faults.ssh.clear(node.name);
    }
    const noKey = { ...lab.spec, ssh: { ...lab.spec.ssh, privateKey: '/nonexistent/id_ed25519' } };
    const bad = await failureOf(createSshConnector().connect(noKey, node));
    expect(bad).toMatchObject({ type: 'BadConfig', nonRetryable: true });
    const { execFileSync } = await import('node:child_process');
    const other = join(mkdtempSync(join(tmpdir(), 'pedro-key-')), 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const denied = await failureOf(
      createSshConnector().connect({ ...lab.spec, ssh: { ...lab.spec.ssh, privateKey: other } }, node),
    );
    expect(denied).toMatchObject({ type: 'AuthDenied', nonRetryable: true });
  });
});
