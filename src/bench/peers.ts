/**
 * The synthetic peers the benchmark writes to etcd: valid flannel leases, each
 * with its own subnet, VTEP MAC and public IP, derived from an index so that any
 * peer's expected kernel entries can be recomputed for verification.
 *
 * Overlay 100.0.0.0/9 (32,768 /24 subnets, so 20,000 peers and more fit) keeps
 * clear of the testbed underlay (10.65.154.0/24) and of the peers' public IPs
 * (10.66.0.0/16), which are never reached: the FDB only has to hold them.
 * Peers 1..16,383 sit in 100.64.0.0/10 (peer 5 is 100.64.5.0/24); the index
 * wraps to 100.0.0.0 above that.
 */
import { encodeLeaseValue, subnetKey } from '../lease/codec';
import { Cidr, formatCidr, formatIPv4, makeCidr, parseCidr, parseIPv4 } from '../net/ipv4';

export const BENCH_NETWORK = parseCidr('100.0.0.0/9');
export const BENCH_CONFIG = `{"Network":"${formatCidr(BENCH_NETWORK)}","Backend":{"Type":"vxlan"}}`;
export const BENCH_VNI = 1;
const SUBNET_LEN = 24;
const PUBLIC_BASE = parseIPv4('10.66.0.0');
/** Subnets in the network. */
const SLOTS = 1 << (SUBNET_LEN - BENCH_NETWORK.prefixLen);
/** The subnet slot of index 0 (100.64.0.0/24, never used): indices count from there and wrap. */
const SLOT_OF_ZERO = (parseIPv4('100.64.0.0') - BENCH_NETWORK.ip) / 256;
/** Index of the first peer used for single joins, far above any storm, churn or cold-start peer. */
export const JOIN_BASE_INDEX = 30_000;
/** Indices 1..MAX_INDEX fit in the network. */
export const MAX_INDEX = SLOTS - 1;
/** The most peers one size may have: the storm/cold-start peers must stay below the join peers. */
export const MAX_PEERS = JOIN_BASE_INDEX - 2;

export interface BenchPeer {
  readonly index: number;
  readonly subnet: Cidr;
  /** The subnet's network address: the neighbour's IP and the route's gateway. */
  readonly gateway: number;
  readonly mac: string;
  readonly publicIP: number;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** Peer number `index` (1..MAX_INDEX): subnet 100.64.0.0 + index·256 (wrapping in the /9), MAC 0e:66:00:00:hi:lo, public IP 10.66.0.0 + index. */
export function benchPeer(index: number): BenchPeer {
  if (!Number.isInteger(index) || index < 1 || index > MAX_INDEX) throw new RangeError(`peer index ${index} is outside 1..${MAX_INDEX}`);
  const subnet = makeCidr(BENCH_NETWORK.ip + ((SLOT_OF_ZERO + index) % SLOTS) * 256, SUBNET_LEN);
  // 0x0e: locally administered unicast, as the daemon's random MACs are; a clash with one is a 1 in 2^40 chance.
  const mac = `0e:66:00:00:${hex2(index >> 8)}:${hex2(index & 0xff)}`;
  return { index, subnet, gateway: subnet.ip, mac, publicIP: (PUBLIC_BASE + index) >>> 0 };
}

/** The index of `subnet` in the bench network, or undefined when it is not one of its /24s. */
export function peerIndexOf(subnet: Cidr): number | undefined {
  if (subnet.prefixLen !== SUBNET_LEN) return undefined;
  const offset = subnet.ip - BENCH_NETWORK.ip;
  if (offset < 0 || offset % 256 !== 0 || offset / 256 >= SLOTS) return undefined;
  return (offset / 256 - SLOT_OF_ZERO + SLOTS) % SLOTS;
}

/** `count` peers from index 1 on, skipping `exclude` (the daemon's own subnet). */
export function peerRange(count: number, exclude: Cidr | undefined, from = 1): BenchPeer[] {
  const skip = exclude === undefined ? undefined : peerIndexOf(exclude);
  const out: BenchPeer[] = [];
  for (let i = from; out.length < count; i++) if (i !== skip) out.push(benchPeer(i));
  return out;
}

/** The etcd key of a peer's lease under `prefix`. */
export function peerKey(prefix: string, peer: BenchPeer): string {
  return subnetKey(prefix, peer.subnet);
}

/** [key, value] of a peer's lease: byte-exact flannel JSON. */
export function leaseItem(prefix: string, peer: BenchPeer): [string, string] {
  return [peerKey(prefix, peer), encodeLeaseValue({ publicIP: peer.publicIP, vni: BENCH_VNI, vtepMAC: peer.mac })];
}

/** The peer's three entries as iproute2 prints them (used in messages). */
export function describePeer(peer: BenchPeer): string {
  return `${formatCidr(peer.subnet)} via ${formatIPv4(peer.gateway)}, ${peer.mac} dst ${formatIPv4(peer.publicIP)}`;
}
