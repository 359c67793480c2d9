// Longest test file first, from the last measured profile (bench/results/test-times.json, written by
// `node scripts/test-times.mjs REPORT.json N --profile …`), so the workers finish together instead
// of one running the 2-minute files alone at the end. vitest's own order needs its results cache,
// which a fresh clone (CI) does not have: it then runs the largest files first, and file size says
// little about time here (the chaos sample is small and takes 90 s).
// Files the profile does not know run first: they may be long, and a new test should fail early.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

interface Profile {
  files: { file: string; seconds: number }[];
}

const PROFILE = new URL('../bench/results/test-times.json', import.meta.url);

function measured(): Map<string, number> {
  try {
    const p = JSON.parse(readFileSync(PROFILE, 'utf8')) as Profile;
    return new Map(p.files.map((f) => [f.file, f.seconds]));
  } catch {
    return new Map(); // no profile: every file is unknown, and vitest's own order decides
  }
}

export default class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const seconds = measured();
    const root = this.ctx.config.root;
    const time = (f: TestSpecification) => seconds.get(relative(root, f.moduleId)) ?? Infinity;
    // A stable sort over vitest's order: ties (and unknown files) keep the order vitest chose.
    return base
      .map((f, i) => ({ f, i, t: time(f) }))
      .sort((a, b) => (a.t === b.t ? a.i - b.i : b.t - a.t))
      .map(({ f }) => f);
  }
}
