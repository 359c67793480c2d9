// The chart lock with real Helm (scripts/helm.sh: v3.16.4, what klipper-helm runs) on charts written for
// this test (test/fixtures/charts), and `npm run config:check` refusing what was not rendered.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import { DEFAULT_CLUSTERS_DIR, loadClusterFile } from '../../config/loader.js';
import {
  chartLockProblems,
  lockPathFor,
  readChartLock,
  type LockedObject,
} from '../../activities/components/chart-lock.js';
import { helmPath, lockCluster } from '../../scripts/charts-lock.js';

const PEDRO = join(DEFAULT_CLUSTERS_DIR, 'pedro-ops.yaml');
const FIXTURES = fileURLToPath(new URL('../fixtures/charts', import.meta.url));

let dir: string;
let chartsDir: string;
let helm: string;

/** pedro-ops with its components replaced by the fixture charts (plus one that exists nowhere). */
function clusterDoc() {
  const d = parseDocument(readFileSync(PEDRO, 'utf8')).toJS() as Record<string, any>;
  const comp = (name: string, chart: string, extra: object = {}) => ({
    name,
    namespace: name,
    chart,
    repo: 'https://charts.example.invalid',
    version: '1.0.0',
    timeoutSeconds: 300,
    ...extra,
  });
  d.components = [
    comp('web', 'web', {
      values: { nodeSelector: { 'kubernetes.io/hostname': 'control-plane' } },
      workloads: [{ kind: 'Deployment', name: 'web-web' }],
    }),
    comp('broken', 'broken'),
    comp('strict', 'strict', { values: { unknownKey: 1 } }),
    comp('missing', 'missing'),
  ];
  d.dns.splitDns = {};
  for (const e of d.secrets.entries) e.consumers = [];
  d.tailscale.component = 'web';
  return d;
}

function writeCluster(d: object, name = 'pedro-ops.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(d));
  return file;
}

const configCheck = (file: string) =>
  spawnSync('npx', ['tsx', 'scripts/check-config.ts', file], { encoding: 'utf8', timeout: 60_000 });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pedro-chart-lock-'));
  chartsDir = join(dir, 'charts');
  for (const name of ['web', 'broken', 'strict']) {
    mkdirSync(join(chartsDir, name), { recursive: true });
    cpSync(join(FIXTURES, name), join(chartsDir, name, 'chart'), { recursive: true });
    writeFileSync(
      join(chartsDir, name, 'source.json'),
      JSON.stringify({
        git: { repo: 'https://example.invalid/fixtures', tag: `${name}-1.0.0`, commit: '0'.repeat(40), path: name },
      }),
    );
  }
  helm = helmPath();
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('chart lock (real Helm)', () => {
  it('records each render with its provenance, and names why a chart does not render', () => {
    const file = writeCluster(clusterDoc());
    const { lock, failed } = lockCluster(helm, file, { chartsDir, offline: true });
    expect(lock.helm).toBe('v3.16.4');
    expect(lock.kubeVersion).toBe(loadClusterFile(PEDRO).k3s.version.replace(/\+.*/, ''));
    expect(failed).toEqual(['broken', 'strict', 'missing']);
    expect(readChartLock(lockPathFor(file))).toEqual(lock);

    const web = lock.components.web;
    expect(web.source?.git?.tag).toBe('web-1.0.0');
    expect(web.source?.treeDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    if (!web.render.ok) throw new Error(web.render.error);
    const byKind = (k: string) => web.render.ok && web.render.objects.filter((o) => o.kind === k);
    expect(byKind('Deployment')).toEqual([
      expect.objectContaining<Partial<LockedObject>>({
        name: 'web-web',
        namespace: 'web',
        replicas: 2,
        nodeSelector: { 'kubernetes.io/hostname': 'control-plane' },
        containers: [
          {
            name: 'web',
            image: 'registry.example/web:1.0.0',
            ports: [{ containerPort: 8080, name: 'http' }],
            readinessProbe: 'httpGet',
          },
        ],
      }),
    ]);
    expect(byKind('PodDisruptionBudget')).toEqual([
      expect.objectContaining({ name: 'web-web', minAvailable: 1, selector: expect.any(Object) }),
    ]);
    expect(byKind('Job')).toEqual([
      expect.objectContaining({
        name: 'web-migrate',
        hook: {
          events: ['pre-install', 'pre-upgrade'],
          weight: -1,
          deletePolicy: ['before-hook-creation', 'hook-succeeded'],
        },
      }),
    ]);
    // a Secret is recorded by name only, never its (here random) data, and no annotation is kept
    expect(byKind('Secret')).toEqual([{ apiVersion: 'v1', kind: 'Secret', name: 'web-web', namespace: 'web' }]);
    expect(JSON.stringify(web)).not.toContain('checksum/random');

    const broken = lock.components.broken.render;
    expect(broken).toMatchObject({ ok: false });
    expect(!broken.ok && broken.error).toMatch(/broken\/templates\/validate\.yaml.*You must provide a schema_config/);
    const strict = lock.components.strict.render;
    expect(!strict.ok && strict.error).toMatch(/Additional property unknownKey is not allowed/);
    const missing = lock.components.missing.render;
    expect(missing).toMatchObject({ ok: false, missing: true });
    expect(!missing.ok && missing.error).toMatch(/^chart not found/);

    // the same inputs render the same lock, byte for byte (the random Secret and checksum are not in it)
    const before = readFileSync(lockPathFor(file), 'utf8');
    lockCluster(helm, file, { chartsDir, offline: true });
    expect(readFileSync(lockPathFor(file), 'utf8')).toBe(before);
  });

  it('config:check refuses every component that does not render, naming it; nothing else', () => {
    const file = writeCluster(clusterDoc());
    lockCluster(helm, file, { chartsDir, offline: true });
    const r = configCheck(file);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/components\[1\] \(broken\): chart broken 1\.0\.0 does not render: .*schema_config/);
    expect(lines[1]).toMatch(/components\[2\] \(strict\): chart strict 1\.0\.0 does not render: .*unknownKey/);
    expect(lines[2]).toMatch(/components\[3\] \(missing\): chart missing 1\.0\.0 does not render: chart not found/);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
  }, 120_000);

  it('config:check refuses a value, a version or a workload name changed since the render', () => {
    const d = clusterDoc();
    d.components = d.components.slice(0, 1);
    const file = writeCluster(d);
    lockCluster(helm, file, { chartsDir, offline: true });
    expect(configCheck(file).status).toBe(0);

    d.components[0].values.nodeSelector = { 'kubernetes.io/hostname': 'worker-1' };
    writeCluster(d);
    let r = configCheck(file);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      `${file}: components[0] (web): values, repository, namespace or Kubernetes version changed since the chart lock was rendered; run npm run charts:lock and review the render`,
    );

    d.components[0].values.nodeSelector = { 'kubernetes.io/hostname': 'control-plane' };
    d.components[0].version = '1.0.1';
    writeCluster(d);
    r = configCheck(file);
    expect(r.stderr).toMatch(/components\[0\] \(web\): chart web 1\.0\.0 -> web 1\.0\.1 changed since the chart lock/);

    d.components[0].version = '1.0.0';
    d.secrets.entries[0].consumers = [{ kind: 'Deployment', namespace: 'web', name: 'web' }];
    writeCluster(d);
    r = configCheck(file);
    expect(r.stderr.trim()).toBe(
      `${file}: secrets.entries[0] (${d.secrets.entries[0].id}): consumer Deployment web/web is rendered by no component's chart`,
    );
    d.secrets.entries[0].consumers = [{ kind: 'Deployment', namespace: 'web', name: 'web-web' }];
    d.components[0].workloads = [{ kind: 'Deployment', name: 'web' }];
    writeCluster(d);
    r = configCheck(file);
    expect(r.stderr.trim()).toBe(
      `${file}: components[0] (web): workloads names Deployment web/web, which chart web 1.0.0 does not render (it renders: Deployment web-web)`,
    );
  }, 120_000);

  it('the committed pedro-ops lock matches its config: every component rendered, or pending by name', () => {
    const spec = loadClusterFile(PEDRO);
    const lock = readChartLock(lockPathFor(PEDRO));
    expect(chartLockProblems(spec, lock, lockPathFor(PEDRO), DEFAULT_CLUSTERS_DIR)).toEqual([]);
    for (const c of spec.components) {
      const e = lock!.components[c.name];
      if (!e.render.ok) expect(c.pendingChart, `${c.name} does not render: ${e.render.error}`).toBeTruthy();
      else expect(e.source?.git ?? e.source?.pulled, `${c.name}: where its chart came from`).toBeTruthy();
    }
  });
});
