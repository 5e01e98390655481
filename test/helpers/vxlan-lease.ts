/** A remote node's IPv4 VXLAN lease as the lease codec decodes it (VNI 1), for tests of the pure overlay code. */
import { Lease } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';

/** The lease of `subnet` (`10.7.12.0/24`) held by the node at `publicIP` with VTEP `mac`; `extra` overrides any field. */
export function vxlanLease(subnet: string, publicIP: string, mac: string, extra: Partial<Lease> = {}): Lease {
  return { subnet: parseCidr(subnet), publicIP: parseIPv4(publicIP), backendType: 'vxlan', vni: 1, vtepMAC: mac, ...extra };
}
