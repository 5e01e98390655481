/**
 * nf_tables' ruleset generation: a counter the kernel bumps on every committed
 * nf_tables transaction in the network namespace (`nft` scripts, and every
 * iptables-nft / ip6tables-nft change). While it stands still, no rule changed,
 * so the periodic firewall check need not fork `iptables-save` or `nft` to know
 * our rules are still there (issue 10: each fork cost about 15 ms of the
 * daemon's CPU, which made most of its idle cost).
 *
 * Read with one NFT_MSG_GETGEN request on a NETLINK_NETFILTER socket (what
 * `nft monitor` and libnftnl's `nftnl_gen` use); rules of iptables-legacy live
 * outside nf_tables and are not covered, so the iptables backend offers the
 * shortcut only for an nf_tables iptables. Encoding and decoding are pure
 * functions of bytes; the socket is the shell.
 */
import { createNetlink, NetlinkSocket } from 'netlink';
import { errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { RulesetGeneration } from './firewall';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
/** Netlink message types of nfnetlink carry the subsystem in the high byte. */
export const NFT_GETGEN_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
export const NFT_NEWGEN_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;
const NFGENMSG_LEN = 4;
const NFTA_GEN_ID = 1;
const REQUEST_TIMEOUT_MS = 2_000;

/** The body of NFT_MSG_GETGEN: struct nfgenmsg { u8 family (AF_UNSPEC); u8 version (NFNETLINK_V0); be16 res_id }. */
export function nftGetGenRequest(): Buffer {
  return Buffer.alloc(NFGENMSG_LEN);
}

/** NFTA_GEN_ID of one NFT_MSG_NEWGEN body (nfgenmsg + attributes), or undefined when absent or malformed. */
export function decodeNftGeneration(data: Buffer): number | undefined {
  let at = NFGENMSG_LEN;
  while (at + 4 <= data.length) {
    const len = data.readUInt16LE(at);
    if (len < 4 || at + len > data.length) return undefined;
    const type = data.readUInt16LE(at + 2) & 0x3fff;
    if (type === NFTA_GEN_ID && len === 8) return data.readUInt32BE(at + 4);
    at += (len + 3) & ~3;
  }
  return undefined;
}

/**
 * The generation read over netlink. `read` answers undefined when it cannot
 * (no nf_tables in this kernel, a refused socket): the caller then checks the
 * rules the slow way, so a failure here never hides a missing rule. Logged once.
 */
export class NfTablesGeneration implements RulesetGeneration {
  private socket: NetlinkSocket | undefined;
  private warned = false;

  constructor(private readonly log: Logger) {}

  async read(): Promise<number | undefined> {
    try {
      this.socket ??= createNetlink(NETLINK_NETFILTER);
      // Port 0 in the header: without it the package asks the socket for its address (a getsockname) on every request.
      const [messages] = await this.socket.request(NFT_GETGEN_TYPE, nftGetGenRequest(), { timeout: REQUEST_TIMEOUT_MS, localPort: 0 });
      const reply = messages.find((m) => m.type === NFT_NEWGEN_TYPE);
      const gen = reply && decodeNftGeneration(reply.data);
      if (gen === undefined) throw new Error('the reply held no generation');
      return gen;
    } catch (err) {
      if (!this.warned) this.log.warn({ err: errorMessage(err) }, `failed to read the nf_tables ruleset generation: ${errorMessage(err)}; checking the firewall rules with a full listing every period`);
      this.warned = true;
      this.close();
      return undefined;
    }
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
