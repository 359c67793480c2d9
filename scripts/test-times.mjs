#!/usr/bin/env node
// Where a vitest run's time went, from its JSON report (`vitest run --reporter=json
// --outputFile.json=FILE`, the Jest-shaped report: testResults[].startTime/endTime per file,
// assertionResults[].duration per test). Plain node, no TypeScript: .ci/run calls it even when
// the run failed before anything else could load.
//
//   node scripts/test-times.mjs REPORT.json [N]          the N slowest files (default 10)
//   node scripts/test-times.mjs REPORT.json N --tests     ... and the N slowest tests
//   node scripts/test-times.mjs REPORT.json N --profile OUT.json
//       also writes the whole profile (every file and test, slowest first) to OUT.json
import { readFileSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';

const [file, nArg, ...rest] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/test-times.mjs REPORT.json [N] [--tests] [--profile OUT.json]');
  process.exit(2);
}
const n = Number(nArg ?? 10) || 10;
const report = JSON.parse(readFileSync(file, 'utf8'));
const cwd = process.cwd();
const files = (report.testResults ?? [])
  .map((f) => ({
    // Relative to the repo root whichever clone ran it: the test/ path is the file's name.
    file: relative(cwd, f.name).replace(/^(?:.*\/)?(?=test\/)/, ''),
    seconds: Math.round((f.endTime - f.startTime) / 100) / 10,
    status: f.status,
    tests: (f.assertionResults ?? [])
      .map((t) => ({
        name: [...(t.ancestorTitles ?? []), t.title].join(' > '),
        seconds: Math.round((t.duration ?? 0) / 100) / 10,
        status: t.status,
      }))
      .sort((a, b) => b.seconds - a.seconds),
  }))
  .sort((a, b) => b.seconds - a.seconds);
const total = files.reduce((s, f) => s + f.seconds, 0);
const wall = Math.round(
  (Math.max(...(report.testResults ?? []).map((f) => f.endTime)) - (report.startTime ?? 0)) / 1000,
);
const counts = `${report.numPassedTests ?? '?'} passed, ${report.numFailedTests ?? '?'} failed, ${report.numPendingTests ?? 0} skipped`;
console.log(`${files.length} files, ${counts}; ${Math.round(total)} s of file time in ${wall} s of wall time`);
const pad = (s, w) => String(s).padStart(w);
for (const f of files.slice(0, n))
  console.log(`${pad(f.seconds.toFixed(1), 7)} s  ${f.status === 'passed' ? '' : `[${f.status}] `}${f.file}`);
if (rest.includes('--tests')) {
  console.log(`the ${n} slowest tests:`);
  const tests = files
    .flatMap((f) => f.tests.map((t) => ({ ...t, file: f.file })))
    .sort((a, b) => b.seconds - a.seconds);
  for (const t of tests.slice(0, n)) console.log(`${pad(t.seconds.toFixed(1), 7)} s  ${t.file}: ${t.name}`);
}
const at = rest.indexOf('--profile');
if (at >= 0 && rest[at + 1]) {
  writeFileSync(
    rest[at + 1],
    `${JSON.stringify({ wallSeconds: wall, fileSeconds: Math.round(total), counts, files }, null, 2)}\n`,
  );
  console.log(`profile written to ${rest[at + 1]}`);
}
