/**
 * subnet.env (contract §7): what the flannel CNI plugin reads. Unquoted values,
 * `\n` line ends, written atomically (an exclusively created temp file with a
 * random name in the same directory, fsync, rename) so the plugin never sees
 * half a file and a planted symlink is never followed.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Cidr, formatCidr, formatIPv4, makeCidr, parseCidr } from './net/ipv4';
import { Cidr6, formatCidr6, formatIPv6, makeCidr6, parseCidr6 } from './net/ipv6';
import { HostError, errorMessage } from './util/errors';

export interface SubnetEnv {
  /** FLANNEL_NETWORK / FLANNEL_SUBNET; both undefined for an IPv6-only config (flanneld then writes neither). */
  readonly network: Cidr | undefined;
  readonly subnet: Cidr | undefined;
  /** FLANNEL_IPV6_NETWORK / FLANNEL_IPV6_SUBNET, when the config enables IPv6. */
  readonly ipv6?: { readonly network: Cidr6; readonly subnet: Cidr6 } | undefined;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/**
 * flanneld's order (contract §7, §11): FLANNEL_NETWORK, FLANNEL_SUBNET (IPv4),
 * FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET (IPv6), FLANNEL_MTU, FLANNEL_IPMASQ.
 * A *_SUBNET is the subnet's first host address with the subnet's length:
 * 10.7.5.1/24, fc00:0:0:5::1/64.
 */
export function renderSubnetEnv(env: SubnetEnv): string {
  let out = '';
  if (env.network !== undefined && env.subnet !== undefined) {
    out += `FLANNEL_NETWORK=${formatCidr(env.network)}\nFLANNEL_SUBNET=${formatIPv4(env.subnet.ip + 1)}/${env.subnet.prefixLen}\n`;
  }
  if (env.ipv6 !== undefined) {
    out += `FLANNEL_IPV6_NETWORK=${formatCidr6(env.ipv6.network)}\nFLANNEL_IPV6_SUBNET=${formatIPv6(env.ipv6.subnet.ip + 1n)}/${env.ipv6.subnet.prefixLen}\n`;
  }
  return out + `FLANNEL_MTU=${env.mtu}\nFLANNEL_IPMASQ=${env.ipMasq}\n`;
}

/** The value of the first `name=` line, trimmed, or undefined. */
function envValue(text: string, name: string): string | undefined {
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq >= 0 && line.slice(0, eq).trim() === name) return line.slice(eq + 1).trim();
  }
  return undefined;
}

/** The subnet a previous run wrote (FLANNEL_SUBNET=10.7.5.1/24 → 10.7.5.0/24), or undefined if absent or unreadable. */
export function previousSubnet(text: string): Cidr | undefined {
  const v = envValue(text, 'FLANNEL_SUBNET');
  if (v === undefined) return undefined;
  try {
    const c = parseCidr(v);
    return makeCidr(c.ip, c.prefixLen);
  } catch {
    return undefined;
  }
}

/** The IPv6 subnet a previous run wrote (FLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64 → fc00:0:0:5::/64), or undefined. */
export function previousSubnet6(text: string): Cidr6 | undefined {
  const v = envValue(text, 'FLANNEL_IPV6_SUBNET');
  if (v === undefined) return undefined;
  try {
    const c = parseCidr6(v);
    return makeCidr6(c.ip, c.prefixLen);
  } catch {
    return undefined;
  }
}

export async function readPreviousSubnet(file: string): Promise<Cidr | undefined> {
  return (await readPreviousSubnets(file)).subnet;
}

/** Both previous subnets from the subnet file (flannel: main.go reads FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET). */
export async function readPreviousSubnets(file: string): Promise<{ subnet: Cidr | undefined; subnet6: Cidr6 | undefined }> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return { subnet: undefined, subnet6: undefined };
  }
  return { subnet: previousSubnet(text), subnet6: previousSubnet6(text) };
}

/** A temp name nobody can guess: 16 random hex digits. */
function randomSuffix(): string {
  return randomBytes(8).toString('hex');
}

const TEMP_ATTEMPTS = 5;

/**
 * Writes `content` to `file` atomically with mode `mode`; the parent directory is made 0755.
 * The temp file in the same directory has an unpredictable name and is created
 * exclusively without following a symlink (O_CREAT|O_EXCL|O_NOFOLLOW), so a link
 * or file planted by another user is never written through; then fsync, rename
 * (which replaces `file` itself, never what a link there points at) and a
 * directory fsync. `suffix` is injectable for tests.
 */
export async function writeFileAtomic(file: string, content: string, mode: number, suffix: () => string = randomSuffix): Promise<void> {
  const dir = path.dirname(file);
  let tmp: string | undefined;
  try {
    const made = await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    // mkdir's mode is filtered by the umask (077 gives 0700, and the CNI plugin may not run as us).
    if (made !== undefined) await fs.chmod(dir, 0o755);
    let handle: fs.FileHandle | undefined;
    for (let attempt = 1; !handle; attempt++) {
      const name = path.join(dir, `.${path.basename(file)}.${suffix()}.tmp`);
      try {
        handle = await fs.open(name, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
        tmp = name;
      } catch (err) {
        // Someone else's file or link at that name: not ours to touch; try another name.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= TEMP_ATTEMPTS) throw err;
      }
    }
    try {
      await handle.writeFile(content);
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp as string, file);
    tmp = undefined;
    const dirHandle = await fs.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    await dirHandle.sync().finally(() => dirHandle.close());
  } catch (err) {
    if (tmp !== undefined) await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new HostError(`failed to write subnet file ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Writes subnet.env unless it already holds exactly this content. Returns true when written. */
export async function ensureSubnetFile(file: string, env: SubnetEnv): Promise<boolean> {
  const content = renderSubnetEnv(env);
  const current = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (current === content) return false;
  await writeFileAtomic(file, content, 0o644);
  return true;
}
