import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { cmd, sense } from './helpers';
import { fixture } from './setup';

function wa16(lba: bigint, blocks: number, flags = 0, boundary = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x9c;
  b[1] = flags;
  b.writeBigUInt64BE(lba, 2);
  b.writeUInt16BE(boundary, 10);
  b.writeUInt16BE(blocks, 12);
  return b;
}

test('WRITE ATOMIC(16) writes the range in one backstore call', async () => {
  const { store, port } = await fixture();
  const r = await port.execute(cmd(wa16(2n, 4, 0x18), { data: Buffer.alloc(2048, 0x33) }));
  assert.is(r.status, Status.GOOD);
  assert.equal(store.writes, [{ position: 1024, length: 2048, fua: true }]);
});

test('WRITE ATOMIC(16): ATOMIC BOUNDARY → invalid field; short data writes nothing; range', async () => {
  const { store, port } = await fixture();
  assert.equal(sense(await port.execute(cmd(wa16(0n, 1, 0, 1), { data: Buffer.alloc(512) }))).field, { cdb: true, byte: 11, bit: 0 });
  assert.is(sense(await port.execute(cmd(wa16(0n, 2), { data: Buffer.alloc(512) }))).asc, 0x2400);
  assert.is(store.writes.length, 0);
  assert.is(sense(await port.execute(cmd(wa16(1023n, 2), { data: Buffer.alloc(1024) }))).asc, 0x2100);
  assert.is((await port.execute(cmd(wa16(0n, 0)))).status, Status.GOOD);
});

// SBC-4 §6.6.4: VPD B0 bytes 44..47 MAXIMUM ATOMIC TRANSFER LENGTH, no alignment/granularity.
test('VPD B0 reports the atomic limits', async () => {
  const { lu, port } = await fixture();
  const d = (await port.execute(cmd([0x12, 1, 0xb0, 0, 255, 0]))).dataIn!;
  assert.is(d.readUInt32BE(44), lu.maxTransferBlocks);
  assert.is(d.readUInt32BE(48), 0);
  assert.is(d.readUInt32BE(52), 0);
  assert.is(d.readUInt32BE(60), 0);
});

test.run();
