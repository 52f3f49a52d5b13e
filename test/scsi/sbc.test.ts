import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { cmd, rw10, rw12, rw16, sense } from './helpers';
import { fixture } from './setup';

test('READ(10) returns the blocks asked for', async () => {
  const { store, port } = await fixture();
  store.data.fill(0xab, 512, 1024);
  const r = await port.execute(cmd(rw10(Op.READ_10, 1, 1), { dataIn: 512 }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn?.length, 512);
  assert.is(r.dataIn?.[0], 0xab);
});

test('READ(6) transfer length 0 means 256 blocks', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd([0x08, 0, 0, 0, 0, 0]));
  assert.is(r.dataIn?.length, 256 * 512);
});

test('READ zero blocks is GOOD without data', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(rw10(Op.READ_10, 0, 0)));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn, undefined);
});

test('LBA out of range → 05/21/00', async () => {
  const { port } = await fixture();
  for (const c of [rw10(Op.READ_10, 1024, 1), rw10(Op.READ_10, 1023, 2), rw16(Op.READ_16, 0xffffffffffffffffn, 1), rw12(Op.WRITE_12, 0xffffffff, 1)]) {
    const r = await port.execute(cmd(c, { data: Buffer.alloc(512) }));
    assert.is(r.status, Status.CHECK_CONDITION);
    assert.is(sense(r).key, 5);
    assert.is(sense(r).asc, 0x2100);
  }
});

test('reserved bits and RDPROTECT → invalid field with pointer', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(rw10(Op.READ_10, 0, 1, 0x20)));
  assert.is(sense(r).asc, 0x2400);
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 5 });
  const r2 = await port.execute(cmd([0x00, 0, 0, 0, 0, 0x04]));
  assert.equal(sense(r2).field, { cdb: true, byte: 5, bit: 2 });
});

test('transfer length above block limits → 05/24/00', async () => {
  const { port } = await fixture({}, 64 * 1024 * 1024);
  const r = await port.execute(cmd(rw12(Op.READ_12, 0, 16385)));
  assert.is(sense(r).asc, 0x2400);
  assert.equal(sense(r).field, { cdb: true, byte: 6 });
});

test('WRITE(10) pulls data after checks, FUA passes through', async () => {
  const { store, port } = await fixture();
  const data = Buffer.alloc(1024, 0x5a);
  const c = cmd(rw10(Op.WRITE_10, 2, 2, 0x08), { data });
  const r = await port.execute(c);
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataOutExpected, 1024);
  assert.is(store.data[1024], 0x5a);
  assert.is(store.data[2047], 0x5a);
  assert.is(store.writes[0]?.fua, true);
  const bad = cmd(rw10(Op.WRITE_10, 1024, 1), { data });
  await port.execute(bad);
  assert.equal(bad.pulls, []);
});

test('WRITE with less data than the CDB asks writes whole blocks only', async () => {
  const { store, port } = await fixture();
  const r = await port.execute(cmd(rw10(Op.WRITE_10, 0, 4), { data: Buffer.alloc(700, 1) }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataOutExpected, 2048);
  assert.is(store.data[511], 1);
  assert.is(store.data[512], 0);
});

test('large writes are pulled in chunks of at most 1 MiB', async () => {
  const { port } = await fixture({}, 8 * 1024 * 1024);
  const c = cmd(rw10(Op.WRITE_10, 0, 5000), { data: Buffer.alloc(5000 * 512, 2) });
  const r = await port.execute(c);
  assert.is(r.status, Status.GOOD);
  assert.ok(c.pulls.every((n) => n <= 1024 * 1024));
  assert.is(c.pulls.reduce((a, b) => a + b, 0), 5000 * 512);
});

test('WCE=0 makes every write FUA', async () => {
  const { store, port } = await fixture({ writeCache: false });
  await port.execute(cmd(rw10(Op.WRITE_10, 0, 1), { data: Buffer.alloc(512) }));
  assert.is(store.writes[0]?.fua, true);
});

test('read-only LUN → 07/27/00 for writes, reads work', async () => {
  const { port } = await fixture({ readOnly: true });
  for (const c of [rw10(Op.WRITE_10, 0, 1), rw10(Op.WRITE_SAME_10, 0, 1), rw16(Op.WRITE_16, 0n, 1), rw10(Op.WRITE_AND_VERIFY_10, 0, 1)]) {
    const r = await port.execute(cmd(c, { data: Buffer.alloc(512) }));
    assert.is(sense(r).key, 7);
    assert.is(sense(r).asc, 0x2700);
  }
  const r = await port.execute(cmd(rw10(Op.READ_10, 0, 1)));
  assert.is(r.status, Status.GOOD);
});

test('VERIFY BYTCHK=01 compares and reports the first miscompare offset', async () => {
  const { store, port } = await fixture();
  store.data.fill(7, 0, 2048);
  const data = Buffer.alloc(1024, 7);
  let r = await port.execute(cmd(rw10(Op.VERIFY_10, 1, 2, 0x02), { data }));
  assert.is(r.status, Status.GOOD);
  data[600] = 8;
  r = await port.execute(cmd(rw10(Op.VERIFY_10, 1, 2, 0x02), { data }));
  assert.is(sense(r).key, 0x0e);
  assert.is(sense(r).asc, 0x1d00);
  assert.is(sense(r).information, 600n);
  // BYTCHK=0 does not look at data-out.
  r = await port.execute(cmd(rw10(Op.VERIFY_10, 1, 2, 0), { data }));
  assert.is(r.status, Status.GOOD);
});

test('VERIFY BYTCHK=11 compares one block with every block', async () => {
  const { store, port } = await fixture();
  store.data.fill(3, 0, 4 * 512);
  const block = Buffer.alloc(512, 3);
  let r = await port.execute(cmd(rw16(Op.VERIFY_16, 0n, 4, 0x06), { data: block }));
  assert.is(r.status, Status.GOOD);
  store.data[3 * 512 + 9] = 4;
  r = await port.execute(cmd(rw16(Op.VERIFY_16, 0n, 4, 0x06), { data: block }));
  assert.is(sense(r).key, 0x0e);
  r = await port.execute(cmd(rw16(Op.VERIFY_16, 0n, 4, 0x04), { data: block }));
  assert.is(sense(r).asc, 0x2400);
});

test('WRITE AND VERIFY writes', async () => {
  const { store, port } = await fixture();
  const r = await port.execute(cmd(rw12(Op.WRITE_AND_VERIFY_12, 3, 1, 0x02), { data: Buffer.alloc(512, 9) }));
  assert.is(r.status, Status.GOOD);
  assert.is(store.data[3 * 512], 9);
});

test('WRITE SAME writes the block, UNMAP bit with zeros deallocates, 0 blocks runs to the end', async () => {
  const { store, port } = await fixture();
  let r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 4, 3), { data: Buffer.alloc(512, 0x11) }));
  assert.is(r.status, Status.GOOD);
  assert.is(store.data[4 * 512], 0x11);
  assert.is(store.data[7 * 512 - 1], 0x11);
  assert.is(store.data[7 * 512], 0);
  r = await port.execute(cmd(rw16(Op.WRITE_SAME_16, 4n, 3, 0x08), { data: Buffer.alloc(512) }));
  assert.is(r.status, Status.GOOD);
  assert.equal(store.unmaps, [{ position: 2048, length: 1536 }]);
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 1020, 0), { data: Buffer.alloc(512, 0x22) }));
  assert.is(r.status, Status.GOOD);
  assert.is(store.data[1020 * 512 - 1], 0);
  assert.is(store.data[1020 * 512], 0x22);
  assert.is(store.data[1024 * 512 - 1], 0x22);
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 1025, 0), { data: Buffer.alloc(512) }));
  assert.is(sense(r).asc, 0x2100);
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 0, 1), { data: Buffer.alloc(256) }));
  assert.is(r.status, Status.CHECK_CONDITION);
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 0, 1, 0x10), { data: Buffer.alloc(512) }));
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 4 });
});

test('WRITE SAME zero blocks: bounded by MAXIMUM WRITE SAME LENGTH (SBC-3 §5.42, VPD B0)', async () => {
  const { lu, port } = await fixture({}, 81920 * 512);
  const max = lu.maxWriteSameBlocks;
  let r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 0, 0), { data: Buffer.alloc(512) }));
  assert.equal(sense(r).field, { cdb: true, byte: 7 });
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 81920 - max - 1, 0), { data: Buffer.alloc(512) }));
  assert.is(r.status, Status.CHECK_CONDITION);
  r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 81920 - max, 0), { data: Buffer.alloc(512) }));
  assert.is(r.status, Status.GOOD);
});

function unmapList(ranges: [bigint, number][]): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(16 * ranges.length, 2);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(lba, 8 + i * 16);
    b.writeUInt32BE(n, 16 + i * 16);
  });
  return b;
}

test('UNMAP', async () => {
  const { store, port } = await fixture();
  store.data.fill(1);
  const list = unmapList([[0n, 2], [10n, 1], [20n, 0]]);
  let r = await port.execute(cmd([0x42, 0, 0, 0, 0, 0, 0, 0, list.length, 0], { data: list }));
  assert.is(r.status, Status.GOOD);
  assert.is(store.data[0], 0);
  assert.is(store.data[1024], 1);
  assert.is(store.data[10 * 512], 0);
  r = await port.execute(cmd([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(r.status, Status.GOOD);
  const oob = unmapList([[1023n, 2]]);
  r = await port.execute(cmd([0x42, 0, 0, 0, 0, 0, 0, 0, oob.length, 0], { data: oob }));
  assert.is(sense(r).asc, 0x2100);
  r = await port.execute(cmd([0x42, 1, 0, 0, 0, 0, 0, 0, oob.length, 0], { data: oob }));
  assert.is(sense(r).asc, 0x2400);
});

test('UNMAP is an invalid opcode when not thin', async () => {
  const { port } = await fixture({ thinProvisioning: false });
  const r = await port.execute(cmd([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2000);
});

test('WRITE SAME with UNMAP on a fully provisioned unit → invalid field', async () => {
  const { port } = await fixture({ thinProvisioning: false });
  const r = await port.execute(cmd(rw10(Op.WRITE_SAME_10, 0, 1, 0x08), { data: Buffer.alloc(512) }));
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 3 });
});

test('READ CAPACITY 10/16', async () => {
  const { port } = await fixture({ blockSize: 4096 }, 4096 * 100);
  let r = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(r.dataIn?.readUInt32BE(0), 99);
  assert.is(r.dataIn?.readUInt32BE(4), 4096);
  const c16 = Buffer.alloc(16);
  c16[0] = 0x9e;
  c16[1] = 0x10;
  c16.writeUInt32BE(32, 10);
  r = await port.execute(cmd(c16));
  assert.is(r.dataIn?.length, 32);
  assert.is(r.dataIn?.readBigUInt64BE(0), 99n);
  assert.is(r.dataIn?.[14], 0xc0);
  c16.writeUInt32BE(12, 10);
  r = await port.execute(cmd(c16));
  assert.is(r.dataIn?.length, 12);
  c16[1] = 0x11;
  r = await port.execute(cmd(c16));
  assert.is(sense(r).asc, 0x2400);
});

test('SYNCHRONIZE CACHE flushes', async () => {
  const { store, port } = await fixture();
  const r = await port.execute(cmd(rw10(Op.SYNCHRONIZE_CACHE_10, 0, 0)));
  assert.is(r.status, Status.GOOD);
  assert.is(store.flushes, 1);
  const r2 = await port.execute(cmd(rw16(Op.SYNCHRONIZE_CACHE_16, 2000n, 1)));
  assert.is(sense(r2).asc, 0x2100);
});

test('START STOP / PREVENT ALLOW on a removable unit', async () => {
  const { port } = await fixture({ removable: true });
  let r = await port.execute(cmd([0x1e, 0, 0, 0, 1, 0]));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0x1b, 0, 0, 0, 0x02, 0]));
  assert.is(sense(r).asc, 0x5302);
  await port.execute(cmd([0x1e, 0, 0, 0, 0, 0]));
  r = await port.execute(cmd([0x1b, 1, 0, 0, 0x02, 0]));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).key, 2);
  assert.is(sense(r).asc >> 8, 0x3a);
  r = await port.execute(cmd(rw10(Op.READ_10, 0, 1)));
  assert.is(sense(r).asc >> 8, 0x3a);
  r = await port.execute(cmd([0x1b, 0, 0, 0, 0x03, 0]));
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(r.status, Status.GOOD);
});

test('START STOP LOEJ on a fixed unit is rejected; power conditions accepted and LOEJ then ignored', async () => {
  const { port } = await fixture();
  let r = await port.execute(cmd([0x1b, 0, 0, 0, 0x02, 0]));
  assert.is(sense(r).asc, 0x2400);
  r = await port.execute(cmd([0x1b, 0, 0, 0, 0x30, 0]));
  assert.is(r.status, Status.GOOD);
  r = await port.execute(cmd([0x1b, 0, 0, 0, 0x52, 0]));
  assert.is(r.status, Status.GOOD);
});

test('a failed data-out transfer → ABORTED COMMAND / DATA PHASE ERROR', async () => {
  const { port } = await fixture();
  const c = cmd(rw10(Op.WRITE_10, 0, 1), { data: Buffer.alloc(512) });
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const r = await port.execute({ ...c, dataOut: () => Promise.reject(new Error('connection reset')) });
    assert.is(sense(r).key, 0x0b);
    assert.is(sense(r).asc, 0x4b00);
  } finally {
    process.stderr.write = orig;
  }
});

test('backstore I/O errors become MEDIUM ERROR', async () => {
  const { store, port } = await fixture();
  store.failNext = 'read';
  const r = await port.execute(cmd(rw10(Op.READ_10, 0, 1)));
  assert.is(sense(r).key, 3);
  assert.is(sense(r).asc, 0x1100);
  // A one-off failure: every block reads when looked at again, so no block is named.
  assert.is(sense(r).information, undefined);
});

test('a READ over unreadable blocks names the first one in INFORMATION (SBC-3 4.18.2)', async () => {
  const { store, port } = await fixture();
  const orig = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    store.unreadable = { from: 37 * 512 + 100, to: 41 * 512 };
    const r = await port.execute(cmd(rw10(Op.READ_10, 30, 16)));
    assert.is(r.status, 2);
    assert.is(sense(r).key, 3);
    assert.is(sense(r).asc, 0x1100);
    assert.is(sense(r).information, 37n);
    // The bad stretch at the very start and at the very end of the transfer.
    assert.is(sense(await port.execute(cmd(rw10(Op.READ_10, 37, 8)))).information, 37n);
    assert.is(sense(await port.execute(cmd(rw10(Op.READ_10, 33, 5)))).information, 37n);
    assert.is(sense(await port.execute(cmd(rw10(Op.READ_10, 40, 1)))).information, 40n);
    // Reads beside it are whole.
    assert.is((await port.execute(cmd(rw10(Op.READ_10, 41, 8)))).status, 0);
  } finally {
    process.stderr.write = orig;
  }
});

test.run();
