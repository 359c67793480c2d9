import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: worker SIGKILLs and a dev-server restart. The suite starts its own Temporal
// dev server (SQLite file, so a restart keeps every run), one file at a time, long timeouts.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    // CHAOS_NATURAL=1 waits out real activity timeouts (minutes per kill).
    testTimeout: process.env.CHAOS_NATURAL === '1' ? 3_600_000 : 300_000,
    hookTimeout: 180_000,
  },
});
