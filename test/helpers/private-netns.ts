/**
 * Kernel-touching tests must run as root inside a private network namespace
 * (scripts/test.sh makes one for the whole suite), never in the host's own.
 */
import { readlinkSync } from 'node:fs';

export function assertPrivateNetns(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('this test needs root: run the suite with scripts/test.sh (as root)');
  }
  const self = readlinkSync('/proc/self/ns/net');
  const init = readlinkSync('/proc/1/ns/net');
  if (self === init) {
    throw new Error('refusing to touch the root network namespace: run the suite with scripts/test.sh, which runs it in a private namespace');
  }
}
