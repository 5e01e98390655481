/**
 * `flanneld-ts status --json` run as an operator runs it on a scene host:
 * bin/flanneld-ts inside the host's namespace, pointed at the scene's etcd and
 * the host daemon's subnet.env. Returns the parsed report.
 */
import { StatusReport } from '../../src/status/report';
import { BIN, Scene } from '../../src/testbed/scene';

/** The host's status report; `args` go after `--json` (e.g. `--iface eth0`). Fails on output that is not JSON, naming the exit code and stderr. */
export async function statusJson(scene: Scene, host: string, subnetFile: string, args: readonly string[] = []): Promise<StatusReport> {
  const ns = scene.cluster.member(host).netns;
  const r = await scene.cluster.exec(ns, process.execPath, [BIN, 'status', '--json', ...args, '--etcd-endpoints', scene.endpoint, '--subnet-file', subnetFile]);
  try {
    return JSON.parse(r.stdout) as StatusReport;
  } catch {
    throw new Error(`flanneld-ts status --json on ${host} printed no report (exit ${r.code}): ${r.stderr.trim()}`);
  }
}
