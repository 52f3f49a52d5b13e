import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc16T10Dif } from '../../src/scsi/crc16';

/** Bit-at-a-time reference (SBC-3 §4.22.4.2: x^16 + x^15 + x^11 + x^9 + x^8 + x^7 + x^5 + x^4 + x^2 + x + 1). */
function reference(buf: Buffer): number {
  let crc = 0;
  for (const byte of buf) {
    crc ^= byte << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x8bb7) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

const VECTORS: [string, Buffer, number][] = [
  // The CRC catalogue's check value for CRC-16/T10-DIF.
  ['"123456789"', Buffer.from('123456789', 'latin1'), 0xd0db],
  ['empty', Buffer.alloc(0), 0x0000],
  ['512 zero bytes', Buffer.alloc(512), 0x0000],
  ['one byte 01h', Buffer.from([0x01]), 0x8bb7],
];

for (const [name, data, crc] of VECTORS) {
  test(`CRC-16/T10-DIF of ${name} is ${crc.toString(16)}`, () => {
    assert.is(crc16T10Dif(data), crc);
    assert.is(reference(data), crc);
  });
}

test('table-driven CRC matches the bitwise reference on random blocks, whole and in pieces', () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let n = 0; n < 20; n++) {
    const b = Buffer.alloc(1 + (rnd() << 4), 0).map(() => rnd()) as Buffer;
    const whole = crc16T10Dif(b);
    assert.is(whole, reference(b));
    const cut = Math.floor(b.length / 3);
    assert.is(crc16T10Dif(b, cut, b.length, crc16T10Dif(b, 0, cut)), whole);
  }
});

test('the range form reads only [start, end)', () => {
  const b = Buffer.concat([Buffer.from([9, 9]), Buffer.from('123456789'), Buffer.from([7])]);
  assert.is(crc16T10Dif(b, 2, 11), 0xd0db);
});

test.run();
