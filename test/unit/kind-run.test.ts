/**
 * e2e-kind/run.sh's own decisions, with docker, kind, kubectl and sysctl replaced
 * by stubs that log their arguments (kind cannot run on these machines): the
 * preflight, never deleting a cluster it did not create, loading the image as an
 * archive of the node's platform, and applying the manifest rendered with the
 * etcd image read from the control-plane node.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const RUN = resolve(__dirname, '..', '..', 'e2e-kind', 'run.sh');
const ETCD = 'registry.k8s.io/etcd:3.6.5-0';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Stubs {
  /** Output of `kind get clusters`. */
  clusters?: string;
  /** Exit code of `kind create cluster`. */
  createExit?: number;
  inotify?: [number, number];
}

/** Runs run.sh against stubs; returns its exit code, stderr and the stubs' log (one line per call). */
function runWithStubs(stubs: Stubs, env: Record<string, string> = {}): { code: number; stderr: string; calls: string[]; applied: string } {
  const dir = mkdtempSync(join(tmpdir(), 'flts-kind-run-'));
  dirs.push(dir);
  const log = join(dir, 'calls');
  const applied = join(dir, 'applied.yaml');
  const [instances, watches] = stubs.inotify ?? [512, 524288];
  const stub = (name: string, body: string): void =>
    writeFileSync(join(dir, name), `#!/bin/bash\necho "${name} $*" >>'${log}'\n${body}\n`, { mode: 0o755 });
  stub('sysctl', `case $2 in fs.inotify.max_user_instances) echo ${instances} ;; *) echo ${watches} ;; esac`);
  stub(
    'kind',
    [
      'case "$1 $2" in',
      `  "get clusters") printf '${stubs.clusters ?? ''}' ;;`,
      `  "create cluster") exit ${stubs.createExit ?? 0} ;;`,
      '  "get nodes") echo flts-kind-control-plane ;;',
      'esac',
    ].join('\n'),
  );
  stub(
    'docker',
    [
      'case $1 in',
      '  version) echo amd64 ;;',
      "  save) if [ \"$2\" = --help ]; then echo '      --platform string   Save only the given platform'; else touch \"${@: -2:1}\"; fi ;;",
      `  exec) printf 'registry.k8s.io/kube-apiserver:v1.35.0\\n${ETCD}\\nregistry.k8s.io/pause:3.10.1\\n' ;;`,
      'esac',
    ].join('\n'),
  );
  // kubectl: keeps what is applied, then fails the first wait (the test ends there).
  stub('kubectl', `case $3 in apply) cat "$5" >'${applied}' ;; *) exit 1 ;; esac`);
  const r = spawnSync('bash', [RUN], { env: { PATH: `${dir}:/usr/bin:/bin`, HOME: dir, ...env }, encoding: 'utf8', timeout: 20_000 });
  let appliedText = '';
  try {
    appliedText = readFileSync(applied, 'utf8');
  } catch {
    // nothing applied
  }
  const calls = (() => {
    try {
      return readFileSync(log, 'utf8').trim().split('\n');
    } catch {
      return [];
    }
  })();
  return { code: r.status ?? -1, stderr: r.stderr, calls, applied: appliedText };
}

describe('e2e-kind/run.sh', () => {
  it('stops before creating anything when the inotify limits are too low', () => {
    const r = runWithStubs({ inotify: [128, 8192] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sudo sysctl fs\.inotify\.max_user_instances=512/);
    expect(r.calls.filter((c) => c.startsWith('kind '))).toEqual([]);
  });

  it.each([undefined, '1'])('leaves an existing cluster of the same name alone (KEEP=%s)', (keep) => {
    const r = runWithStubs({ clusters: 'other\\nflts-kind\\n' }, keep ? { KEEP: keep } : {});
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/a kind cluster named flts-kind exists already/);
    expect(r.calls.filter((c) => /^kind (create|delete)/.test(c))).toEqual([]);
  });

  it('does not delete anything when kind create fails', () => {
    const r = runWithStubs({ createExit: 1 });
    expect(r.code).not.toBe(0);
    expect(r.calls.some((c) => c.startsWith('kind create cluster'))).toBe(true);
    expect(r.calls.filter((c) => c.startsWith('kind delete'))).toEqual([]);
  });

  it("loads the image as an archive of the node's platform, applies the manifest with the node's etcd image, deletes the cluster it created", () => {
    const r = runWithStubs({});
    expect(r.code).not.toBe(0); // the stub kubectl fails the first wait
    const save = r.calls.find((c) => c.startsWith('docker save ') && c !== 'docker save --help');
    expect(save).toMatch(/^docker save --platform linux\/amd64 -o \S+\/image\.tar flanneld-ts:dev$/);
    const tar = save?.split(' ')[5];
    expect(r.calls).toContain(`kind load image-archive ${tar} --name flts-kind`);
    expect(r.calls.filter((c) => c.startsWith('kind load docker-image'))).toEqual([]);
    expect(r.calls).toContain('docker exec flts-kind-control-plane kubeadm config images list --config /kind/kubeadm.conf');
    expect(r.applied).toContain(`image: ${ETCD}`);
    expect(r.applied).not.toContain('etcd:3.5.16-0');
    expect(r.calls).toContain('kind delete cluster --name flts-kind');
  });
});
