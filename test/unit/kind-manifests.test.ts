/**
 * kind cannot start on these machines (no container registry for its node
 * image), so the kind deployment (e2e-kind/) is validated statically here:
 * - the committed YAML is exactly the rendering of e2e-kind/manifests.ts;
 * - every document passes the Kubernetes schema of `kubernetes-models` (types,
 *   enums, required fields) AND a strict check that rejects unknown fields: the
 *   YAML is type-checked by the TypeScript compiler against the models'
 *   interfaces (excess-property checks reach every depth), since the schema
 *   validators accept unknown fields; negative cases prove both catch mistakes;
 * - the pieces fit together (subnets, ports, probes, mounts, capabilities), and
 *   the CNI config script builds what the flannel CNI plugin would delegate;
 * - every shell script of the repository passes shellcheck.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as apps from 'kubernetes-models/apps/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as core from 'kubernetes-models/v1';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CNI_CONF, ETCD_CLIENT_PORT, ETCD_IMAGE, ETCD_PEER_PORT, ETCDCTL_DIAL_TIMEOUT, HEALTHZ_PORT, renderedFiles } from '../../e2e-kind/manifests';
import { parseNetworkConfig } from '../../src/config';
import { formatCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { flannelCniDelegate, parseSubnetEnv } from '../../src/testbed/cni';

const ROOT = resolve(__dirname, '..', '..');
const KIND = join(ROOT, 'e2e-kind');
const SCRIPT = join(KIND, 'flanneld-ts-cni.sh');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML, walked by path
type Doc = Record<string, any>;

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'flts-kind-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function loadYaml(name: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(join(KIND, name), 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${name}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Doc).filter((d) => d !== null);
}

const MODELS: Record<string, Record<string, unknown>> = { v1: core, 'apps/v1': apps, 'batch/v1': batch };

/** The kubernetes-models class for a document; throws for an apiVersion/kind it does not know. */
function modelOf(doc: Doc): new (data: unknown) => { validate(): void } {
  const cls = MODELS[doc.apiVersion]?.[doc.kind];
  if (typeof cls !== 'function') throw new Error(`no Kubernetes model for ${doc.apiVersion} ${doc.kind}`);
  return cls as new (data: unknown) => { validate(): void };
}

/** The schema check of kubernetes-models: wrong types, enums, missing required fields. Returns the error or ''. */
function schemaErrors(doc: Doc): string {
  try {
    new (modelOf(doc))(doc).validate();
    return '';
  } catch (err) {
    return String((err as Error).message);
  }
}

/** Where the TypeScript interface of a document lives. */
function typeOf(doc: Doc): { module: string; name: string } {
  if (doc.apiVersion === 'kind.x-k8s.io/v1alpha4') return { module: './manifests', name: 'KindCluster' };
  modelOf(doc); // known to the models at all
  return { module: `kubernetes-models/${doc.apiVersion}/${doc.kind}`, name: `I${doc.kind}` };
}

/**
 * The strict check: each document becomes `const docN: I<Kind> = <its JSON>` in a
 * virtual file beside the manifests, compiled with the TypeScript compiler. An
 * object literal may only specify known properties, at every depth, so unknown
 * fields are errors, as are wrong types and missing required fields.
 */
function strictErrors(docs: readonly Doc[]): string[] {
  const text = docs
    .map((d, i) => {
      const t = typeOf(d);
      return `import type { ${t.name} as T${i} } from '${t.module}';\nexport const doc${i}: T${i} = ${JSON.stringify(d, null, 2)};\n`;
    })
    .join('\n');
  // TypeScript 7's compiler is a native program with no stable JS API yet: its tsc checks a scratch
  // file beside e2e-kind/manifests.ts (the kind config's type comes from there), then both go.
  const file = join(KIND, `.strict-check-${process.pid}.ts`);
  const project = join(KIND, `.strict-check-${process.pid}.json`);
  try {
    writeFileSync(file, text);
    const compilerOptions = { strict: true, noEmit: true, skipLibCheck: true, target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], esModuleInterop: true };
    writeFileSync(project, JSON.stringify({ compilerOptions, files: [file] }));
    const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', project, '--pretty', 'false'], { encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    const lines = text.split('\n');
    const errors: string[] = [];
    for (const line of r.stdout.split('\n')) {
      const m = /^\S.*\((\d+),\d+\): error TS\d+: (.*)$/.exec(line);
      if (m) errors.push(`${m[2]} (at: ${lines[Number(m[1]) - 1]?.trim()})`);
      else if (line.startsWith(' ') && errors.length > 0) errors[errors.length - 1] += `\n${line.trim()}`;
    }
    if (r.status !== 0 && errors.length === 0) throw new Error(`tsc failed without a diagnostic: ${r.stdout}${r.stderr}`);
    return errors;
  } finally {
    rmSync(file, { force: true });
    rmSync(project, { force: true });
  }
}

const clone = (d: Doc): Doc => JSON.parse(JSON.stringify(d)) as Doc;

const files = renderedFiles();
if (process.env.FLTS_UPDATE_MANIFESTS === '1') {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(KIND, name), content);
}

describe('e2e-kind YAML', () => {
  it.each(Object.keys(files))('%s is the rendering of e2e-kind/manifests.ts', (name) => {
    const committed = existsSync(join(KIND, name)) ? readFileSync(join(KIND, name), 'utf8') : '';
    expect(committed, `e2e-kind/${name} is stale: FLTS_UPDATE_MANIFESTS=1 npx vitest run test/unit/kind-manifests.test.ts`).toBe(files[name]);
  });

  it('passes the Kubernetes schemas and the strict unknown-field check, every document', () => {
    const k8s = [...loadYaml('flanneld-ts.yaml'), ...loadYaml('test-pods.yaml')];
    expect(k8s.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'Namespace/flanneld-ts',
      'ConfigMap/flanneld-ts',
      'Deployment/flanneld-ts-etcd',
      'Service/flanneld-ts-etcd',
      'Job/flanneld-ts-network-config',
      'DaemonSet/flanneld-ts',
      'Pod/nginx1',
      'Pod/nginx2',
    ]);
    for (const d of k8s) expect(schemaErrors(d), `${d.kind}/${d.metadata.name}`).toBe('');
    expect(strictErrors([...k8s, ...loadYaml('kind-config.yaml')])).toEqual([]);
  });

  it('rejects an unknown field, at any depth and in the kind config (negative cases)', () => {
    const ds = loadYaml('flanneld-ts.yaml').find((d) => d.kind === 'DaemonSet') as Doc;
    const typo = clone(ds);
    typo.spec.template.spec.containers[0].securityContext.capabilitis = { add: ['NET_ADMIN'] };
    expect(strictErrors([typo]).join('\n')).toMatch(/'"capabilitis"' does not exist in type/);
    const svc = clone(loadYaml('flanneld-ts.yaml').find((d) => d.kind === 'Service') as Doc);
    svc.spec.clusterIp = svc.spec.clusterIP;
    expect(strictErrors([svc]).join('\n')).toMatch(/'"clusterIp"' does not exist in type/);
    const kind = clone(loadYaml('kind-config.yaml')[0] as Doc);
    kind.networking.disableDefaultCni = true;
    expect(strictErrors([kind]).join('\n')).toMatch(/'"disableDefaultCni"' does not exist in type/);
  });

  it('rejects a wrong type, a bad enum value and a missing required field (negative cases)', () => {
    const all = loadYaml('flanneld-ts.yaml');
    const dep = clone(all.find((d) => d.kind === 'Deployment') as Doc);
    dep.spec.replicas = '1';
    expect(schemaErrors(dep)).toMatch(/replicas/);
    expect(strictErrors([dep]).join('\n')).toMatch(/Type 'string' is not assignable to type 'number'/);
    const pull = clone(all.find((d) => d.kind === 'DaemonSet') as Doc);
    pull.spec.template.spec.containers[0].imagePullPolicy = 'Sometimes';
    expect(schemaErrors(pull)).toMatch(/imagePullPolicy|allowed values/);
    const unnamed = clone(all.find((d) => d.kind === 'DaemonSet') as Doc);
    delete unnamed.spec.template.spec.containers[0].name;
    expect(schemaErrors(unnamed)).toMatch(/name/);
    expect(strictErrors([unnamed]).join('\n')).toMatch(/Property '"name"' is missing/);
    expect(() => modelOf({ apiVersion: 'apps/v1', kind: 'DeamonSet' })).toThrow('no Kubernetes model for apps/v1 DeamonSet');
  });

  it('catches an unknown field in e2e-kind/manifests.ts at compile time', () => {
    // This file is type-checked with the suite (tsc --noEmit): were the field known, the directive would fail.
    // @ts-expect-error imagePullPolcy is not a Container field
    const c: core.IContainer = { name: 'x', image: 'flanneld-ts:dev', imagePullPolcy: 'Never' };
    expect(c.name).toBe('x');
  });
});

describe('e2e-kind pieces fit together', () => {
  const all = loadYaml('flanneld-ts.yaml');
  const get = (kind: string): Doc => all.find((d) => d.kind === kind) as Doc;
  const kind = loadYaml('kind-config.yaml')[0] as Doc;
  const ds = get('DaemonSet');
  const pod = ds.spec.template.spec;
  const flanneld = pod.containers.find((c: Doc) => c.name === 'flanneld-ts') as Doc;
  const hostPaths = new Map<string, string>(pod.volumes.filter((v: Doc) => v.hostPath).map((v: Doc) => [v.name, v.hostPath.path]));

  it('kind: no default CNI, and a pod subnet that is the overlay network', () => {
    expect(kind.networking.disableDefaultCNI).toBe(true);
    const netConf = parseNetworkConfig(get('ConfigMap').data['net-conf.json']);
    expect(formatCidr(netConf.network)).toBe(kind.networking.podSubnet);
    expect(kind.nodes.filter((n: Doc) => n.role === 'worker').length).toBeGreaterThanOrEqual(2); // nginx1 and nginx2 on different nodes
  });

  it('etcd: a fixed ClusterIP in the service range, on ports that miss kind\'s own etcd', () => {
    const svc = get('Service');
    const range = parseCidr(kind.networking.serviceSubnet);
    const ip = parseIPv4(svc.spec.clusterIP);
    expect(ip >>> (32 - range.prefixLen)).toBe(range.ip >>> (32 - range.prefixLen));
    expect(svc.spec.ports[0].port).toBe(ETCD_CLIENT_PORT);
    expect([ETCD_CLIENT_PORT, ETCD_PEER_PORT]).not.toContain(2379);
    expect([ETCD_CLIENT_PORT, ETCD_PEER_PORT]).not.toContain(2380);
    const etcd = get('Deployment').spec.template.spec;
    expect(etcd.hostNetwork).toBe(true);
    expect(svc.spec.selector).toEqual(get('Deployment').spec.template.metadata.labels);
    const endpoint = `http://${svc.spec.clusterIP}:${svc.spec.ports[0].port}`;
    expect(flanneld.args).toContain(`--etcd-endpoints=${endpoint}`);
    expect(get('Job').spec.template.spec.containers[0].command).toContain(`--endpoints=${endpoint}`);
  });

  it('DaemonSet: host network, NET_ADMIN and NET_RAW only, the flannel and CNI host paths', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(flanneld.securityContext.privileged).toBe(false);
    expect(flanneld.securityContext.capabilities.add.sort()).toEqual(['NET_ADMIN', 'NET_RAW']);
    expect(hostPaths.get('run-flannel')).toBe('/run/flannel');
    expect(hostPaths.get('cni-conf')).toBe('/etc/cni/net.d');
    expect(hostPaths.get('cni-bin')).toBe('/opt/cni/bin');
    expect(hostPaths.get('xtables-lock')).toBe('/run/xtables.lock');
    expect(flanneld.volumeMounts.map((m: Doc) => m.mountPath)).toEqual(expect.arrayContaining(['/run/flannel', '/run/xtables.lock']));
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
  });

  it('DaemonSet: ready on /readyz of the --healthz-port it passes', () => {
    expect(flanneld.args).toContain(`--healthz-port=${HEALTHZ_PORT}`);
    expect(flanneld.readinessProbe.httpGet).toEqual({ path: '/readyz', port: HEALTHZ_PORT });
    expect(flanneld.livenessProbe.httpGet).toEqual({ path: '/healthz', port: HEALTHZ_PORT });
  });

  it('DaemonSet: the CNI script it runs is e2e-kind/flanneld-ts-cni.sh, writing where containerd reads', () => {
    expect(get('ConfigMap').data['flanneld-ts-cni.sh']).toBe(readFileSync(SCRIPT, 'utf8'));
    const cni = pod.containers.find((c: Doc) => c.name === 'cni-config') as Doc;
    expect(cni.command).toEqual(['sh', '/etc/flanneld-ts/flanneld-ts-cni.sh', 'config']);
    const confDir = cni.volumeMounts.find((m: Doc) => m.name === 'cni-conf').mountPath as string;
    expect(cni.env).toContainEqual({ name: 'CNI_CONF', value: `${confDir}/${CNI_CONF.split('/').pop()}` });
    expect(CNI_CONF.startsWith(`${hostPaths.get('cni-conf')}/`)).toBe(true);
    expect(pod.initContainers[0].command).toEqual(['sh', '/etc/flanneld-ts/flanneld-ts-cni.sh', 'install-plugins']);
  });
});

/** Runs `fn args…` of e2e-kind/kind-lib.sh with `input` on stdin. */
function kindLib(fn: string, args: string[], input = ''): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', `source e2e-kind/kind-lib.sh && ${fn} "$@"`, fn, ...args], { cwd: ROOT, input, encoding: 'utf8', timeout: 10_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe("the etcd image of the kind manifest: read from the node's kubeadm, rendered in", () => {
  // `kubeadm config images list` as kind's node images of Kubernetes 1.32 and 1.35 print it.
  const list = (etcd: string): string =>
    ['registry.k8s.io/kube-apiserver:v1.35.0', 'registry.k8s.io/kube-proxy:v1.35.0', 'registry.k8s.io/coredns/coredns:v1.12.1', 'registry.k8s.io/pause:3.10.1', etcd, ''].join('\n');

  it.each(['registry.k8s.io/etcd:3.5.16-0', 'registry.k8s.io/etcd:3.6.5-0'])('finds %s in the list', (etcd) => {
    const r = kindLib('kind_etcd_image', [], list(etcd));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${etcd}\n`);
  });

  it('fails on a list without an etcd image, with two, or with something that is no image reference', () => {
    expect(kindLib('kind_etcd_image', [], 'registry.k8s.io/pause:3.10\n').stderr).toMatch(/no etcd image/);
    expect(kindLib('kind_etcd_image', [], list('registry.k8s.io/etcd:3.6.5-0') + 'registry.k8s.io/etcd:3.5.21-0\n').stderr).toMatch(/two etcd images/);
    expect(kindLib('kind_etcd_image', [], 'registry.k8s.io/etcd:3.6; rm -rf /\n').code).not.toBe(0);
  });

  it('renders it into the etcd Deployment and the config Job, and changes nothing else', () => {
    const committed = readFileSync(join(KIND, 'flanneld-ts.yaml'), 'utf8');
    const r = kindLib('kind_render_etcd_image', ['registry.k8s.io/etcd:3.6.5-0'], committed);
    expect(r.code, r.stderr).toBe(0);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc).filter((d) => d !== null);
    const images = (kind: string): string[] => (docs.find((d) => d.kind === kind) as Doc).spec.template.spec.containers.map((c: Doc) => c.image);
    expect(images('Deployment')).toEqual(['registry.k8s.io/etcd:3.6.5-0']);
    expect(images('Job')).toEqual(['registry.k8s.io/etcd:3.6.5-0']);
    expect(r.stdout.replaceAll('registry.k8s.io/etcd:3.6.5-0', ETCD_IMAGE)).toBe(committed);
    expect(kindLib('kind_render_etcd_image', ['nginx:latest'], committed).code).not.toBe(0);
    expect(kindLib('kind_render_etcd_image', ['registry.k8s.io/etcd:3.6.5-0'], 'kind: Job\n').stderr).toMatch(/no 'image: registry.k8s.io\/etcd:3.5.16-0' to replace/);
  });

  it("matches what kind-lib.sh replaces, and the config Job's etcdctl waits out etcd's rollout", () => {
    expect(readFileSync(join(KIND, 'kind-lib.sh'), 'utf8')).toContain(`KIND_DEFAULT_ETCD_IMAGE=${ETCD_IMAGE}\n`);
    const job = loadYaml('flanneld-ts.yaml').find((d) => d.kind === 'Job') as Doc;
    const command = job.spec.template.spec.containers[0].command as string[];
    expect(command).toContain(`--dial-timeout=${ETCDCTL_DIAL_TIMEOUT}`);
    expect(command.some((a) => a.startsWith('--command-timeout='))).toBe(true);
    const rollout = /rollout status deployment\/flanneld-ts-etcd --timeout=(\d+)s/.exec(readFileSync(join(KIND, 'run.sh'), 'utf8'));
    expect(Number(ETCDCTL_DIAL_TIMEOUT.replace(/s$/, ''))).toBeGreaterThanOrEqual(Number(rollout?.[1]));
  });

  it('the inotify preflight wants the limits kind documents for multi-node clusters', () => {
    expect(kindLib('kind_inotify_ok', ['128', '65536']).stderr).toMatch(/fs\.inotify\.max_user_instances=128 .*sudo sysctl fs\.inotify\.max_user_instances=512 fs\.inotify\.max_user_watches=524288/);
    expect(kindLib('kind_inotify_ok', ['512', '65536']).code).toBe(1);
    expect(kindLib('kind_inotify_ok', ['512', '524288']).code).toBe(0);
  });
});

function runScript(args: string[], env: Record<string, string>, input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('sh', [SCRIPT, ...args], { env: { PATH: process.env.PATH, ...env }, input, encoding: 'utf8', timeout: 10_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('e2e-kind/flanneld-ts-cni.sh', () => {
  const env = (masq: boolean, subnet = '10.244.5.1/24', network = '10.244.0.0/16'): string =>
    `FLANNEL_NETWORK=${network}\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=${masq}\n`;

  it.each([
    [true, '10.244.5.1/24', '10.244.0.0/16'],
    [false, '10.244.5.1/24', '10.244.0.0/16'],
    [false, '10.7.255.1/20', '10.7.3.3/12'],
  ])('writes the bridge delegate the flannel CNI plugin would build (ipmasq %s, %s in %s)', (masq, subnet, network) => {
    const text = env(masq, subnet, network);
    const r = runScript(['render'], {}, text);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as { name: string; cniVersion: string; plugins: Doc[] };
    const delegate = flannelCniDelegate(parseSubnetEnv(text));
    expect({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion }).toEqual(delegate);
    expect(list.plugins[1]).toEqual({ type: 'portmap', capabilities: { portMappings: true } });
  });

  it.each([
    ['FLANNEL_IPMASQ=true\n', 'subnet.env is missing FLANNEL_NETWORK'],
    [env(true).replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=14a'), 'FLANNEL_MTU: invalid number "14a"'],
    [env(true).replace('10.244.5.1/24', '"10.244.5.1/24"'), 'FLANNEL_SUBNET: invalid CIDR'],
    [env(true).replace('10.244.0.0/16', '10.244.0.0/33'), 'FLANNEL_NETWORK: invalid CIDR'],
  ])('refuses a bad subnet.env, naming the key (%#)', (text, message) => {
    const r = runScript(['render'], {}, text);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it('config: writes the conflist once subnet.env exists, atomically, and only when it changes', () => {
    const dir = tempDir();
    const conf = join(dir, 'net.d', '10-flanneld-ts.conflist');
    const vars = { SUBNET_ENV: join(dir, 'subnet.env'), CNI_CONF: conf, ONESHOT: '1' };
    expect(runScript(['config'], vars).code).toBe(1); // no subnet.env yet
    expect(existsSync(conf)).toBe(false);
    writeFileSync(vars.SUBNET_ENV, env(true));
    const first = runScript(['config'], vars);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('wrote');
    expect(JSON.parse(readFileSync(conf, 'utf8')).plugins[0].ipam.ranges).toEqual([[{ subnet: '10.244.5.0/24' }]]);
    const again = runScript(['config'], vars);
    expect(again.stderr).not.toContain('wrote');
    expect(readdirSync(join(dir, 'net.d'))).toEqual(['10-flanneld-ts.conflist']);
  });

  it('install-plugins: copies the four plugins that are missing and keeps those already there', () => {
    const dir = tempDir();
    const src = join(dir, 'src');
    const dst = join(dir, 'bin');
    mkdirSync(src);
    mkdirSync(dst);
    for (const p of ['bridge', 'host-local', 'loopback', 'portmap']) writeFileSync(join(src, p), `#!/bin/sh\necho ${p}\n`);
    writeFileSync(join(dst, 'loopback'), '#!/bin/sh\necho node-own\n');
    chmodSync(join(dst, 'loopback'), 0o755);
    const r = runScript(['install-plugins'], { PLUGIN_SRC: src, CNI_BIN_DIR: dst });
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dst).sort()).toEqual(['bridge', 'host-local', 'loopback', 'portmap']);
    expect(readFileSync(join(dst, 'loopback'), 'utf8')).toContain('node-own');
    expect(readFileSync(join(dst, 'bridge'), 'utf8')).toContain('echo bridge');
  });
});

describe('shell scripts', () => {
  const scripts = ['e2e-kind', 'scripts', 'systemd'].flatMap((d) =>
    readdirSync(join(ROOT, d))
      .filter((f) => f.endsWith('.sh'))
      .map((f) => `${d}/${f}`),
  );

  it('are all found', () => {
    expect(scripts).toEqual(expect.arrayContaining(['e2e-kind/run.sh', 'e2e-kind/flanneld-ts-cni.sh', 'scripts/container-e2e.sh', 'scripts/test.sh', 'systemd/install.sh']));
  });

  it.each(scripts)('%s passes shellcheck', (script) => {
    const r = spawnSync('shellcheck', ['--external-sources', script], { cwd: ROOT, encoding: 'utf8' });
    if (r.error) throw new Error(`shellcheck is not installed (scripts/install-deps.sh installs it): ${r.error.message}`);
    expect(r.stdout + r.stderr, script).toBe('');
    expect(r.status).toBe(0);
  });
});
