import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  answerSetup,
  applySetupAnswer,
  decodeEp0Event,
  decodeEp0Events,
  encodeEp0Event,
  Ep0EventError,
  serveEp0,
} from '../../../src/fabrics/usb/ep0-events';
import type { Ep0Handler, Ep0Io, SetupAnswer, SetupPacket } from '../../../src/fabrics/usb/ep0-events';
import { FakeFfs } from './fake-ffs';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\/\/.*$/gm, '').replace(/\s+/g, ''), 'hex');

test('lifecycle events: type at byte 8, setup bytes ignored', () => {
  const kinds = ['bind', 'unbind', 'enable', 'disable', 'setup', 'suspend', 'resume'] as const;
  kinds.forEach((kind, type) => {
    const b = Buffer.alloc(12);
    b[8] = type;
    const ev = decodeEp0Event(b);
    assert.is(ev.kind, kind);
  });
});

test('SETUP event: Get Max LUN as the kernel queues it', () => {
  const b = hex(`
    a1        // bRequestType: IN | class | interface
    fe        // bRequest: Get Max LUN
    00 00     // wValue 0
    00 00     // wIndex 0 (function-local interface after FunctionFS remapping)
    01 00     // wLength 1
    04        // type FUNCTIONFS_SETUP
    00 00 00  // pad
  `);
  const ev = decodeEp0Event(b);
  assert.equal(ev, { kind: 'setup', setup: { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 } });
  assert.is(encodeEp0Event(ev).toString('hex'), b.toString('hex'));
});

test('SETUP event: little-endian words, read at an offset inside a pooled buffer', () => {
  const pool = Buffer.alloc(40, 0xee);
  hex('21 ff 34 12 78 56 bc 9a 04 00 00 00').copy(pool, 17);
  const ev = decodeEp0Event(pool.subarray(5), 12);
  assert.equal(ev, { kind: 'setup', setup: { bmRequestType: 0x21, bRequest: 0xff, wValue: 0x1234, wIndex: 0x5678, wLength: 0x9abc } });
});

test('several events in one read; partial and unknown events are typed errors', () => {
  const two = Buffer.concat([encodeEp0Event({ kind: 'bind' }), encodeEp0Event({ kind: 'enable' })]);
  assert.equal(decodeEp0Events(two).map((e) => e.kind), ['bind', 'enable']);
  const bad = (f: () => unknown, code: string): void =>
    assert.throws(f, (e: unknown) => e instanceof Ep0EventError && e.code === code);
  bad(() => decodeEp0Events(two.subarray(0, 20)), 'PARTIAL_EVENT');
  bad(() => decodeEp0Event(Buffer.alloc(11)), 'SHORT_EVENT');
  const unknown = Buffer.alloc(12);
  unknown[8] = 7;
  bad(() => decodeEp0Event(unknown), 'UNKNOWN_EVENT');
});

const setup = (over: Partial<SetupPacket>): SetupPacket => ({ bmRequestType: 0, bRequest: 0, wValue: 0, wIndex: 0, wLength: 0, ...over });
const GET_MAX_LUN = setup({ bmRequestType: 0xa1, bRequest: 0xfe, wLength: 1 });
const RESET = setup({ bmRequestType: 0x21, bRequest: 0xff });

test('Get Max LUN answers number of LUNs - 1 (clamped to 0..15)', () => {
  for (const [luns, max] of [[1, 0], [2, 1], [16, 15], [40, 15], [0, 0]] as const) {
    const a = answerSetup(GET_MAX_LUN, { lunCount: luns });
    assert.is(a.kind, 'data-in');
    assert.equal(a.kind === 'data-in' && [...a.data], [max]);
  }
});

test('Bulk-Only Mass Storage Reset answers reset (then a zero-length status stage)', () => {
  assert.equal(answerSetup(RESET, { lunCount: 1 }), { kind: 'reset' });
  assert.equal(answerSetup({ ...RESET, wIndex: 2 }, { lunCount: 1, interfaceNumber: 2 }), { kind: 'reset' });
});

test('bad wValue / wIndex / wLength stall in the wrong direction', () => {
  const cases: [SetupPacket, 'read' | 'write'][] = [
    [{ ...GET_MAX_LUN, wValue: 1 }, 'read'],
    [{ ...GET_MAX_LUN, wIndex: 1 }, 'read'],
    [{ ...GET_MAX_LUN, wLength: 0 }, 'read'],
    [{ ...GET_MAX_LUN, wLength: 2 }, 'read'],
    [{ ...RESET, wValue: 1 }, 'write'],
    [{ ...RESET, wIndex: 1 }, 'write'],
    [{ ...RESET, wLength: 1 }, 'write'],
    [setup({ bmRequestType: 0xc0, bRequest: 0x01, wLength: 4 }), 'read'], // vendor IN
    [setup({ bmRequestType: 0x21, bRequest: 0x01 }), 'write'], // other class OUT
    [setup({ bmRequestType: 0xa1, bRequest: 0xff, wLength: 1 }), 'read'], // reset code, IN direction
  ];
  for (const [s, io] of cases) {
    const a = answerSetup(s, { lunCount: 2 });
    assert.is(a.kind, 'stall', JSON.stringify(s));
    assert.is(a.kind === 'stall' && a.io, io, JSON.stringify(s));
  }
});

class RecordingIo implements Ep0Io {
  readonly ops: string[] = [];
  constructor(private readonly fail?: string) {}
  async read(n: number): Promise<Buffer> {
    this.ops.push(`read ${n}`);
    if (this.fail) throw Object.assign(new Error(this.fail), { code: this.fail });
    return Buffer.alloc(0);
  }
  async write(d: Buffer): Promise<void> {
    this.ops.push(`write ${d.toString('hex') || '-'}`);
    if (this.fail) throw Object.assign(new Error(this.fail), { code: this.fail });
  }
}

test('applySetupAnswer: data stage cut to wLength, ACK by a non-empty read, stall swallows EL2HLT', async () => {
  const io = new RecordingIo();
  await applySetupAnswer(io, { ...GET_MAX_LUN, wLength: 1 }, { kind: 'data-in', data: Buffer.from([1, 2]) });
  await applySetupAnswer(io, RESET, { kind: 'ack' });
  let resets = 0;
  await applySetupAnswer(io, RESET, { kind: 'reset' }, () => {
    resets++;
    io.ops.push('reset');
  });
  assert.is(resets, 1);
  assert.equal(io.ops, ['write 01', 'read 1', 'reset', 'read 1']);
  const stalling = new RecordingIo('EL2HLT');
  await applySetupAnswer(stalling, GET_MAX_LUN, { kind: 'stall', io: 'read', reason: 'x' });
  await applySetupAnswer(stalling, RESET, { kind: 'stall', io: 'write', reason: 'x' });
  assert.equal(stalling.ops, ['read 1', 'write -']);
  try {
    await applySetupAnswer(new RecordingIo('ESHUTDOWN'), RESET, { kind: 'stall', io: 'write', reason: 'x' });
    assert.unreachable();
  } catch (e) {
    assert.is((e as NodeJS.ErrnoException).code, 'ESHUTDOWN');
  }
});

test('serveEp0 over the fake ep0: lifecycle events, Get Max LUN, reset ACK, stall', async () => {
  const ffs = new FakeFfs();
  const seen: string[] = [];
  const handler: Ep0Handler = {
    event: (k) => void seen.push(k),
    setup: (s): SetupAnswer => {
      const a = answerSetup(s, { lunCount: 3 });
      seen.push(`setup ${a.kind}`);
      return a.kind === 'reset' ? { kind: 'ack' } : a;
    },
  };
  let stop = false;
  const loop = serveEp0(ffs.ep0, handler, () => stop);
  ffs.ep0.event('bind');
  ffs.ep0.event('enable');
  const lun = await ffs.host.getMaxLun();
  assert.equal([...lun.data], [2]);
  assert.is(lun.stalled, false);
  const reset = await ffs.host.resetRecovery();
  assert.is(reset.stalled, false);
  const bad = await ffs.host.getMaxLun({ wLength: 4 });
  assert.is(bad.stalled, true);
  ffs.ep0.event('suspend');
  ffs.ep0.event('resume');
  ffs.ep0.event('disable');
  await new Promise((r) => setTimeout(r, 5));
  stop = true;
  ffs.ep0.close();
  const err = await loop;
  assert.is((err as NodeJS.ErrnoException | undefined)?.code, 'ESHUTDOWN');
  assert.equal(seen, ['bind', 'enable', 'setup data-in', 'setup reset', 'setup stall', 'suspend', 'resume', 'disable']);
  assert.ok(ffs.trace.includes('EP0 ACK'));
  assert.ok(ffs.trace.includes('EP0 STALL'));
});

test.run();
