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
import { HostError, errorMessage } from './util/errors';

export interface SubnetEnv {
  readonly network: Cidr;
  readonly subnet: Cidr;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/** FLANNEL_SUBNET is the subnet's first host address with the subnet's length: 10.7.5.1/24. */
export function renderSubnetEnv(env: SubnetEnv): string {
  return (
    `FLANNEL_NETWORK=${formatCidr(env.network)}\n` +
    `FLANNEL_SUBNET=${formatIPv4(env.subnet.ip + 1)}/${env.subnet.prefixLen}\n` +
    `FLANNEL_MTU=${env.mtu}\n` +
    `FLANNEL_IPMASQ=${env.ipMasq}\n`
  );
}

/** The subnet a previous run wrote (FLANNEL_SUBNET=10.7.5.1/24 → 10.7.5.0/24), or undefined if absent or unreadable. */
export function previousSubnet(text: string): Cidr | undefined {
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0 || line.slice(0, eq).trim() !== 'FLANNEL_SUBNET') continue;
    try {
      const c = parseCidr(line.slice(eq + 1).trim());
      return makeCidr(c.ip, c.prefixLen);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export async function readPreviousSubnet(file: string): Promise<Cidr | undefined> {
  try {
    return previousSubnet(await fs.readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
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
