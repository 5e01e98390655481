/**
 * What differs when trace follows an IPv6 packet instead of an IPv4 one, as one
 * value per family (STYLE: the family is a value, never a copied branch): the
 * overlay device's name, iproute2's family flag, the sysctls and firewall tool
 * that can stop a forwarded packet, ICMP or ICMPv6 echo, the UDP socket table
 * and the VXLAN overhead on the underlay. Pure data.
 */
import { AddressFamily, IPV4, IPV6, IpAddr } from '../net/family';

export interface TraceFamily {
  readonly fam: AddressFamily;
  /** `flannel.<VNI>` or `flannel-v6.<VNI>` (contract §11). */
  readonly device: (vni: number) => string;
  /** iproute2's family flag with a trailing space: "" or "-6 " (`ip -6 route get`, `ip -6 neigh`). */
  readonly ipFlag: string;
  /** The sysctl that lets this host forward the family's packets, and its name in messages. */
  readonly forwardSysctl: string;
  readonly forwardName: string;
  /** br_netfilter's switch for this family (bridged frames through the firewall). */
  readonly bridgeNfSysctl: string;
  /** The reverse-path filter exists only for IPv4 (`net.ipv4.conf.*.rp_filter`); IPv6 has no such sysctl. */
  readonly rpFilter: boolean;
  /** `iptables` or `ip6tables` (`-save` reads the filter and nat tables, iptables-nft's `ip`/`ip6` tables included). */
  readonly iptables: 'iptables' | 'ip6tables';
  /** ICMP echo: the protocol as iptables-save prints `-p`, tcpdump's filter word, request and reply types. */
  readonly icmp: { readonly protocols: readonly string[]; readonly filter: string; readonly request: number; readonly reply: number };
  /** `ping` arguments that pick the family. */
  readonly pingFlags: readonly string[];
  /** The kernel's UDP socket table of the family (a VXLAN device over IPv6 opens a UDP6 socket). */
  readonly procUdp: string;
  /** VXLAN's bytes on the underlay: outer IP (20 or 40) + UDP 8 + VXLAN 8 + inner Ethernet 14. */
  readonly vxlanOverhead: number;
}

const V4: TraceFamily = {
  fam: IPV4,
  device: (vni) => `flannel.${vni}`,
  ipFlag: '',
  forwardSysctl: 'net.ipv4.ip_forward',
  forwardName: 'ip_forward',
  bridgeNfSysctl: 'net.bridge.bridge-nf-call-iptables',
  rpFilter: true,
  iptables: 'iptables',
  icmp: { protocols: ['icmp', '1'], filter: 'icmp', request: 8, reply: 0 },
  pingFlags: [],
  procUdp: '/proc/net/udp',
  vxlanOverhead: 50,
};

const V6: TraceFamily = {
  fam: IPV6,
  device: (vni) => `flannel-v6.${vni}`,
  ipFlag: '-6 ',
  forwardSysctl: 'net.ipv6.conf.all.forwarding',
  forwardName: 'IPv6 forwarding',
  bridgeNfSysctl: 'net.bridge.bridge-nf-call-ip6tables',
  rpFilter: false,
  iptables: 'ip6tables',
  // ip6tables-save prints ICMPv6 as "ipv6-icmp"; "icmpv6" and 58 name it too.
  icmp: { protocols: ['ipv6-icmp', 'icmpv6', '58'], filter: 'icmp6', request: 128, reply: 129 },
  pingFlags: ['-6'],
  procUdp: '/proc/net/udp6',
  vxlanOverhead: 70,
};

/** The family of an address: IPv4 for a number, IPv6 for a bigint. */
export function traceFamily(ip: IpAddr): TraceFamily {
  return typeof ip === 'bigint' ? V6 : V4;
}
