import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cdbLengthOf, decodeLbaRange, Op } from '../../src/scsi/cdb';

test('group code lengths', () => {
  assert.is(cdbLengthOf(Op.READ_6), 6);
  assert.is(cdbLengthOf(Op.READ_10), 10);
  assert.is(cdbLengthOf(Op.MODE_SENSE_10), 10);
  assert.is(cdbLengthOf(Op.READ_16), 16);
  assert.is(cdbLengthOf(Op.READ_12), 12);
  assert.is(cdbLengthOf(0x7f), undefined);
});

// SBC-3 §5.16: READ(6) LBA is 21 bits, TRANSFER LENGTH 0 means 256.
test('6-byte LBA and 256-block length', () => {
  const r = decodeLbaRange(Buffer.from([0x08, 0xff, 0x12, 0x34, 0, 0]), 6);
  assert.is(r.lba, 0x1f1234n);
  assert.is(r.blocks, 256);
});

test('10/12/16-byte ranges', () => {
  assert.equal(decodeLbaRange(Buffer.from([0x28, 0, 0, 0, 1, 0, 0, 0, 8, 0]), 10), { lba: 256n, blocks: 8 });
  const c12 = Buffer.from([0xa8, 0, 0, 0, 0, 5, 0, 1, 0, 0, 0, 0]);
  assert.equal(decodeLbaRange(c12, 12), { lba: 5n, blocks: 65536 });
  const c16 = Buffer.alloc(16);
  c16[0] = 0x88;
  c16.writeBigUInt64BE(0xffffffffffffffffn, 2);
  c16.writeUInt32BE(3, 10);
  assert.equal(decodeLbaRange(c16, 16), { lba: 0xffffffffffffffffn, blocks: 3 });
});

test.run();
