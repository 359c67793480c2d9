import { defineConfig } from 'vitest/config';
import LongestFirstSequencer from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/chaos/**', 'test/production/**', 'node_modules/**'],
    // Temporal workers use native code and worker threads: forks isolate them per file.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: true,
    // Three files at once on two cores: most of a file's time is spent waiting (controllers,
    // Temporal timers, namespace deletion). With two, vmstat showed the cores 29% idle on average
    // over the run in bench/results/test-times-2026-12-07-before.json (1280 s; three: 987 s).
    maxWorkers: 3,
    // Longest files first, from the last measured profile (test/sequencer.ts).
    sequence: { sequencer: LongestFirstSequencer },
  },
});
