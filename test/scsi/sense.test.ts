import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Asc, SenseKey, decodeSense, encodeDescriptorSense, encodeFixedSense, invalidCdb } from '../../src/scsi/sense';

// SPC-4 §4.5.3: fixed format, INVALID FIELD IN CDB pointing at byte 1 bit 4.
test('fixed sense with field pointer', () => {
  const b = encodeFixedSense(invalidCdb(1, 4));
  assert.is(b.length, 18);
  assert.is(b[0], 0x70);
  assert.is(b[2], 0x05);
  assert.is(b[7], 10);
  assert.is(b[12], 0x24);
  assert.is(b[13], 0x00);
  assert.is(b[15], 0x80 | 0x40 | 0x08 | 4); // SKSV, C/D, BPV, bit 4
  assert.is(b.readUInt16BE(16), 1);
});

test('fixed sense information sets VALID', () => {
  const b = encodeFixedSense({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: 513 });
  assert.is(b[0], 0xf0);
  assert.is(b.readUInt32BE(3), 513);
  assert.is(b[2], 0x0e);
  assert.is(b[12], 0x1d);
});

// SPC-4 §4.5.2: descriptor format with information and sense-key specific descriptors.
test('descriptor sense', () => {
  const b = encodeDescriptorSense({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: 7, field: { cdb: false, byte: 3 } });
  assert.is(b[0], 0x72);
  assert.is(b[1], 0x0e);
  assert.is(b[2], 0x1d);
  assert.is(b[7], b.length - 8);
  assert.is(b[8], 0x00);
  assert.is(b[9], 0x0a);
  assert.is(b.readBigUInt64BE(12), 7n);
  assert.is(b[20], 0x02);
  assert.is(b[24], 0x80);
  const d = decodeSense(b);
  assert.is(d.descriptor, true);
  assert.is(d.information, 7n);
  assert.equal(d.field, { cdb: false, byte: 3 });
});

test('round trip fixed', () => {
  const d = decodeSense(encodeFixedSense({ key: SenseKey.UNIT_ATTENTION, asc: Asc.POWER_ON_RESET }));
  assert.is(d.key, 6);
  assert.is(d.asc, 0x2900);
  assert.is(d.descriptor, false);
});

test.run();
