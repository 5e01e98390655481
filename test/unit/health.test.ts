import { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonStatus } from '../../src/daemon';
import { notReadyReason, startHealthServer } from '../../src/health';
import { Metrics } from '../../src/metrics';

const ready: DaemonStatus = { phase: 'ready', subnet: '10.7.5.0/24', publicIP: '10.65.154.11', vtepMAC: '02:00:00:00:00:01', peers: 2, leaseHeld: true, kernelInSync: true };
let server: Server | undefined;
afterEach(() => server?.close());

async function serve(status: () => DaemonStatus, metrics = new Metrics({ processMetrics: false })): Promise<string> {
  server = await startHealthServer('127.0.0.1', 0, { status, metrics: () => metrics.text(), metricsContentType: metrics.registry.contentType });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('readiness', () => {
  it.each([
    [{ ...ready }, undefined],
    [{ ...ready, phase: 'starting' as const }, /starting/],
    [{ ...ready, leaseHeld: false }, /lease lost/],
    [{ ...ready, kernelInSync: false }, /kernel entries differ/],
  ])('%# %j', (st, want) => {
    const r = notReadyReason(st);
    if (want === undefined) expect(r).toBeUndefined();
    else expect(r).toMatch(want);
  });
});

describe('health server', () => {
  it('serves /healthz always, /readyz 503 then 200, 404 elsewhere', async () => {
    let st: DaemonStatus = { ...ready, phase: 'starting' };
    const base = await serve(() => st);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notYet = await fetch(`${base}/readyz`);
    expect(notYet.status).toBe(503);
    expect(await notYet.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/starting/) });
    st = ready;
    const ok = await fetch(`${base}/readyz`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ ready: true, subnet: '10.7.5.0/24', peers: 2 });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('serves Prometheus metrics that follow what the daemon reports', async () => {
    const m = new Metrics({ processMetrics: false });
    const base = await serve(() => ready, m);
    m.leasesSeen({ valid: 3, invalid: 1, ignored: 0 });
    m.reconciled({ planned: 3, failed: 0, peers: 2, durationMs: 12, applied: { 'replace-route-ok': 1, 'replace-fdb-ok': 1, 'replace-neighbor-ok': 1 }, repairs: 3, generation: 4 });
    m.etcdReconnected();
    m.watchResynced();
    m.leaseRenewed(true);
    m.leaseEventApplied(0.004);
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const line of [
      'flanneld_leases{state="valid"} 3',
      'flanneld_leases{state="invalid"} 1',
      'flanneld_peers_programmed 2',
      'flanneld_kernel_in_sync 1',
      'flanneld_kernel_operations_total{op="replace",kind="route",result="ok"} 1',
      'flanneld_drift_repairs_total 3',
      'flanneld_etcd_reconnects_total 1',
      'flanneld_watch_resyncs_total 1',
      'flanneld_lease_renewals_total{result="ok"} 1',
      'flanneld_lease_renewals_total{result="lost"} 0',
      'flanneld_reconcile_duration_seconds_count 1',
      'flanneld_lease_event_to_kernel_seconds_bucket{le="0.005"} 1',
    ]) expect(text).toContain(line);
  });

  it('names the address when it cannot listen', async () => {
    const base = await serve(() => ready);
    const port = Number(base.split(':').pop());
    await expect(startHealthServer('127.0.0.1', port, { status: () => ready, metrics: async () => '', metricsContentType: 'text/plain' })).rejects.toThrow(`failed to listen on 127.0.0.1:${port} (--healthz-ip/--healthz-port)`);
  });
});
