import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BOT_CASE_NUMBER,
  BotError,
  BotFunction,
  botEp0Handler,
  checkCbw,
  classifyCase,
  CswStatus,
  decodeCbw,
  decodeCsw,
  encodeCbw,
  encodeCsw,
  usbNexus,
} from '../../../src/fabrics/usb/bot';
import type { BotCase, BotOptions, BotOutcome, Direction } from '../../../src/fabrics/usb/bot';
import { serveEp0 } from '../../../src/fabrics/usb/ep0-events';
import { FakeFfs } from './fake-ffs';
import type { TransportRequest, TransportResult } from './fake-ffs';
import { BLOCK, cdb, FakePort } from './fake-port';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\/\/.*$/gm, '').replace(/\s+/g, ''), 'hex');

// ---------------------------------------------------------------------------------------
// Codec

const READ10_CBW = hex(`
  55 53 42 43   // dCBWSignature 'USBC' = 0x43425355 little-endian
  78 56 34 12   // dCBWTag 0x12345678
  00 10 00 00   // dCBWDataTransferLength 4096
  80            // bmCBWFlags: Data-In
  01            // bCBWLUN 1
  0a            // bCBWCBLength 10
  28 00 00 00 00 10 00 00 08 00   // READ(10) LBA 16, 8 blocks
  00 00 00 00 00 00               // CBWCB padding to 16 bytes
`);

test('CBW: READ(10) on LUN 1, byte for byte both ways', () => {
  assert.is(READ10_CBW.length, 31);
  const cbw = decodeCbw(READ10_CBW);
  assert.is(cbw.dCBWSignature, 0x43425355);
  assert.is(cbw.dCBWTag, 0x12345678);
  assert.is(cbw.dCBWDataTransferLength, 4096);
  assert.is(cbw.bmCBWFlags, 0x80);
  assert.is(cbw.bCBWLUN, 1);
  assert.is(cbw.bCBWCBLength, 10);
  assert.is(cbw.CBWCB.length, 16);
  assert.is(cbw.CBWCB.subarray(0, 10).toString('hex'), '28000000001000000800');
  const again = encodeCbw({ tag: 0x12345678, dataTransferLength: 4096, dataIn: true, lun: 1, cdb: cbw.CBWCB.subarray(0, 10) });
  assert.is(again.toString('hex'), READ10_CBW.toString('hex'));
});

test('CBW: decoded from an offset inside a pooled buffer', () => {
  const pool = Buffer.alloc(100, 0xaa);
  READ10_CBW.copy(pool, 33);
  assert.is(decodeCbw(pool.subarray(33, 64)).dCBWTag, 0x12345678);
});

test('CSW: phase error with residue, byte for byte both ways', () => {
  const bytes = hex(`
    55 53 42 53   // dCSWSignature 'USBS' = 0x53425355
    78 56 34 12   // dCSWTag
    00 02 00 00   // dCSWDataResidue 512
    02            // bCSWStatus: phase error
  `);
  assert.is(encodeCsw(0x12345678, 512, CswStatus.PHASE_ERROR).toString('hex'), bytes.toString('hex'));
  assert.equal(decodeCsw(bytes), { dCSWSignature: 0x53425355, dCSWTag: 0x12345678, dCSWDataResidue: 512, bCSWStatus: 2 });
});

test('codec errors carry stable codes', () => {
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      assert.instance(e, BotError);
      return (e as BotError).code;
    }
    return 'none';
  };
  assert.is(code(() => decodeCbw(READ10_CBW.subarray(0, 30))), 'CBW_LENGTH');
  assert.is(code(() => decodeCbw(Buffer.concat([Buffer.from('USBD'), READ10_CBW.subarray(4)]))), 'CBW_SIGNATURE');
  assert.is(code(() => decodeCsw(Buffer.alloc(13))), 'CSW_SIGNATURE');
  assert.is(code(() => decodeCsw(Buffer.alloc(12))), 'CSW_LENGTH');
  assert.is(code(() => encodeCbw({ tag: 1, dataTransferLength: 0, dataIn: false, lun: 0, cdb: Buffer.alloc(17) })), 'CB_LENGTH');
});

test('checkCbw: valid, invalid (§6.2.1) and not meaningful (§6.2.2)', () => {
  const mod = (off: number, v: number): Buffer => {
    const b = Buffer.from(READ10_CBW);
    b[off] = v;
    return b;
  };
  assert.is(checkCbw(READ10_CBW, 2).kind, 'ok');
  const problem = (b: Buffer, luns = 2): string => {
    const c = checkCbw(b, luns);
    return c.kind === 'ok' ? 'ok' : `${c.kind}:${c.problem}`;
  };
  assert.is(problem(READ10_CBW.subarray(0, 30)), 'invalid:length');
  assert.is(problem(Buffer.concat([READ10_CBW, Buffer.alloc(1)])), 'invalid:length');
  assert.is(problem(mod(3, 0x44)), 'invalid:signature');
  assert.is(problem(READ10_CBW, 1), 'not-meaningful:lun');
  assert.is(problem(mod(13, 0x11)), 'not-meaningful:reserved-bits');
  assert.is(problem(mod(12, 0x81)), 'not-meaningful:reserved-bits');
  assert.is(problem(mod(14, 0x2a)), 'not-meaningful:reserved-bits');
  assert.is(problem(mod(14, 0)), 'not-meaningful:cb-length');
  assert.is(problem(mod(14, 17)), 'not-meaningful:cb-length');
  assert.is(problem(mod(14, 16)), 'ok');
});

test('classifyCase: the thirteen cases of §6.7 and their phase errors', () => {
  const table: [Direction, number, Direction, number, BotCase, boolean][] = [
    ['none', 0, 'none', 0, 'Hn=Dn', false],
    ['none', 0, 'in', 5, 'Hn<Di', true],
    ['none', 0, 'out', 5, 'Hn<Do', true],
    ['in', 9, 'none', 0, 'Hi>Dn', false],
    ['in', 9, 'in', 5, 'Hi>Di', false],
    ['in', 9, 'in', 9, 'Hi=Di', false],
    ['in', 9, 'in', 12, 'Hi<Di', true],
    ['in', 9, 'out', 5, 'Hi<>Do', true],
    ['out', 9, 'none', 0, 'Ho>Dn', false],
    ['out', 9, 'in', 5, 'Ho<>Di', true],
    ['out', 9, 'out', 5, 'Ho>Do', false],
    ['out', 9, 'out', 9, 'Ho=Do', false],
    ['out', 9, 'out', 12, 'Ho<Do', true],
    ['in', 0, 'none', 0, 'Hn=Dn', false], // a zero length is Hn whatever the direction bit says
  ];
  for (const [hd, hl, dd, dl, name, phase] of table) {
    assert.equal(classifyCase(hd, hl, dd, dl), { botCase: name, phaseError: phase }, `${hd} ${hl} ${dd} ${dl}`);
  }
  assert.is(Object.keys(BOT_CASE_NUMBER).length, 13);
  assert.is(BOT_CASE_NUMBER['Ho<Do'], 13);
});

test('usbNexus: stable ids, protocol "no specific protocol", 24-byte TransportID', () => {
  const n = usbNexus({ gadget: 'lunbox', udc: 'dummy_udc.0' });
  assert.is(n.id, 'usb-host@dummy_udc.0|usb:lunbox@dummy_udc.0');
  assert.is(n.protocolId, 0x0f);
  assert.is(n.transportId.length, 24);
  assert.is(n.relativeTargetPortId, 1);
});

// ---------------------------------------------------------------------------------------
// The state machine against the fake FunctionFS and a Linux-like host.

interface Rig {
  ffs: FakeFfs;
  port: FakePort;
  bot: BotFunction;
  outcomes: BotOutcome[];
  run(req: TransportRequest): Promise<TransportResult>;
  close(): Promise<void>;
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function rig(
  o: { luns?: number; mps?: number; blocks?: number; reportClearHalt?: boolean; timeoutMs?: number; pullChunk?: number } & Partial<
    Pick<BotOptions, 'stallDataIn' | 'stallDataOut' | 'chunkSize'>
  > = {},
): Rig {
  const mps = o.mps ?? 512;
  const ffs = new FakeFfs({ maxPacketSize: mps, reportClearHalt: o.reportClearHalt ?? true, timeoutMs: o.timeoutMs ?? 1000 });
  const port = new FakePort(o.blocks ?? 64, o.luns ?? 1, o.pullChunk);
  for (const d of port.disks) for (let i = 0; i < d.length; i++) d[i] = (i * 7 + 3) & 0xff;
  const outcomes: BotOutcome[] = [];
  const bot = new BotFunction({
    port,
    nexus: usbNexus({ gadget: 'test', udc: 'fake.0' }),
    endpoints: ffs.endpoints,
    lunCount: o.luns ?? 1,
    maxPacketSize: mps,
    ...(o.stallDataIn !== undefined ? { stallDataIn: o.stallDataIn } : {}),
    ...(o.stallDataOut !== undefined ? { stallDataOut: o.stallDataOut } : {}),
    ...(o.chunkSize !== undefined ? { chunkSize: o.chunkSize } : {}),
    onOutcome: (x) => outcomes.push(x),
  });
  let stop = false;
  const ep0 = serveEp0(ffs.ep0, botEp0Handler(bot, () => mps), () => stop);
  ffs.ep0.event('bind');
  ffs.ep0.event('enable');
  return {
    ffs,
    port,
    bot,
    outcomes,
    async run(req) {
      const r = await ffs.host.transport(req);
      await settle();
      return r;
    },
    async close() {
      ffs.ep0.event('disable');
      await settle();
      stop = true;
      ffs.ep0.close();
      await ep0;
      await settle();
    },
  };
}

/** What every well-behaved exchange must look like on the bus. */
function clean(r: TransportResult, ffs: FakeFfs): void {
  assert.is(r.timedOut, false, 'host timed out');
  assert.is(r.dataBabble, false, 'babble on data-in');
  assert.is(r.zlpBeforeCsw, false, 'spurious ZLP before the CSW');
  assert.is(r.cswProblem, undefined, `CSW problem ${r.cswProblem}`);
  assert.is(ffs.overflows, 0, 'bulk-OUT overflow');
  assert.is(ffs.in.queued, 0, 'stale bulk-IN data');
}

/** After a case: Reset Recovery if the host would do one, then the device must still work. */
async function healthy(t: Rig, phase: boolean): Promise<void> {
  if (phase) {
    const r = await t.ffs.host.resetRecovery();
    assert.is(r.stalled, false);
    assert.is(r.timedOut, undefined);
  }
  const r = await t.run({ cdb: cdb.tur(), dir: 'none', length: 0 });
  clean(r, t.ffs);
  assert.is(r.csw?.bCSWStatus, 0);
}

interface CaseSpec {
  name: BotCase;
  req: TransportRequest;
  status: number;
  residue: number;
  dataLength?: number;
  dataStalled?: boolean;
  sent?: number;
  trace?: string[];
  noTrace?: string[];
  check?: (t: Rig, r: TransportResult) => void;
}

const diskBytes = (t: Rig, lba: number, blocks: number): Buffer => t.port.disks[0]!.subarray(lba * BLOCK, (lba + blocks) * BLOCK);
const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff));

const CASES: CaseSpec[] = [
  { name: 'Hn=Dn', req: { cdb: cdb.tur(), dir: 'none', length: 0 }, status: 0, residue: 0, noTrace: ['HALT IN', 'HALT OUT'] },
  { name: 'Hn<Di', req: { cdb: cdb.read10(0, 1), dir: 'none', length: 0 }, status: 2, residue: 0, noTrace: ['IN 512'] },
  {
    name: 'Hn<Do',
    req: { cdb: cdb.write10(0, 1), dir: 'none', length: 0 },
    status: 2,
    residue: 0,
    check: (t) => assert.is(diskBytes(t, 0, 1)[0], 3, 'nothing written'),
  },
  {
    name: 'Hi>Dn',
    req: { cdb: cdb.tur(), dir: 'in', length: 512 },
    status: 0,
    residue: 512,
    dataLength: 0,
    trace: ['IN ZLP', 'HALT IN', 'IN STALL', 'CLEAR IN'],
  },
  {
    name: 'Hi>Di',
    req: { cdb: cdb.read10(1, 1), dir: 'in', length: 1024 },
    status: 0,
    residue: 512,
    dataLength: 512,
    trace: ['IN ZLP', 'HALT IN'], // 512 is a whole packet: the transfer ends with a ZLP
    check: (t, r) => assert.equal(r.data, diskBytes(t, 1, 1)),
  },
  {
    name: 'Hi=Di',
    req: { cdb: cdb.read10(2, 2), dir: 'in', length: 1024 },
    status: 0,
    residue: 0,
    dataLength: 1024,
    noTrace: ['IN ZLP', 'HALT IN'],
    check: (t, r) => assert.equal(r.data, diskBytes(t, 2, 2)),
  },
  {
    name: 'Hi<Di',
    req: { cdb: cdb.read10(0, 4), dir: 'in', length: 1024 },
    status: 2,
    residue: 0,
    dataLength: 1024,
    noTrace: ['IN ZLP', 'HALT IN'],
    check: (t, r) => assert.equal(r.data, diskBytes(t, 0, 2)),
  },
  {
    name: 'Hi<>Do',
    req: { cdb: cdb.write10(0, 1), dir: 'in', length: 512 },
    status: 2,
    residue: 512,
    dataLength: 0,
    dataStalled: true,
    trace: ['HALT IN', 'IN STALL'],
    check: (t) => assert.is(diskBytes(t, 0, 1)[0], 3, 'nothing written'),
  },
  {
    name: 'Ho>Dn',
    req: { cdb: cdb.tur(), dir: 'out', length: 1024 },
    status: 0,
    residue: 1024,
    sent: 1024, // accepted and discarded (f_mass_storage behaviour, the default)
    noTrace: ['HALT OUT'],
  },
  {
    name: 'Ho<>Di',
    req: { cdb: cdb.read10(0, 1), dir: 'out', length: 512 },
    status: 2,
    residue: 512,
    sent: 0,
    dataStalled: true,
    trace: ['HALT OUT', 'OUT STALL after 0'],
  },
  {
    name: 'Ho>Do',
    req: { cdb: cdb.write10(4, 1), dir: 'out', length: 1536, data: pattern(1536, 1) },
    status: 0,
    residue: 1024,
    sent: 1536,
    check: (t) => {
      assert.equal(diskBytes(t, 4, 1), pattern(512, 1));
      assert.is(diskBytes(t, 5, 1)[0], (5 * 512 * 7 + 3) & 0xff, 'the discarded part was not written');
    },
  },
  {
    name: 'Ho=Do',
    req: { cdb: cdb.write10(6, 2), dir: 'out', length: 1024, data: pattern(1024, 2) },
    status: 0,
    residue: 0,
    sent: 1024,
    check: (t) => assert.equal(diskBytes(t, 6, 2), pattern(1024, 2)),
  },
  {
    name: 'Ho<Do',
    req: { cdb: cdb.write10(8, 4), dir: 'out', length: 1024, data: pattern(1024, 3) },
    status: 2,
    residue: 0,
    sent: 1024,
    check: (t) => assert.equal(diskBytes(t, 8, 2), pattern(1024, 3)),
  },
];

for (const c of CASES) {
  test(`case ${BOT_CASE_NUMBER[c.name]} ${c.name}: status ${c.status}, residue ${c.residue}`, async () => {
    const t = rig();
    const r = await t.run({ ...c.req, tag: 0xc0de0000 + BOT_CASE_NUMBER[c.name] });
    clean(r, t.ffs);
    assert.is(r.csw?.dCSWTag, 0xc0de0000 + BOT_CASE_NUMBER[c.name]);
    assert.is(r.csw?.bCSWStatus, c.status);
    assert.is(r.csw?.dCSWDataResidue, c.residue);
    if (c.dataLength !== undefined) assert.is(r.data.length, c.dataLength);
    if (c.dataStalled !== undefined) assert.is(r.dataStalled, c.dataStalled);
    if (c.sent !== undefined) assert.is(r.dataSent, c.sent);
    for (const s of c.trace ?? []) assert.ok(t.ffs.trace.includes(s), `trace has ${s}: ${t.ffs.trace.join(', ')}`);
    for (const s of c.noTrace ?? []) assert.not.ok(t.ffs.trace.includes(s), `trace lacks ${s}: ${t.ffs.trace.join(', ')}`);
    const o = t.outcomes[0];
    assert.is(o?.kind === 'csw' && o.botCase, c.name);
    // The command the core saw: lengths from the CBW, never from the CDB.
    const e = t.port.executed[0];
    assert.is(e?.tag, 0xc0de0000 + BOT_CASE_NUMBER[c.name]);
    assert.is(e?.attribute, 'simple');
    assert.is(e?.dataInLength, c.req.dir === 'in' ? c.req.length : 0);
    assert.is(e?.dataOutLength, c.req.dir === 'out' ? c.req.length : 0);
    c.check?.(t, r);
    await healthy(t, c.status === 2);
    await t.close();
  });
}

test('Ho>Dn with stallDataOut: Bulk-Out is halted instead of draining', async () => {
  const t = rig({ stallDataOut: true });
  const r = await t.run({ cdb: cdb.tur(), dir: 'out', length: 4096 });
  clean(r, t.ffs);
  assert.is(r.dataStalled, true);
  assert.is(r.dataSent, 0);
  assert.equal([r.csw?.bCSWStatus, r.csw?.dCSWDataResidue], [0, 4096]);
  await healthy(t, false);
  await t.close();
});

test('Hi>Di with stallDataIn off: short packet or ZLP ends the data, no halt', async () => {
  const t = rig({ stallDataIn: false });
  const a = await t.run({ cdb: cdb.read10(0, 1), dir: 'in', length: 2048 });
  clean(a, t.ffs);
  assert.equal([a.data.length, a.csw?.dCSWDataResidue, a.dataStalled], [512, 1536, false]);
  const b = await t.run({ cdb: cdb.inquiry(96), dir: 'in', length: 96 });
  clean(b, t.ffs);
  assert.equal([b.data.length, b.csw?.dCSWDataResidue], [36, 60]);
  assert.is(t.ffs.trace.filter((x) => x === 'IN ZLP').length, 1, 'ZLP only after the whole-packet data');
  assert.not.ok(t.ffs.trace.includes('HALT IN'));
  await t.close();
});

test('full speed (64-byte packets): short INQUIRY ends with a short packet, 512 bytes with a ZLP', async () => {
  const t = rig({ mps: 64 });
  const a = await t.run({ cdb: cdb.inquiry(64), dir: 'in', length: 64 });
  clean(a, t.ffs);
  assert.equal([a.data.length, a.csw?.dCSWDataResidue, a.csw?.bCSWStatus], [36, 28, 0]);
  assert.not.ok(t.ffs.trace.includes('IN ZLP'));
  const b = await t.run({ cdb: cdb.read10(0, 1), dir: 'in', length: 1024 });
  clean(b, t.ffs);
  assert.equal([b.data.length, b.csw?.dCSWDataResidue], [512, 512]);
  assert.ok(t.ffs.trace.includes('IN ZLP'));
  const w = await t.run({ cdb: cdb.write10(0, 3), dir: 'out', length: 1536, data: pattern(1536, 9) });
  clean(w, t.ffs);
  assert.equal(t.port.disks[0]!.subarray(0, 1536), pattern(1536, 9));
  assert.is(t.ffs.stats.maxReadAsk % 64, 0);
  await t.close();
});

// ---------------------------------------------------------------------------------------
// Invalid CBWs, stalls and Reset Recovery

function rawCbw(edit: (b: Buffer) => Buffer | void, base = encodeCbw({ tag: 7, dataTransferLength: 0, dataIn: false, lun: 0, cdb: cdb.tur() })): Buffer {
  const b = Buffer.from(base);
  return edit(b) ?? b;
}

const INVALID: [string, Buffer, string, number?][] = [
  ['bad signature', rawCbw((b) => void b.write('USBD', 0, 'ascii')), 'signature'],
  ['30 bytes', rawCbw((b) => b.subarray(0, 30)), 'length'],
  ['32 bytes', rawCbw((b) => Buffer.concat([b, Buffer.alloc(1)])), 'length'],
  ['a zero-length packet', Buffer.alloc(0), 'length'],
  ['a 1024-byte transfer (two full packets)', rawCbw((b) => Buffer.concat([b, Buffer.alloc(1024 - 31)])), 'length'],
  ['LUN 2 of 2', rawCbw((b) => void (b[13] = 2)), 'lun', 2],
  ['LUN 15 of 1', rawCbw((b) => void (b[13] = 15)), 'lun'],
  ['CB length 0', rawCbw((b) => void (b[14] = 0)), 'cb-length'],
  ['CB length 17', rawCbw((b) => void (b[14] = 17)), 'cb-length'],
  ['reserved flag bits', rawCbw((b) => void (b[12] = 0x40)), 'reserved-bits'],
];

for (const [name, bytes, problem, luns] of INVALID) {
  test(`invalid CBW (${name}): both pipes stall until Reset Recovery`, async () => {
    const t = rig({ luns: luns ?? 1 });
    const r = await t.ffs.host.transport({ cdb: cdb.tur(), dir: 'none', length: 0, rawCbw: bytes });
    await settle();
    assert.is(r.timedOut, false);
    if (bytes.length <= 512) {
      // the CBW went out; the CSW read meets STALL, and again after clearing it (sticky)
      assert.is(r.cswProblem, 'stall');
    } else {
      assert.is(r.cbwStalled, true, 'the rest of an over-long CBW meets the Bulk-Out stall');
    }
    const o = t.outcomes[0];
    assert.equal(o, { kind: 'invalid-cbw', problem, length: Math.min(bytes.length, 512) } as BotOutcome);
    assert.is(t.port.executed.length, 0, 'nothing reached the core');
    assert.ok(t.ffs.trace.includes('HALT IN') && t.ffs.trace.includes('HALT OUT'));
    assert.is(t.bot.state, 'needs-reset');
    await healthy(t, true);
    assert.ok(t.outcomes.some((x) => x.kind === 'reset-recovered'));
    await t.close();
  });
}

test('sticky stall: clearing halts without a reset meets STALL again; the reset ends it', async () => {
  const t = rig();
  await t.ffs.host.transport({ cdb: cdb.tur(), dir: 'none', length: 0, rawCbw: Buffer.alloc(31) });
  t.ffs.clearHaltOn('in');
  t.ffs.clearHaltOn('out');
  const again = await t.ffs.host.transport({ cdb: cdb.tur(), dir: 'none', length: 0 });
  assert.is(again.cbwStalled, true);
  assert.is(t.port.executed.length, 0);
  await healthy(t, true);
  await t.close();
});

test('without clear-halt reports (real FunctionFS) the host times out, then Reset Recovery works', async () => {
  const t = rig({ reportClearHalt: false, timeoutMs: 30 });
  const r = await t.ffs.host.transport({ cdb: cdb.tur(), dir: 'none', length: 0, rawCbw: Buffer.alloc(31) });
  assert.is(r.cswProblem, 'timeout');
  await healthy(t, true);
  await t.close();
});

test('Reset Recovery in the middle of a data-out: the command is aborted, no CSW, device ready', async () => {
  const t = rig({ timeoutMs: 30 });
  t.port.holdOpcodes.add(0x2a);
  const r = await t.ffs.host.transport({ cdb: cdb.write10(0, 1), dir: 'out', length: 512, tag: 99 });
  assert.is(r.timedOut, true);
  // the host gave up on the data stage; Linux now does Reset Recovery
  const rr = await t.ffs.host.resetRecovery();
  assert.is(rr.stalled, false);
  await settle();
  assert.equal(t.port.tmfs.map((x) => [x.fn, x.referencedTag, x.lun]), [['abort-task', 99, 0]]);
  assert.ok(t.outcomes.some((o) => o.kind === 'aborted' && o.tag === 99));
  t.port.holdOpcodes.clear();
  await healthy(t, false);
  assert.is(t.ffs.in.queued, 0, 'no CSW of the aborted command left behind');
  await t.close();
});

test('a core that throws is reported as a phase error with the data pipe stalled', async () => {
  const t = rig();
  t.port.throwOpcodes.add(0x12);
  const r = await t.run({ cdb: cdb.inquiry(36), dir: 'in', length: 36 });
  clean(r, t.ffs);
  assert.is(r.dataStalled, true);
  assert.is(r.csw?.bCSWStatus, 2);
  const o = t.outcomes[0];
  assert.ok(o?.kind === 'csw' && o.coreError?.includes('fake core bug'));
  await healthy(t, true);
  await t.close();
});

// ---------------------------------------------------------------------------------------
// LUNs, Get Max LUN and sense

test('Get Max LUN reports lunCount - 1; commands reach the LUN of bCBWLUN', async () => {
  const t = rig({ luns: 3 });
  const m = await t.ffs.host.getMaxLun();
  assert.equal([...m.data], [2]);
  for (const lun of [0, 1, 2]) {
    const r = await t.run({ cdb: cdb.inquiry(36), dir: 'in', length: 36, lun });
    clean(r, t.ffs);
    assert.is(r.data.subarray(16, 26).toString('ascii'), `FAKE LUN ${lun}`);
  }
  assert.equal(t.port.executed.map((e) => e.lun), [0, 1, 2]);
  const bad = await t.ffs.host.getMaxLun({ wValue: 1 });
  assert.is(bad.stalled, true);
  await t.close();
});

const senseKeyAsc = (b: Buffer): [number, number] => [(b[2] ?? 0) & 0x0f, b[12] ?? 0];

test('REQUEST SENSE after bCSWStatus 1 returns the held sense, once', async () => {
  const t = rig();
  const f = await t.run({ cdb: Buffer.from([0xff, 0, 0, 0, 0, 0]), dir: 'none', length: 0 });
  clean(f, t.ffs);
  assert.is(f.csw?.bCSWStatus, 1);
  assert.equal(t.bot.heldSenseLuns(), [0]);
  const s = await t.run({ cdb: cdb.requestSense(18), dir: 'in', length: 18 });
  clean(s, t.ffs);
  assert.equal([s.csw?.bCSWStatus, s.csw?.dCSWDataResidue], [0, 0]);
  assert.equal(senseKeyAsc(s.data), [0x05, 0x20]); // ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE
  assert.ok(t.outcomes[1]?.kind === 'csw' && t.outcomes[1].fromHeldSense);
  assert.equal(t.port.executed.map((e) => e.opcode), [0xff], 'REQUEST SENSE answered by the fabric');
  const again = await t.run({ cdb: cdb.requestSense(18), dir: 'in', length: 18 });
  assert.equal(senseKeyAsc(again.data), [0, 0], 'second REQUEST SENSE goes to the core: NO SENSE');
  assert.equal(t.port.executed.map((e) => e.opcode), [0xff, 0x03]);
  await t.close();
});

test('held sense: per LUN, cut to the allocation length, cleared by the next command or a reset', async () => {
  const t = rig({ luns: 2 });
  await t.run({ cdb: cdb.read10(1000, 1), dir: 'in', length: 512, lun: 1 }); // LBA out of range on LUN 1
  await t.run({ cdb: cdb.tur(), dir: 'none', length: 0, lun: 0 });
  const short = await t.run({ cdb: cdb.requestSense(8), dir: 'in', length: 8, lun: 1 });
  clean(short, t.ffs);
  assert.is(short.data.length, 8);
  assert.equal(short.data[2], 0x05);
  // a failure followed by another command on the same LUN: the sense is gone
  await t.run({ cdb: Buffer.from([0xff, 0, 0, 0, 0, 0]), dir: 'none', length: 0, lun: 0 });
  await t.run({ cdb: cdb.tur(), dir: 'none', length: 0, lun: 0 });
  const none = await t.run({ cdb: cdb.requestSense(18), dir: 'in', length: 18, lun: 0 });
  assert.equal(senseKeyAsc(none.data), [0, 0]);
  // a reset drops held sense
  await t.run({ cdb: Buffer.from([0xff, 0, 0, 0, 0, 0]), dir: 'none', length: 0, lun: 1 });
  assert.equal(t.bot.heldSenseLuns(), [1]);
  await t.ffs.host.resetRecovery();
  assert.equal(t.bot.heldSenseLuns(), []);
  await t.close();
});

test('DISABLE tells the core the nexus is gone and forgets sense; ENABLE serves again', async () => {
  const t = rig();
  await t.run({ cdb: Buffer.from([0xff, 0, 0, 0, 0, 0]), dir: 'none', length: 0 });
  t.ffs.ep0.event('disable');
  await settle();
  await settle();
  assert.is(t.bot.state, 'disabled');
  assert.is(t.port.lost.length, 1);
  assert.is(t.port.lost[0]?.id, 'usb-host@fake.0|usb:test@fake.0');
  assert.equal(t.bot.heldSenseLuns(), []);
  t.ffs.ep0.event('enable');
  await settle();
  await healthy(t, false);
  await t.close();
});

// ---------------------------------------------------------------------------------------
// Streaming: multi-megabyte transfers in bounded pieces

test('8 MiB write then read: data-out pulled in pieces, data-in written in chunks', async () => {
  const size = 8 << 20;
  const t = rig({ blocks: size / BLOCK, chunkSize: 256 * 1024, pullChunk: 1 << 20 });
  const data = pattern(size, 5);
  const w = await t.run({ cdb: cdb.write10(0, size / BLOCK), dir: 'out', length: size, data });
  clean(w, t.ffs);
  assert.equal([w.csw?.bCSWStatus, w.csw?.dCSWDataResidue], [0, 0]);
  assert.ok(t.port.disks[0]!.equals(data));
  assert.is(t.ffs.stats.maxReadAsk, 256 * 1024, 'bulk-OUT reads are at most one chunk');
  assert.ok(t.port.executed[0]!.pulls.every((n) => n <= 1 << 20));
  const writesBefore = t.ffs.stats.writes;
  const r = await t.run({ cdb: cdb.read10(0, size / BLOCK), dir: 'in', length: size });
  clean(r, t.ffs);
  assert.ok(r.data.equals(data));
  assert.is(t.ffs.stats.maxWrite, 256 * 1024, 'bulk-IN writes are at most one chunk');
  assert.is(t.ffs.stats.writes - writesBefore, size / (256 * 1024) + 1, 'chunks + CSW');
  await t.close();
});

test('data-out pulls of odd sizes: aligned reads, leftovers kept, nothing lost', async () => {
  // a core that pulls 100 bytes at a time (not a packet multiple) from a 1000-byte transfer
  const t = rig();
  const got: Buffer[] = [];
  t.port.execute = async (cmd) => {
    for (;;) {
      const b = await cmd.dataOut(100);
      got.push(b);
      if (b.length < 100) break;
    }
    return { status: 0, dataOutExpected: 1000 };
  };
  const data = pattern(1000, 11);
  const r = await t.run({ cdb: cdb.write10(0, 2), dir: 'out', length: 1000, data });
  clean(r, t.ffs);
  assert.ok(Buffer.concat(got).equals(data));
  assert.equal([r.csw?.bCSWStatus, r.csw?.dCSWDataResidue], [0, 0]);
  assert.is(t.ffs.overflows, 0);
  await t.close();
});

// ---------------------------------------------------------------------------------------
// Fuzz: random CBWs, a Linux-like host reacting, only typed outcomes, never a hang.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 400 random CBWs (seeded) give typed outcomes and a working device', async () => {
  const rnd = mulberry32(0x1b07);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const t = rig({ luns: 2, blocks: 256 });
  const KINDS = new Set(['csw', 'invalid-cbw', 'reset-recovered', 'aborted']);
  for (let i = 0; i < 400; i++) {
    let raw: Buffer;
    let dir: 'in' | 'out' | 'none';
    let length: number;
    if (rnd() < 0.3) {
      raw = Buffer.from(Array.from({ length: pick([31, 31, 30, 32, 13, int(600)]) }, () => int(256)));
      length = raw.length >= 12 ? raw.readUInt32LE(8) % 70001 : 0;
      dir = length === 0 ? 'none' : (raw[12] ?? 0) & 0x80 ? 'in' : 'out';
    } else {
      length = pick([0, 0, 13, 512, 1024, 4096, int(70000)]);
      const flags = rnd() < 0.9 ? pick([0x00, 0x80]) : int(256);
      dir = length === 0 ? 'none' : flags & 0x80 ? 'in' : 'out';
      const cb = Buffer.from(Array.from({ length: 16 }, () => int(256)));
      cb[0] = pick([0x00, 0x03, 0x12, 0x28, 0x2a, 0x28, 0x2a, int(256)]);
      if (cb[0] === 0x28 || cb[0] === 0x2a) {
        cb.writeUInt32BE(int(300), 2);
        cb.writeUInt16BE(int(200), 7);
      }
      raw = Buffer.alloc(31);
      raw.writeUInt32LE(0x43425355, 0);
      raw.writeUInt32LE(i, 4);
      raw.writeUInt32LE(length, 8);
      raw[12] = flags;
      raw[13] = rnd() < 0.9 ? int(2) : int(256);
      raw[14] = rnd() < 0.9 ? pick([6, 10, 12, 16]) : int(256);
      cb.copy(raw, 15);
    }
    const r = await t.run({ cdb: cdb.tur(), dir, length, rawCbw: raw });
    assert.is(r.timedOut, false, `iteration ${i}: host timed out`);
    assert.is(r.dataBabble, false, `iteration ${i}: babble`);
    assert.is(r.zlpBeforeCsw, false, `iteration ${i}: ZLP before CSW`);
    const tagOk = r.csw !== undefined && r.csw.dCSWTag === raw.readUInt32LE(4);
    if (r.cbwStalled || r.cswProblem !== undefined || !tagOk || r.csw?.bCSWStatus === 2) {
      const rr = await t.ffs.host.resetRecovery();
      assert.is(rr.timedOut, undefined, `iteration ${i}: reset timed out`);
      await settle();
    } else if (r.csw?.bCSWStatus === 1) {
      const s = await t.run({ cdb: cdb.requestSense(18), dir: 'in', length: 18, lun: (raw[13] ?? 0) & 0x0f });
      clean(s, t.ffs);
    }
  }
  for (const o of t.outcomes) assert.ok(KINDS.has(o.kind), `unexpected outcome ${JSON.stringify(o)}`);
  assert.is(t.ffs.overflows, 0);
  assert.ok(t.outcomes.filter((o) => o.kind === 'csw').length > 100);
  assert.ok(t.outcomes.filter((o) => o.kind === 'invalid-cbw').length > 50);
  await healthy(t, false);
  await t.close();
});

test.run();
