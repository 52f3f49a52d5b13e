import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { cmd, rw10, sense } from './helpers';
import { fixture } from './setup';

function caw(lba: bigint, nolb: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x89;
  b[1] = flags;
  b.writeBigUInt64BE(lba, 2);
  b[13] = nolb;
  return b;
}

test('COMPARE AND WRITE: match → the second half is written', async () => {
  const { store, port } = await fixture();
  store.data.fill(0x41, 512, 1024);
  const data = Buffer.concat([Buffer.alloc(512, 0x41), Buffer.alloc(512, 0x42)]);
  const r = await port.execute(cmd(caw(1n, 1, 0x08), { data }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataOutExpected, 1024);
  assert.is(store.data[512], 0x42);
  assert.is(store.writes[0]?.fua, true);
});

// SBC-3 §5.2: MISCOMPARE 0E/1D/00, INFORMATION = offset in the Data-Out Buffer, no write.
test('COMPARE AND WRITE: miscompare reports the first differing byte and writes nothing', async () => {
  const { store, port } = await fixture();
  store.data.fill(0x41, 0, 512);
  const data = Buffer.concat([Buffer.alloc(512, 0x41), Buffer.alloc(512, 0x42)]);
  data[512 - 27] = 0x43;
  const r = await port.execute(cmd(caw(0n, 1), { data }));
  assert.is(r.status, Status.CHECK_CONDITION);
  assert.is(sense(r).key, 0x0e);
  assert.is(sense(r).asc, 0x1d00);
  assert.is(sense(r).information, BigInt(512 - 27));
  assert.is(store.data[0], 0x41);
  assert.is(store.writes.length, 0);
});

test('COMPARE AND WRITE: NoLB above the VPD B0 limit → invalid field before data; 0 → GOOD; range', async () => {
  const { port } = await fixture();
  const big = cmd(caw(0n, 2), { data: Buffer.alloc(2048) });
  const r = await port.execute(big);
  assert.equal(sense(r).field, { cdb: true, byte: 13 });
  assert.equal(big.pulls, []);
  assert.is((await port.execute(cmd(caw(0n, 0)))).status, Status.GOOD);
  // 256 blocks wrap to NoLB 0: the data-out length gives it away.
  assert.is(sense(await port.execute(cmd(caw(0n, 0), { data: Buffer.alloc(1024) }))).asc, 0x2400);
  assert.is(sense(await port.execute(cmd(caw(1024n, 1), { data: Buffer.alloc(1024) }))).asc, 0x2100);
  const short = await port.execute(cmd(caw(0n, 1), { data: Buffer.alloc(512) }));
  assert.is(sense(short).asc, 0x2400);
  const vpd = await port.execute(cmd([0x12, 1, 0xb0, 0, 64, 0]));
  assert.is(vpd.dataIn![5], 1);
});

test('COMPARE AND WRITE is atomic against a WRITE to the same block', async () => {
  const { store, port } = await fixture();
  store.delay = 5;
  const data = Buffer.concat([Buffer.alloc(512, 0), Buffer.alloc(512, 0x42)]);
  const a = port.execute(cmd(caw(0n, 1), { data }));
  const w = port.execute(cmd(rw10(Op.WRITE_10, 0, 1), { data: Buffer.alloc(512, 0x77) }));
  const [ra] = await Promise.all([a, w]);
  // CAW first (GOOD, then the WRITE lands: 0x77) or WRITE first (miscompare, 0x77 kept).
  assert.is(store.data[0], 0x77);
  assert.ok(ra.status === Status.GOOD || ra.status === Status.CHECK_CONDITION);
});

test.run();
