import { defineConfig } from 'vitest/config';

// `npm run test:production` (issue 21): the production topology without Docker. PostgreSQL from
// Debian's postgresql-15, the real Temporal server (scripts/temporal-server.sh builds and caches
// it), the schema and setup scripts docker-compose.yml runs, two workers and the API from their
// production entry points. Each file starts its own stack; one file at a time.
export default defineConfig({
  test: {
    include: ['test/production/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 600_000,
    // beforeAll may build the Temporal server on a cold machine (minutes).
    hookTimeout: 1_800_000,
  },
});
