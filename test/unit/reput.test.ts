import { describe, expect, it } from 'vitest';
import { decodeLease } from '../../src/lease/codec';
import { REPUT_RATE_PER_SECOND, ReputSchedule, periodicReputDelay, reputWindowMs, wouldWipeFlanneldPeers } from '../../src/lease/reput';
import { LeaseEvent } from '../../src/lease/store';
import { parseCidr } from '../../src/net/ipv4';

const put = (name: string, value: string): LeaseEvent => ({ type: 'put', record: decodeLease(`/p/subnets/${name}`, name, value), revision: 5n });
const GOOD = '{"PublicIP":"10.65.0.5","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:05"}}';

describe('re-put timing', () => {
  it('jitters the period by ±25 %', () => {
    expect(periodicReputDelay(3_600_000, () => 0)).toBe(2_700_000);
    expect(periodicReputDelay(3_600_000, () => 0.5)).toBe(3_600_000);
    expect(periodicReputDelay(3_600_000, () => 0.999999)).toBeLessThan(4_500_000);
  });

  it('spreads a triggered re-put over leases / rate seconds, at least one second', () => {
    expect(reputWindowMs(0)).toBe(1000);
    expect(reputWindowMs(5)).toBe(1000);
    expect(reputWindowMs(5000)).toBe((5000 / REPUT_RATE_PER_SECOND) * 1000);
  });

  it('schedules the period, moves earlier on a trigger, and puts at most once per window', () => {
    let r = 0.5;
    const s = new ReputSchedule(3_600_000, () => r, 0);
    expect(s.dueAt()).toBe(3_600_000);
    expect(s.triggered).toBe(false);
    r = 0.25;
    s.trigger(1000, 100); // window 10 s
    expect(s.dueAt()).toBe(1000 + 2500);
    expect(s.triggered).toBe(true);
    r = 0.9;
    s.trigger(1500, 100); // a later trigger never postpones
    expect(s.dueAt()).toBe(3500);
    s.attempted(3500);
    expect(s.triggered).toBe(false);
    expect(s.dueAt()).toBe(3500 + periodicReputDelay(3_600_000, () => 0.9));
    r = 0;
    s.trigger(4000, 100); // only one window after the last attempt
    expect(s.dueAt()).toBe(13_500);
    s.attempted(13_500);
    s.failed(13_600);
    expect(s.dueAt()).toBe(23_500);
  });

  it('knows which events make flanneld drop its peers', () => {
    expect(wouldWipeFlanneldPeers([put('10.7.5.0-24', GOOD)])).toBe(false);
    expect(wouldWipeFlanneldPeers([put('10.7.5.0-24', GOOD), put('foo', GOOD)])).toBe(true);
    expect(wouldWipeFlanneldPeers([put('10.7.5.0-24', '{"PublicIP":null}')])).toBe(true);
    expect(wouldWipeFlanneldPeers([put('10.7.5.0-24', 'not json')])).toBe(true);
    expect(wouldWipeFlanneldPeers([{ type: 'delete', key: '/p/subnets/10.7.5.0-24', subnet: parseCidr('10.7.5.0/24'), revision: 6n }])).toBe(false);
    expect(wouldWipeFlanneldPeers([{ type: 'delete', key: '/p/subnets/x', subnet: undefined, revision: 6n }])).toBe(true);
  });
});
