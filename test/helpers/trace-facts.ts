/**
 * Trace facts of a healthy host, as the collector reads them on node h1 of the
 * namespace testbed (pod 10.7.24.2 → pod 10.7.34.2 on h2), for the pure tests of
 * the trace analysis: each test breaks one fact.
 */
import { DeviceState, Entry, InterfaceInfo } from '../../src/kernel/kernel';
import { LinkDetail } from '../../src/kernel/route-query';
import { LeaseRecord } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { TraceFacts } from '../../src/trace/collect';
import { PodFacts } from '../../src/trace/pod-netns';

export const SRC = parseIPv4('10.7.24.2');
export const DST = parseIPv4('10.7.34.2');
export const M1 = 'a6:2a:18:d5:37:30';
export const M2 = '5a:f9:bc:6b:1c:56';
export const IP1 = parseIPv4('10.65.154.11');
export const IP2 = parseIPv4('10.65.154.12');
export const T0 = Date.parse('2026-01-01T12:00:00Z');
export const OPTS = { endpoints: ['http://10.65.154.2:2379'], prefix: '/coreos.com/network', iface: ['eth0'], ifaceRegex: [], renewMarginMs: 3_600_000 };

const lease = (subnet: string, ip: number, mac: string): LeaseRecord => ({
  kind: 'lease',
  key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`,
  lease: { subnet: parseCidr(subnet), publicIP: ip, backendType: 'vxlan', vni: 1, vtepMAC: mac, etcdLease: '7587' },
});

export const INTERFACES: InterfaceInfo[] = [
  { index: 1, name: 'lo', mtu: 65536, up: true, addresses: [{ ip: parseIPv4('127.0.0.1'), prefixLen: 8, scope: 254 }] },
  { index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: IP1, prefixLen: 24, scope: 0 }] },
  { index: 3, name: 'flannel.1', mtu: 1450, up: true, addresses: [{ ip: parseIPv4('10.7.24.0'), prefixLen: 32, scope: 0 }] },
  { index: 4, name: 'cni0', mtu: 1450, up: true, addresses: [{ ip: parseIPv4('10.7.24.1'), prefixLen: 24, scope: 0 }] },
  { index: 5, name: 'vetha26954b2', mtu: 1450, up: true, addresses: [] },
];

export const LINKS: LinkDetail[] = [
  { index: 1, name: 'lo', kind: '', mac: '00:00:00:00:00:00', mtu: 65536, up: true, master: undefined, peerIndex: undefined, linkNetnsid: undefined },
  { index: 2, name: 'eth0', kind: 'veth', mac: '52:03:21:3c:be:91', mtu: 1500, up: true, master: undefined, peerIndex: 4, linkNetnsid: 0 },
  { index: 3, name: 'flannel.1', kind: 'vxlan', mac: M1, mtu: 1450, up: true, master: undefined, peerIndex: undefined, linkNetnsid: undefined },
  { index: 4, name: 'cni0', kind: 'bridge', mac: '7a:2d:16:3e:d0:b3', mtu: 1450, up: true, master: undefined, peerIndex: undefined, linkNetnsid: undefined },
  { index: 5, name: 'vetha26954b2', kind: 'veth', mac: '6a:97:82:78:31:c7', mtu: 1450, up: true, master: 4, peerIndex: 2, linkNetnsid: 1 },
];

export const DEVICE: DeviceState = {
  index: 3, name: 'flannel.1', kind: 'vxlan', mac: M1, mtu: 1450, up: true, vni: 1, localIP: IP1, underlayIndex: 2, port: 8472, learning: false, gbp: false, addresses: [parseCidr('10.7.24.0/32')],
};

export const ENTRIES: Entry[] = [
  { kind: 'route', dst: parseCidr('10.7.34.0/24'), gateway: parseIPv4('10.7.34.0'), onlink: true },
  { kind: 'neighbor', ip: parseIPv4('10.7.34.0'), mac: M2, permanent: true },
  { kind: 'fdb', mac: M2, dst: IP2, permanent: true },
];

export const POD: PodFacts = {
  path: '/var/run/netns/pod1',
  display: 'pod1',
  enter: 'ip netns exec pod1',
  nsid: 1,
  iface: { index: 2, name: 'eth0', mac: '62:51:44:3a:bd:70', mtu: 1450, up: true, addresses: [{ ip: SRC, prefixLen: 24 }], peerIndex: 5 },
  route: { dev: 'eth0', gateway: parseIPv4('10.7.24.1') },
};

export const IPTABLES = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-02b82db3f14598505ffb4ba6 - [0:0]
-A POSTROUTING -s 10.7.24.2/32 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j CNI-02b82db3f14598505ffb4ba6
-A CNI-02b82db3f14598505ffb4ba6 -d 10.7.24.0/24 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j ACCEPT
-A CNI-02b82db3f14598505ffb4ba6 ! -d 224.0.0.0/4 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j MASQUERADE
COMMIT
`;

export const PROC_NET_UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1003: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0
`;

/** The healthy facts; `change` overrides any of them. */
export function healthyFacts(change: Partial<TraceFacts> = {}): TraceFacts {
  const base: TraceFacts = {
    status: {
      now: T0,
      store: {
        configText: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}',
        records: [lease('10.7.24.0/24', IP1, M1), lease('10.7.34.0/24', IP2, M2)],
        revision: 9n,
        expiries: new Map([['7587', T0 + 86_000_000]]),
      },
      kernel: { kind: 'read', interfaces: INTERFACES, defaultIndex: 2, device: DEVICE, entries: ENTRIES, routes: [] },
      subnetFile: { path: '/run/flannel/subnet.env', text: 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.24.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n' },
    },
    dst: DST,
    src: SRC,
    kernelError: undefined,
    links: LINKS,
    pod: POD,
    forward: { query: { dst: DST, src: SRC, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 3, gateway: parseIPv4('10.7.34.0'), prefsrc: undefined } },
    reply: { query: { dst: SRC, src: DST, iif: 3 }, answer: { type: 'unicast', table: 254, oif: 4, gateway: undefined, prefsrc: undefined } },
    underlay: { query: { dst: IP2 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: IP1 } },
    sysctls: new Map([
      ['net.ipv4.ip_forward', '1'],
      ['net.bridge.bridge-nf-call-iptables', '1'],
      ['net.ipv4.conf.all.rp_filter', '0'],
      ['net.ipv4.conf.cni0.rp_filter', '0'],
      ['net.ipv4.conf.flannel.1.rp_filter', '0'],
      ['net.ipv4.conf.eth0.rp_filter', '0'],
    ]),
    iptables: { text: IPTABLES },
    udp: { text: PROC_NET_UDP },
    probe: { command: 'ip netns exec pod1 ping -n -c 3 -i 0.2 -W 2 10.7.34.2', sent: 3, received: 3 },
    capture: undefined,
  };
  return { ...base, ...change };
}

/** The healthy facts with the status part's kernel entries or device replaced. */
export function withKernel(change: { entries?: Entry[]; device?: DeviceState; interfaces?: InterfaceInfo[] }, more: Partial<TraceFacts> = {}): TraceFacts {
  const f = healthyFacts(more);
  const k = f.status.kernel as Extract<NonNullable<TraceFacts['status']['kernel']>, { kind: 'read' }>;
  return { ...f, status: { ...f.status, kernel: { ...k, ...change } } };
}

/*
 * The same pair on a dual-stack network (IPv6Network fc00::/48): pod
 * fc00:0:0:18::2 on h1 → pod fc00:0:0:22::2 on h2, over flannel-v6.1 and an
 * IPv6 underlay (2001:db8:154::/64), as the collector reads it for an IPv6 DST.
 */
export const SRC6 = parseIPv6('fc00:0:0:18::2');
export const DST6 = parseIPv6('fc00:0:0:22::2');
export const M1V6 = 'a6:2a:18:d5:37:66';
export const M2V6 = '5a:f9:bc:6b:1c:66';
export const IP1V6 = parseIPv6('2001:db8:154::11');
export const IP2V6 = parseIPv6('2001:db8:154::12');
export const DUAL_CONFIG = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';

const lease6 = (subnet: string, subnet6: string, ip: number, mac: string, ip6: bigint, mac6: string): LeaseRecord => ({
  kind: 'lease',
  key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}&${subnet6.replace('/', '-')}`,
  lease: { subnet: parseCidr(subnet), publicIP: ip, backendType: 'vxlan', vni: 1, vtepMAC: mac, etcdLease: '7587', v6: { subnet: parseCidr6(subnet6), publicIP: ip6, vni: 1, vtepMAC: mac6 } },
});

const a6 = (ip: string, prefixLen: number, scope = 0) => ({ ip: parseIPv6(ip), prefixLen, scope });

export const INTERFACES6: InterfaceInfo[] = INTERFACES.map((i) => ({
  ...i,
  addresses6: { eth0: [a6('2001:db8:154::11', 64)], cni0: [a6('fc00:0:0:18::1', 64)], 'flannel-v6.1': [a6('fc00:0:0:18::', 128)] }[i.name] ?? [],
})).concat([{ index: 6, name: 'flannel-v6.1', mtu: 1430, up: true, addresses: [], addresses6: [a6('fc00:0:0:18::', 128)] }]);

export const LINKS6: LinkDetail[] = [...LINKS, { index: 6, name: 'flannel-v6.1', kind: 'vxlan', mac: M1V6, mtu: 1430, up: true, master: undefined, peerIndex: undefined, linkNetnsid: undefined }];

export const DEVICE6: DeviceState = {
  index: 6, name: 'flannel-v6.1', kind: 'vxlan', mac: M1V6, mtu: 1430, up: true, vni: 1, localIP: IP1V6, underlayIndex: 2, port: 8472, learning: false, gbp: false, addresses: [], addresses6: [parseCidr6('fc00:0:0:18::/128')],
};

export const ENTRIES6: Entry[] = [
  { kind: 'route', dst: parseCidr6('fc00:0:0:22::/64'), gateway: parseIPv6('fc00:0:0:22::'), onlink: true },
  { kind: 'neighbor', ip: parseIPv6('fc00:0:0:22::'), mac: M2V6, permanent: true },
  { kind: 'fdb', mac: M2V6, dst: IP2V6, permanent: true },
];

export const POD6: PodFacts = {
  ...POD,
  iface: { ...POD.iface, addresses: [{ ip: SRC, prefixLen: 24 }, { ip: SRC6, prefixLen: 64 }, { ip: parseIPv6('fe80::6051:44ff:fe3a:bd70'), prefixLen: 64 }] },
  route: { dev: 'eth0', gateway: parseIPv6('fc00:0:0:18::1') },
};

/** ip6tables-save of h1: flanneld-ts's IPv6 forward accepts and the CNI bridge plugin's IPv6 masquerade. */
export const IP6TABLES = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s fc00::/48 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d fc00::/48 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-02b82db3f14598505ffb4ba6 - [0:0]
-A POSTROUTING -s fc00:0:0:18::2/128 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j CNI-02b82db3f14598505ffb4ba6
-A CNI-02b82db3f14598505ffb4ba6 -d fc00:0:0:18::/64 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j ACCEPT
-A CNI-02b82db3f14598505ffb4ba6 ! -d ff00::/8 -m comment --comment "name: \\"cbr0\\" id: \\"pod1\\"" -j MASQUERADE
COMMIT
`;

export const PROC_NET_UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1003: 00000000000000000000000000000000:2118 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0
`;

/** The healthy dual-stack facts for the IPv6 pod address; `change` overrides any of them. */
export function healthyFacts6(change: Partial<TraceFacts> = {}): TraceFacts {
  const base: TraceFacts = {
    status: {
      now: T0,
      store: {
        configText: DUAL_CONFIG,
        records: [lease6('10.7.24.0/24', 'fc00:0:0:18::/64', IP1, M1, IP1V6, M1V6), lease6('10.7.34.0/24', 'fc00:0:0:22::/64', IP2, M2, IP2V6, M2V6)],
        revision: 9n,
        expiries: new Map([['7587', T0 + 86_000_000]]),
      },
      kernel: { kind: 'read', interfaces: INTERFACES6, defaultIndex: 2, defaultIndex6: 2, device: DEVICE, entries: ENTRIES, device6: DEVICE6, entries6: ENTRIES6, routes: [], routes6: [] },
      subnetFile: { path: '/run/flannel/subnet.env', text: 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.24.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:18::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n' },
    },
    dst: DST6,
    src: SRC6,
    kernelError: undefined,
    links: LINKS6,
    pod: POD6,
    forward: { query: { dst: DST6, src: SRC6, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 6, gateway: parseIPv6('fc00:0:0:22::'), prefsrc: undefined } },
    reply: { query: { dst: SRC6, src: DST6, iif: 6 }, answer: { type: 'unicast', table: 254, oif: 4, gateway: undefined, prefsrc: undefined } },
    underlay: { query: { dst: IP2V6 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: IP1V6 } },
    sysctls: new Map([
      ['net.ipv6.conf.all.forwarding', '1'],
      ['net.bridge.bridge-nf-call-ip6tables', '1'],
    ]),
    iptables: { text: IP6TABLES },
    udp: { text: PROC_NET_UDP6 },
    probe: { command: 'ip netns exec pod1 ping -6 -n -c 3 -i 0.2 -W 2 fc00:0:0:22::2', sent: 3, received: 3 },
    capture: undefined,
  };
  return { ...base, ...change };
}

/** The healthy IPv6 facts with the status part's flannel-v6.1 entries or device, or the interfaces, replaced. */
export function withKernel6(change: { entries6?: Entry[]; device6?: DeviceState; interfaces?: InterfaceInfo[] }, more: Partial<TraceFacts> = {}): TraceFacts {
  const f = healthyFacts6(more);
  const k = f.status.kernel as Extract<NonNullable<TraceFacts['status']['kernel']>, { kind: 'read' }>;
  return { ...f, status: { ...f.status, kernel: { ...k, ...change } } };
}
