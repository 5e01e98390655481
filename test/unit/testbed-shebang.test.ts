import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { shippedNodeEnv, shippedNodeFlags } from '../../src/testbed/scene';

// A daemon started with extra Node flags (the bench's profiled restart) runs as
// `node <flags> BIN`, past the shebang: it must still get what the shebang sets.
describe("BIN's shebang as the testbed reads it", () => {
  const first = readFileSync(join(__dirname, '../../bin/flanneld-ts'), 'utf8').split('\n')[0] as string;

  it('gives every Node flag after `node`, and no environment assignment among them', () => {
    const flags = shippedNodeFlags();
    expect(flags.length).toBeGreaterThan(0);
    for (const f of flags) expect(first).toContain(f);
    expect(flags.every((f) => f.startsWith('--'))).toBe(true);
  });

  it('gives the environment assignments before `node` (MALLOC_ARENA_MAX)', () => {
    const env = shippedNodeEnv();
    expect(Object.keys(env).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(env)) expect(first).toContain(`${k}=${v} `);
    expect(env.MALLOC_ARENA_MAX).toMatch(/^\d+$/);
  });
});
