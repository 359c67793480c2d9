// `npm run charts:lock [-- --charts-dir DIR] [--only a,b] [--offline] [cluster.yaml ...]`: renders every component's
// chart with real Helm (scripts/helm.sh: the version klipper-helm runs) and writes the cluster's chart
// lock beside its file (activities/components/chart-lock.ts says what it records and why).
//
// Where a chart comes from, per component:
// - `--charts-dir DIR` (or PEDRO_OPS_CHARTS_DIR) holding `DIR/<component>/chart/` (the chart as
//   `helm dependency build` leaves it) and `DIR/<component>/source.json` (its provenance: the upstream
//   git repository, release tag and commit it was read from, dependencies, anything stripped). For a
//   machine that cannot reach the chart repositories.
// - otherwise `helm pull` from the component's repository at its version; the lock records the
//   package's sha256.
// A chart that cannot be had or does not render is recorded as a failed render naming the error, and
// the script exits 1; config:check then refuses the cluster. Nothing here touches a cluster.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { isClusterHost } from '../config/addresses.js';
import { clusterFiles, DEFAULT_CLUSTERS_DIR, loadClusterFile } from '../config/loader.js';
import type { ClusterSpec, ComponentSpec } from '../config/schema.js';
import {
  LOCK_VERSION,
  inputsDigest,
  kubeVersionOf,
  lockPathFor,
  lockedObjects,
  readChartLock,
  renderInputs,
  type ChartLock,
  type ChartSource,
  type LockEntry,
} from '../activities/components/chart-lock.js';

const here = dirname(fileURLToPath(import.meta.url));

function argValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}

export function helmPath(): string {
  if (process.env.HELM_PATH) return process.env.HELM_PATH;
  return execFileSync('bash', [join(here, 'helm.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** sha256 over a directory: every file's relative path and bytes, in sorted order. */
export function treeDigest(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else
        h.update(`${relative(dir, p)}\0`)
          .update(readFileSync(p))
          .update('\0');
    }
  };
  walk(dir);
  return `sha256:${h.digest('hex')}`;
}

const firstLines = (s: string) =>
  s
    .trim()
    .split('\n')
    .filter((l) => l.trim())
    .slice(0, 6)
    .join(' | ')
    .slice(0, 1200);

interface Located {
  path: string;
  source?: ChartSource;
  error?: string;
}

interface LockOptions {
  chartsDir?: string;
  only?: string[];
  /** Never `helm pull`: every chart comes from chartsDir. */
  offline?: boolean;
}

function locateChart(helm: string, spec: ClusterSpec, c: ComponentSpec, o: LockOptions, work: string): Located {
  const chartsDir = o.chartsDir;
  if (chartsDir) {
    const dir = join(chartsDir, c.name, 'chart');
    if (existsSync(join(dir, 'Chart.yaml'))) {
      const meta = parse(readFileSync(join(dir, 'Chart.yaml'), 'utf8')) as { name?: string; version?: string };
      const bare = (v: unknown) => String(v).replace(/^v/, '');
      if (meta.name !== c.chart || bare(meta.version) !== bare(c.version))
        return {
          path: dir,
          error: `${dir} holds chart ${meta.name} ${meta.version}, the config pins ${c.chart} ${c.version}`,
        };
      const sourceFile = join(chartsDir, c.name, 'source.json');
      const raw = existsSync(sourceFile) ? (JSON.parse(readFileSync(sourceFile, 'utf8')) as Partial<ChartSource>) : {};
      const source: ChartSource = {
        git: raw.git,
        dependencies: raw.dependencies,
        stripped: raw.stripped?.length ? raw.stripped : undefined,
        prepared: raw.prepared?.length ? raw.prepared : undefined,
        treeDigest: treeDigest(dir),
        notes: raw.notes || undefined,
      };
      if (!source.git) return { path: dir, error: `${sourceFile}: no git provenance (repo, tag, commit, path)` };
      return { path: dir, source };
    }
  }
  if (!c.repo) return { path: '', error: `no repository and no chart under --charts-dir` };
  if (o.offline) return { path: '', error: `chart not found: not under --charts-dir, and --offline pulls nothing` };
  // A repository inside the cluster (its Zot, a node, the VIP) is never contacted from here: the
  // lock is made before the cluster exists, and this machine must not talk to the cluster's addresses.
  const host = new URL(c.repo.replace(/^oci:/, 'https:')).hostname;
  if (isClusterHost(spec, host))
    return {
      path: '',
      error: `chart not found: ${c.repo} is inside the cluster (${host}); put the chart under --charts-dir`,
    };
  const dest = mkdtempSync(join(work, `${c.name}-`));
  const oci = c.repo.startsWith('oci://');
  const args = oci
    ? ['pull', `${c.repo.replace(/\/$/, '')}/${c.chart}`, '--version', c.version, '--destination', dest]
    : ['pull', c.chart, '--repo', c.repo, '--version', c.version, '--destination', dest];
  const r = spawnSync(helm, args, { encoding: 'utf8', timeout: 120_000 });
  const tgz = readdirSync(dest).find((f) => f.endsWith('.tgz'));
  if (r.status !== 0 || !tgz)
    return { path: '', error: `chart not found: helm pull: ${firstLines(r.stderr || r.error?.message || '')}` };
  const path = join(dest, tgz);
  const digest = `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
  return { path, source: { pulled: { repo: c.repo, digest }, treeDigest: digest } };
}

/** One component's render, as the lock records it. */
export function lockComponent(
  helm: string,
  spec: ClusterSpec,
  c: ComponentSpec,
  o: LockOptions,
  clustersDir: string,
  work: string,
): LockEntry {
  const entry = {
    chart: c.chart,
    version: c.version,
    repo: c.repo,
    namespace: c.namespace,
    inputs: inputsDigest(spec, c, clustersDir),
  };
  const at = locateChart(helm, spec, c, o, work);
  if (at.error) return { ...entry, source: at.source, render: { ok: false, error: at.error, missing: !at.source } };
  const values = join(work, `${c.name}.values.yaml`);
  writeFileSync(values, renderInputs(spec, c, clustersDir).valuesContent);
  const r = spawnSync(
    helm,
    [
      'template',
      c.name,
      at.path,
      '--namespace',
      c.namespace,
      '--kube-version',
      kubeVersionOf(spec),
      '--include-crds',
      '--skip-tests',
      '-f',
      values,
    ],
    { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 300_000 },
  );
  if (r.status !== 0)
    return { ...entry, source: at.source, render: { ok: false, error: firstLines(r.stderr || String(r.error)) } };
  return { ...entry, source: at.source, render: { ok: true, objects: lockedObjects(r.stdout, c.namespace) } };
}

export function lockCluster(helm: string, file: string, opts: LockOptions = {}): { lock: ChartLock; failed: string[] } {
  const spec = loadClusterFile(file);
  const clustersDir = dirname(file);
  const lockFile = lockPathFor(file);
  const previous = readChartLock(lockFile);
  const work = mkdtempSync(join(tmpdir(), 'pedro-ops-charts-'));
  const helmVersion = execFileSync(helm, ['version', '--template', '{{.Version}}'], { encoding: 'utf8' }).trim();
  const components: Record<string, LockEntry> = {};
  const failed: string[] = [];
  try {
    for (const c of spec.components) {
      const keep = opts.only && !opts.only.includes(c.name) ? previous?.components[c.name] : undefined;
      const e = keep ?? lockComponent(helm, spec, c, opts, clustersDir, work);
      components[c.name] = e;
      if (!e.render.ok) failed.push(c.name);
      if (!keep)
        console.log(
          e.render.ok
            ? `${c.name}: ${c.chart} ${c.version}: ${e.render.objects.length} objects (${e.render.objects.filter((o) => o.hook).length} hooks)`
            : `${c.name}: ${c.chart} ${c.version}: FAILED: ${e.render.error}`,
        );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const lock: ChartLock = {
    lockVersion: LOCK_VERSION,
    cluster: spec.name,
    generatedBy: 'npm run charts:lock (scripts/charts-lock.ts)',
    helm: helmVersion,
    kubeVersion: kubeVersionOf(spec),
    components,
  };
  writeFileSync(lockFile, `${JSON.stringify(lock, null, 1)}\n`);
  return { lock, failed };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const chartsDir = argValue(args, '--charts-dir') ?? process.env.PEDRO_OPS_CHARTS_DIR;
  const only = argValue(args, '--only')?.split(',');
  const offline = args.includes('--offline');
  if (offline) args.splice(args.indexOf('--offline'), 1);
  const files = args.length ? args : clusterFiles(DEFAULT_CLUSTERS_DIR);
  const helm = helmPath();
  let bad = 0;
  for (const f of files) {
    const { failed } = lockCluster(helm, f, { chartsDir: chartsDir && resolve(chartsDir), only, offline });
    console.log(`${lockPathFor(f)}: written${failed.length ? `; ${failed.length} failed: ${failed.join(', ')}` : ''}`);
    bad += failed.length;
  }
  process.exit(bad ? 1 : 0);
}
