import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort, type LunMapEntry } from '../../src/scsi/port';
import { decodeXcopyParameters, encodeCopyAborted, naaDesignatorOf } from '../../src/scsi/spc/extended-copy';
import { XcopyLimits } from '../../src/scsi/spc/third-party-copy';
import { MemStore, cmd, nexus, sense } from './helpers';

const BS = 512;

async function setup(opts: { dstReadOnly?: boolean } = {}) {
  const s1 = new MemStore('src', 256 * BS);
  const s2 = new MemStore('dst', 128 * BS);
  const src = new LogicalUnit({ backstore: s1 });
  const dst = new LogicalUnit({ backstore: s2 });
  const map: LunMapEntry[] = [{ lun: 0, unit: src }, { lun: 1, unit: dst, ...(opts.dstReadOnly ? { readOnly: true } : {}) }];
  const port = new TargetPort({ lunMap: () => map });
  for (const lun of [0, 1]) await port.execute(cmd([0, 0, 0, 0, 0, 0], { lun }));
  s1.data.fill(0xa5, 0, 64 * BS);
  for (let i = 0; i < 64; i++) s1.data[i * BS] = i;
  return { s1, s2, src, dst, port };
}

/** SPC-4 §6.4.5.2 identification CSCD descriptor for `lu` (NAA, LU association). */
function cscd(lu: LogicalUnit, o: { nul?: boolean; type?: number; blockLength?: number } = {}): Buffer {
  const d = Buffer.alloc(32);
  d[0] = o.type ?? 0xe4;
  d[1] = o.nul ? 0x20 : 0;
  d[4] = 0x01; // binary
  d[5] = 0x03; // LU association, NAA
  d[7] = 16;
  naaDesignatorOf(lu).copy(d, 8);
  d.writeUIntBE(o.blockLength ?? lu.blockSize, 29, 3);
  return d;
}

function b2b(src: number, dst: number, blocks: number, srcLba: bigint, dstLba: bigint, type = 0x02): Buffer {
  const d = Buffer.alloc(28);
  d[0] = type;
  d.writeUInt16BE(0x18, 2);
  d.writeUInt16BE(src, 4);
  d.writeUInt16BE(dst, 6);
  d.writeUInt16BE(blocks, 10);
  d.writeBigUInt64BE(srcLba, 12);
  d.writeBigUInt64BE(dstLba, 20);
  return d;
}

function list(cscds: Buffer[], segs: Buffer[], o: { listId?: number; usage?: number } = {}): Buffer {
  const h = Buffer.alloc(16);
  h[0] = o.listId ?? 1;
  h[1] = (o.usage ?? 0) << 3;
  const c = Buffer.concat(cscds);
  const s = Buffer.concat(segs);
  h.writeUInt16BE(c.length, 2);
  h.writeUInt32BE(s.length, 8);
  return Buffer.concat([h, c, s]);
}

function xcopy(data: Buffer, len = data.length): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x83;
  c.writeUInt32BE(len, 10);
  return c;
}

function rcr(sa: number, listId = 1, alloc = 1024): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x84;
  c[1] = sa;
  c[2] = listId;
  c.writeUInt32BE(alloc, 10);
  return c;
}

test('EXTENDED COPY copies blocks between units found by NAA (SPC-4 §6.4)', async () => {
  const { s1, s2, src, dst, port } = await setup();
  const data = list([cscd(src), cscd(dst)], [b2b(0, 1, 40, 4n, 10n)]);
  const r = await port.execute(cmd(xcopy(data), { data }));
  assert.is(r.status, Status.GOOD);
  assert.ok(s2.data.subarray(10 * BS, 50 * BS).equals(s1.data.subarray(4 * BS, 44 * BS)));
  assert.is(s2.data[9 * BS + 1], 0);
  assert.is(s2.data[50 * BS + 1], 0);
});

test('copy within one unit, several segments, DC=1 counts destination blocks', async () => {
  const { s1, src, port } = await setup();
  const seg2 = b2b(0, 0, 2, 0n, 202n);
  seg2[1] = 0x02;
  const data = list([cscd(src)], [b2b(0, 0, 8, 0n, 100n), seg2]);
  const r = await port.execute(cmd(xcopy(data), { data }));
  assert.is(r.status, Status.GOOD);
  assert.ok(s1.data.subarray(100 * BS, 108 * BS).equals(s1.data.subarray(0, 8 * BS)));
  assert.is(s1.data[202 * BS], 0);
  assert.is(s1.data[203 * BS], 1);
});

test('zero parameter list length is GOOD; truncated lists are PARAMETER LIST LENGTH ERROR', async () => {
  const { src, dst, port } = await setup();
  let r = await port.execute(cmd(xcopy(Buffer.alloc(0))));
  assert.is(r.status, Status.GOOD);
  const data = list([cscd(src), cscd(dst)], [b2b(0, 1, 1, 0n, 0n)]);
  for (const cut of [16 + 63, data.length - 1, 8]) {
    const d = data.subarray(0, cut);
    r = await port.execute(cmd(xcopy(d), { data: d }));
    assert.is(sense(r).asc, 0x1a00, `cut ${cut}`);
  }
  const huge = Buffer.alloc(16);
  r = await port.execute(cmd(xcopy(huge, 1 << 20), { data: huge }));
  assert.is(sense(r).asc, 0x1a00, 'over the maximum before any data is pulled');
});

test('descriptor limits and unsupported descriptor types', async () => {
  const { src, port } = await setup();
  const many = Array.from({ length: XcopyLimits.maxCscdDescriptors + 1 }, () => cscd(src));
  let d = list(many, [b2b(0, 0, 1, 0n, 1n)]);
  let r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).asc, 0x2606);
  d = list([cscd(src)], Array.from({ length: XcopyLimits.maxSegmentDescriptors + 1 }, () => b2b(0, 0, 1, 0n, 1n)));
  r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).asc, 0x2608);
  d = list([cscd(src, { type: 0xe0 })], [b2b(0, 0, 1, 0n, 1n)]);
  r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).asc, 0x2607);
  assert.equal(sense(r).field, { cdb: false, byte: 16 });
  d = list([cscd(src)], [b2b(0, 0, 1, 0n, 1n, 0x03)]);
  r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).asc, 0x2609);
  d = list([cscd(src)], [b2b(0, 0, 1, 0n, 1n)], { usage: 1 });
  r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).asc, 0x2600);
});

test('COPY ABORTED with the segment number: bad CSCD index, NUL, unknown NAA, LBA out of range', async () => {
  const { src, dst, port } = await setup();
  const stranger = new LogicalUnit({ backstore: new MemStore('x', 8 * BS) });
  const cases: [Buffer, number, number][] = [
    [list([cscd(src)], [b2b(0, 0, 1, 0n, 1n), b2b(0, 1, 1, 0n, 0n)]), 1, 0x0804],
    [list([cscd(src, { nul: true })], [b2b(0, 0, 1, 0n, 1n)]), 0, 0x0d02],
    [list([cscd(stranger)], [b2b(0, 0, 1, 0n, 1n)]), 0, 0x0d02],
    [list([cscd(src), cscd(dst)], [b2b(0, 1, 8, 0n, 124n)]), 0, 0x0000],
    [list([cscd(src, { blockLength: 4096 })], [b2b(0, 0, 1, 0n, 1n)]), 0, 0x0d03],
  ];
  for (const [d, segment, asc] of cases) {
    const r = await port.execute(cmd(xcopy(d), { data: d }));
    assert.is(r.status, Status.CHECK_CONDITION);
    const s = r.sense!;
    assert.is(s[2]! & 0x0f, 0x0a, 'COPY ABORTED');
    assert.is((s[12]! << 8) | s[13]!, asc);
    assert.is(s.readUInt16BE(10), segment, 'segment number in COMMAND-SPECIFIC INFORMATION');
  }
});

test('COPY ABORTED forwards the copy target sense (fixed and descriptor format)', () => {
  const f = { segment: 3, asc: 0, field: 20, target: { side: 'destination' as const, sense: { key: 5 as const, asc: 0x2100 } } };
  const fixed = encodeCopyAborted(f, false);
  assert.is(fixed[7], fixed.length - 8);
  assert.is(fixed[9], 18, 'destination status byte offset');
  assert.is(fixed[15], 0xa0, 'SKSV + SD: segment pointer');
  assert.is(fixed.readUInt16BE(16), 20);
  assert.is(fixed[18], 0x02);
  assert.is(fixed[19 + 2]! & 0x0f, 5);
  assert.is(fixed[19 + 12], 0x21);
  const desc = encodeCopyAborted(f, true);
  assert.is(desc[0], 0x72);
  assert.is(desc[1], 0x0a);
  assert.is(desc[7], desc.length - 8);
  assert.is(desc[8], 0x01);
  assert.is(desc.readUInt16BE(8 + 10), 3);
});

test('write-protected destination is DATA PROTECT and nothing is written', async () => {
  const { s2, src, dst, port } = await setup({ dstReadOnly: true });
  const d = list([cscd(src), cscd(dst)], [b2b(0, 1, 4, 0n, 0n)]);
  const r = await port.execute(cmd(xcopy(d), { data: d }));
  assert.is(sense(r).key, 7);
  assert.is(s2.writes.length, 0);
});

test('RECEIVE COPY RESULTS: COPY STATUS held per list identifier, FAILED SEGMENT DETAILS once', async () => {
  const { src, dst, port } = await setup();
  let r = await port.execute(cmd(rcr(0x00, 7)));
  assert.equal(sense(r).field, { cdb: true, byte: 2 }, 'no copy with that list identifier');
  const ok = list([cscd(src), cscd(dst)], [b2b(0, 1, 16, 0n, 0n)], { listId: 7 });
  r = await port.execute(cmd(xcopy(ok), { data: ok }));
  assert.is(r.status, Status.GOOD, r.sense?.toString('hex'));
  r = await port.execute(cmd(rcr(0x00, 7)));
  assert.is(r.status, Status.GOOD, r.sense?.toString('hex'));
  const st = r.dataIn!;
  assert.is(st.readUInt32BE(0), 8);
  assert.is(st[4]! & 0x7f, 0x01, 'completed without errors');
  assert.is(st.readUInt16BE(5), 1);
  assert.is(st[7], 0x00);
  assert.is(st.readUInt32BE(8), 16 * BS);
  // Another nexus has its own held data.
  r = await port.execute(cmd(rcr(0x00, 7), { nexus: nexus(2) }));
  assert.is(r.status, Status.CHECK_CONDITION);

  const bad = list([cscd(src), cscd(dst)], [b2b(0, 1, 1, 0n, 0n), b2b(0, 1, 8, 0n, 127n)], { listId: 8 });
  r = await port.execute(cmd(xcopy(bad), { data: bad }));
  assert.is(r.sense![2]! & 0x0f, 0x0a);
  r = await port.execute(cmd(rcr(0x00, 8)));
  assert.is(r.dataIn![4]! & 0x7f, 0x02, 'completed with errors');
  assert.is(r.dataIn!.readUInt16BE(5), 1, 'one segment processed');
  r = await port.execute(cmd(rcr(0x04, 8)));
  const fsd = r.dataIn!;
  assert.is(fsd[56], 0x02);
  assert.is(fsd.readUInt16BE(58), fsd.length - 60);
  assert.is(fsd[60 + 2]! & 0x0f, 0x0a);
  r = await port.execute(cmd(rcr(0x04, 8)));
  assert.is(r.status, Status.CHECK_CONDITION, 'details are discarded once delivered');

  // LIST ID USAGE 10b: results are not held.
  const discard = list([cscd(src), cscd(dst)], [b2b(0, 1, 1, 0n, 0n)], { listId: 9, usage: 2 });
  await port.execute(cmd(xcopy(discard), { data: discard }));
  r = await port.execute(cmd(rcr(0x00, 9)));
  assert.is(r.status, Status.CHECK_CONDITION);
});

test('RECEIVE COPY RESULTS OPERATING PARAMETERS (SPC-4 §6.18.4)', async () => {
  const { port } = await setup();
  const r = await port.execute(cmd(rcr(0x03, 0)));
  const d = r.dataIn!;
  assert.is(d.readUInt32BE(0), d.length - 4);
  assert.is(d.readUInt16BE(8), XcopyLimits.maxCscdDescriptors);
  assert.is(d.readUInt16BE(10), XcopyLimits.maxSegmentDescriptors);
  assert.is(d.readUInt32BE(12), XcopyLimits.maxDescriptorListLength);
  assert.is(d[43], 2);
  assert.equal([...d.subarray(44)], [0x02, 0xe4]);
  const bad = await port.execute(cmd(rcr(0x01, 0)));
  assert.is(sense(bad).asc, 0x2400, 'RECEIVE DATA is not supported');
});

test('INQUIRY 3PC and the Third-party Copy VPD page (SPC-4 §7.8.17)', async () => {
  const { port } = await setup();
  let r = await port.execute(cmd([0x12, 0, 0, 0, 96, 0]));
  assert.is(r.dataIn![5]! & 0x08, 0x08);
  r = await port.execute(cmd([0x12, 1, 0x00, 0, 255, 0]));
  assert.ok([...r.dataIn!.subarray(4)].includes(0x8f));
  r = await port.execute(cmd([0x12, 1, 0x8f, 4, 0, 0]));
  const d = r.dataIn!;
  assert.is(d.readUInt16BE(2), d.length - 4);
  const types = new Map<number, Buffer>();
  for (let o = 4; o < d.length; ) {
    const len = d.readUInt16BE(o + 2);
    assert.is((4 + len) % 4, 0, 'descriptors are multiples of four bytes');
    types.set(d.readUInt16BE(o), d.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  assert.equal([...types.keys()], [0x0001, 0x0004, 0x0008, 0x000c, 0x8001]);
  const cmds = types.get(0x0001)!;
  assert.equal([...cmds.subarray(0, 1 + cmds[0]!)], [8, 0x83, 1, 0x00, 0x84, 3, 0x00, 0x03, 0x04]);
  assert.is(types.get(0x0004)!.length, 0x1c);
  assert.is(types.get(0x8001)!.length, 0x20);
});

test('decodeXcopyParameters round trip', () => {
  const lu = new LogicalUnit({ backstore: new MemStore('a', 8 * BS) });
  const p = decodeXcopyParameters(list([cscd(lu)], [b2b(0, 0, 3, 1n, 5n)], { listId: 42, usage: 2 }));
  if (!('segments' in p)) throw new Error('decode failed');
  assert.is(p.listId, 42);
  assert.is(p.hold, false);
  assert.is(p.identified, true);
  assert.is(p.cscds[0]!.blockLength, BS);
  assert.equal({ ...p.segments[0]!, offset: 0 }, { offset: 0, dc: false, source: 0, destination: 0, blocks: 3, sourceLba: 1n, destinationLba: 5n });
});

test.run();
