import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { NcmError, NcmLink, ncmMacs, planNcm } from '../../../src/fabrics/usb/ncm';
import type { DhcpLike } from '../../../src/fabrics/usb/ncm';
import type { DhcpServerOptions } from '../../../src/net/dhcp-server';
import { parseMac } from '../../../src/net/ipv4';
import { FakeIpTool } from './fake-ip-tool';

test('MACs: 02:<h0..h4> for the board, 06:<h0..h4> for the computer, h = SHA-256("lunbox-ncm\\0" + serial)', () => {
  const h = createHash('sha256').update('lunbox-ncm\0LUNBOX0001').digest().subarray(0, 5).toString('hex').match(/../g)?.join(':');
  assert.equal(ncmMacs('LUNBOX0001'), { deviceMac: `02:${h}`, hostMac: `06:${h}` });
  // Pinned, so a change of the derivation (which would give every board new MACs) is noticed.
  assert.equal(ncmMacs('LUNBOX0001'), { deviceMac: '02:57:4a:2e:c4:ff', hostMac: '06:57:4a:2e:c4:ff' });
  for (const serial of ['LUNBOX0001', 'A', '0123456789ABCDEF']) {
    const { deviceMac, hostMac } = ncmMacs(serial);
    for (const m of [deviceMac, hostMac]) {
      const first = parseMac(m)?.[0] ?? 0xff;
      assert.is(first & 0x01, 0, `${m} is unicast`);
      assert.is(first & 0x02, 0x02, `${m} is locally administered`);
    }
    assert.is.not(deviceMac, hostMac);
  }
  assert.is.not(ncmMacs('BOARD-A').deviceMac, ncmMacs('BOARD-B').deviceMac, 'two boards differ');
});

test('plan: defaults 10.55.0.1/30 → computer 10.55.0.2, DHCP on, 3600 s; options override', () => {
  const p = planNcm({}, 'S1');
  assert.is(p.link.cidr, '10.55.0.1/30');
  assert.is(p.link.host, '10.55.0.2');
  assert.is(p.dhcp, true);
  assert.is(p.leaseTime, 3600);
  assert.equal({ d: p.deviceMac, h: p.hostMac }, { d: ncmMacs('S1').deviceMac, h: ncmMacs('S1').hostMac });
  const q = planNcm({ address: '192.168.7.1/29', dhcp: false, leaseTime: 600, hostMac: '0A:00:00:00:00:01', deviceMac: '0a:00:00:00:00:02' }, 'S1');
  assert.equal([q.link.board, q.link.host, q.link.netmask, q.dhcp, q.leaseTime, q.hostMac, q.deviceMac], ['192.168.7.1', '192.168.7.2', '255.255.255.248', false, 600, '0a:00:00:00:00:01', '0a:00:00:00:00:02']);
  assert.throws(() => planNcm({ address: '10.55.0.1/31' }, 'S1'), (e: unknown) => e instanceof NcmError && /usb\.gadget\.ncm\.address/.test((e as Error).message));
});

function recorder(fail?: string): { created: DhcpServerOptions[]; started: number; stopped: number; create: (o: DhcpServerOptions) => DhcpLike } {
  const r = {
    created: [] as DhcpServerOptions[],
    started: 0,
    stopped: 0,
    create: (o: DhcpServerOptions): DhcpLike => {
      r.created.push(o);
      return {
        start: async () => {
          if (fail) throw new Error(fail);
          r.started++;
        },
        stop: async () => void r.stopped++,
      };
    },
  };
  return r;
}

test('link start: up, address, permanent neighbour entry for the computer, then DHCP for its MAC only', async () => {
  const ip = new FakeIpTool();
  ip.add('usb0');
  const d = recorder();
  const logs: string[] = [];
  const plan = planNcm({}, 'LUNBOX0001');
  const link = new NcmLink({ ifname: 'usb0', plan, ip, createDhcp: d.create, log: (l, m) => logs.push(`${l}: ${m}`), pollMs: 60_000 });
  await link.start();
  assert.equal(ip.commands, [
    'ip link set dev usb0 up',
    'ip addr replace 10.55.0.1/30 broadcast + dev usb0',
    'ip neigh replace 10.55.0.2 lladdr 06:57:4a:2e:c4:ff dev usb0 nud permanent',
  ]);
  assert.is(d.started, 1);
  assert.equal(d.created[0]?.lease, { serverAddress: '10.55.0.1', clientAddress: '10.55.0.2', clientMac: '06:57:4a:2e:c4:ff', netmask: '255.255.255.252', leaseSeconds: 3600 });
  // The unicast hook re-installs the neighbour entry (a carrier drop may have flushed it).
  await d.created[0]?.beforeUnicast?.();
  assert.is(ip.commands.length, 4);
  assert.ok(logs.some((l) => l === 'info: ncm: usb0 is 10.55.0.1/30 (MAC 02:57:4a:2e:c4:ff); the computer\'s end is 06:57:4a:2e:c4:ff, DHCP gives it 10.55.0.2'), logs.join('\n'));
  await link.stop();
  await link.stop();
  assert.is(d.stopped, 1);
});

test('link: no interface is NO_INTERFACE; a DHCP server that cannot start is logged, not fatal; dhcp false starts none', async () => {
  const ip = new FakeIpTool();
  const plan = planNcm({}, 'S');
  try {
    await new NcmLink({ ifname: 'usb0', plan, ip, createDhcp: recorder().create }).start();
    assert.unreachable();
  } catch (e) {
    assert.is((e as NcmError).code, 'NO_INTERFACE');
  }
  ip.add('usb0');
  const logs: string[] = [];
  const failing = new NcmLink({ ifname: 'usb0', plan, ip, createDhcp: recorder('UDP 0.0.0.0:67 is in use').create, log: (l, m) => logs.push(`${l}: ${m}`), pollMs: 60_000 });
  await failing.start();
  assert.ok(logs.some((l) => /^error: ncm: no DHCP server: UDP 0\.0\.0\.0:67 is in use; give the computer 10\.55\.0\.2\/30 by hand/.test(l)), logs.join('\n'));
  await failing.stop();
  const none = recorder();
  const off = new NcmLink({ ifname: 'usb0', plan: planNcm({ dhcp: false }, 'S'), ip, createDhcp: none.create, pollMs: 60_000 });
  await off.start();
  assert.is(none.created.length, 0);
  await off.stop();
});

test('link: an `ip` failure at start is an error (the config asked for NCM)', async () => {
  const ip = new FakeIpTool();
  ip.add('usb0');
  ip.failNext = 'RTNETLINK answers: Operation not permitted';
  const link = new NcmLink({ ifname: 'usb0', plan: planNcm({}, 'S'), ip, createDhcp: recorder().create });
  try {
    await link.start();
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, 'Operation not permitted');
  }
});

test('carrier watch: the computer bringing the link up re-applies up/address/neighbour; down is logged', async () => {
  const ip = new FakeIpTool();
  const usb0 = ip.add('usb0');
  const logs: string[] = [];
  const link = new NcmLink({ ifname: 'usb0', plan: planNcm({}, 'S'), ip, createDhcp: recorder().create, log: (l, m) => logs.push(`${l}: ${m}`), pollMs: 60_000 });
  await link.start();
  assert.is(link.carrier, false);
  // Something flushed the address while the cable was out (NetworkManager, a script...).
  usb0.addresses.clear();
  usb0.neighbours.clear();
  usb0.carrier = true;
  await link.poll();
  assert.is(link.carrier, true);
  assert.equal([...usb0.addresses], ['10.55.0.1/30']);
  assert.is(usb0.neighbours.get('10.55.0.2'), ncmMacs('S').hostMac);
  assert.is(link.counters.linkUps, 1);
  await link.poll(); // no edge: nothing re-applied
  assert.is(link.counters.configured, 2);
  usb0.carrier = false;
  await link.poll();
  assert.is(link.counters.linkDowns, 1);
  assert.ok(logs.includes('info: ncm: usb0 link up (the computer enabled the network function)'));
  assert.ok(logs.includes('info: ncm: usb0 link down'));
  await link.stop();
});

test('re-announce: nothing heard after link up -> usb0 down/up at 5, 10, 20 ... 60 s; stops once the computer talks', async () => {
  const ip = new FakeIpTool();
  const usb0 = ip.add('usb0');
  const logs: string[] = [];
  let now = 1_000_000;
  const link = new NcmLink({ ifname: 'usb0', plan: planNcm({}, 'S'), ip, createDhcp: recorder().create, log: (l, m) => logs.push(`${l}: ${m}`), pollMs: 60_000, now: () => now });
  await link.start();
  usb0.carrier = true;
  usb0.rxPackets = 7; // counted before the link came up: not "heard"
  await link.poll(); // rising edge
  const downs = (): number => ip.commands.filter((c) => c === 'ip link set dev usb0 down').length;
  now += 4_999;
  await link.poll();
  assert.is(downs(), 0, 'not before 5 s');
  now += 1;
  await link.poll();
  assert.is(downs(), 1, 're-announced at 5 s');
  assert.is(link.counters.reannounced, 1);
  // Down and up again, configured again (the kernel flushed the neighbour entry on down).
  assert.ok(usb0.up);
  assert.is(usb0.neighbours.get('10.55.0.2'), ncmMacs('S').hostMac);
  assert.ok(logs.some((l) => /^info: ncm: nothing received on usb0 5 s after link up: announcing the link again/.test(l)), logs.join('\n'));
  const at: number[] = [];
  for (let t = 0; t < 200_000; t += 1000) {
    now += 1000;
    const before = downs();
    await link.poll();
    if (downs() > before) at.push(t + 1000);
  }
  assert.equal(at.slice(0, 5), [10_000, 30_000, 70_000, 130_000, 190_000], 'then after 10, 20, 40, 60 s');
  // The computer talks: no more announcements, even after a long silence.
  usb0.rxPackets++;
  await link.poll();
  const n = downs();
  now += 600_000;
  await link.poll();
  assert.is(downs(), n);
  await link.stop();
});

test('re-announce: a computer heard from at once is never disturbed; reannounceMs 0 turns it off', async () => {
  for (const reannounceMs of [undefined, 0]) {
    const ip = new FakeIpTool();
    const usb0 = ip.add('usb0');
    let now = 0;
    const link = new NcmLink({ ifname: 'usb0', plan: planNcm({}, 'S'), ip, createDhcp: recorder().create, pollMs: 60_000, now: () => now, ...(reannounceMs !== undefined ? { reannounceMs } : {}) });
    usb0.carrier = true; // already connected when lunbox starts
    await link.start();
    if (reannounceMs === undefined) usb0.rxPackets = 3; // router solicitation, DHCP...
    for (let i = 0; i < 120; i++) {
      now += 1000;
      await link.poll();
    }
    assert.is(ip.commands.filter((c) => c.endsWith(' down')).length, 0, `reannounceMs ${String(reannounceMs)}`);
    assert.is(link.counters.reannounced, 0);
    await link.stop();
  }
});

test.run();
