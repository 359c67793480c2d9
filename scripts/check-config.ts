// `npm run config:check [--onepassword] [file...]`: validates cluster definitions (default:
// config/clusters/*.yaml). Problems print as "file: path.to.field: reason", one per line; exit 2 on
// any, without a stack trace. Entries whose 1Password source is pending (secrets.entries[].pendingSource)
// are listed with what to create. With --onepassword it also asks 1Password (the cluster's service
// account, or its lab double) whether every referenced item exists, and names every missing item of
// every entry, before anything is ever written; no secret value is read (one items.list per vault).
// Every cluster must match its chart lock (`<name>.charts-lock.json` beside it, made by `npm run
// charts:lock`): a component whose version, values or namespace changed since its render, whose
// render failed, or whose `workloads` names an object its chart does not render is refused by name.
import { dirname } from 'node:path';
import { ConfigError, clusterFiles, loadClusterFile } from '../config/loader.js';
import { chartLockProblems, lockPathFor, pendingCharts, readChartLock } from '../activities/components/chart-lock.js';
import type { ClusterSpec } from '../config/schema.js';
import { onePasswordForCluster } from '../activities/onepassword/client.js';
import { findMissingItems } from '../activities/onepassword/read.js';

const args = process.argv.slice(2);
const live = args.includes('--onepassword');
const files = args.filter((a) => a !== '--onepassword');

async function checkOnePassword(where: string, spec: ClusterSpec): Promise<string[]> {
  const entries = spec.secrets.entries.map((e) => ({ id: e.id, refs: Object.values(e.fields) }));
  const res = await findMissingItems(await onePasswordForCluster(spec), entries);
  const problems: string[] = [];
  for (const m of res.entries) {
    const i = spec.secrets.entries.findIndex((e) => e.id === m.id);
    const pending = spec.secrets.entries[i].pendingSource;
    for (const x of m.missing) {
      const line = `${where}: secrets.entries[${i}] (${m.id}): ${x.ref}: ${x.reason}`;
      if (pending) console.log(`${line} (pending source: ${pending})`);
      else problems.push(`${line}; create it, or mark the entry pendingSource`);
    }
  }
  return problems;
}

try {
  const paths = files.length > 0 ? files : clusterFiles();
  const specs: [string, ClusterSpec][] = paths.map((f) => [f, loadClusterFile(f)]);
  const problems: string[] = [];
  for (const [where, spec] of specs) {
    const lockFile = lockPathFor(where);
    const lock = readChartLock(lockFile);
    const lockProblems = chartLockProblems(spec, lock, lockFile, dirname(where));
    problems.push(...lockProblems.map((p) => `${where}: ${p}`));
    console.log(`${where}: ${lockProblems.length ? 'schema ok, chart lock NOT ok' : 'ok'} (${spec.name})`);
    for (const line of pendingCharts(spec, lock)) console.log(`${where}: ${line}`);
    for (const e of spec.secrets.entries.filter((x) => x.pendingSource))
      console.log(`${where}: ${e.id}: pending source, not rotated until created: ${e.pendingSource}`);
    if (live) problems.push(...(await checkOnePassword(where, spec)));
  }
  if (problems.length) {
    process.stderr.write(`${problems.join('\n')}\n`);
    process.exit(2);
  }
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
