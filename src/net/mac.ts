/** MAC addresses as canonical lowercase colon-separated text ("6e:d5:a3:cb:6a:6b"). */

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** Accepts `aa:bb:..` or `aa-bb-..` in any case; returns the canonical form. Throws RangeError. */
export function parseMac(text: string): string {
  if (!MAC_RE.test(text)) throw new RangeError(`invalid MAC address ${JSON.stringify(text)}`);
  return text.toLowerCase().replace(/-/g, ':');
}

export function macToBytes(mac: string): Buffer {
  return Buffer.from(parseMac(mac).split(':').map((h) => parseInt(h, 16)));
}

export function macFromBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * A random locally administered unicast MAC, as the kernel and flannel make for
 * a VXLAN device: first octet `(b & 0xfe) | 0x02`. `randomBytes` is injected for tests.
 */
export function randomMac(randomBytes: (n: number) => Uint8Array): string {
  const b = Buffer.from(randomBytes(6));
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return macFromBytes(b);
}
