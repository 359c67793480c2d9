// Docker cannot run here, so the production stack is checked statically: docker-compose.yml, the
// Dockerfile, .dockerignore and .env.example against each other, against the code (entry points,
// search attributes, imports) and against README. Every check returns a list of problems so a
// failure names each offending service, line or variable at once.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../worker/settings.js';
import { SEARCH_ATTRIBUTE_TYPES } from '../../workflows/search-attributes.js';
import { SHUTDOWN_FORCE_TIME, SHUTDOWN_GRACE_TIME, STOP_GRACE_PERIOD_SECONDS } from '../../worker/shutdown.js';

const read = (f: string) => readFileSync(join(REPO_ROOT, f), 'utf8');
type Service = Record<string, any>;

/** `$$` is compose's escape for a literal `$` (shell variables in scripts), not a reference. */
export function composeVariables(text: string): Map<string, { required: boolean; fallback?: string }> {
  const vars = new Map<string, { required: boolean; fallback?: string }>();
  const re = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g;
  // Compose does not interpolate comments.
  const content = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');
  for (const m of content.matchAll(re)) {
    const name = m[1] ?? m[4];
    if (!name) continue;
    const required = Boolean(m[2]?.includes('?')) || Boolean(vars.get(name)?.required);
    const fallback = m[2]?.includes('-') ? m[3] : vars.get(name)?.fallback;
    vars.set(name, { required, fallback });
  }
  return vars;
}

/** Replaces `${VAR:-default}` by its default: what the file means when .env leaves VAR unset. */
const withDefaults = (s: string) => s.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, '$1');

/** A digest, or a tag with at least major.minor: no `latest`, no bare `16` or `16-alpine`. */
export function isPinnedImage(ref: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(ref)) return true;
  const tag = ref.slice(ref.lastIndexOf('/') + 1).split(':')[1];
  return tag !== undefined && !/latest/i.test(tag) && /^v?\d+\.\d+/.test(tag);
}

export function checkCompose(doc: { services?: Record<string, Service> }): string[] {
  const problems: string[] = [];
  const services = doc.services ?? {};
  if (Object.keys(services).length === 0) problems.push('no services');
  const dependants = (name: string) =>
    Object.entries(services).flatMap(([other, s]) => {
      const dep = (s.depends_on ?? {})[name];
      return dep ? [{ other, condition: dep.condition as string | undefined }] : [];
    });
  for (const [name, s] of Object.entries(services)) {
    if (!s.build) {
      if (typeof s.image !== 'string') problems.push(`${name}: neither image nor build`);
      else if (s.image.includes('$')) problems.push(`${name}: image "${s.image}" comes from a variable`);
      else if (!isPinnedImage(s.image))
        problems.push(`${name}: image "${s.image}" is not pinned to a version or digest`);
    }
    if (!s.restart) problems.push(`${name}: no restart policy`);
    const hc = s.healthcheck;
    const hasHealthcheck =
      Boolean(hc) &&
      !hc.disable &&
      (Array.isArray(hc.test)
        ? hc.test.length > 0 && hc.test[0] !== 'NONE'
        : typeof hc.test === 'string' && hc.test !== '');
    if (!hasHealthcheck) {
      // A one-shot job has nothing to probe: it is "healthy" by exiting 0, which is what every
      // dependant must wait for.
      const deps = dependants(name);
      const job =
        /^(no|on-failure(:\d+)?)$/.test(String(s.restart)) &&
        deps.length > 0 &&
        deps.every((d) => d.condition === 'service_completed_successfully');
      if (!job)
        problems.push(
          `${name}: no healthcheck (and not a one-shot job that dependants wait on with service_completed_successfully)`,
        );
    }
    for (const p of s.ports ?? []) {
      const spec = withDefaults(typeof p === 'string' ? p : `${p.host_ip ?? '0.0.0.0'}:${p.published}:${p.target}`);
      if (!/^(127\.\d+\.\d+\.\d+|\[::1\]):\d+:\d+/.test(spec))
        problems.push(`${name}: port "${spec}" is not bound to loopback by default`);
    }
  }
  return problems;
}

/** Variable names inside inline code spans of README's env table and its "Run in production" section. */
export function documentedNames(readme: string): Set<string> {
  const text = readme.replace(/^```[\s\S]*?^```/gm, '');
  const section = (title: string) => {
    const start = text.indexOf(`\n## ${title}`);
    if (start < 0) return '';
    const end = text.indexOf('\n## ', start + 4);
    return text.slice(start, end < 0 ? undefined : end);
  };
  const envTable = section('Configuration')
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .join('\n');
  const names = new Set<string>();
  for (const span of `${envTable}\n${section('Run in production')}`.matchAll(/`([^`\n]+)`/g)) {
    for (const id of span[1].matchAll(/\b[A-Z][A-Z0-9_]{2,}\b/g)) names.add(id[0]);
  }
  return names;
}

export function envExampleKeys(text: string): string[] {
  return text.split('\n').flatMap((l) => /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(l.trim())?.[1] ?? []);
}

export function checkDockerfile(text: string): string[] {
  const problems: string[] = [];
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: string[] = [];
  const froms = lines.filter((l) => /^FROM\s/i.test(l));
  if (froms.length < 2) problems.push('not multi-stage (fewer than two FROM lines)');
  for (const from of froms) {
    const [, image, stage] = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i.exec(from) ?? [];
    if (!stages.includes(image) && !isPinnedImage(image ?? ''))
      problems.push(`FROM ${image} is not pinned to a version or digest`);
    if (stage) stages.push(stage);
  }
  let lastFrom = 0;
  lines.forEach((l, i) => /^FROM\s/i.test(l) && (lastFrom = i));
  const users = lines.slice(lastFrom).filter((l) => /^USER\s/i.test(l));
  const user = users.at(-1)?.split(/\s+/)[1];
  if (!user) problems.push('final stage sets no USER (runs as root)');
  else if (/^(root|0)(:|$)/.test(user)) problems.push(`final USER is ${user}`);
  const hc = lines.find((l) => /^HEALTHCHECK\s/i.test(l));
  if (!hc || /^HEALTHCHECK\s+NONE/i.test(hc)) problems.push('no HEALTHCHECK');
  if (!lines.some((l) => /^RUN\s.*npm ci\b.*--omit=dev/.test(l)))
    problems.push('dependencies not installed with npm ci --omit=dev');
  return problems;
}

/**
 * Follows relative imports (static, and dynamic with a literal path) from the entry points; returns
 * those that leave the image. Dynamic imports of test/lab/ are allowed: they run only for a cluster
 * whose config points at the lab (e.g. `onepassword.labUrl`), never in production.
 */
export function importEscapes(entries: string[], inImage: (rel: string) => boolean): string[] {
  const escapes: string[] = [];
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!existsSync(join(REPO_ROOT, file))) {
      escapes.push(`${file} does not exist`);
      continue;
    }
    for (const m of read(file).matchAll(/(from\s+|import\s+|import\(\s*)'(\.{1,2}\/[^']+)'/g)) {
      let target = join(dirname(file), m[2]);
      if (/\.js$/.test(target) && existsSync(join(REPO_ROOT, target.replace(/\.js$/, '.ts'))))
        target = target.replace(/\.js$/, '.ts');
      if (!inImage(target)) {
        if (!(m[1].startsWith('import(') && target.startsWith('test/lab/'))) escapes.push(`${file} imports ${m[2]}`);
      } else if (/\.(ts|mjs|js)$/.test(target)) queue.push(target);
    }
  }
  return escapes;
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;
const dockerfile = read('Dockerfile');
const envExample = read('.env.example');

describe('docker-compose.yml', () => {
  it('every service has a pinned image or a build, a healthcheck (jobs excepted), a restart policy, loopback ports', () => {
    expect(checkCompose(compose)).toEqual([]);
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['postgresql', 'temporal', 'temporal-ui', 'worker', 'api']),
    );
  });

  it('documents every variable it references and every key of .env.example in README', () => {
    const documented = documentedNames(read('README.md'));
    const referenced = [
      ...new Set([...composeVariables(read('docker-compose.yml')).keys(), ...envExampleKeys(envExample)]),
    ];
    expect(referenced.length).toBeGreaterThan(10);
    expect(
      referenced.filter((v) => !documented.has(v)).sort(),
      'undocumented in README (env table or "Run in production")',
    ).toEqual([]);
  });

  it('every required variable (${VAR:?…}) has a line in .env.example, and no value there is filled in for a secret', () => {
    const keys = envExampleKeys(envExample);
    const required = [...composeVariables(read('docker-compose.yml'))].filter(([, v]) => v.required).map(([k]) => k);
    expect(required).toEqual(
      expect.arrayContaining([
        'TEMPORAL_DB_PASSWORD',
        'PEDRO_OPS_CODEC_KEYS',
        'PEDRO_OPS_API_TOKENS',
        'OP_SERVICE_ACCOUNT_TOKEN',
      ]),
    );
    expect(required.filter((k) => !keys.includes(k))).toEqual([]);
    const filled = envExample.split('\n').filter((l) => /^(\w*(PASSWORD|TOKENS?|KEYS?)\w*)=\S/.test(l));
    expect(filled, 'secrets must be empty placeholders in .env.example').toEqual([]);
  });

  it('gives the worker time to drain on SIGTERM: stop signal and grace period match worker/shutdown.ts', () => {
    const secs = (d: string) => Number(/^(\d+)s$/.exec(d)?.[1] ?? NaN);
    const w = services.worker;
    expect(w.init, 'init passes SIGTERM on to node').toBe(true);
    expect(w.stop_signal ?? 'SIGTERM').toBe('SIGTERM');
    expect(secs(w.stop_grace_period)).toBe(STOP_GRACE_PERIOD_SECONDS);
    // Grace (activities finish) < force (the worker exits anyway) < what Docker waits before SIGKILL.
    expect(secs(SHUTDOWN_GRACE_TIME)).toBeLessThan(secs(SHUTDOWN_FORCE_TIME));
    expect(secs(SHUTDOWN_FORCE_TIME) + 5).toBeLessThanOrEqual(STOP_GRACE_PERIOD_SECONDS);
    const stop = /^STOPSIGNAL\s+(\S+)/m.exec(dockerfile)?.[1];
    expect(stop ?? 'SIGTERM').toBe('SIGTERM');
    // The systemd unit README gives for running without Docker says the same.
    const unit = read('README.md').split('pedro-ops-worker@.service')[1]?.split('[Install]')[0] ?? '';
    expect(/^KillSignal=(\S+)/m.exec(unit)?.[1] ?? 'SIGTERM').toBe('SIGTERM');
    expect(Number(/^TimeoutStopSec=(\d+)/m.exec(unit)?.[1])).toBe(STOP_GRACE_PERIOD_SECONDS);
  });

  it('runs the worker and the API from the built image with entry points that exist', () => {
    for (const [name, entry] of [
      ['worker', 'worker/main.ts'],
      ['api', 'api/main.ts'],
    ] as const) {
      expect(services[name].build, name).toBeDefined();
      expect(services[name].command).toEqual(['node', '--import', 'tsx', entry]);
      expect(existsSync(join(REPO_ROOT, entry))).toBe(true);
    }
  });

  it('wires worker metrics, the codec endpoint and its allowed origin consistently', () => {
    const w = services.worker.environment;
    const a = services.api.environment;
    const port = String(w.PEDRO_OPS_WORKER_METRICS_ADDRESS).split(':')[1];
    expect(a.PEDRO_OPS_WORKER_METRICS_URL).toBe(`http://worker:${port}/metrics`);
    expect(services.worker.healthcheck.test.join(' ')).toContain(`127.0.0.1:${port}/metrics`);
    expect(withDefaults(services['temporal-ui'].environment.TEMPORAL_CODEC_ENDPOINT)).toBe(
      'http://127.0.0.1:3000/codec',
    );
    const uiHostPort = withDefaults(services['temporal-ui'].ports[0]).split(':').slice(0, 2).join(':');
    expect(withDefaults(a.PEDRO_OPS_CODEC_ORIGINS).split(',')).toContain(`http://${uiHostPort}`);
    expect(withDefaults(services.api.ports[0])).toBe('127.0.0.1:3000:3000');
    // The API and the worker must share codec keys, or the API cannot read what the worker wrote.
    expect(a.PEDRO_OPS_CODEC_KEYS).toBe(w.PEDRO_OPS_CODEC_KEYS);
    // Least privilege: the 1Password token reaches the worker only.
    expect(a.OP_SERVICE_ACCOUNT_TOKEN).toBeUndefined();
  });

  it('mounts the SSH key and the cluster definitions read-only, data on named volumes', () => {
    const mounts = services.worker.volumes as (string | Service)[];
    const binds = mounts.filter((m): m is Service => typeof m === 'object' && m.type === 'bind');
    expect(binds.map((b) => b.target).sort()).toEqual([
      '/etc/pedro-ops/clusters',
      '/home/pedro/.ssh/pedro-ops_ed25519',
    ]);
    for (const b of binds) expect(b.read_only && b.bind?.create_host_path === false, b.target).toBe(true);
    expect(services.worker.environment.PEDRO_OPS_CLUSTERS_DIR).toBe('/etc/pedro-ops/clusters');
    // The target is what config/clusters/pedro-ops.yaml's ssh.privateKey resolves to for uid 10001.
    expect(read('config/clusters/pedro-ops.yaml')).toMatch(/privateKey: ~\/\.ssh\/pedro-ops_ed25519/);
    // Read-only root: /tmp is the only scratch space, and swc loads its native binding from there.
    expect(services.worker.read_only).toBe(true);
    expect(services.worker.tmpfs).toEqual([expect.stringMatching(/^\/tmp:(.*,)?exec(,|$)/)]);
    expect(dockerfile).toMatch(/--home-dir \/home\/pedro/);
    const named = Object.keys(compose.volumes ?? {});
    expect(mounts).toContain('worker-data:/var/lib/pedro-ops');
    expect(services.postgresql.volumes).toContain('temporal-db:/var/lib/postgresql/data');
    expect(named).toEqual(expect.arrayContaining(['worker-data', 'temporal-db']));
  });

  it('registers exactly the search attributes the workflows upsert, with their types', () => {
    const pairs = (list: string) =>
      Object.fromEntries(
        list
          .trim()
          .split(/\s+/)
          .map((p) => p.split('=')),
      );
    expect(pairs(String(services['temporal-setup'].environment.SEARCH_ATTRIBUTES))).toEqual(SEARCH_ATTRIBUTE_TYPES);
    // The script's own default (used by the systemd setup and test/production) is the same list.
    const setup = read('scripts/temporal-setup.sh');
    const fallback = /: "\$\{SEARCH_ATTRIBUTES:=([^}]*)\}"/.exec(setup)?.[1];
    expect(pairs(fallback ?? '')).toEqual(SEARCH_ATTRIBUTE_TYPES);
    expect(setup).toContain('search-attribute create');
  });

  it('runs the schema and setup jobs from scripts/, the files the systemd setup and test/production run', () => {
    for (const [name, script] of [
      ['temporal-schema', 'scripts/temporal-schema.sh'],
      ['temporal-setup', 'scripts/temporal-setup.sh'],
    ] as const) {
      const s = services[name];
      const mount = (s.volumes ?? []).find((v: Service) => typeof v === 'object' && v.source === './scripts');
      expect(mount, `${name} mounts ./scripts`).toMatchObject({ type: 'bind', read_only: true });
      expect(mount.bind?.create_host_path).toBe(false);
      // No inline shell: the job is exactly the script, run by the image's POSIX sh.
      expect(s.entrypoint, name).toEqual(['/bin/sh', `${mount.target}/${script.slice('scripts/'.length)}`]);
      expect(s.command, name).toBeUndefined();
      expect(existsSync(join(REPO_ROOT, script)), script).toBe(true);
      expect(read(script).split('\n')[0], `${script} is POSIX sh (admin-tools has no bash)`).toBe('#!/bin/sh');
    }
    // Every variable a script reads from the job's environment is set there (or has a default in the script).
    const schemaEnv = services['temporal-schema'].environment;
    expect(Object.keys(schemaEnv)).toEqual(
      expect.arrayContaining(['SQL_HOST', 'SQL_PORT', 'SQL_USER', 'SQL_PASSWORD', 'TEMPORAL_SCHEMA_DIR']),
    );
    expect(services['temporal-setup'].environment.TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('documents the same scripts in README for compose and for systemd', () => {
    const readme = read('README.md');
    for (const script of ['scripts/temporal-schema.sh', 'scripts/temporal-setup.sh', 'scripts/temporal-server.sh'])
      expect(readme, script).toContain(script);
    expect(readme).toContain('## Run in production without Docker');
  });
});

describe('Dockerfile', () => {
  it('is multi-stage with pinned bases, a non-root user, a HEALTHCHECK and production deps only', () => {
    expect(checkDockerfile(dockerfile)).toEqual([]);
    expect(dockerfile).toMatch(/^USER 10001(:10001)?$/m);
    expect(dockerfile).toMatch(/NODE_ENV=production/);
    expect(dockerfile).toMatch(/PEDRO_OPS_ENV=production/);
  });

  it('copies every file the production entry points import, and .dockerignore excludes none of them', () => {
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \.\/(\S*)$/gm)].flatMap((m) => m[1].split(/\s+/));
    expect(copied).toEqual(
      expect.arrayContaining([
        'package.json',
        'package-lock.json',
        'worker',
        'api',
        'workflows',
        'activities',
        'config',
      ]),
    );
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(copied.filter((d) => ignored.includes(d))).toEqual([]);
    expect(ignored).toEqual(
      expect.arrayContaining(['node_modules', '.data', '.git', 'test', 'bench/results', '*.env', '.env']),
    );
    const inImage = (rel: string) => copied.includes(rel.split('/')[0]) && !ignored.includes(rel);
    const bin = Object.values<string>(JSON.parse(read('package.json')).bin ?? {});
    expect(
      importEscapes(
        [
          'worker/main.ts',
          'api/main.ts',
          'workflows/index.ts',
          'scripts/check-config.ts',
          'scripts/ensure-schedules.ts',
          ...bin,
        ],
        inImage,
      ),
      'imports the image cannot satisfy',
    ).toEqual([]);
  });
});

describe('the checks themselves', () => {
  it('reject unpinned images, missing healthchecks and restart policies, and public ports', () => {
    const bad = parse(`
services:
  db: { image: "postgres:16", restart: always, healthcheck: { test: ["CMD", "true"] } }
  cache: { image: "redis:latest", restart: always, healthcheck: { test: ["CMD", "true"] } }
  bare: { image: "busybox", restart: always, healthcheck: { disable: true } }
  web: { image: "nginx:1.27.3", ports: ["8080:80", "\${WEB_BIND:-127.0.0.1:81}:81"], healthcheck: { test: ["NONE"] } }
  job: { image: "alpine:3.20.3", restart: "on-failure:3" }
  app: { build: ., restart: always, depends_on: { job: { condition: service_started } }, healthcheck: { test: ["CMD", "true"] } }
`);
    expect(checkCompose(bad)).toEqual([
      'db: image "postgres:16" is not pinned to a version or digest',
      'cache: image "redis:latest" is not pinned to a version or digest',
      'bare: image "busybox" is not pinned to a version or digest',
      'bare: no healthcheck (and not a one-shot job that dependants wait on with service_completed_successfully)',
      'web: no restart policy',
      'web: no healthcheck (and not a one-shot job that dependants wait on with service_completed_successfully)',
      'web: port "8080:80" is not bound to loopback by default',
      'job: no healthcheck (and not a one-shot job that dependants wait on with service_completed_successfully)',
    ]);
    expect(isPinnedImage('temporalio/admin-tools:1.29.1-tctl-1.18.4-cli-1.5.0')).toBe(true);
    expect(isPinnedImage(`postgres@sha256:${'a'.repeat(64)}`)).toBe(true);
    expect(isPinnedImage('localhost:5000/app')).toBe(false);
  });

  it('find every reference form, skip $$ escapes, and report undocumented names', () => {
    const vars = composeVariables(
      '  # ${IN_A_COMMENT}\na: ${ALPHA}\nb: ${BRAVO:-x}\nc: ${CHARLIE:?set it}\nd: $DELTA\ne: $${NOT_A_VAR} $$NOPE\nf: ${FOXTROT-y}\n',
    );
    expect([...vars.keys()]).toEqual(['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA', 'FOXTROT']);
    expect(vars.get('CHARLIE')).toEqual({ required: true, fallback: undefined });
    expect(vars.get('BRAVO')?.fallback).toBe('x');
    const readme = [
      '# x',
      '',
      '## Configuration',
      '',
      '| `ALPHA` | a |',
      'not `BRAVO` a table line',
      '',
      '## Run in production',
      '',
      '`CHARLIE=…` and `x, DELTA`',
      '```sh',
      'FOXTROT=1 `FOXTROT`',
      '```',
      '## Tests',
      '`FOXTROT`',
      '',
    ].join('\n');
    expect([...vars.keys()].filter((v) => !documentedNames(readme).has(v))).toEqual(['BRAVO', 'FOXTROT']);
    expect(envExampleKeys('# X=1\nA=\n  B=2\nnot a line\n')).toEqual(['A', 'B']);
  });

  it('report imports the image cannot satisfy, following the graph', () => {
    const onlyWorker = (rel: string) => rel.startsWith('worker/');
    const escapes = importEscapes(['worker/main.ts', 'no/such/entry.ts'], onlyWorker);
    expect(escapes).toContain('no/such/entry.ts does not exist');
    expect(escapes).toContain('worker/main.ts imports ../config/loader.js');
    expect(importEscapes(['worker/main.ts'], () => true)).toEqual([]);
    // worker/main.ts reaches activities/ only transitively (through worker/run.ts and friends).
    const noActivities = importEscapes(['worker/main.ts'], (rel) => !rel.startsWith('activities/'));
    expect(noActivities.length).toBeGreaterThan(0);
    expect(noActivities.every((e) => /^worker\/(?!main\.ts).* imports .*activities\//.test(e))).toBe(true);
  });

  it('reject a single-stage, root, unpinned Dockerfile without a healthcheck', () => {
    expect(checkDockerfile('FROM node:20\nRUN npm install\nCMD ["node", "x.js"]\n')).toEqual([
      'not multi-stage (fewer than two FROM lines)',
      'FROM node:20 is not pinned to a version or digest',
      'final stage sets no USER (runs as root)',
      'no HEALTHCHECK',
      'dependencies not installed with npm ci --omit=dev',
    ]);
    const rootAgain =
      'FROM node:20.19.5-slim AS a\nRUN npm ci --omit=dev\nFROM a\nUSER app\nUSER 0:0\nHEALTHCHECK CMD true\n';
    expect(checkDockerfile(rootAgain)).toEqual(['final USER is 0:0']);
  });
});
