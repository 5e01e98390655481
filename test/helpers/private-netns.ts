/**
 * Kernel-touching tests must run as root inside the private network namespace
 * that scripts/test.sh makes for the whole suite (it exports its name as
 * FLTS_SUITE_NETNS), never in the namespace of the machine they run on.
 */
import { statSync } from 'node:fs';

export function assertPrivateNetns(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('this test needs root: run the suite with scripts/test.sh (as root)');
  }
  const name = process.env.FLTS_SUITE_NETNS;
  if (!name) throw new Error('FLTS_SUITE_NETNS is not set: run kernel tests through scripts/test.sh, which runs them in a private namespace');
  const self = statSync('/proc/self/ns/net');
  const suite = statSync(`/var/run/netns/${name}`);
  if (self.dev !== suite.dev || self.ino !== suite.ino) {
    throw new Error(`refusing to touch this network namespace: it is not the suite namespace ${name} (run through scripts/test.sh)`);
  }
}
