/**
 * subnet.env (contract §7): what the flannel CNI plugin reads. Unquoted values,
 * `\n` line ends, written atomically (temp file in the same directory, fsync,
 * rename) so the plugin never sees half a file.
 */
import { promises as fs } from 'node:fs';
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

/** Writes `content` to `file` atomically with mode `mode`; the parent directory is made 0755. */
export async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    const made = await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    // mkdir's mode is filtered by the umask (077 gives 0700, and the CNI plugin may not run as us).
    if (made !== undefined) await fs.chmod(dir, 0o755);
    const handle = await fs.open(tmp, 'w', mode);
    try {
      await handle.writeFile(content);
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
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
