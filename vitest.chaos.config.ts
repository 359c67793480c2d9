import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: worker SIGKILLs and a dev-server restart. The suite starts its own Temporal
// dev server (SQLite file, so a restart keeps every run), one file at a time, long timeouts.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    // Natural crash detection (the default) waits out the real timeouts: 3-10 s per kill.
    testTimeout: 1_200_000,
    hookTimeout: 180_000,
  },
});
