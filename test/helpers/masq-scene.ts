/**
 * The scene of the masquerading e2e tests (--ip-masq with iptables, and with
 * EnableNFTables): hosts h1 and h2 running the daemon with --ip-masq (h1
 * resyncing its rules every second), a pod on each wired by the real CNI
 * plugins, and an `out` namespace on the underlay that is no overlay member.
 * UDP listeners in `out` and in h2's pod record where datagrams come from.
 */
import { readFileSync } from 'node:fs';
import { ClusterMember, Pod, addPod } from '../../src/testbed/netns-cluster';
import { DaemonHandle, Scene, createScene, subnetOf, waitReady } from '../../src/testbed/scene';
import { UdpListener, udpListener } from './udp-listener';

/** The port the listeners use. */
const PORT = 9999;

export interface MasqScene {
  readonly scene: Scene;
  /** h1, whose daemon and pod the tests look at. */
  readonly host: ClusterMember;
  /** The namespace on the underlay outside the overlay. */
  readonly outside: ClusterMember;
  /** h1's daemon (`--ip-masq --iptables-resync 1`). */
  readonly daemon: DaemonHandle;
  /** h1's subnet, e.g. 10.7.5.0/24. */
  readonly subnet: string;
  /** h1's pod `web` and h2's pod `db`. */
  readonly pod: Pod;
  readonly peerPod: Pod;
  /** Listeners in `out` and in h2's pod. */
  readonly outsideListener: UdpListener;
  readonly peerListener: UdpListener;
}

/**
 * Brings the scene up with `config`; `seed` runs in h1's namespace state before its daemon starts (what a
 * previous flanneld left behind). On failure it prints the scene's report, destroys it and rethrows.
 */
export async function startMasqScene(config: string, seed: (scene: Scene, host: ClusterMember) => Promise<void>): Promise<MasqScene> {
  const scene = await createScene({ hosts: ['h1', 'h2'], extraNamespaces: ['out'] });
  try {
    const host = scene.cluster.member('h1');
    const outside = scene.cluster.member('out');
    await scene.putConfig(config);
    await seed(scene, host);
    const daemon = scene.startDaemon('h1', ['--ip-masq', '--iptables-resync', '1']);
    const peer = scene.startDaemon('h2', ['--ip-masq']);
    await Promise.all([waitReady(daemon), waitReady(peer)]);
    const subnet = subnetOf(readFileSync(daemon.subnetFile, 'utf8'));
    const cniDataDir = `${scene.workDir}/cni`;
    const pod = await addPod(scene.cluster, 'h1', { name: 'web', subnetEnvPath: daemon.subnetFile, cniDataDir });
    const peerPod = await addPod(scene.cluster, 'h2', { name: 'db', subnetEnvPath: peer.subnetFile, cniDataDir });
    const outsideListener = await udpListener(scene, outside.netns, PORT);
    const peerListener = await udpListener(scene, peerPod.netns, PORT);
    return { scene, host, outside, daemon, subnet, pod, peerPod, outsideListener, peerListener };
  } catch (err) {
    process.stderr.write(`${await scene.report()}\n`);
    await scene.destroy();
    throw err;
  }
}
