// npm run bench:rotation — 1Password calls per rotation of the full seed map (goal: one resolveAll per
// vault) and the time the 1Password -> OpenBAO hop takes per 100 entries, written and unchanged.
// Prints ratios and counts; never passes or fails on wall time. JSON goes to bench/results/.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { ClusterRegistry } from '../config/registry.js';
import type { ClusterSpec } from '../config/schema.js';
import { defaultDeps } from '../activities/deps.js';
import { kubeconfigPathFor } from '../activities/kube/client.js';
import { syncOnePasswordToOpenBao } from '../activities/openbao/sync.js';
import { checkSecretDrift } from '../activities/openbao/drift.js';
import { startLab } from '../test/lab/index.js';
import { createLabOnePasswordClient } from '../test/lab/onepassword/index.js';

const quiet = { info() {}, warn() {}, error() {} };
const lab = await startLab({ built: true, log: () => undefined });
const dataDir = mkdtempSync(join(tmpdir(), 'pedro-ops-bench-'));
try {
  const spec: ClusterSpec = structuredClone(lab.spec);
  const seed = spec.secrets.entries.length;
  // 100 synthetic entries over the fixture's references, each its own OpenBAO path.
  const refs = [...new Set(spec.secrets.entries.flatMap((e) => Object.values(e.fields)))];
  for (let i = 0; i < 100; i++) {
    spec.secrets.entries.push({
      id: `bench-${i}`,
      openbaoPath: `bench/e${i}`,
      fields: { a: refs[i % refs.length], b: refs[(i * 7 + 3) % refs.length] },
      consumers: [],
    });
  }
  const clustersDir = join(dataDir, 'clusters');
  mkdirSync(clustersDir, { recursive: true });
  writeFileSync(join(clustersDir, `${spec.name}.yaml`), stringify(spec, { lineWidth: 0 }));
  const clusters = new ClusterRegistry(clustersDir);
  const loaded = clusters.get(spec.name)!;
  const kc = kubeconfigPathFor(loaded, dataDir);
  mkdirSync(dirname(kc), { recursive: true });
  copyFileSync(lab.kube.kubeconfigPath, kc);
  const deps = defaultDeps({ dataDir, log: quiet, clusters });
  const seedIds = loaded.secrets.entries.slice(0, seed).map((e) => e.id);
  const benchIds = loaded.secrets.entries.slice(seed).map((e) => e.id);

  // Full seed map after every value changed (the Done-when scenario), then unchanged.
  const op = createLabOnePasswordClient(lab.onepassword.url);
  const vault = (await op.vaults.list())[0];
  for (const o of await op.items.list(vault.id)) {
    const item = await op.items.get(vault.id, o.id);
    if (o.title === loaded.openbao.unsealItem) continue;
    item.fields = item.fields.map((f) => ({ ...f, value: `${f.value}-r` }));
    await op.items.put(item);
  }
  const measure = async (what: string, fn: () => Promise<unknown>) => {
    lab.resetCounters();
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    const c = lab.counters();
    return {
      what,
      ms: Math.round(ms),
      onepassword: c.onepassword,
      openbaoWrites: c.openbao.writes,
      openbaoReads: c.openbao.reads,
    };
  };
  const vaults = new Set(refs.map((r) => r.split('/')[2].toLowerCase())).size;
  const runs = [
    await measure('seed map, all changed (cold token)', () =>
      syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: seedIds, rotationId: 'bench-1' }),
    ),
    await measure('seed map, unchanged', () =>
      syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: seedIds, rotationId: 'bench-2' }),
    ),
    await measure('seed map drift check', () => checkSecretDrift(deps, { cluster: 'lab', entryIds: seedIds })),
    await measure('100 entries, first write', () =>
      syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: benchIds, rotationId: 'bench-3' }),
    ),
    await measure('100 entries, unchanged', () =>
      syncOnePasswordToOpenBao(deps, { cluster: 'lab', entryIds: benchIds, rotationId: 'bench-4' }),
    ),
  ];
  const onepasswordCallsPerRun = (r: (typeof runs)[number]) => Object.values(r.onepassword).reduce((a, b) => a + b, 0);
  const result = {
    at: new Date().toISOString(),
    seedEntries: seed,
    seedReferences: new Set(loaded.secrets.entries.slice(0, seed).flatMap((e) => Object.values(e.fields))).size,
    vaults,
    resolveAllPerVault: runs[0].onepassword.resolveAll / vaults,
    onepasswordCallsFullMap: onepasswordCallsPerRun(runs[0]),
    onepasswordCallsFullMapUnchanged: onepasswordCallsPerRun(runs[1]),
    msPer100Written: runs[3].ms,
    msPer100Unchanged: runs[4].ms,
    runs,
  };
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  const out = join(import.meta.dirname, 'results', 'rotation.json');
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`seed map: ${result.seedEntries} entries, ${result.seedReferences} references in ${vaults} vault(s)`);
  for (const r of runs)
    console.log(
      `${r.what.padEnd(36)} ${String(r.ms).padStart(6)} ms  1Password calls ${JSON.stringify(r.onepassword)}  OpenBAO writes ${r.openbaoWrites}`,
    );
  console.log(
    `resolveAll per vault: ${result.resolveAllPerVault}; 1Password calls for the full map: ${result.onepasswordCallsFullMap} changed / ${result.onepasswordCallsFullMapUnchanged} unchanged`,
  );
  console.log(`-> ${out}`);
} finally {
  await lab.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
