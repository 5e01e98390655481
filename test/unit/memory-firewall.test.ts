/** MemoryFirewall held to the Firewall contract that the iptables and nftables backends also pass. */
import { MemoryFirewall } from '../../src/firewall/memory-firewall';
import { firewallContract } from '../helpers/firewall-contract';

firewallContract('MemoryFirewall', () => {
  const sets = new Map<string, readonly string[]>();
  const names = { masq: 'nat/FLANNEL-POSTRTG', forward: 'filter/FLANNEL-FWD' };
  const open = async (opts: ConstructorParameters<typeof MemoryFirewall>[0]) => new MemoryFirewall(opts, sets);
  return {
    open,
    names,
    flush: async (set) => {
      (await open({ ipMasq: false, forwardRules: false, fullyRandom: false })).tamper(names[set], []);
    },
    addForeignRule: async (set) => {
      const fw = await open({ ipMasq: false, forwardRules: false, fullyRandom: false });
      fw.tamper(names[set], [...(sets.get(names[set]) ?? []), '-s 192.0.2.0/24 -j ACCEPT']);
    },
    cleanup: async () => {
      sets.clear();
    },
  };
});
