import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // A native crash then fails one test file instead of killing the runner.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 600_000,
  },
});
