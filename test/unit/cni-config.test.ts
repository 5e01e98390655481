import { describe, expect, it } from 'vitest';
import { flannelCniDelegate, parseSubnetEnv } from '../../src/testbed/cni';

const GOOD = 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

describe('parseSubnetEnv', () => {
  it('reads the four keys the plugin requires, masking host bits as net.ParseCIDR does', () => {
    expect(parseSubnetEnv(GOOD)).toEqual({ network: '10.7.0.0/16', subnet: '10.7.5.0/24', mtu: 1450, ipMasq: false });
  });

  it('splits at the first "=", ignores unknown keys and lets the last repeated key win', () => {
    const text = 'FOO=a=b\nFLANNEL_IPMASQ=true\n' + GOOD.replace('FLANNEL_IPMASQ=false\n', '') + 'FLANNEL_MTU=1400\r\n';
    expect(parseSubnetEnv(text)).toEqual({ network: '10.7.0.0/16', subnet: '10.7.5.0/24', mtu: 1400, ipMasq: true });
  });

  it('keeps a quoted value verbatim: "true" in quotes is not true', () => {
    expect(parseSubnetEnv(GOOD.replace('FLANNEL_IPMASQ=false', 'FLANNEL_IPMASQ="true"')).ipMasq).toBe(false);
  });

  it('keeps a quoted CIDR verbatim and rejects it, naming the key and the value', () => {
    const text = GOOD.replace('FLANNEL_SUBNET=10.7.5.1/24', 'FLANNEL_SUBNET="10.7.5.1/24"');
    expect(() => parseSubnetEnv(text)).toThrow('subnet.env: FLANNEL_SUBNET: invalid CIDR "\\"10.7.5.1/24\\""');
  });

  it.each(['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ'])('fails naming the missing %s', (key) => {
    const text = GOOD.split('\n').filter((l) => !l.startsWith(`${key}=`)).join('\n');
    expect(() => parseSubnetEnv(text, '/run/flannel/subnet.env')).toThrow(`/run/flannel/subnet.env is missing ${key}`);
  });

  it('names every missing key at once', () => {
    expect(() => parseSubnetEnv('FLANNEL_MTU=1450\n')).toThrow('subnet.env is missing FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_IPMASQ');
  });

  it.each(['', '-1', '14 50', '1e3', '4294967296'])('rejects FLANNEL_MTU=%j', (mtu) => {
    expect(() => parseSubnetEnv(GOOD.replace('FLANNEL_MTU=1450', `FLANNEL_MTU=${mtu}`))).toThrow('FLANNEL_MTU: invalid number');
  });

  it('rejects a required key without "="', () => {
    expect(() => parseSubnetEnv(GOOD.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU'))).toThrow('FLANNEL_MTU has no value');
  });
});

describe('flannelCniDelegate', () => {
  const env = parseSubnetEnv(GOOD);

  it('builds the bridge config kube-flannel would hand to the bridge plugin', () => {
    expect(flannelCniDelegate(env, { ipam: { dataDir: '/tmp/x' } })).toEqual({
      bridge: 'cni0',
      hairpinMode: true,
      isDefaultGateway: true,
      name: 'cbr0',
      type: 'bridge',
      ipMasq: true,
      mtu: 1450,
      isGateway: true,
      cniVersion: '0.3.1',
      ipam: {
        dataDir: '/tmp/x',
        type: 'host-local',
        ranges: [[{ subnet: '10.7.5.0/24' }]],
        routes: [{ dst: '10.7.0.0/16' }],
      },
    });
  });

  it('leaves masquerading to flannel when FLANNEL_IPMASQ=true', () => {
    expect(flannelCniDelegate({ ...env, ipMasq: true }).ipMasq).toBe(false);
  });

  it('keeps what the delegate map sets and appends the network route to given IPAM routes', () => {
    const d = flannelCniDelegate(env, {
      name: 'mynet',
      delegate: { bridge: 'mynet0', mtu: 1400, ipMasq: false, isGateway: false },
      ipam: { routes: [{ dst: '192.168.0.0/16' }] },
    });
    expect(d).toMatchObject({ name: 'mynet', type: 'bridge', bridge: 'mynet0', mtu: 1400, ipMasq: false, isGateway: false });
    expect((d.ipam as { routes: unknown }).routes).toEqual([{ dst: '192.168.0.0/16' }, { dst: '10.7.0.0/16' }]);
  });

  it('sets isGateway only for the bridge type', () => {
    expect(flannelCniDelegate(env, { delegate: { type: 'ipvlan', master: 'eth0' } })).not.toHaveProperty('isGateway');
  });

  it('rejects a delegate map with name, ipam or a non-string type, as the plugin does', () => {
    expect(() => flannelCniDelegate(env, { delegate: { name: 'x' } })).toThrow("must not have 'name' field");
    expect(() => flannelCniDelegate(env, { delegate: { ipam: {} } })).toThrow("must not have 'ipam' field");
    expect(() => flannelCniDelegate(env, { delegate: { type: 1 } })).toThrow("(string) 'type' field");
  });
});

describe('subnet.env with IPv6 (contract §11)', () => {
  const DUAL = 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.5.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';
  const V6ONLY = 'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

  it('dual-stack: one host-local range and one route per family', () => {
    const env = parseSubnetEnv(DUAL);
    expect(env).toMatchObject({ network: '10.7.0.0/16', subnet: '10.7.5.0/24', ipv6Network: 'fc00::/48', ipv6Subnet: 'fc00:0:0:5::/64' });
    expect(flannelCniDelegate(env).ipam).toMatchObject({ ranges: [[{ subnet: '10.7.5.0/24' }], [{ subnet: 'fc00:0:0:5::/64' }]], routes: [{ dst: '10.7.0.0/16' }, { dst: 'fc00::/48' }] });
  });

  it('IPv6-only: the IPv6 keys stand for the IPv4 ones; neither family at all is missing keys', () => {
    const env = parseSubnetEnv(V6ONLY);
    expect(env.network).toBeUndefined();
    expect(flannelCniDelegate(env).ipam).toMatchObject({ ranges: [[{ subnet: 'fc00:0:0:5::/64' }]], routes: [{ dst: 'fc00::/48' }] });
    expect(() => parseSubnetEnv('FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n')).toThrow('subnet.env is missing FLANNEL_NETWORK, FLANNEL_SUBNET');
  });
});
