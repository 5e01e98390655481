import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { ConfigError } from '../../src/util/errors';

const cfg = (network: string, backend: Record<string, unknown> = {}): string => JSON.stringify({ Network: network, Backend: { Type: 'vxlan', ...backend } });
const fails = (text: string, field: string, opts = {}): string => {
  try {
    parseNetworkConfig(text, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe(field);
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error(`${text} was accepted`);
};

describe('Network width', () => {
  it('accepts /8 and refuses /7 and /0 without --allow-wide-network', () => {
    expect(parseNetworkConfig(cfg('10.0.0.0/8')).network.prefixLen).toBe(8);
    expect(fails(cfg('10.0.0.0/7'), 'Network')).toBe('invalid network config: Network: 10.0.0.0/7 is wider than /8; start flanneld-ts with --allow-wide-network if that is really meant');
    fails(cfg('0.0.0.0/0'), 'Network');
  });
  it('accepts a wide Network with --allow-wide-network', () => {
    expect(parseNetworkConfig(cfg('10.0.0.0/7'), { allowWideNetwork: true }).network.prefixLen).toBe(7);
  });
});

describe('Backend.VNI fits the device name', () => {
  it('accepts 9999999 (flannel.9999999 is 15 characters) and refuses 10000000', () => {
    expect(parseNetworkConfig(cfg('10.7.0.0/16', { VNI: 9_999_999 })).backend.vni).toBe(9_999_999);
    expect(fails(cfg('10.7.0.0/16', { VNI: 10_000_000 }), 'Backend.VNI')).toContain("flannel.10000000 would exceed the kernel's 15 characters");
  });
});

describe('Backend.MTU within what the kernel accepts', () => {
  it.each([0, 118, 1500, 9000, 65535])('accepts %i', (mtu) => {
    expect(parseNetworkConfig(cfg('10.7.0.0/16', { MTU: mtu })).backend.mtu).toBe(mtu);
  });
  it.each([1, 117, 65536, -1])('refuses %i naming the field', (mtu) => {
    fails(cfg('10.7.0.0/16', { MTU: mtu }), 'Backend.MTU');
  });
});
