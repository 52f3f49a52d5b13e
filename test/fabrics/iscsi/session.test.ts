import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CmdSnWindow, buildNexus, iscsiTransportId } from '../../../src/fabrics/iscsi/session';
import type { IscsiTargetDef } from '../../../src/fabrics/iscsi/types';

test('§4.2.2.1 in-order CmdSN runs at once and advances ExpCmdSN', () => {
  const w = new CmdSnWindow(10, 64);
  const ran: number[] = [];
  assert.is(w.offer(10, false, () => ran.push(10)), 'now');
  assert.is(w.expCmdSN, 11);
  assert.is(w.maxCmdSN, 11 + 63);
  assert.equal(ran, [10]);
});

test('gaps are held and released in CmdSN order', () => {
  const w = new CmdSnWindow(1, 64);
  const ran: number[] = [];
  assert.is(w.offer(3, false, () => ran.push(3)), 'queued');
  assert.is(w.offer(2, false, () => ran.push(2)), 'queued');
  assert.equal(ran, []);
  w.offer(1, false, () => ran.push(1));
  assert.equal(ran, [1, 2, 3]);
  assert.is(w.expCmdSN, 4);
});

test('immediate PDUs run at once and do not advance ExpCmdSN', () => {
  const w = new CmdSnWindow(5, 64);
  let ran = false;
  assert.is(w.offer(5, true, () => (ran = true)), 'now');
  assert.ok(ran);
  assert.is(w.expCmdSN, 5);
});

test('out of window (too low, too high) and duplicates are dropped', () => {
  const w = new CmdSnWindow(100, 64);
  const max = w.maxCmdSN;
  assert.is(w.offer(99, false, () => assert.unreachable()), 'drop');
  assert.is(w.offer(max + 1, false, () => assert.unreachable()), 'drop');
  assert.is(w.offer(101, false, () => undefined), 'queued');
  assert.is(w.offer(101, false, () => assert.unreachable()), 'drop');
  assert.not.ok(w.acceptable(99, false));
  assert.ok(w.acceptable(99, true));
});

test('window wraps around 2^32', () => {
  const w = new CmdSnWindow(0xffffffff, 64);
  const ran: number[] = [];
  w.offer(0, false, () => ran.push(0));
  w.offer(0xffffffff, false, () => ran.push(0xffffffff));
  assert.equal(ran, [0xffffffff, 0]);
  assert.is(w.expCmdSN, 1);
});

test('busy tasks shrink MaxCmdSN but it never moves backwards', () => {
  let busy = 0;
  const w = new CmdSnWindow(1, 8, () => busy);
  assert.is(w.maxCmdSN, 8);
  w.offer(1, false, () => undefined);
  busy = 8;
  assert.is(w.maxCmdSN, 8); // would be 1 (closed) but 8 was already advertised
  for (let i = 2; i <= 8; i++) w.offer(i, false, () => undefined);
  assert.is(w.maxCmdSN, 8); // closed window: MaxCmdSN = ExpCmdSN - 1
  assert.is(w.offer(9, false, () => undefined), 'drop');
  busy = 0;
  assert.is(w.maxCmdSN, 16);
});

const t = { iqn: 'iqn.2024-01.org.lunbox:t1', tpgt: 1, relativePortId: 2 } as IscsiTargetDef;

test('nexus names follow SPC-4 §7.6.4.6 / RFC 7143 §4.2.7', () => {
  const n = buildNexus('iqn.1994-05.com.example:host', Buffer.from('23d000000001', 'hex'), t);
  assert.is(n.id, 'iqn.1994-05.com.example:host,i,0x23d000000001|iqn.2024-01.org.lunbox:t1,t,0x0001');
  assert.is(n.initiatorPort, 'iqn.1994-05.com.example:host,i,0x23d000000001');
  assert.is(n.targetPort, 'iqn.2024-01.org.lunbox:t1,t,0x0001');
  assert.is(n.protocolId, 5);
  assert.is(n.relativeTargetPortId, 2);
});

test('TransportID format 01: header, NUL-terminated port name, padded to 4', () => {
  const b = iscsiTransportId('iqn.a:b', '23d000000001');
  // "iqn.a:b,i,0x23d000000001\0" = 25 bytes → 28
  assert.is(b[0], 0x45); // FORMAT CODE 01b | PROTOCOL IDENTIFIER 5
  assert.is(b.readUInt16BE(2), 28);
  assert.is(b.length, 32);
  assert.is(b.toString('latin1', 4, 28), 'iqn.a:b,i,0x23d000000001');
  assert.is(b[28], 0);
  assert.is(iscsiTransportId('a', '000000000000').readUInt16BE(2), 20); // at least 20
});

test.run();
