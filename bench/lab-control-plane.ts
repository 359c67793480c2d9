// npm run bench -- lab-control-plane: the lab with the real Kubernetes control plane. Starts a plain
// lab and a built lab a few times each (warm toolchain cache) and reports start times, the control
// plane's resident memory, and the last `npm test` wall time against the last run with the
// hand-written API double (PEDRO_OPS_NPM_TEST_MS / PEDRO_OPS_DOUBLE_NPM_TEST_MS, measured by hand:
// the suite is not run from here). Prints ratios, never passes or fails on time.
import { startLab } from '../test/lab/index.js';
import { percentile, round, runBench, writeResult, type SummaryRow } from './_shared.js';

const RUNS = Number(process.env.BENCH_LAB_RUNS ?? 3);
// `npm test` (vitest wall) on the last commit with the API double, from the first session's note.
const DOUBLE_NPM_TEST_MS = Number(process.env.PEDRO_OPS_DOUBLE_NPM_TEST_MS ?? 165_000);

runBench('lab-control-plane', async (cleanup) => {
  const plain: number[] = [];
  const controlPlane: number[] = [];
  const built: number[] = [];
  let rss: Record<string, number> = {};
  for (let i = 0; i < RUNS; i++) {
    const lab = await startLab({ log: () => {} });
    cleanup(() => lab.stop());
    plain.push(lab.startMs);
    controlPlane.push(lab.pieces.kube.startMs);
    rss = lab.pieces.kube.controlPlane.rss();
    await lab.stop();
  }
  for (let i = 0; i < RUNS; i++) {
    const lab = await startLab({ built: true, log: () => {} });
    cleanup(() => lab.stop());
    built.push(lab.startMs);
    await new Promise((r) => setTimeout(r, 2000)); // settled: controllers idle
    rss = lab.pieces.kube.controlPlane.rss();
    await lab.stop();
  }
  const totalRssMiB = round(Object.values(rss).reduce((a, b) => a + b, 0) / 1024, 1);
  const npmTestMs = process.env.PEDRO_OPS_NPM_TEST_MS ? Number(process.env.PEDRO_OPS_NPM_TEST_MS) : undefined;
  const summary: SummaryRow[] = [
    {
      metric: 'plain lab start (median)',
      value: percentile(plain, 50),
      unit: 'ms',
      goal: '<= 10000',
      note: `runs ${plain.join(', ')}`,
    },
    {
      metric: 'control plane to ready (median)',
      value: percentile(controlPlane, 50),
      unit: 'ms',
      note: `runs ${controlPlane.join(', ')}`,
    },
    { metric: 'built lab start (median)', value: percentile(built, 50), unit: 'ms', note: `runs ${built.join(', ')}` },
    {
      metric: 'control plane RSS (built, settled)',
      value: totalRssMiB,
      unit: 'MiB',
      note: Object.entries(rss)
        .map(([k, v]) => `${k} ${round(v / 1024, 1)}`)
        .join(', '),
    },
  ];
  if (npmTestMs !== undefined)
    summary.push({
      metric: 'npm test wall time vs the API double',
      value: npmTestMs,
      unit: 'ms',
      baseline: { label: 'last run with the double', value: DOUBLE_NPM_TEST_MS },
      ratio: round(npmTestMs / DOUBLE_NPM_TEST_MS, 2),
      goal: '<= 1.5',
    });
  writeResult('lab-control-plane', { runs: RUNS, plain, controlPlane, built, rssKiB: rss, npmTestMs, summary });
  for (const r of summary)
    console.log(
      `${r.metric}: ${r.value} ${r.unit ?? ''}${r.ratio ? ` (x${r.ratio})` : ''}${r.note ? `  ${r.note}` : ''}`,
    );
});
