/**
 * The two /proc/sys files flanneld looks at on Linux (contract §11, §16), with
 * the root injectable so tests can point it at a directory of their own.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { HostError, errorMessage } from '../util/errors';

export const SYSCTL_ROOT = '/proc/sys';

/**
 * flanneld exits 1 at start, unless in nftables mode, when the br_netfilter
 * sysctl is absent (its value is not checked): without the module, bridged pod
 * traffic skips iptables and kube-proxy's rules do not apply to it.
 */
export async function checkBrNetfilter(root: string): Promise<void> {
  const file = join(root, 'net/bridge/bridge-nf-call-iptables');
  try {
    await fs.access(file);
  } catch {
    throw new HostError(`br_netfilter is not loaded (${file} is missing): run "modprobe br_netfilter" (and list it in /etc/modules-load.d/), or set "EnableNFTables": true in the network config`);
  }
}

/**
 * `sysctl -w net.ipv6.conf.<dev>.accept_ra=0`, as flanneld does for its devices:
 * the overlay device must not configure itself from router advertisements.
 * Returns the error message instead of throwing (flanneld ignores the error; a
 * host without IPv6 has no such file).
 */
export async function disableAcceptRa(root: string, device: string): Promise<string | undefined> {
  const file = join(root, 'net/ipv6/conf', device, 'accept_ra');
  try {
    await fs.writeFile(file, '0');
    return undefined;
  } catch (err) {
    return `failed to set ${file} to 0: ${errorMessage(err)}`;
  }
}
