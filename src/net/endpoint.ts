/**
 * The host of an etcd endpoint URL, as an address of either family when it is
 * a literal: `http://10.99.0.2:2379` → 10.99.0.2, `https://[fd00::2]:2379` →
 * fd00::2 (the brackets are URL syntax, RFC 3986), `https://etcd.local:2379` →
 * the name, for the caller to resolve. Pure.
 */
import { IpAddr } from './family';
import { tryParseIPv4 } from './ipv4';
import { tryParseIPv6 } from './ipv6';

/** The endpoint's host: an address, or `{ name }` for a host name; undefined when the text is no URL. */
export function endpointHost(endpoint: string): IpAddr | { readonly name: string } | undefined {
  let host: string;
  try {
    host = new URL(endpoint).hostname;
  } catch {
    return undefined;
  }
  if (host === '') return undefined;
  const bracketed = host.startsWith('[') && host.endsWith(']');
  const literal = bracketed ? tryParseIPv6(host.slice(1, -1)) : tryParseIPv4(host);
  if (literal !== undefined) return literal;
  return bracketed ? undefined : { name: host };
}

/** The literal addresses among the endpoints (either family), in order, without repeats; names are left out. */
export function endpointLiterals(endpoints: readonly string[]): IpAddr[] {
  const out: IpAddr[] = [];
  for (const ep of endpoints) {
    const h = endpointHost(ep);
    if (h !== undefined && typeof h !== 'object' && !out.includes(h)) out.push(h);
  }
  return out;
}
