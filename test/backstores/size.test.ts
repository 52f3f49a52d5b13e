import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackstoreError, formatSize, parseSize } from '../../src/backstores';

const GOOD: [string, number][] = [
  ['4096', 4096],
  ['512K', 512 * 1024],
  ['64M', 64 << 20],
  ['1G', 2 ** 30],
  ['1.5G', 1.5 * 2 ** 30],
  ['64MiB', 64 << 20],
  ['2 GiB', 2 * 2 ** 30],
  ['1gib', 2 ** 30],
  ['16m', 16 << 20],
  ['10MB', 10 << 20],
  ['1T', 2 ** 40],
  ['100B', 100],
];
for (const [text, bytes] of GOOD) {
  test(`parseSize(${JSON.stringify(text)}) = ${bytes}`, () => {
    assert.is(parseSize(text), bytes);
  });
}

for (const bad of ['', 'abc', '-1M', '1X', '1.5', '0.3K', 'M', '1 2M', '99999999E']) {
  test(`parseSize(${JSON.stringify(bad)}) throws ESIZE naming the text`, () => {
    try {
      parseSize(bad);
      assert.unreachable('should throw');
    } catch (err) {
      assert.instance(err, BackstoreError);
      assert.is((err as BackstoreError).code, 'ESIZE');
      assert.ok((err as Error).message.includes(JSON.stringify(bad)), (err as Error).message);
    }
  });
}

test('formatSize picks the largest binary unit', () => {
  assert.is(formatSize(64 << 20), '64 MiB');
  assert.is(formatSize(1.5 * 2 ** 30), '1.5 GiB');
  assert.is(formatSize(512), '512 B');
  assert.is(formatSize(0), '0 B');
  assert.is(formatSize(4096), '4 KiB');
});

test('formatSize output parses back for round sizes', () => {
  for (const n of [4096, 64 << 20, 2 ** 30, 3 * 2 ** 40]) assert.is(parseSize(formatSize(n)), n);
});

test.run();
