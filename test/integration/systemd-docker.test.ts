/**
 * The systemd unit under a real systemd, in the suite (scripts/systemd-e2e.sh):
 * two Docker "hosts" FROM node:24-trixie-slim booting systemd as PID 1, with
 * flanneld-ts installed by systemd/install.sh, and an etcd. The script's header
 * says what it checks; this file runs it where it can run (the machine's own
 * namespaces, like the container e2e) and checks that every step passed.
 *
 * Cold (the host image built: Debian's systemd, etcd, iptables and npm ci of the
 * production dependencies) a few minutes; warm, about a minute.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runHostScript } from '../helpers/host-script';

const SCRIPT = resolve(__dirname, '..', '..', 'scripts', 'systemd-e2e.sh');
const TIMEOUT_MS = 25 * 60_000;

describe('flanneld-ts.service under systemd as PID 1 (scripts/systemd-e2e.sh)', () => {
  it('starts ready, reports status, restarts without loss, logs JSON to the journal, is hardened and stops on a bad setting', async () => {
    const text = await runHostScript(SCRIPT, TIMEOUT_MS - 30_000);
    for (const step of [
      'booted systemd as PID 1',
      'systemctl start returned with subnet.env, flannel.1 and the peer',
      'systemctl status: Status: "subnet ',
      'hardening in effect: exposure',
      'JSON lines from the daemon, ready among them',
      'reach each other through flannel.1',
      '0 lost; flannel.1 kept its MAC',
      'the unit failed once with exit 2 (NRestarts=0 after 8 s)',
      'PASS',
    ]) {
      expect(text).toContain(step);
    }
  }, TIMEOUT_MS);
});
