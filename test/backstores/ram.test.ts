import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackstoreError, openRam } from '../../src/backstores';
import type { Backstore } from '../../src/backstores';

const CHUNK = 4096;
const pattern = (n: number, seed = 1): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

test('reports what it does: unmap, zeros after unmap, no volatile cache', () => {
  const r = openRam({ name: 'r', size: 1 << 20 });
  assert.is(r.kind, 'ram');
  assert.is(r.size, 1 << 20);
  assert.is(r.canUnmap, true);
  assert.is(r.unmapReadsZero, true);
  assert.is(r.volatileCache, false);
  assert.is(r.readOnly, false);
  assert.is((r as Backstore).path, undefined);
});

test('reads of never-written blocks are zeros and allocate nothing', async () => {
  const r = openRam({ name: 'r', size: 1 << 30 });
  const buf = Buffer.alloc(3 << 20, 0xaa);
  await r.read(buf, 0, buf.length, (1 << 30) - buf.length);
  assert.ok(buf.every((b) => b === 0));
  assert.is(r.allocatedChunks, 0);
});

test('round trip at an odd offset across several chunk boundaries', async () => {
  const r = openRam({ name: 'r', size: 64 * CHUNK, chunkSize: CHUNK });
  const data = pattern(3 * CHUNK + 777);
  await r.write(data, CHUNK - 333);
  const out = Buffer.alloc(data.length + 20, 0xee);
  await r.read(out, 10, data.length, CHUNK - 333);
  assert.ok(out.subarray(10, 10 + data.length).equals(data));
  assert.ok(out.subarray(0, 10).every((b) => b === 0xee), 'bytes before intoOffset untouched');
  assert.ok(out.subarray(10 + data.length).every((b) => b === 0xee), 'bytes after untouched');
  assert.is(r.allocatedChunks, 5);
});

test('bytes around a write in a fresh chunk read as zeros', async () => {
  const r = openRam({ name: 'r', size: 8 * CHUNK, chunkSize: CHUNK });
  await r.write(Buffer.from([1, 2, 3]), CHUNK + 100);
  const out = Buffer.alloc(CHUNK);
  await r.read(out, 0, CHUNK, CHUNK);
  assert.equal([...out.subarray(99, 104)], [0, 1, 2, 3, 0]);
  assert.is(out.reduce((a, b) => a + b, 0), 6);
});

test('unmap drops whole chunks and zero-fills partial ones', async () => {
  const r = openRam({ name: 'r', size: 8 * CHUNK, chunkSize: CHUNK });
  await r.write(pattern(8 * CHUNK), 0);
  assert.is(r.allocatedChunks, 8);
  await r.unmap(CHUNK + 10, 3 * CHUNK); // partial chunk 1, whole 2 and 3, partial 4
  assert.is(r.allocatedChunks, 6);
  const out = Buffer.alloc(8 * CHUNK);
  await r.read(out, 0, out.length, 0);
  const expect = pattern(8 * CHUNK).fill(0, CHUNK + 10, 4 * CHUNK + 10);
  assert.ok(out.equals(expect));
});

test('mapping answers from the chunk map in runs', async () => {
  const r = openRam({ name: 'r', size: 8 * CHUNK, chunkSize: CHUNK });
  await r.write(Buffer.alloc(2 * CHUNK, 1), 2 * CHUNK);
  assert.equal(await r.mapping(0, 8 * CHUNK), { mapped: false, length: 2 * CHUNK });
  assert.equal(await r.mapping(2 * CHUNK + 5, 8 * CHUNK - 2 * CHUNK - 5), { mapped: true, length: 2 * CHUNK - 5 });
  assert.equal(await r.mapping(4 * CHUNK, 4 * CHUNK), { mapped: false, length: 4 * CHUNK });
  assert.equal(await r.mapping(2 * CHUNK, 100), { mapped: true, length: 100 }, 'capped at the asked length');
});

test('shrink then grow: the cut-off part reads as zeros', async () => {
  const r = openRam({ name: 'r', size: 4 * CHUNK, chunkSize: CHUNK });
  await r.write(Buffer.alloc(4 * CHUNK, 9), 0);
  await r.resize!(CHUNK + 100);
  assert.is(r.size, CHUNK + 100);
  assert.is(r.allocatedChunks, 2);
  await r.resize!(4 * CHUNK);
  const out = Buffer.alloc(4 * CHUNK);
  await r.read(out, 0, out.length, 0);
  assert.ok(out.subarray(0, CHUNK + 100).every((b) => b === 9));
  assert.ok(out.subarray(CHUNK + 100).every((b) => b === 0));
});

test('flush resolves (nothing is cached)', async () => {
  const r = openRam({ name: 'r', size: CHUNK });
  await r.flush();
  await r.write(Buffer.alloc(10, 1), 0, { fua: true });
});

test('bad size is a BackstoreError ESIZE', () => {
  for (const size of [0, -1, 1.5, Number.NaN]) {
    try {
      openRam({ name: 'r', size });
      assert.unreachable();
    } catch (err) {
      assert.instance(err, BackstoreError);
      assert.is((err as BackstoreError).code, 'ESIZE');
      assert.match((err as Error).message, 'ram backstore r');
    }
  }
});

test('after close, I/O rejects', async () => {
  const r = openRam({ name: 'r', size: CHUNK });
  await r.close();
  try {
    await r.read(Buffer.alloc(1), 0, 1, 0);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, BackstoreError);
  }
});

test.run();
