import { defineConfig } from 'vitest/config';

// Integration and e2e tests share kernel objects and one CPU pair: run files one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
