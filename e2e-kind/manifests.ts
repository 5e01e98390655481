/**
 * flanneld-ts as the pod network of a kind cluster: the kind config and every
 * Kubernetes object, written against the typed models of `kubernetes-models`, so
 * a misspelt or unknown field fails to compile. render.ts writes them out as
 * the YAML that run.sh applies (test/unit/kind-manifests.test.ts checks the
 * committed YAML is exactly this rendering, and validates it strictly).
 *
 * What runs where:
 * - etcd for the overlay: a single-member etcd (the image kubeadm already put on
 *   kind's nodes) with hostNetwork on the control-plane node, on ports
 *   12379/12380 so it never meets kind's own etcd on 2379/2380. Host-network pods
 *   reach it through a Service with a fixed ClusterIP (kube-proxy serves
 *   ClusterIPs in the node's own namespace, before any pod network exists; cluster
 *   DNS does not run until the pod network does).
 * - a Job puts the network config into that etcd (etcdctl, from the same image).
 * - the flanneld-ts DaemonSet on every node: hostNetwork, CAP_NET_ADMIN and
 *   CAP_NET_RAW only, /run/flannel for subnet.env, the host's xtables lock,
 *   readiness on /readyz. It needs no Kubernetes API access (leases live in
 *   etcd), hence no RBAC. Beside it, flanneld-ts-cni.sh installs the reference
 *   CNI plugins kind's node image lacks (`bridge`) and writes the bridge conflist
 *   from subnet.env, as the flannel CNI plugin would delegate it, so no `flannel`
 *   CNI binary is needed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, IContainer, IVolumeMount, Namespace, Pod, Service } from 'kubernetes-models/v1';
import { stringify } from 'yaml';

/** The overlay network: kind's podSubnet is the same range, so kube-proxy's cluster CIDR is the overlay. */
export const POD_NETWORK = '10.244.0.0/16';
export const SERVICE_NETWORK = '10.96.0.0/16';
export const NETWORK_CONFIG = { Network: POD_NETWORK, Backend: { Type: 'vxlan' } };
export const NAMESPACE = 'flanneld-ts';
export const IMAGE = 'flanneld-ts:dev';
/**
 * kubeadm's etcd image for Kubernetes 1.32 (kind v0.26, v0.27), as committed in the YAML.
 * e2e-kind/run.sh replaces it with the image kubeadm lists on the cluster's control-plane
 * node (e2e-kind/kind-lib.sh), which every kind node already holds.
 */
export const ETCD_IMAGE = 'registry.k8s.io/etcd:3.5.16-0';
/** etcdctl's timeouts in the config Job: etcd's rollout (run.sh waits up to 180 s for it). */
export const ETCDCTL_DIAL_TIMEOUT = '180s';
export const ETCDCTL_COMMAND_TIMEOUT = '30s';
export const ETCD_CLUSTER_IP = '10.96.100.10';
export const ETCD_CLIENT_PORT = 12379;
export const ETCD_PEER_PORT = 12380;
export const ETCD_ENDPOINT = `http://${ETCD_CLUSTER_IP}:${ETCD_CLIENT_PORT}`;
export const HEALTHZ_PORT = 8471;
export const CNI_CONF = '/etc/cni/net.d/10-flanneld-ts.conflist';
export const CNI_SCRIPT = readFileSync(join(__dirname, 'flanneld-ts-cni.sh'), 'utf8');

/** The part of kind's Cluster config (kind.x-k8s.io/v1alpha4) used here; exact, so an unknown field fails to compile. */
export interface KindCluster {
  kind: 'Cluster';
  apiVersion: 'kind.x-k8s.io/v1alpha4';
  name?: string;
  networking?: {
    disableDefaultCNI?: boolean;
    podSubnet?: string;
    serviceSubnet?: string;
    kubeProxyMode?: 'iptables' | 'ipvs' | 'nftables' | 'none';
  };
  nodes?: { role: 'control-plane' | 'worker'; image?: string }[];
}

export function kindConfig(): KindCluster {
  return {
    kind: 'Cluster',
    apiVersion: 'kind.x-k8s.io/v1alpha4',
    networking: {
      // No kindnet: flanneld-ts is the pod network.
      disableDefaultCNI: true,
      podSubnet: POD_NETWORK,
      serviceSubnet: SERVICE_NETWORK,
      kubeProxyMode: 'iptables',
    },
    nodes: [{ role: 'control-plane' }, { role: 'worker' }, { role: 'worker' }],
  };
}

const labels = (app: string): Record<string, string> => ({ 'app.kubernetes.io/name': app, 'app.kubernetes.io/part-of': 'flanneld-ts' });
/** Every taint, NotReady included: the pod network's own pods must run before nodes are Ready. */
const tolerateAll = [{ operator: 'Exists' as const }];

function etcd(): [Deployment, Service] {
  const deployment = new Deployment({
    metadata: { name: 'flanneld-ts-etcd', namespace: NAMESPACE, labels: labels('flanneld-ts-etcd') },
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: labels('flanneld-ts-etcd') },
      template: {
        metadata: { labels: labels('flanneld-ts-etcd') },
        spec: {
          hostNetwork: true,
          nodeSelector: { 'node-role.kubernetes.io/control-plane': '' },
          tolerations: tolerateAll,
          priorityClassName: 'system-cluster-critical',
          containers: [
            {
              name: 'etcd',
              image: ETCD_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              command: [
                'etcd',
                '--name=flanneld-ts',
                '--data-dir=/var/lib/etcd',
                `--listen-client-urls=http://0.0.0.0:${ETCD_CLIENT_PORT}`,
                `--advertise-client-urls=${ETCD_ENDPOINT}`,
                `--listen-peer-urls=http://127.0.0.1:${ETCD_PEER_PORT}`,
                `--initial-advertise-peer-urls=http://127.0.0.1:${ETCD_PEER_PORT}`,
                `--initial-cluster=flanneld-ts=http://127.0.0.1:${ETCD_PEER_PORT}`,
                '--listen-metrics-urls=http://127.0.0.1:12381',
              ],
              ports: [{ name: 'client', containerPort: ETCD_CLIENT_PORT, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/health', port: ETCD_CLIENT_PORT }, periodSeconds: 5 },
              volumeMounts: [{ name: 'data', mountPath: '/var/lib/etcd' }],
              resources: { requests: { cpu: '50m', memory: '64Mi' } },
            },
          ],
          // The overlay's leases are cheap to rebuild: every daemon re-creates its own.
          volumes: [{ name: 'data', emptyDir: {} }],
        },
      },
    },
  });
  const service = new Service({
    metadata: { name: 'flanneld-ts-etcd', namespace: NAMESPACE, labels: labels('flanneld-ts-etcd') },
    spec: {
      type: 'ClusterIP',
      clusterIP: ETCD_CLUSTER_IP,
      selector: labels('flanneld-ts-etcd'),
      ports: [{ name: 'client', port: ETCD_CLIENT_PORT, targetPort: ETCD_CLIENT_PORT, protocol: 'TCP' }],
    },
  });
  return [deployment, service];
}

function networkConfigJob(): Job {
  return new Job({
    metadata: { name: 'flanneld-ts-network-config', namespace: NAMESPACE, labels: labels('flanneld-ts-network-config') },
    spec: {
      backoffLimit: 30,
      template: {
        metadata: { labels: labels('flanneld-ts-network-config') },
        spec: {
          hostNetwork: true,
          restartPolicy: 'OnFailure',
          tolerations: tolerateAll,
          containers: [
            {
              name: 'put-config',
              image: ETCD_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              // No shell in the etcd image: Kubernetes expands $(NET_CONF) itself. The Job may start
              // before etcd's rollout ends: etcdctl's default 2 s dial timeout would fail it, so it waits
              // as long as `rollout status` in run.sh may (the Job's restarts then cover the rest).
              command: ['etcdctl', `--endpoints=${ETCD_ENDPOINT}`, `--dial-timeout=${ETCDCTL_DIAL_TIMEOUT}`, `--command-timeout=${ETCDCTL_COMMAND_TIMEOUT}`, 'put', '/coreos.com/network/config', '$(NET_CONF)'],
              env: [{ name: 'NET_CONF', valueFrom: { configMapKeyRef: { name: 'flanneld-ts', key: 'net-conf.json' } } }],
            },
          ],
        },
      },
    },
  });
}

function daemonSet(): DaemonSet {
  const config: IVolumeMount = { name: 'config', mountPath: '/etc/flanneld-ts', readOnly: true };
  const flanneld: IContainer = {
    name: 'flanneld-ts',
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    args: [`--etcd-endpoints=${ETCD_ENDPOINT}`, '--ip-masq', `--healthz-port=${HEALTHZ_PORT}`],
    securityContext: { privileged: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } },
    ports: [{ name: 'healthz', containerPort: HEALTHZ_PORT, protocol: 'TCP' }],
    // Ready = lease held, subnet.env written, flannel.1 and every peer programmed.
    readinessProbe: { httpGet: { path: '/readyz', port: HEALTHZ_PORT }, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/healthz', port: HEALTHZ_PORT }, periodSeconds: 10, failureThreshold: 6 },
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    volumeMounts: [
      { name: 'run-flannel', mountPath: '/run/flannel' },
      // Shared with kube-proxy and the host when they use iptables-legacy.
      { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
    ],
  };
  const cniConfig: IContainer = {
    name: 'cni-config',
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    command: ['sh', '/etc/flanneld-ts/flanneld-ts-cni.sh', 'config'],
    env: [
      { name: 'SUBNET_ENV', value: '/run/flannel/subnet.env' },
      { name: 'CNI_CONF', value: `/host${CNI_CONF}` },
    ],
    resources: { requests: { cpu: '5m', memory: '8Mi' } },
    volumeMounts: [config, { name: 'run-flannel', mountPath: '/run/flannel', readOnly: true }, { name: 'cni-conf', mountPath: '/host/etc/cni/net.d' }],
  };
  const installPlugins: IContainer = {
    name: 'install-cni-plugins',
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    command: ['sh', '/etc/flanneld-ts/flanneld-ts-cni.sh', 'install-plugins'],
    env: [{ name: 'CNI_BIN_DIR', value: '/host/opt/cni/bin' }],
    volumeMounts: [config, { name: 'cni-bin', mountPath: '/host/opt/cni/bin' }],
  };
  return new DaemonSet({
    metadata: { name: 'flanneld-ts', namespace: NAMESPACE, labels: labels('flanneld-ts') },
    spec: {
      selector: { matchLabels: labels('flanneld-ts') },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: labels('flanneld-ts') },
        spec: {
          hostNetwork: true,
          priorityClassName: 'system-node-critical',
          tolerations: tolerateAll,
          // SIGTERM: the daemon exits 0 within 2 s and leaves the data path in place.
          terminationGracePeriodSeconds: 10,
          initContainers: [installPlugins],
          containers: [flanneld, cniConfig],
          volumes: [
            { name: 'run-flannel', hostPath: { path: '/run/flannel', type: 'DirectoryOrCreate' } },
            { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
            { name: 'cni-bin', hostPath: { path: '/opt/cni/bin', type: 'DirectoryOrCreate' } },
            { name: 'cni-conf', hostPath: { path: '/etc/cni/net.d', type: 'DirectoryOrCreate' } },
            { name: 'config', configMap: { name: 'flanneld-ts', defaultMode: 0o755 } },
          ],
        },
      },
    },
  });
}

/** Namespace, ConfigMap, etcd, the config Job and the DaemonSet, in the order to apply them. */
export function manifests(): (Namespace | ConfigMap | Deployment | Service | Job | DaemonSet)[] {
  const ns = new Namespace({ metadata: { name: NAMESPACE, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } });
  const cm = new ConfigMap({
    metadata: { name: 'flanneld-ts', namespace: NAMESPACE, labels: labels('flanneld-ts') },
    data: { 'net-conf.json': `${JSON.stringify(NETWORK_CONFIG)}\n`, 'flanneld-ts-cni.sh': CNI_SCRIPT },
  });
  return [ns, cm, ...etcd(), networkConfigJob(), daemonSet()];
}

/** nginx1 and nginx2, never on the same node (the article's two pods). */
export function testPods(): Pod[] {
  return ['nginx1', 'nginx2'].map(
    (name) =>
      new Pod({
        metadata: { name, namespace: 'default', labels: { app: 'flts-nginx' } },
        spec: {
          affinity: {
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'flts-nginx' } }, topologyKey: 'kubernetes.io/hostname' }],
            },
          },
          containers: [{ name: 'nginx', image: 'nginx:1.27-alpine', ports: [{ containerPort: 80, protocol: 'TCP' }] }],
        },
      }),
  );
}

const HEADER = [
  '# Generated from e2e-kind/manifests.ts (typed Kubernetes models): edit that, then',
  '#   FLTS_UPDATE_MANIFESTS=1 npx vitest run test/unit/kind-manifests.test.ts',
].join('\n');

function toYaml(docs: readonly unknown[]): string {
  return `${HEADER}\n${docs.map((d) => `---\n${stringify(JSON.parse(JSON.stringify(d)), { lineWidth: 0 })}`).join('')}`;
}

/** The files run.sh uses, by name under e2e-kind/. */
export function renderedFiles(): Record<string, string> {
  return {
    'kind-config.yaml': toYaml([kindConfig()]),
    'flanneld-ts.yaml': toYaml(manifests()),
    'test-pods.yaml': toYaml(testPods()),
  };
}
