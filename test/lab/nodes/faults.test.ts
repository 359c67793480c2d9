// The fault proxy and host-key faults, seen from a pinned node-ssh client.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startNodes, type LabNodes } from './index.js';
import { startFakeKube, type FakeKube } from './fake-kube.js';
import { connect, labKeyPair } from './test-helpers.js';

const keys = labKeyPair();
const dir = path.join(keys.dir, 'nodes');
let kube: FakeKube;
let lab: LabNodes;
const node = () => lab.nodes[1]; // worker-1

beforeAll(async () => {
  kube = await startFakeKube();
  lab = await startNodes({
    dir,
    names: ['control-plane', 'worker-1', 'worker-2'],
    authorizedKey: keys.publicKey,
    kube,
  });
});
afterAll(async () => {
  await lab?.stop();
  await kube?.stop();
  rmSync(keys.dir, { recursive: true, force: true });
});
beforeEach(() => lab.faults.clear());

describe('lab node faults', () => {
  it('refuse: new connections are reset before the SSH banner; clear() lets them in again', async () => {
    lab.faults.refuse(node().name);
    // a raw socket sees the reset and never a banner
    const raw = await new Promise<{ data: string; err?: string }>((resolve) => {
      let data = '';
      const s = net.connect(node().port, node().host);
      s.on('data', (d) => {
        data += d.toString();
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve({ data, err: e.code }));
      s.on('close', () => resolve({ data }));
    });
    expect(raw).toEqual({ data: '', err: 'ECONNRESET' });
    await expect(connect(node(), keys.privateKey, node().hostKey)).rejects.toThrow(
      /ECONNRESET|Connection lost before handshake/,
    );
    lab.faults.clear(node().name);
    const ssh = await connect(node(), keys.privateKey, node().hostKey);
    expect((await ssh.execCommand('hostname')).stdout).toBe('pedro-w1');
    ssh.dispose();
  });

  it('drop: live connections are reset mid-command; the next connection works', async () => {
    const ssh = await connect(node(), keys.privateKey, node().hostKey);
    const running = ssh.execCommand('echo started; sleep 5; echo finished');
    await new Promise((r) => setTimeout(r, 300));
    lab.faults.drop(node().name);
    const outcome = await running.then(
      (r) => r.stdout,
      (e: Error) => `rejected: ${e.message}`,
    );
    expect(outcome).not.toContain('finished');
    expect(ssh.errors.map((e) => (e as NodeJS.ErrnoException).code)).toContain('ECONNRESET');
    ssh.dispose();
    const again = await connect(node(), keys.privateKey, node().hostKey);
    expect((await again.execCommand('echo ok')).stdout).toBe('ok');
    again.dispose();
  });

  it('dropAfter(n): the nth next command session is cut after a little output, while the command already runs', async () => {
    const marker = path.join(node().rootDir, 'tmp');
    const ssh = await connect(node(), keys.privateKey, node().hostKey);
    lab.faults.dropAfter(node().name, 2);
    expect((await ssh.execCommand('echo first')).stdout).toBe('first'); // session 1 passes
    const chunks: string[] = [];
    const second = ssh.execCommand(
      'touch /tmp/install-started; echo installing; sleep 3; touch /tmp/install-finished; echo done',
      {
        onStdout: (c) => chunks.push(c.toString()),
      },
    );
    const outcome = await second.then(
      (r) => r.stdout,
      (e: Error) => `rejected: ${e.message}`,
    );
    expect(outcome).not.toContain('done');
    expect(chunks.join('')).toBe('installing\n'); // the little data got through before the cut
    // the socket error event trails the channel close
    await vi.waitFor(
      () =>
        expect(
          ssh.errors.map((e) => (e as NodeJS.ErrnoException).code),
          outcome,
        ).toContain('ECONNRESET'),
      { timeout: 2000 },
    );
    expect(existsSync(path.join(marker, 'install-started'))).toBe(true);
    expect(existsSync(path.join(marker, 'install-finished'))).toBe(false);
    ssh.dispose();
    // one-shot: the third session runs normally
    const again = await connect(node(), keys.privateKey, node().hostKey);
    expect((await again.execCommand('echo third')).stdout).toBe('third');
    again.dispose();
  });

  it('slow(ms): every chunk is delayed, commands still complete', async () => {
    const timeIt = async () => {
      const ssh = await connect(node(), keys.privateKey, node().hostKey);
      const t0 = performance.now();
      const r = await ssh.execCommand('echo hi');
      const ms = performance.now() - t0;
      ssh.dispose();
      expect(r.stdout).toBe('hi');
      return ms;
    };
    const fast = await timeIt();
    lab.faults.slow(node().name, 250);
    const slow = await timeIt();
    // an exec round trip crosses the proxy at least twice (request, reply)
    expect(slow).toBeGreaterThan(fast + 400);
  });

  it('rotateHostKey: a pinned client refuses the node; restoreHostKey brings the old key back', async () => {
    const original = node().hostKey;
    const rotated = await lab.faults.rotateHostKey(node().name);
    expect(rotated).toMatch(/^ssh-ed25519 /);
    expect(rotated).not.toBe(original);
    expect(node().hostKey).toBe(rotated);
    await expect(connect(node(), keys.privateKey, original)).rejects.toThrow(/verification failed/i);
    const withNew = await connect(node(), keys.privateKey, rotated);
    expect((await withNew.execCommand('hostname')).stdout).toBe('pedro-w1');
    withNew.dispose();
    await lab.faults.restoreHostKey(node().name);
    expect(node().hostKey).toBe(original);
    const withOld = await connect(node(), keys.privateKey, original);
    expect((await withOld.execCommand('hostname')).stdout).toBe('pedro-w1');
    withOld.dispose();
  });

  it('faults on one node leave the others alone', async () => {
    lab.faults.refuse('worker-1');
    const cp = lab.nodes[0];
    const ssh = await connect(cp, keys.privateKey, cp.hostKey);
    expect((await ssh.execCommand('hostname')).stdout).toBe('pedro-cp');
    ssh.dispose();
  });

  it('counters count sessions and connections per node', async () => {
    const before = lab.counters()['worker-2'];
    const w2 = lab.nodes[2];
    const ssh = await connect(w2, keys.privateKey, w2.hostKey);
    await ssh.execCommand('true');
    await ssh.execCommand('true');
    ssh.dispose();
    const after = lab.counters()['worker-2'];
    expect(after.sshSessions - before.sshSessions).toBe(2);
    expect(after.connections - before.connections).toBe(1);
  });
});
