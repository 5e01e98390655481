import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatCidr, parseCidr } from '../../src/net/ipv4';
import { formatCidr6, parseCidr6 } from '../../src/net/ipv6';
import { ensureSubnetFile, previousSubnet, previousSubnet6, readPreviousSubnet, readPreviousSubnets, renderSubnetEnv, writeFileAtomic } from '../../src/subnet-file';

const env = { network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.5.0/24'), mtu: 1450, ipMasq: false };
const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'flts-subnet-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('subnet.env', () => {
  it('renders exactly what the flannel CNI plugin reads', () => {
    expect(renderSubnetEnv(env)).toBe('FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
    expect(renderSubnetEnv({ ...env, ipMasq: true })).toContain('FLANNEL_IPMASQ=true\n');
  });
  it('renders a dual-stack file in flanneld\'s order, and an IPv6-only one without the IPv4 keys', () => {
    const ipv6 = { network: parseCidr6('2001:cafe:42::/56'), subnet: parseCidr6('2001:cafe:42::/64') };
    expect(renderSubnetEnv({ ...env, ipv6 })).toBe(
      'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.5.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    );
    expect(renderSubnetEnv({ network: undefined, subnet: undefined, ipv6, mtu: 1450, ipMasq: true })).toBe(
      'FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
  });
  it('reads both previous subnets back', async () => {
    const text = renderSubnetEnv({ ...env, ipv6: { network: parseCidr6('fc00::/48'), subnet: parseCidr6('fc00:0:0:5::/64') } });
    expect(formatCidr6(previousSubnet6(text)!)).toBe('fc00:0:0:5::/64');
    expect(previousSubnet6(renderSubnetEnv(env))).toBeUndefined();
    expect(previousSubnet6('FLANNEL_IPV6_SUBNET=10.7.5.1/24\n')).toBeUndefined();
    const file = join(tmp(), 'subnet.env');
    writeFileSync(file, text);
    const both = await readPreviousSubnets(file);
    expect([formatCidr(both.subnet!), formatCidr6(both.subnet6!)]).toEqual(['10.7.5.0/24', 'fc00:0:0:5::/64']);
    expect(await readPreviousSubnets(join(tmp(), 'none'))).toEqual({ subnet: undefined, subnet6: undefined });
  });
  it('reads the previous subnet back', () => {
    expect(formatCidr(previousSubnet(renderSubnetEnv(env)) as never)).toBe('10.7.5.0/24');
    expect(previousSubnet('FLANNEL_SUBNET=garbage\n')).toBeUndefined();
    expect(previousSubnet('')).toBeUndefined();
  });
  it('writes atomically with mode 0644 into a new 0755 directory, leaving no temp file', async () => {
    const dir = join(tmp(), 'run', 'flannel');
    const file = join(dir, 'subnet.env');
    expect(await ensureSubnetFile(file, env)).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(renderSubnetEnv(env));
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(statSync(dir).mode & 0o777).toBe(0o755);
    expect(readdirSync(dir)).toEqual(['subnet.env']);
    expect(await ensureSubnetFile(file, env)).toBe(false);
    expect(formatCidr((await readPreviousSubnet(file)) as never)).toBe('10.7.5.0/24');
  });
  it('keeps the directory 0755 and the file 0644 under a strict umask', async () => {
    const dir = join(tmp(), 'strict', 'flannel');
    const old = process.umask(0o077);
    try {
      await ensureSubnetFile(join(dir, 'subnet.env'), env);
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o755);
    expect(statSync(join(dir, 'subnet.env')).mode & 0o777).toBe(0o644);
  });
  it('replaces an existing file and reports an unwritable path naming the file', async () => {
    const d = tmp();
    const file = join(d, 'subnet.env');
    writeFileSync(file, 'old');
    await writeFileAtomic(file, 'new', 0o600);
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeFileSync(join(d, 'blocker'), '');
    await expect(ensureSubnetFile(join(d, 'blocker', 'subnet.env'), env)).rejects.toThrow(/failed to write subnet file .*blocker\/subnet.env/);
    expect(await readPreviousSubnet(join(d, 'missing'))).toBeUndefined();
  });
});

describe('subnet.env against planted symlinks', () => {
  it('follows neither a link at the old predictable temp name nor one at the temp name it picks', async () => {
    const dir = tmp();
    const file = join(dir, 'subnet.env');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n', { mode: 0o600 });
    symlinkSync(victim, join(dir, `.subnet.env.${process.pid}.tmp`));
    const names = ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'];
    symlinkSync(victim, join(dir, `.subnet.env.${names[0]}.tmp`));
    await writeFileAtomic(file, renderSubnetEnv(env), 0o644, () => names.shift() as string);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(statSync(victim).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe(renderSubnetEnv(env));
    expect(lstatSync(file).isFile()).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    // The planted links are left alone (they are not ours), and no temp file of ours is left.
    expect(readdirSync(dir).sort()).toEqual([`.subnet.env.${process.pid}.tmp`, '.subnet.env.aaaaaaaaaaaaaaaa.tmp', 'subnet.env', 'victim']);
  });
  it('replaces a symlink at the target itself instead of writing through it', async () => {
    const dir = tmp();
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, 'subnet.env'));
    await writeFileAtomic(join(dir, 'subnet.env'), 'x\n', 0o644);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(dir, 'subnet.env')).isFile()).toBe(true);
  });
});
