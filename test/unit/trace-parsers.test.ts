/**
 * The byte and text codecs under `trace`: the RTM_GETROUTE and RTM_GETNSID
 * messages, iptables-save evaluation, iproute2's JSON, /proc/net/udp, and the
 * command line.
 */
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli';
import { decodeNsid, decodeRouteLookup, encodeNsidQuery, encodeRouteQuery } from '../../src/kernel/route-query';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';
import { firewallVerdict, parseIptablesSave } from '../../src/trace/iptables-path';
import { boundUdpPorts } from '../../src/trace/overlay-hops';
import { parseIpAddrJson, parseIpRouteGetJson } from '../../src/trace/pod-netns';
import { UsageError } from '../../src/util/errors';
import { IPTABLES, PROC_NET_UDP } from '../helpers/trace-facts';

describe('RTM_GETROUTE and RTM_GETNSID messages', () => {
  it('encodes `ip route get 10.7.34.2 from 10.7.24.2 iif 4` as iproute2 does', () => {
    const b = encodeRouteQuery({ dst: parseIPv4('10.7.34.2'), src: parseIPv4('10.7.24.2'), iif: 4 });
    expect(b.toString('hex')).toBe(
      // rtmsg: AF_INET, dst_len 32, src_len 32, tos 0, table 0, proto 0, scope 0, type 0, flags 0
      '022020000000000000000000' +
        '08000100' + '0a072202' + // RTA_DST 10.7.34.2
        '08000200' + '0a071802' + // RTA_SRC 10.7.24.2
        '08000300' + '04000000', // RTA_IIF 4 (host order)
    );
    expect(encodeRouteQuery({ dst: parseIPv4('10.65.154.12') }).toString('hex')).toBe('022000000000000000000000' + '08000100' + '0a419a0c');
  });

  it('decodes the answer: type, table, oif, gateway, prefsrc', () => {
    const answer = Buffer.from(
      '02200000fe000001' + '00020000' + // rtmsg: table main, scope 0, type unicast, flags RTM_F_CLONED
        '08000f00' + 'fe000000' + // RTA_TABLE 254
        '08000100' + '0a072202' + // RTA_DST
        '08000400' + '03000000' + // RTA_OIF 3
        '08000500' + '0a072200' + // RTA_GATEWAY 10.7.34.0
        '08000700' + '0a419a0b', // RTA_PREFSRC 10.65.154.11
      'hex',
    );
    expect(decodeRouteLookup(answer)).toEqual({ type: 'unicast', table: 254, oif: 3, gateway: parseIPv4('10.7.34.0'), prefsrc: parseIPv4('10.65.154.11') });
    expect(decodeRouteLookup(Buffer.from('020000000000000700000000', 'hex')).type).toBe('unreachable');
    expect(() => decodeRouteLookup(Buffer.alloc(4))).toThrow('shorter than struct rtmsg');
  });

  it('asks for a namespace\'s id by file descriptor and reads NETNSA_NSID, -1 meaning none', () => {
    expect(encodeNsidQuery(17).toString('hex')).toBe('00000000' + '08000300' + '11000000');
    expect(decodeNsid(Buffer.from('00000000' + '08000100' + '01000000', 'hex'))).toBe(1);
    expect(decodeNsid(Buffer.from('00000000' + '08000100' + 'ffffffff', 'hex'))).toBeUndefined();
  });
});

describe('iptables-save evaluation', () => {
  const tables = parseIptablesSave(IPTABLES);
  const pkt = { src: parseIPv4('10.7.24.2'), dst: parseIPv4('10.7.34.2'), in: 'cni0', out: 'flannel.1', protocol: 'icmp' };

  it('follows jumps into user chains to the deciding rule', () => {
    expect(firewallVerdict(tables, 'filter', 'FORWARD', pkt)).toEqual({ target: 'ACCEPT', rule: '-A FLANNEL-FWD -s 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT', uncertain: false });
    const nat = firewallVerdict(tables, 'nat', 'POSTROUTING', pkt);
    expect(nat?.target).toBe('MASQUERADE');
    expect(firewallVerdict(tables, 'nat', 'POSTROUTING', { ...pkt, dst: parseIPv4('10.7.24.9') })).toMatchObject({ target: 'ACCEPT', uncertain: false });
    expect(firewallVerdict(tables, 'nat', 'POSTROUTING', { ...pkt, src: parseIPv4('10.7.24.3') })).toEqual({ target: 'ACCEPT', rule: null, uncertain: false });
  });

  it('falls to the policy, honours negation, interfaces with +, protocols and RETURN', () => {
    const t = parseIptablesSave(`*filter
:FORWARD DROP [0:0]
:X - [0:0]
-A FORWARD -p udp -j ACCEPT
-A FORWARD -i veth+ ! -s 10.7.0.0/16 -j ACCEPT
-A FORWARD -o flannel.1 -j X
-A X -d 10.7.34.0/24 -j RETURN
-A X -j REJECT --reject-with icmp-port-unreachable
COMMIT
`);
    expect(firewallVerdict(t, 'filter', 'FORWARD', pkt)).toEqual({ target: 'DROP', rule: null, uncertain: false });
    expect(firewallVerdict(t, 'filter', 'FORWARD', { ...pkt, protocol: 'udp' })?.target).toBe('ACCEPT');
    expect(firewallVerdict(t, 'filter', 'FORWARD', { ...pkt, in: 'veth1', src: parseIPv4('192.168.1.1') })?.target).toBe('ACCEPT');
    expect(firewallVerdict(t, 'filter', 'FORWARD', { ...pkt, dst: parseIPv4('10.7.35.1') })).toMatchObject({ target: 'REJECT', rule: '-A X -j REJECT --reject-with icmp-port-unreachable' });
    expect(firewallVerdict(t, 'nat', 'POSTROUTING', pkt)).toBeUndefined();
  });

  it('calls a verdict uncertain when a rule it cannot read might decide first', () => {
    const t = parseIptablesSave('*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n');
    expect(firewallVerdict(t, 'filter', 'FORWARD', pkt)).toEqual({ target: 'DROP', rule: null, uncertain: true });
  });
});

describe('iproute2 JSON and /proc/net/udp', () => {
  it('reads `ip -j addr show` with host bits kept and the veth peer index', () => {
    const text = JSON.stringify([
      { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP'], mtu: 65536, address: '00:00:00:00:00:00', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
      { ifindex: 2, link_index: 5, ifname: 'eth0', flags: ['BROADCAST', 'UP', 'LOWER_UP'], mtu: 1450, address: '62:51:44:3a:bd:70', link_netnsid: 0, addr_info: [{ family: 'inet', local: '10.7.24.2', prefixlen: 24 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
    ]);
    expect(parseIpAddrJson(text)[1]).toEqual({ index: 2, name: 'eth0', mac: '62:51:44:3a:bd:70', mtu: 1450, up: true, peerIndex: 5, addresses: [{ ip: parseIPv4('10.7.24.2'), prefixLen: 24 }, { ip: parseIPv6('fe80::1'), prefixLen: 64 }] });
  });

  it('reads `ip -j route get`', () => {
    expect(parseIpRouteGetJson('[{"dst":"10.7.34.2","from":"10.7.24.2","gateway":"10.7.24.1","dev":"eth0","flags":[],"uid":0,"cache":[]}]')).toEqual({ dev: 'eth0', gateway: parseIPv4('10.7.24.1') });
    expect(parseIpRouteGetJson('[{"dst":"10.7.24.3","dev":"eth0"}]')).toEqual({ dev: 'eth0', gateway: undefined });
    expect(parseIpRouteGetJson('[]')).toEqual({ error: 'no route in the answer' });
    expect(parseIpRouteGetJson('[{"dst":"fc00:0:0:22::2","from":"fc00:0:0:18::2","gateway":"fc00:0:0:18::1","dev":"eth0"}]')).toEqual({ dev: 'eth0', gateway: parseIPv6('fc00:0:0:18::1') });
  });

  it('lists the bound local UDP ports', () => {
    expect([...boundUdpPorts(PROC_NET_UDP)]).toEqual([8472]);
    expect(boundUdpPorts('header only\n').size).toBe(0);
    // /proc/net/udp6: a VXLAN device over IPv6 binds [::]:8472.
    const udp6 = '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n 1003: 00000000000000000000000000000000:2118 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0\n';
    expect([...boundUdpPorts(udp6)]).toEqual([8472]);
  });
});

describe('command line: trace', () => {
  const trace = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const c = parseCommandLine(['trace', ...args], env);
    if (c.command !== 'trace') throw new Error(`expected trace, got ${c.command}`);
    return c.options;
  };

  it('takes DST, --from, --json, --count, --no-probe and status\'s etcd and host flags', () => {
    const o = trace(['10.7.34.2', '--from', '10.7.24.2', '--json', '--count', '5', '--etcd-endpoints', 'http://10.65.154.2:2379', '--subnet-file', '/tmp/s.env']);
    expect(o).toMatchObject({ dst: parseIPv4('10.7.34.2'), src: parseIPv4('10.7.24.2'), format: 'json', count: 5, subnetFile: '/tmp/s.env' });
    expect(o.etcd.endpoints).toEqual(['http://10.65.154.2:2379']);
    expect(trace(['10.7.34.2', '--no-probe'])).toMatchObject({ src: undefined, count: 0, format: 'text' });
    expect(trace(['10.7.34.2'], { FLANNELD_ETCD_ENDPOINTS: 'http://10.0.0.5:2379' }).etcd.endpoints).toEqual(['http://10.0.0.5:2379']);
    expect(trace(['FC00:0:0:22::2', '--from', 'fc00:0:0:18::2'])).toMatchObject({ dst: parseIPv6('fc00:0:0:22::2'), src: parseIPv6('fc00:0:0:18::2') });
  });

  it.each([
    [['10.7.34'], 'trace DST: "10.7.34" is not an IPv4 or IPv6 address'],
    [['10.7.34.2', '--from', 'pod1'], '--from: "pod1" is not an IPv4 or IPv6 address'],
    [['fc00:0:0:22::2', '--from', '10.7.24.2'], '--from: 10.7.24.2 and DST fc00:0:0:22::2 are of different address families'],
    [['10.7.34.2', '--count', '0'], '--count: 0 is not a whole number from 1 to 100'],
    [[], 'Missing required argument: dst'],
    [['10.7.34.2', '10.7.34.3'], 'Unknown argument'],
  ])('refuses %j', (args, message) => {
    expect(() => trace(args)).toThrow(UsageError);
    expect(() => trace(args)).toThrow(message);
  });
});
