import { describe, expect, it } from 'vitest';
import { endpointHost, endpointLiterals } from '../../src/net/endpoint';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';

describe('endpointHost', () => {
  it.each([
    ['http://10.99.0.2:2379', parseIPv4('10.99.0.2')],
    ['https://[fd00::2]:2379', parseIPv6('fd00::2')],
    ['https://[fd00:0:0:0:0:0:0:2]', parseIPv6('fd00::2')],
    ['http://[::ffff:10.0.0.1]:2379', parseIPv6('::ffff:a00:1')],
  ])('%s is the address literal', (ep, want) => {
    expect(endpointHost(ep)).toBe(want);
  });

  it('gives a name for the caller to resolve, and undefined for no URL', () => {
    expect(endpointHost('https://etcd.example:2379')).toEqual({ name: 'etcd.example' });
    expect(endpointHost('10.99.0.2:2379')).toBeUndefined();
    expect(endpointHost('not a url')).toBeUndefined();
  });
});

describe('endpointLiterals', () => {
  it('keeps literals of both families in order, once each, and leaves names out', () => {
    expect(endpointLiterals(['http://10.99.0.2:2379', 'https://[fd00::2]:2379', 'https://etcd.example:2379', 'http://10.99.0.2:4001'])).toEqual([parseIPv4('10.99.0.2'), parseIPv6('fd00::2')]);
  });
});
