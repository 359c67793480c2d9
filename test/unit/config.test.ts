import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import {
  ConfigError,
  DEFAULT_CLUSTERS_DIR,
  loadClusterFile,
  loadClusters,
  parseClusterSpec,
} from '../../config/loader.js';
import { lockPathFor } from '../../activities/components/chart-lock.js';

const PEDRO = join(DEFAULT_CLUSTERS_DIR, 'pedro-ops.yaml');
const base = () => parseDocument(readFileSync(PEDRO, 'utf8')).toJS() as Record<string, any>;

function problemsOf(mutate: (d: Record<string, any>) => void, file = '/x/pedro-ops.yaml'): string[] {
  const d = base();
  mutate(d);
  try {
    parseClusterSpec(stringify(d), file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.split('\n');
  }
  throw new Error('expected the file to be rejected');
}

describe('cluster config', () => {
  it('loads the seed cluster with every component, node and secret entry typed', () => {
    const spec = loadClusterFile(PEDRO);
    expect(spec.nodes.map((n) => n.name)).toEqual(['control-plane', 'worker-1', 'worker-2']);
    expect(spec.vip).toBe('100.81.89.100');
    expect(spec.k3s.version).toMatch(/^v1\.\d+\.\d+\+k3s\d$/);
    expect(spec.nodes.find((n) => n.name === 'worker-1')?.storage?.sizeGi).toBe(2000);
    expect(spec.components.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'openbao',
        'powerdns',
        'zot',
        'contour',
        'cert-manager',
        'longhorn',
        'seaweedfs',
        'kube-prometheus-stack',
        'loki',
        'grafana',
        'velero',
        'tailscale-operator',
        'airbyte',
        'metabase',
      ]),
    );
    expect(spec.components.find((c) => c.name === 'airbyte')?.timeoutSeconds).toBeGreaterThanOrEqual(1800);
    expect(spec.components.find((c) => c.name === 'cert-manager')?.dependsOn).toEqual([]); // default applied
    const direct = spec.secrets.entries.find((e) => e.id === 'eleduck-database-direct')!;
    expect(direct.kubernetes?.name).toBe('supabase-credentials');
    expect(Object.keys(direct.kubernetes!.keys)).toEqual([
      'DATABASE_USER',
      'DATABASE_PASSWORD',
      'DATABASE_HOST',
      'DATABASE_PORT',
      'DATABASE_NAME',
    ]);
    expect(spec.backups.schedule.cron).toBe('0 2 * * *');
    expect(loadClusters().has('pedro-ops')).toBe(true);
  });

  it('pedro-ops verifies rotated credentials where a real check exists: a Job that uses the new Secret', () => {
    const spec = loadClusterFile(PEDRO);
    const verified = spec.secrets.entries.filter((e) => e.verify);
    expect(verified.map((e) => e.id).sort()).toEqual(['eleduck-database-direct', 'tailscale-oauth']);
    for (const e of verified) {
      expect(e.verify).toMatchObject({
        type: 'job',
        namespace: e.kubernetes!.namespace,
        secretEnv: e.kubernetes!.name,
      });
      // Fits the rollout budget of a rotation, and below the activity timeouts the workflow derives from it.
      expect((e.verify as { timeoutSeconds?: number }).timeoutSeconds).toBeLessThanOrEqual(300);
    }
    // Entries whose consumers are only CronJobs are verified by a run of the CronJob (no probe needed).
    const cronOnly = spec.secrets.entries.filter(
      (e) => e.consumers.length > 0 && e.consumers.every((c) => c.kind === 'CronJob'),
    );
    expect(cronOnly.map((e) => e.id)).toContain('podcast-scraper');
  });

  it.each([
    ['a missing field', (d: any) => delete d.vip, '/x/pedro-ops.yaml: vip: is required'],
    [
      'a wrong type deep inside',
      (d: any) => (d.components[2].timeoutSeconds = 'soon'),
      '/x/pedro-ops.yaml: components[2].timeoutSeconds: must be integer',
    ],
    [
      'an unknown field',
      (d: any) => (d.nodes[1].colour = 'blue'),
      '/x/pedro-ops.yaml: nodes[1].colour: is not a known field',
    ],
    [
      'an unpinned k3s version',
      (d: any) => (d.k3s.version = 'latest'),
      '/x/pedro-ops.yaml: k3s.version: does not match',
    ],
    [
      'a secret ref that is not op://',
      (d: any) => (d.secrets.entries[0].fields.username = 'POSTGRES_URL'),
      '/x/pedro-ops.yaml: secrets.entries[0].fields.username: does not match',
    ],
    [
      'a dependency on nothing',
      (d: any) => (d.components[2].dependsOn = ['cert-manager', 'nginx']),
      '/x/pedro-ops.yaml: components[2].dependsOn[1]: names no component ("nginx")',
    ],
    [
      'a storage node that does not exist',
      (d: any) => (d.storage.node = 'worker-9'),
      '/x/pedro-ops.yaml: storage.node: names no node in nodes ("worker-9")',
    ],
    [
      'threshold above shares',
      (d: any) => (d.openbao.threshold = 7),
      '/x/pedro-ops.yaml: openbao.threshold: must not exceed openbao.shares (5)',
    ],
    [
      'a Kubernetes key mapped to no OpenBAO key',
      (d: any) => (d.secrets.entries[1].kubernetes.keys.DATABASE_USER = 'user'),
      '/x/pedro-ops.yaml: secrets.entries[1].kubernetes.keys.DATABASE_USER: names OpenBAO key "user" that fields does not define',
    ],
    [
      'a ref into another vault',
      (d: any) => (d.secrets.entries[0].fields.username = 'op://other/POSTGRES_URL/username'),
      '/x/pedro-ops.yaml: secrets.entries[0].fields.username: refers to vault "other"',
    ],
    [
      'url access without an address',
      (d: any) => (d.openbao.access = { mode: 'url' }),
      '/x/pedro-ops.yaml: openbao.address: is required with access.mode url',
    ],
    [
      'an address with api-proxy access',
      (d: any) => (d.openbao.address = 'https://openbao.soypetetech.local'),
      '/x/pedro-ops.yaml: openbao.address: is not used with access.mode api-proxy',
    ],
    [
      'a CA file for a plain http address',
      (d: any) => (d.openbao = { ...d.openbao, access: { mode: 'url', caFile: 'ca.pem' }, address: 'http://bao:8200' }),
      '/x/pedro-ops.yaml: openbao.access.caFile: only applies to access.mode url with an https address',
    ],
    [
      'an unknown access mode',
      (d: any) => (d.openbao.access = { mode: 'port-forward' }),
      '/x/pedro-ops.yaml: openbao.access.mode:',
    ],
    [
      'two servers',
      (d: any) => (d.nodes[1].role = 'server'),
      '/x/pedro-ops.yaml: nodes: has 2 servers; use 1 or 3 (etcd quorum)',
    ],
  ])('rejects %s with the exact field path', (_name, mutate, expected) => {
    const lines = problemsOf(mutate);
    expect(lines.some((l) => l.startsWith(expected))).toBe(true);
  });

  it('reads openbao.access with the chart defaults, and resolves caFile next to the cluster file', () => {
    const spec = parseClusterSpec(stringify(base()), PEDRO);
    expect(spec.openbao.access).toEqual({ mode: 'api-proxy', service: 'openbao', port: 8200, scheme: 'http' });
    const d = base();
    d.openbao = { ...d.openbao, access: { mode: 'url', caFile: 'pedro-ops.yaml' }, address: 'https://bao.example' };
    const url = parseClusterSpec(stringify(d), PEDRO);
    expect(url.openbao.access.caFile).toBe(PEDRO);
    d.openbao.access.caFile = 'no-such-ca.pem';
    expect(() => parseClusterSpec(stringify(d), PEDRO)).toThrow(/openbao.access.caFile: file not found/);
  });

  it('rejects a dependency cycle and names it', () => {
    const lines = problemsOf((d) => {
      d.components.find((c: any) => c.name === 'cert-manager').dependsOn = ['contour'];
    });
    expect(lines[0]).toMatch(
      /components\[\d+\]\.dependsOn: dependency cycle (cert-manager -> contour -> cert-manager|contour -> cert-manager -> contour)/,
    );
  });

  it('reports every problem of a file at once', () => {
    const lines = problemsOf((d) => {
      delete d.domain;
      d.parallelism = 0;
    });
    expect(lines).toEqual(
      expect.arrayContaining([
        '/x/pedro-ops.yaml: domain: is required',
        '/x/pedro-ops.yaml: parallelism: must be >= 1',
      ]),
    );
  });

  it('rejects a file whose name differs from the cluster name, and broken YAML with its line', () => {
    expect(problemsOf(() => undefined, '/x/other.yaml')).toEqual([
      '/x/other.yaml: name: must equal the file name "other"',
    ]);
    expect(() => parseClusterSpec('name: [unclosed\n', '/x/bad.yaml')).toThrow(/\/x\/bad\.yaml: line \d+:/);
  });

  it('config:check --onepassword names every missing 1Password item of every entry; pending sources pass', async () => {
    const { startOnePasswordDouble } = await import('../lab/onepassword/index.js');
    const dir = mkdtempSync(join(tmpdir(), 'pedro-config-op-'));
    const op = await startOnePasswordDouble({
      host: '127.0.0.1',
      fixturePath: fileURLToPath(new URL('../lab/fixtures/onepassword.json', import.meta.url)),
      statePath: join(dir, 'op-state.json'),
    });
    try {
      // Asynchronously: the double answers from this process, so a blocking spawnSync would deadlock.
      const check = (mutate: (d: Record<string, any>) => void) => {
        const d = base();
        d.onepassword.labUrl = op.url;
        mutate(d);
        const file = join(dir, 'pedro-ops.yaml');
        writeFileSync(file, stringify(d));
        // the chart lock beside it (the 1Password address is not a render input, so it still matches)
        copyFileSync(lockPathFor(PEDRO), lockPathFor(file));
        return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn('npx', ['tsx', 'scripts/check-config.ts', '--onepassword', file]);
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
          child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
          child.on('close', (status) => resolve({ status, stdout, stderr }));
        });
      };
      // As committed: both missing sources are explicit, so the check passes and lists them.
      const ok = await check(() => undefined);
      expect(ok.status).toBe(0);
      expect(ok.stdout).toMatch(
        /\(eleduck-database-direct\): op:\/\/pedro\/SUPABASE_DIRECT\/username: item SUPABASE_DIRECT not found in vault pedro \(pending source: create 1Password item SUPABASE_DIRECT/,
      );
      // Not marked: refused, naming the item for that entry.
      const refused = await check((d) => {
        const e = d.secrets.entries.find((x: { id: string }) => x.id === 'motherduck');
        delete e.pendingSource;
        d.secrets.entries.find((x: { id: string }) => x.id === 'github').fields.extra =
          'op://pedro/NOT_THERE/credential';
      });
      expect(refused.status).toBe(2);
      const lines = refused.stderr.trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(
        /secrets\.entries\[\d+\] \(motherduck\): op:\/\/pedro\/MOTHERDUCK_TOKEN\/credential: item MOTHERDUCK_TOKEN not found in vault pedro; create it, or mark the entry pendingSource$/,
      );
      expect(lines[1]).toMatch(/\(github\): op:\/\/pedro\/NOT_THERE\/credential: item NOT_THERE not found/);
      expect(op.counters().resolveAll + op.counters().resolve).toBe(0); // no value was read
    } finally {
      await op.stop();
    }
  }, 60_000);

  it('config:check prints file: path: reason and exits non-zero without a stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pedro-config-'));
    const d = base();
    d.nodes[0].port = 70000;
    const file = join(dir, 'pedro-ops.yaml');
    writeFileSync(file, stringify(d));
    const r = spawnSync('npx', ['tsx', 'scripts/check-config.ts', file], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(`${file}: nodes[0].port: must be <= 65535`);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(execFileSync('npx', ['tsx', 'scripts/check-config.ts', PEDRO], { encoding: 'utf8' })).toContain(
      'ok (pedro-ops)',
    );
  });
});
