/**
 * The overlay's VXLAN devices (contract §4, §11): flannel.<VNI> for IPv4 and
 * flannel-v6.<VNI> for IPv6, one code path. Adopt a compatible existing device
 * (keeping its MAC, which peers already hold in our lease), otherwise replace it;
 * then give it its /32 or /128 and bring it up.
 */
import { cidrContains } from '../net/ipv4';
import { AnyCidr, IpAddr, anyCidrEquals, formatAnyCidr, formatIp, isCidr6 } from '../net/family';
import { Logger } from '../util/log';
import { DeviceState, Kernel, VxlanSpec } from './kernel';

function showIP(ip: IpAddr | undefined): string {
  return ip === undefined ? '(none)' : formatIp(ip);
}

// fe80::/10: the kernel's own addresses on the device, never removed (flannel: pkg/ip/iface.go EnsureV6AddressOnLink).
function isLinkLocal6(ip: bigint): boolean {
  return ip >> 118n === 0x3fan;
}

/**
 * Why the existing link `state` cannot serve as the device `spec` asks for, or ""
 * when it can be adopted. Compares kind, VNI, underlay, local, port and GBP; MTU,
 * learning and MAC are not reasons to replace a device here (see ensureVxlanDevice).
 */
export function deviceMismatch(spec: VxlanSpec, state: DeviceState): string {
  if (state.kind !== 'vxlan') return `kind ${JSON.stringify(state.kind)} != "vxlan"`;
  const reasons: string[] = [];
  if (state.vni !== spec.vni) reasons.push(`vni ${state.vni ?? '(none)'} != ${spec.vni}`);
  if (state.underlayIndex !== spec.underlayIndex) {
    reasons.push(`underlay ifindex ${state.underlayIndex ?? '(none)'} != ${spec.underlayIndex}`);
  }
  if (state.localIP !== spec.localIP) reasons.push(`local ${showIP(state.localIP)} != ${formatIp(spec.localIP)}`);
  if (state.port !== spec.port) reasons.push(`dstport ${state.port ?? '(none)'} != ${spec.port}`);
  if ((state.gbp ?? false) !== spec.gbp) reasons.push(`gbp ${state.gbp ?? false} != ${spec.gbp}`);
  return reasons.join(', ');
}

/**
 * Makes sure the device `spec.name` exists as `spec` says. A missing device is
 * created with the MAC `macForNew()` gives (random at first start, the lease's
 * MAC once we hold one, so a recreated device needs no lease update); an
 * incompatible one is deleted and recreated the same way. A compatible one is adopted and its MTU corrected. Learning
 * cannot be changed through the `Kernel` seam, so a device that differs only in
 * learning is recreated with its old MAC: the lease (and the peers' FDB entries)
 * stay valid.
 */
export async function ensureVxlanDevice(
  kernel: Kernel,
  spec: VxlanSpec,
  log: Logger,
  macForNew: () => string,
): Promise<{ device: DeviceState; created: boolean }> {
  const existing = await kernel.getDevice(spec.name);
  if (!existing) {
    const device = await kernel.createVxlan(spec, macForNew());
    log.info({ device: spec.name, mac: device.mac, vni: spec.vni }, 'created VXLAN device');
    return { device, created: true };
  }
  const mismatch = deviceMismatch(spec, existing);
  const learningDiffers = mismatch === '' && (existing.learning ?? false) !== spec.learning;
  if (mismatch !== '' || learningDiffers) {
    const reason = mismatch !== '' ? mismatch : `learning ${existing.learning ?? false} != ${spec.learning}`;
    log.warn({ device: spec.name, reason }, 'existing VXLAN device is incompatible; recreating it');
    await kernel.deleteLink(existing.index);
    const mac = learningDiffers ? existing.mac : macForNew();
    const device = await kernel.createVxlan(spec, mac);
    log.info({ device: spec.name, mac: device.mac, vni: spec.vni }, 'created VXLAN device');
    return { device, created: true };
  }
  if (existing.mtu !== spec.mtu) {
    await kernel.setLink(existing.index, { mtu: spec.mtu });
    log.info({ device: spec.name, from: existing.mtu, to: spec.mtu }, 'corrected VXLAN device MTU');
    return { device: { ...existing, mtu: spec.mtu }, created: false };
  }
  // Called on every reconcile pass: adopting an unchanged device is not news.
  log.debug({ device: spec.name, mac: existing.mac }, 'adopted existing VXLAN device');
  return { device: existing, created: false };
}

/**
 * Gives the device `address` (the lease's network address as /32, or its IPv6
 * network address as /128) and brings the link up. Stale addresses go first:
 * for IPv4 any other address inside `network` (left over from an older lease;
 * addresses outside it are not ours and are kept); for IPv6 every other
 * non-link-local address, whatever its network, as flanneld does on
 * flannel-v6.<VNI> (contract §11).
 */
export async function ensureDeviceAddress(
  kernel: Kernel,
  device: DeviceState,
  address: AnyCidr,
  network: AnyCidr,
  log: Logger,
): Promise<void> {
  const v6 = isCidr6(address);
  const have: readonly AnyCidr[] = v6 ? (device.addresses6 ?? []) : device.addresses;
  const stale = (a: AnyCidr): boolean =>
    typeof a.ip === 'bigint' ? !isLinkLocal6(a.ip) : !isCidr6(network) && cidrContains(network, a.ip);
  let present = false;
  for (const a of have) {
    if (anyCidrEquals(a, address)) {
      present = true;
    } else if (stale(a)) {
      await kernel.deleteAddress(device.index, a);
      log.info({ device: device.name, address: formatAnyCidr(a) }, 'removed stale address from VXLAN device');
    }
  }
  if (!present) {
    await kernel.addAddress(device.index, address);
    log.info({ device: device.name, address: formatAnyCidr(address) }, 'added address to VXLAN device');
  }
  if (!device.up) {
    await kernel.setLink(device.index, { up: true });
    log.info({ device: device.name }, 'brought VXLAN device up');
  }
}
