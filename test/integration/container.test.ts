/**
 * The container end to end (scripts/container-e2e.sh) inside the suite, so CI
 * runs it and it counts in "N passed, N failed": the image built from the
 * Dockerfile, etcd and three daemon containers on one Docker network, pods on
 * each, ping across nodes through flannel.1. The script's own header says what it
 * checks; this file only runs it where it can run.
 *
 * The suite runs in a private network namespace (scripts/test.sh); dockerd cannot
 * live there (its builds need the machine's uplink, and the namespace is deleted
 * after the run), so the script runs in the namespaces of scripts/test.sh's own
 * shell (FLTS_HOST_PID). It changes nothing there itself: everything it makes is
 * a container, a Docker network or a volume, and it removes them all.
 *
 * Cold (first run on a machine: docker.io and debootstrap installed, base image
 * and both images built) this takes a few minutes; warm, about 15 s.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runHostScript } from '../helpers/host-script';

const SCRIPT = resolve(__dirname, '..', '..', 'scripts', 'container-e2e.sh');
const TIMEOUT_MS = 25 * 60_000;

describe('the flanneld-ts image on a Docker network (scripts/container-e2e.sh)', () => {
  it('builds the image and carries pod traffic across three daemon containers', async () => {
    const text = await runHostScript(SCRIPT, TIMEOUT_MS - 30_000);
    for (const step of [
      'every node: flannel.1, one route, neighbour and FDB entry per peer',
      'the rules are in nf_tables, none in the legacy tables',
      'pod-to-pod ping across nodes through flannel.1: ok',
      "arrives from the node's address",
      'SIGTERM exits 0 leaving the data path up',
      "nothing of flannel in the machine's own namespace",
      'PASS',
    ]) {
      expect(text).toContain(step);
    }
  }, TIMEOUT_MS);
});
