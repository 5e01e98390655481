/**
 * Which source address a datagram arrives from, to tell masqueraded traffic
 * from traffic that keeps the pod's address: a UDP listener (a node process in
 * a scene namespace, ended with the scene) records each datagram's source, and
 * `sourceFrom` sends one datagram from another namespace and reports what the
 * listener saw.
 */
import { ChildProcess } from 'node:child_process';
import { Scene, waitFor } from '../../src/testbed/scene';

export interface UdpListener {
  /** Source addresses of the datagrams received so far, in order. */
  readonly sources: readonly string[];
  /** Sends one datagram from `fromNetns` to this listener at `target` (its address); resolves with the source it arrived from. */
  sourceFrom(fromNetns: string, target: string): Promise<string>;
}

/** Starts a listener on UDP `port` in `netns`; resolves once it is bound. */
export async function udpListener(scene: Scene, netns: string, port: number): Promise<UdpListener> {
  const sources: string[] = [];
  const recv = 'require("dgram").createSocket("udp4").on("message", (m, r) => process.stdout.write(r.address + "\\n")).bind(Number(process.argv[1]), () => process.stdout.write("listening\\n"));';
  const child: ChildProcess = scene.cluster.spawn(netns, process.execPath, ['-e', recv, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let ready = false;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n').filter((l) => l !== '')) {
      if (line === 'listening') ready = true;
      else sources.push(line);
    }
  });
  await waitFor(`a UDP listener in ${netns}`, () => ready);
  return {
    sources,
    async sourceFrom(fromNetns, target) {
      const before = sources.length;
      const send = 'const s = require("dgram").createSocket("udp4"); s.send("hi", Number(process.argv[2]), process.argv[1], (e) => { s.close(); if (e) throw e; });';
      const r = await scene.cluster.exec(fromNetns, process.execPath, ['-e', send, target, String(port)]);
      if (r.code !== 0) throw new Error(`sending from ${fromNetns} failed: ${r.stderr}`);
      return waitFor(`the listener at ${target} to receive the datagram`, () => sources[before], 5000, 20);
    },
  };
}
