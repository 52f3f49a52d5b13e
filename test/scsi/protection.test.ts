// T10 protection information on a RAM (and file) unit: the wire format, the checks of the
// RDPROTECT/WRPROTECT/VRPROTECT tables, generation, FORMAT UNIT, and a corrupted guard in
// the store detected on read (ABORTED COMMAND, 10/01) instead of returned as data.

import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openFile, openRam } from '../../src/backstores';
import type { Backstore } from '../../src/backstores';
import { LogicalUnit, type LogicalUnitOptions } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { Status } from '../../src/scsi/types';
import { crc16T10Dif } from '../../src/scsi/crc16';
import { checkPi, generatePi, PROTECT_CHECKS } from '../../src/scsi/sbc/pi';
import { cmd, rw10, rw12, rw16, sense } from './helpers';

const BS = 512;
const BLOCKS = 256;

async function unit(opts: Partial<LogicalUnitOptions> = { protection: { type: 1 } }, store?: Backstore) {
  const backstore = store ?? openRam({ name: 'pi', size: BLOCKS * BS, protectionInfo: true, chunkSize: 4096 });
  const lu = new LogicalUnit({ backstore, ...opts });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd([0, 0, 0, 0, 0, 0])); // the power-on unit attention
  return { lu, port, store: backstore };
}

const block = (seed: number): Buffer => Buffer.alloc(BS).map((_, i) => (i * 7 + seed) & 0xff) as Buffer;

/** Blocks with tuples interleaved, as the wire carries them. */
function withPi(data: Buffer[], lba: number, mutate?: (pi: Buffer, i: number) => void): Buffer {
  return Buffer.concat(
    data.flatMap((d, i) => {
      const pi = Buffer.alloc(8);
      pi.writeUInt16BE(crc16T10Dif(d), 0);
      pi.writeUInt16BE(0x1234, 2);
      pi.writeUInt32BE(lba + i, 4);
      mutate?.(pi, i);
      return [d, pi];
    }),
  );
}

const W10 = 0x2a;
const R10 = 0x28;
const prot = (v: number) => v << 5;

test('READ CAPACITY(16) P_TYPE/PROT_EN, INQUIRY PROTECT, VPD 86h SPT/GRD_CHK/REF_CHK', async () => {
  const { port } = await unit();
  const rc = await port.execute(cmd(rw16(0x9e, 0n, 32, 0x10)));
  assert.is(rc.dataIn![12], 0x01); // type 1: P_TYPE 000b, PROT_EN
  const inq = await port.execute(cmd([0x12, 0, 0, 0, 96, 0]));
  assert.is(inq.dataIn![5]! & 0x01, 0x01);
  const v = await port.execute(cmd([0x12, 1, 0x86, 0, 64, 0]));
  assert.is(v.dataIn![1], 0x86);
  assert.is((v.dataIn![4]! >> 3) & 7, 3); // SPT: types 1 and 3
  assert.is(v.dataIn![4]! & 0x05, 0x05); // GRD_CHK, REF_CHK
  assert.is(v.dataIn![5]! & 0x07, 0x07); // HEADSUP ORDSUP SIMPSUP

  const t3 = await unit({ protection: { type: 3 } });
  assert.is((await t3.port.execute(cmd(rw16(0x9e, 0n, 32, 0x10)))).dataIn![12], 0x05); // P_TYPE 010b

  const plain = await unit({});
  assert.is((await plain.port.execute(cmd(rw16(0x9e, 0n, 32, 0x10)))).dataIn![12], 0);
  assert.is((await plain.port.execute(cmd([0x12, 0, 0, 0, 96, 0]))).dataIn![5]! & 0x01, 0);
  assert.is((await plain.port.execute(cmd([0x12, 1, 0x86, 0, 64, 0]))).dataIn![4], 0);
});

test('a unit without PI rejects every non-zero RDPROTECT/WRPROTECT/VRPROTECT', async () => {
  const { port } = await unit({});
  for (let v = 1; v < 8; v++) {
    for (const c of [rw10(R10, 0, 1, prot(v)), rw12(0xa8, 0, 1, prot(v)), rw16(0x88, 0n, 1, prot(v)), rw10(0x2f, 0, 1, prot(v))]) {
      const s = sense(await port.execute(cmd(c)));
      assert.is(s.asc, 0x2400);
      assert.is(s.field?.byte, 1);
    }
    const w = sense(await port.execute(cmd(rw10(W10, 0, 1, prot(v)), { data: Buffer.alloc(BS + 8) })));
    assert.is(w.asc, 0x2400);
  }
});

test('PI needs a backstore with a PI store', () => {
  assert.throws(() => new LogicalUnit({ backstore: openRam({ name: 'x', size: 1 << 20 }), protection: { type: 1 } }), /PI store/);
});

test('WRITE with WRPROTECT=1 stores the tuples; READ RDPROTECT=1 returns them interleaved, RDPROTECT=0 strips them', async () => {
  const { port } = await unit();
  const data = [block(1), block(2), block(3)];
  const wire = withPi(data, 10);
  const w = await port.execute(cmd(rw10(W10, 10, 3, prot(1)), { data: wire }));
  assert.is(w.status, Status.GOOD);
  assert.is(w.dataOutExpected, 3 * (BS + 8));
  const r1 = await port.execute(cmd(rw10(R10, 10, 3, prot(1))));
  assert.equal(r1.dataIn, wire);
  const r0 = await port.execute(cmd(rw16(0x88, 10n, 3)));
  assert.equal(r0.dataIn, Buffer.concat(data));
  // READ(6) has no RDPROTECT: it is 000b (checked, stripped).
  const r6 = await port.execute(cmd([0x08, 0, 0, 10, 3, 0]));
  assert.equal(r6.dataIn, Buffer.concat(data));
});

test('WRITE checks per WRPROTECT: guard 10/01, reference tag 10/03, 011b checks nothing; INFORMATION is the LBA', async () => {
  const { port } = await unit();
  const data = [block(4), block(5)];
  let s = sense(await port.execute(cmd(rw10(W10, 20, 2, prot(1)), { data: withPi(data, 20, (pi, i) => i === 1 && pi.writeUInt16BE(0xdead, 0)) })));
  assert.is(s.key, 0x0b);
  assert.is(s.asc, 0x1001);
  assert.is(s.information, 21n);
  s = sense(await port.execute(cmd(rw10(W10, 20, 2, prot(1)), { data: withPi(data, 99) })));
  assert.is(s.asc, 0x1003);
  assert.is(s.information, 20n);
  // 010b: no guard check, reference tag still checked.
  const badGuard = withPi(data, 20, (pi) => pi.writeUInt16BE(0xbeef, 0));
  assert.is((await port.execute(cmd(rw10(W10, 20, 2, prot(2)), { data: badGuard }))).status, Status.GOOD);
  // 100b: guard only.
  assert.is((await port.execute(cmd(rw10(W10, 20, 2, prot(4)), { data: withPi(data, 77) }))).status, Status.GOOD);
  // 011b: nothing checked; the bad guard is stored and RDPROTECT=0 reports it instead of the data.
  assert.is((await port.execute(cmd(rw10(W10, 20, 2, prot(3)), { data: badGuard }))).status, Status.GOOD);
  s = sense(await port.execute(cmd(rw10(R10, 20, 2))));
  assert.is(s.asc, 0x1001);
  // ... RDPROTECT=3 returns it unchecked.
  const r = await port.execute(cmd(rw10(R10, 20, 2, prot(3))));
  assert.equal(r.dataIn, badGuard);
  // Reserved 101b..111b.
  assert.is(sense(await port.execute(cmd(rw10(R10, 20, 1, prot(5))))).asc, 0x2400);
});

test('the application tag FFFFh escapes every check of a type 1 block', async () => {
  const { port } = await unit();
  const wire = withPi([block(6)], 30, (pi) => {
    pi.writeUInt16BE(0, 0);
    pi.writeUInt16BE(0xffff, 2);
    pi.writeUInt32BE(0, 4);
  });
  assert.is((await port.execute(cmd(rw10(W10, 30, 1, prot(1)), { data: wire }))).status, Status.GOOD);
  assert.equal((await port.execute(cmd(rw10(R10, 30, 1)))).dataIn, block(6));
});

test('writes without PI generate it: guard = CRC, application tag 0, reference tag = LBA; also WRITE SAME', async () => {
  const { port } = await unit();
  await port.execute(cmd(rw10(W10, 40, 2), { data: Buffer.concat([block(7), block(8)]) }));
  const r = (await port.execute(cmd(rw10(R10, 40, 2, prot(1))))).dataIn!;
  assert.is(r.readUInt16BE(BS), crc16T10Dif(block(7)));
  assert.is(r.readUInt16BE(BS + 2), 0);
  assert.is(r.readUInt32BE(BS + 4), 40);
  assert.is(r.readUInt32BE(2 * BS + 8 + 4), 41);
  const ws = await port.execute(cmd(rw10(0x41, 50, 4), { data: block(9) }));
  assert.is(ws.status, Status.GOOD);
  assert.equal((await port.execute(cmd(rw10(R10, 50, 4)))).dataIn, Buffer.concat([block(9), block(9), block(9), block(9)]));
});

test('never-written and unmapped blocks carry the FFh escape tuple', async () => {
  const { port } = await unit();
  const r = (await port.execute(cmd(rw10(R10, 60, 1, prot(1))))).dataIn!;
  assert.equal(r.subarray(BS), Buffer.alloc(8, 0xff));
  await port.execute(cmd(rw10(W10, 64, 8), { data: Buffer.alloc(8 * BS, 1) }));
  const list = Buffer.alloc(24);
  list.writeUInt16BE(22, 0);
  list.writeUInt16BE(16, 2);
  list.writeBigUInt64BE(64n, 8);
  list.writeUInt32BE(8, 16);
  assert.is((await port.execute(cmd([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { data: list }))).status, Status.GOOD);
  const u = (await port.execute(cmd(rw10(R10, 64, 1, prot(1))))).dataIn!;
  assert.equal(u, Buffer.concat([Buffer.alloc(BS), Buffer.alloc(8, 0xff)]));
});

test('a corrupted guard in the PI store is detected on read (10/01), not returned as data', async () => {
  const { port, store } = await unit();
  const data = [block(11), block(12), block(13), block(14)];
  assert.is((await port.execute(cmd(rw10(W10, 100, 4, prot(1)), { data: withPi(data, 100) }))).status, Status.GOOD);
  assert.equal((await port.execute(cmd(rw10(R10, 100, 4)))).dataIn, Buffer.concat(data));
  // Flip one bit of the stored guard of LBA 102, behind the unit's back.
  const raw = Buffer.alloc(1);
  await store.pi!.read(raw, 0, 1, 102 * 8);
  raw[0] = raw[0]! ^ 0x01;
  await store.pi!.write(raw, 102 * 8);
  const r = await port.execute(cmd(rw10(R10, 100, 4)));
  assert.is(r.status, Status.CHECK_CONDITION);
  assert.is(r.dataIn, undefined);
  const s = sense(r);
  assert.is(s.key, 0x0b);
  assert.is(s.asc, 0x1001);
  assert.is(s.information, 102n);
  // VERIFY (BYTCHK=0, VRPROTECT=0) finds it too; the blocks before it still read.
  assert.is(sense(await port.execute(cmd(rw10(0x2f, 100, 4)))).asc, 0x1001);
  assert.equal((await port.execute(cmd(rw10(R10, 100, 2)))).dataIn, Buffer.concat(data.slice(0, 2)));
});

test('corrupted data (rather than PI) is detected the same way', async () => {
  const { port, store } = await unit();
  await port.execute(cmd(rw10(W10, 5, 1), { data: block(15) }));
  const bad = block(15);
  bad[100] = bad[100]! ^ 0x80;
  await store.write(bad, 5 * BS);
  assert.is(sense(await port.execute(cmd(rw16(0x88, 5n, 1)))).asc, 0x1001);
});

test('type 3: the reference tag is not checked, the guard is', async () => {
  const { port } = await unit({ protection: { type: 3 } });
  const wire = withPi([block(16)], 7, (pi) => pi.writeUInt32BE(0xabcdef, 4));
  assert.is((await port.execute(cmd(rw10(W10, 8, 1, prot(1)), { data: wire }))).status, Status.GOOD);
  assert.equal((await port.execute(cmd(rw10(R10, 8, 1, prot(1))))).dataIn, wire);
  const bad = withPi([block(16)], 7, (pi) => pi.writeUInt16BE(1, 0));
  assert.is(sense(await port.execute(cmd(rw10(W10, 8, 1, prot(1)), { data: bad }))).asc, 0x1001);
});

test('VERIFY with VRPROTECT and BYTCHK=1 compares the data and checks the sent tuples', async () => {
  const { port } = await unit();
  const data = [block(17), block(18)];
  await port.execute(cmd(rw10(W10, 70, 2, prot(1)), { data: withPi(data, 70) }));
  assert.is((await port.execute(cmd(rw10(0x2f, 70, 2, prot(1) | 0x02), { data: withPi(data, 70) }))).status, Status.GOOD);
  assert.is(sense(await port.execute(cmd(rw10(0x2f, 70, 2, prot(1) | 0x02), { data: withPi(data, 71) }))).asc, 0x1003);
  const other = [block(17), block(19)];
  const m = sense(await port.execute(cmd(rw10(0x2f, 70, 2, prot(1) | 0x02), { data: withPi(other, 70) })));
  assert.is(m.key, 0x0e);
});

test('WRITE AND VERIFY with WRPROTECT writes the tuples and checks them', async () => {
  const { port } = await unit();
  const data = [block(20)];
  assert.is((await port.execute(cmd(rw10(0x2e, 80, 1, prot(1) | 0x02), { data: withPi(data, 80) }))).status, Status.GOOD);
  assert.equal((await port.execute(cmd(rw10(R10, 80, 1, prot(1))))).dataIn, withPi(data, 80));
  assert.is(sense(await port.execute(cmd(rw10(0x2e, 80, 1, prot(1)), { data: withPi(data, 80, (pi) => pi.writeUInt16BE(3, 0)) }))).asc, 0x1001);
});

test('FORMAT UNIT switches the protection type and resets every tuple to the escape', async () => {
  const { port, lu } = await unit({ protection: { type: 0 } });
  assert.is(lu.protectionType, 0);
  // PROTECT is set (the unit can do PI) while PROT_EN is clear.
  assert.is((await port.execute(cmd([0x12, 0, 0, 0, 96, 0]))).dataIn![5]! & 1, 1);
  assert.is(sense(await port.execute(cmd(rw10(R10, 0, 1, prot(1))))).asc, 0x2400);
  // FMTPINFO=10b, no parameter list: type 1.
  assert.is((await port.execute(cmd([0x04, 0x80, 0, 0, 0, 0]))).status, Status.GOOD);
  assert.is(lu.protectionType, 1);
  assert.is((await port.execute(cmd(rw16(0x9e, 0n, 32, 0x10)))).dataIn![12], 0x01);
  await port.execute(cmd(rw10(W10, 3, 1), { data: block(21) }));
  // FMTPINFO=11b with PROTECTION FIELD USAGE 001b (FMTDATA, short header): type 3.
  const hdr = Buffer.from([0x01, 0x00, 0x00, 0x00]);
  assert.is((await port.execute(cmd([0x04, 0xd0, 0, 0, 0, 0], { data: hdr }))).status, Status.GOOD);
  assert.is(lu.protectionType, 3);
  const r = (await port.execute(cmd(rw10(R10, 3, 1, prot(1))))).dataIn!;
  assert.equal(r.subarray(BS), Buffer.alloc(8, 0xff));
  // Type 2 (FMTPINFO=11b, PFU 000b) is not supported.
  assert.is(sense(await port.execute(cmd([0x04, 0xc0, 0, 0, 0, 0]))).asc, 0x2400);
  // FMTPINFO=01b is reserved.
  assert.is(sense(await port.execute(cmd([0x04, 0x40, 0, 0, 0, 0]))).asc, 0x2400);
  // A defect list is refused.
  assert.is(sense(await port.execute(cmd([0x04, 0x90, 0, 0, 0, 0], { data: Buffer.from([0, 0, 0, 8]) }))).asc, 0x2600);
  // Back to no PI.
  assert.is((await port.execute(cmd([0x04, 0x00, 0, 0, 0, 0]))).status, Status.GOOD);
  assert.is(lu.protectionType, 0);
});

test('FORMAT UNIT with FMTPINFO on a unit without PI support is INVALID FIELD IN CDB', async () => {
  const { port, lu } = await unit({});
  assert.is(sense(await port.execute(cmd([0x04, 0x80, 0, 0, 0, 0]))).asc, 0x2400);
  assert.is((await port.execute(cmd([0x04, 0x00, 0, 0, 0, 0]))).status, Status.GOOD);
  assert.is(lu.protectionType, 0);
});

test('file backstore: tuples live in <image>.pi; a corrupted sidecar guard reads as 10/01', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-pi-lu-'));
  try {
    const img = path.join(dir, 'lu.img');
    const f = await openFile({ name: 'f', path: img, size: BLOCKS * BS, protectionInfo: true });
    const { port, lu } = await unit({ protection: { type: 1 } }, f);
    await port.execute(cmd(rw10(W10, 9, 2, prot(1)), { data: withPi([block(22), block(23)], 9) }));
    assert.equal((await port.execute(cmd(rw10(R10, 9, 2)))).dataIn, Buffer.concat([block(22), block(23)]));
    await lu.close();
    // Stored as the ones' complement: flip a guard bit in the file itself.
    const fh = await fsp.open(`${img}.pi`, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 10 * 8 + 1);
    b[0] = b[0]! ^ 0x10;
    await fh.write(b, 0, 1, 10 * 8 + 1);
    await fh.close();
    const g = await openFile({ name: 'f', path: img, protectionInfo: true });
    const again = await unit({ protection: { type: 1 } }, g);
    const s = sense(await again.port.execute(cmd(rw10(R10, 9, 2))));
    assert.is(s.asc, 0x1001);
    assert.is(s.information, 10n);
    await again.lu.close();
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('checkPi: the application tag is checked only against an expected tag (32-byte CDBs)', () => {
  const d = block(24);
  const pi = generatePi(d, BS, 5n, 1);
  pi.writeUInt16BE(0x0042, 2);
  assert.is(checkPi(d, pi, BS, 5n, 1, PROTECT_CHECKS[1]!), undefined);
  assert.is(checkPi(d, pi, BS, 5n, 1, PROTECT_CHECKS[1]!, { tag: 0x0042, mask: 0xffff }), undefined);
  assert.is(checkPi(d, pi, BS, 5n, 1, PROTECT_CHECKS[1]!, { tag: 0x0043, mask: 0xffff })?.asc, 0x1002);
  assert.is(checkPi(d, pi, BS, 5n, 1, PROTECT_CHECKS[1]!, { tag: 0x0043, mask: 0xff00 }), undefined);
});

test.run();
