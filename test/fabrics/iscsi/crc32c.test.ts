import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c, crc32cFinal, crc32cInit, crc32cUpdate, digestBytes } from '../../../src/fabrics/iscsi/crc32c';

// RFC 7143 Appendix B.4: CRC32C examples, digest bytes in wire order.
const VECTORS: readonly [string, Buffer, string][] = [
  ['32 bytes of zeros', Buffer.alloc(32), 'aa36918a'],
  ['32 bytes of 0xff', Buffer.alloc(32, 0xff), '43aba862'],
  ['32 bytes ascending 00..1f', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), '4e79dd46'],
  ['32 bytes descending 1f..00', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), '5cdb3f11'],
];
for (const [name, input, wire] of VECTORS) {
  test(`RFC 7143 B.4: ${name}`, () => {
    assert.is(digestBytes(crc32c(input)).toString('hex'), wire);
  });
}

test('CRC-32C check value of "123456789" is 0xe3069283', () => {
  assert.is(crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('empty input gives 0', () => {
  assert.is(crc32c(Buffer.alloc(0)), 0);
});

test('incremental update over any split equals one pass (slicing-by-8 tail handling)', () => {
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff));
  const whole = crc32c(data);
  for (const cut of [0, 1, 3, 7, 8, 9, 15, 500, 999, 1000]) {
    const c = crc32cUpdate(crc32cUpdate(crc32cInit, data.subarray(0, cut)), data.subarray(cut));
    assert.is(crc32cFinal(c), whole, `cut at ${cut}`);
  }
  assert.is(crc32c(data.subarray(0, 400), data.subarray(400)), whole);
});

test('start/end arguments read only that range', () => {
  const data = Buffer.from('xx123456789yy');
  assert.is(crc32cFinal(crc32cUpdate(crc32cInit, data, 2, 11)), 0xe3069283);
});

test.run();
