import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { COMMANDS } from '../../src/scsi/commands';
import { cdbLengthOf } from '../../src/scsi/cdb';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { MemStore, cmd, nexus, rw10, sense } from './helpers';
import { fixture } from './setup';

const inq = (evpd: number, page: number, alloc = 255) => [0x12, evpd, page, alloc >> 8, alloc & 0xff, 0];

test('standard INQUIRY (SPC-4 §6.6.2)', async () => {
  const { port } = await fixture({ vendor: 'ACME', product: 'THING', revision: '9', removable: true });
  const r = await port.execute(cmd(inq(0, 0)));
  const d = r.dataIn!;
  assert.is(d.length, 96);
  assert.is(d[0], 0x00);
  assert.is(d[1], 0x80);
  assert.is(d[2], 0x06);
  assert.is(d[3]! & 0x0f, 2);
  assert.is(d[4], 91);
  assert.is(d[7]! & 0x02, 0x02);
  assert.is(d.toString('latin1', 8, 16), 'ACME    ');
  assert.is(d.toString('latin1', 16, 32), 'THING           ');
  assert.is(d.toString('latin1', 32, 36), '9   ');
  assert.is(d.readUInt16BE(58), 0x00a0);
  assert.is(d.readUInt16BE(60), 0x0460);
  assert.is(d.readUInt16BE(62), 0x04c0);
  assert.is(d.readUInt16BE(64), 0x0960);
});

test('INQUIRY allocation length truncates', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(inq(0, 0, 5)));
  assert.is(r.dataIn?.length, 5);
  const r0 = await port.execute(cmd(inq(0, 0, 0)));
  assert.is(r0.dataIn?.length ?? 0, 0);
});

test('INQUIRY page code without EVPD is invalid', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(inq(0, 0x80)));
  assert.equal(sense(r).field, { cdb: true, byte: 2 });
});

test('VPD 00/80/83/B0/B1/B2', async () => {
  const { port, lu } = await fixture({ serial: 'SER123' });
  let r = await port.execute(cmd(inq(1, 0)));
  // Ascending (SPC-4 §7.8.14); other pages (8Fh with XCOPY, ...) may sit between these.
  const pages = [...r.dataIn!.subarray(4)];
  assert.equal(pages, [...pages].sort((a, b) => a - b));
  for (const p of [0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2]) assert.ok(pages.includes(p), `VPD ${p.toString(16)}`);
  r = await port.execute(cmd(inq(1, 0x80)));
  assert.is(r.dataIn!.toString('latin1', 4), 'SER123');
  r = await port.execute(cmd(inq(1, 0x83)));
  const d = r.dataIn!;
  assert.is(d[1], 0x83);
  assert.is(d.readUInt16BE(2), d.length - 4);
  // First designator: NAA 6, binary, LU association.
  assert.is(d[4], 0x01);
  assert.is(d[5], 0x03);
  assert.is(d[7], 16);
  assert.is(d[8]! >> 4, 6);
  // Walk the designators: NAA, T10, relative target port, target port group, SCSI name.
  const types: number[] = [];
  for (let o = 4; o < d.length; o += 4 + d[o + 3]!) types.push(d[o + 1]! & 0x0f);
  assert.equal(types, [3, 1, 4, 5, 8]);
  r = await port.execute(cmd(inq(1, 0xb0)));
  assert.is(r.dataIn!.readUInt16BE(2), 0x3c);
  // WSNZ=0: WRITE SAME with zero blocks runs to the end of the medium.
  assert.is(r.dataIn![4]! & 1, 0);
  assert.is(r.dataIn!.readUInt32BE(8), lu.maxTransferBlocks);
  assert.is(r.dataIn!.readUInt32BE(24), 256);
  r = await port.execute(cmd(inq(1, 0xb1)));
  assert.is(r.dataIn!.readUInt16BE(4), 1);
  r = await port.execute(cmd(inq(1, 0xb2)));
  assert.is(r.dataIn![5], 0xe4);
  assert.is(r.dataIn![6]! & 7, 2);
  r = await port.execute(cmd(inq(1, 0x89)));
  assert.is(sense(r).asc, 0x2400);
});

const ms6 = (pcPage: number, sub = 0, alloc = 255, dbd = 0) => [0x1a, dbd, pcPage, sub, alloc, 0];

test('MODE SENSE(6) all pages with block descriptor and DPOFUA', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(ms6(0x3f)));
  const d = r.dataIn!;
  assert.is(d[0], d.length - 1);
  assert.is(d[2], 0x10);
  assert.is(d[3], 8);
  assert.is(d.readUInt32BE(4), 1024);
  assert.is(d.readUIntBE(9, 3), 512);
  const codes: number[] = [];
  for (let o = 12; o < d.length; o += 2 + d[o + 1]!) codes.push(d[o]! & 0x3f);
  assert.equal(codes, [0x01, 0x08, 0x0a, 0x1c]);
  const r4 = await port.execute(cmd(ms6(0x3f, 0, 4)));
  assert.is(r4.dataIn?.length, 4);
});

test('MODE SENSE(10) LLBAA long descriptor, saved → 05/39/00, bad page → 05/24/00', async () => {
  const { port } = await fixture();
  let r = await port.execute(cmd([0x5a, 0x10, 0x08, 0, 0, 0, 0, 0x01, 0, 0]));
  const d = r.dataIn!;
  assert.is(d[4]! & 1, 1);
  assert.is(d.readUInt16BE(6), 16);
  assert.is(d.readBigUInt64BE(8), 1024n);
  assert.is(d[24]! & 0x3f, 0x08);
  r = await port.execute(cmd(ms6(0xc8)));
  assert.is(sense(r).asc, 0x3900);
  r = await port.execute(cmd(ms6(0x05)));
  assert.is(sense(r).asc, 0x2400);
});

test('MODE SELECT changes WCE and D_SENSE, other nexuses get 2A/01', async () => {
  const { port, lu, n2 } = await fixture({ writeCache: true });
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  const cur = (await port.execute(cmd(ms6(0x08, 0, 255, 0x08)))).dataIn!;
  const page = Buffer.from(cur.subarray(4));
  page[2] = page[2]! & ~0x04;
  const param = Buffer.concat([Buffer.alloc(4), page]);
  let r = await port.execute(cmd([0x15, 0x10, 0, 0, param.length, 0], { data: param }));
  assert.is(r.status, Status.GOOD);
  assert.is(lu.writeCacheEnabled, false);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(sense(r).asc, 0x2a01);
  // Changing a non-changeable field is rejected with a parameter-list pointer.
  page[3] = 0xff;
  const bad = Buffer.concat([Buffer.alloc(4), page]);
  r = await port.execute(cmd([0x15, 0x10, 0, 0, bad.length, 0], { data: bad }));
  assert.is(sense(r).asc, 0x2600);
  assert.is(sense(r).field?.cdb, false);
  assert.is(sense(r).field?.byte, 7);
  // D_SENSE → descriptor sense afterwards.
  const ctl = Buffer.from((await port.execute(cmd(ms6(0x0a, 0, 255, 0x08)))).dataIn!.subarray(4));
  ctl[2] = ctl[2]! | 0x04;
  r = await port.execute(cmd([0x15, 0x10, 0, 0, ctl.length + 4, 0], { data: Buffer.concat([Buffer.alloc(4), ctl]) }));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd(rw10(0x28, 5000, 1)));
  assert.is(r.sense?.[0], 0x72);
  // SP=1 → saving parameters not supported.
  r = await port.execute(cmd([0x15, 0x11, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x3900);
});

test('SWP makes the unit write protected and sets WP', async () => {
  const { port } = await fixture();
  const ctl = Buffer.from((await port.execute(cmd(ms6(0x0a, 0, 255, 0x08)))).dataIn!.subarray(4));
  ctl[4] = ctl[4]! | 0x08;
  await port.execute(cmd([0x15, 0x10, 0, 0, ctl.length + 4, 0], { data: Buffer.concat([Buffer.alloc(4), ctl]) }));
  const r = await port.execute(cmd(rw10(0x2a, 0, 1), { data: Buffer.alloc(512) }));
  assert.is(sense(r).key, 7);
  assert.is(sense(r).asc >> 8, 0x27);
  const m = await port.execute(cmd(ms6(0x3f)));
  assert.is(m.dataIn![2]! & 0x80, 0x80);
});

test('REQUEST SENSE returns and clears the UA, else NO SENSE; DESC bit', async () => {
  const store = new MemStore('x', 65536);
  const lu = new LogicalUnit({ backstore: store });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  let r = await port.execute(cmd([0x03, 0, 0, 0, 252, 0]));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn![2]! & 0x0f, 6);
  assert.is(r.dataIn![12], 0x29);
  r = await port.execute(cmd([0x03, 1, 0, 0, 252, 0]));
  assert.is(r.dataIn![0], 0x72);
  assert.is(r.dataIn![1], 0);
});

test('UA on first command, INQUIRY exempt; capacity changed', async () => {
  const store = new MemStore('x', 65536);
  const lu = new LogicalUnit({ backstore: store });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  let r = await port.execute(cmd(inq(0, 0)));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2900);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(r.status, Status.GOOD);
  await store.resize(131072);
  lu.capacityChanged();
  r = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2a09);
  r = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(r.dataIn!.readUInt32BE(0), 255);
});

test('unknown opcode → 05/20/00, unknown service action → 05/24/00', async () => {
  const { port } = await fixture();
  let r = await port.execute(cmd([0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2000);
  r = await port.execute(cmd([0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2400);
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 4 });
});

test('SPC-2 RESERVE / RELEASE', async () => {
  const { port, n2 } = await fixture();
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  let r = await port.execute(cmd([0x16, 0, 0, 0, 0, 0]));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.RESERVATION_CONFLICT);
  r = await port.execute(cmd(inq(0, 0), { nexus: n2 }));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0x16, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.RESERVATION_CONFLICT);
  r = await port.execute(cmd([0x17, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.RESERVATION_CONFLICT);
  await port.execute(cmd([0x17, 0, 0, 0, 0, 0]));
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.GOOD);
  // Holder's nexus loss releases the reservation.
  await port.execute(cmd([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  port.nexusLost(nexus(1));
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.GOOD);
});

function rsoc(option: number, op = 0, sa = 0, rctd = false, alloc = 65535): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0xa3;
  b[1] = 0x0c;
  b[2] = (rctd ? 0x80 : 0) | option;
  b[3] = op;
  b.writeUInt16BE(sa, 4);
  b.writeUInt32BE(alloc, 6);
  return b;
}

test('REPORT SUPPORTED OPERATION CODES: all, one, with SA, RCTD', async () => {
  const { port } = await fixture();
  let r = await port.execute(cmd(rsoc(0)));
  let d = r.dataIn!;
  assert.is(d.readUInt32BE(0), d.length - 4);
  assert.is((d.length - 4) % 8, 0);
  const ops = new Set<number>();
  for (let o = 4; o < d.length; o += 8) ops.add(d[o]!);
  for (const op of [0x00, 0x12, 0x28, 0x2a, 0x9e, 0xa3, 0x42, 0x93]) assert.ok(ops.has(op), `opcode ${op}`);
  r = await port.execute(cmd(rsoc(0, 0, 0, true)));
  d = r.dataIn!;
  assert.is((d.length - 4) % 20, 0);
  assert.is(d[4 + 5]! & 0x02, 0x02);
  assert.is(d.readUInt16BE(4 + 8), 0x0a);
  r = await port.execute(cmd(rsoc(1, 0x28)));
  d = r.dataIn!;
  assert.is(d[1]! & 7, 3);
  assert.is(d.readUInt16BE(2), 10);
  assert.equal([...d.subarray(4, 14)], [0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07]);
  r = await port.execute(cmd(rsoc(1, 0x9e)));
  assert.is(sense(r).asc, 0x2400);
  r = await port.execute(cmd(rsoc(2, 0x9e, 0x10, true)));
  d = r.dataIn!;
  assert.is(d[1], 0x83);
  assert.is(d.readUInt16BE(2), 16);
  assert.is(d[5], 0x10);
  assert.is(d.length, 4 + 16 + 12);
  r = await port.execute(cmd(rsoc(2, 0x28)));
  assert.is(sense(r).asc, 0x2400);
  r = await port.execute(cmd(rsoc(1, 0xc5)));
  assert.is(r.dataIn![1]! & 7, 1);
  r = await port.execute(cmd(rsoc(3, 0x28)));
  assert.is(r.dataIn![1]! & 7, 3);
  r = await port.execute(cmd(rsoc(5)));
  assert.is(sense(r).asc, 0x2400);
});

test('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', async () => {
  const { port } = await fixture();
  const c = Buffer.alloc(12);
  c[0] = 0xa3;
  c[1] = 0x0d;
  c.writeUInt32BE(4, 6);
  let r = await port.execute(cmd(c));
  assert.is(r.dataIn?.length, 4);
  assert.is(r.dataIn![0]! & 0x80, 0x80);
  c[2] = 0x80;
  c.writeUInt32BE(16, 6);
  r = await port.execute(cmd(c));
  assert.is(r.dataIn?.length, 16);
  assert.is(r.dataIn![3], 0x0c);
});

test('every usage mask starts with its opcode and matches the CDB length', async () => {
  for (const d of COMMANDS) {
    assert.is(d.usage[0], d.opcode, d.name);
    assert.is(d.usage.length, cdbLengthOf(d.opcode), d.name);
    // Byte 1 carries the service action (4:0); SANITIZE adds IMMED and AUSE above it.
    if (d.serviceAction !== undefined) assert.is((d.usage[1] ?? 0) & 0x1f, d.serviceAction, d.name);
  }
});

test.run();
