import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackstoreError, openFile } from '../../src/backstores';
import type { FileBackstore } from '../../src/backstores';

let dir = '';
let n = 0;
const img = (): string => path.join(dir, `img-${n++}.img`);
const pattern = (len: number, seed = 1): Buffer => {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
};
async function rejects(p: Promise<unknown>, code: string, includes: string): Promise<void> {
  try {
    await p;
    assert.unreachable('should reject');
  } catch (err) {
    assert.instance(err, BackstoreError);
    assert.is((err as BackstoreError).code, code);
    assert.ok((err as Error).message.includes(includes), (err as Error).message);
  }
}
/** open(2) flags of one of our fds, from /proc/self/fdinfo (octal). */
const fdFlags = (fd: number): number => parseInt(/flags:\s*([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);

test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-file-'));
});
test.after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('creates a missing file sparse: 1 GiB costs almost no blocks', async () => {
  const p = img();
  const f = await openFile({ name: 'f', path: p, size: 2 ** 30 });
  const st = await fsp.stat(p);
  assert.is(st.size, 2 ** 30);
  assert.ok(st.blocks * 512 < 1 << 20, `allocated ${st.blocks} blocks`);
  assert.is(f.size, 2 ** 30);
  assert.is(f.kind, 'file');
  assert.is(f.path, p);
  assert.is(f.volatileCache, true);
  await f.close();
});

test('round trip at odd offsets, read lands in the caller buffer at intoOffset', async () => {
  const f = await openFile({ name: 'f', path: img(), size: 1 << 20 });
  const data = pattern(70_001);
  await f.write(data, 4093);
  const out = Buffer.alloc(data.length + 7, 0xee);
  await f.read(out, 3, data.length, 4093);
  assert.ok(out.subarray(3, 3 + data.length).equals(data));
  assert.is(out[0], 0xee);
  assert.is(out[out.length - 1], 0xee);
  await f.close();
});

test('the size of an existing file comes from fstat', async () => {
  const p = img();
  await fsp.writeFile(p, Buffer.alloc(12_288, 5));
  const f = await openFile({ name: 'f', path: p });
  assert.is(f.size, 12_288);
  const out = Buffer.alloc(4);
  await f.read(out, 0, 4, 12_284);
  assert.equal([...out], [5, 5, 5, 5]);
  await f.close();
});

test('refuses to create without a size', async () => {
  await rejects(openFile({ name: 'f', path: img(), create: true }), 'ESIZE', 'no size was given');
});

test('missing file without create is ENOENT naming the path', async () => {
  const p = img();
  await rejects(openFile({ name: 'f', path: p }), 'ENOENT', p);
  await rejects(openFile({ name: 'f', path: p, size: 4096, create: false }), 'ENOENT', p);
});

test('a size different from the existing file is refused unless grow', async () => {
  const p = img();
  await fsp.writeFile(p, Buffer.alloc(8192));
  await rejects(openFile({ name: 'f', path: p, size: 16384 }), 'ESIZE', 'set grow');
  await rejects(openFile({ name: 'f', path: p, size: 4096, grow: true }), 'ESIZE', 'shrinking');
  const f = await openFile({ name: 'f', path: p, size: 16384, grow: true });
  assert.is(f.size, 16384);
  assert.is((await fsp.stat(p)).size, 16384);
  await f.close();
});

test('an empty existing file is refused', async () => {
  const p = img();
  await fsp.writeFile(p, '');
  await rejects(openFile({ name: 'f', path: p }), 'ESIZE', 'empty');
});

test('a directory is refused', async () => {
  await rejects(openFile({ name: 'f', path: dir }), 'EINVAL', 'directory');
});

test('readOnly opens O_RDONLY and refuses writes', async () => {
  const p = img();
  await fsp.writeFile(p, Buffer.alloc(4096, 1));
  const f = await openFile({ name: 'f', path: p, readOnly: true });
  assert.is(f.readOnly, true);
  assert.is(f.canUnmap, false);
  assert.is(fdFlags(f.handle.fd) & 3, fs.constants.O_RDONLY);
  await rejects(f.write(Buffer.alloc(1), 0), 'EACCES', 'read-only');
  assert.ok((await fsp.readFile(p)).every((b) => b === 1));
  await f.close();
});

test('FUA (default dsync route) writes through a second fd opened O_DSYNC', async () => {
  const f = await openFile({ name: 'f', path: img(), size: 1 << 20 });
  assert.is(f.fuaMode, 'dsync');
  const d = f.dsyncHandle!;
  assert.ok(fdFlags(d.fd) & fs.constants.O_DSYNC, 'O_DSYNC set on the FUA fd');
  assert.not.ok(fdFlags(f.handle.fd) & fs.constants.O_DSYNC, 'main fd is not O_DSYNC');
  const calls: string[] = [];
  // The module object itself (the import above is a read-only namespace view of it).
  const nodeFs = createRequire(__filename)('node:fs') as { write: unknown };
  const orig = nodeFs.write;
  nodeFs.write = (fd: number, ...rest: unknown[]) => {
    calls.push(fd === d.fd ? 'dsync' : fd === f.handle.fd ? 'main' : `fd ${fd}`);
    return (orig as (...a: unknown[]) => unknown)(fd, ...rest);
  };
  try {
    await f.write(Buffer.alloc(512, 1), 0, { fua: true });
    await f.write(Buffer.alloc(512, 2), 512);
  } finally {
    nodeFs.write = orig;
  }
  assert.equal(calls, ['dsync', 'main']);
  await f.close();
});

test('FUA (fdatasync route) resolves only after datasync', async () => {
  const f: FileBackstore = await openFile({ name: 'f', path: img(), size: 1 << 20, fua: 'fdatasync' });
  assert.is(f.fuaMode, 'fdatasync');
  assert.is(f.dsyncHandle, undefined);
  const events: string[] = [];
  const orig = f.handle.datasync.bind(f.handle);
  f.handle.datasync = async () => {
    events.push('datasync start');
    await orig();
    events.push('datasync end');
  };
  await f.write(Buffer.alloc(512, 1), 0, { fua: true });
  events.push('resolved');
  await f.write(Buffer.alloc(512, 1), 0);
  assert.equal(events, ['datasync start', 'datasync end', 'resolved']);
  await f.close();
});

test('flush() calls fdatasync on the main fd', async () => {
  const f = await openFile({ name: 'f', path: img(), size: 4096 });
  let called = 0;
  const orig = f.handle.datasync.bind(f.handle);
  f.handle.datasync = async () => {
    called++;
    await orig();
  };
  await f.flush();
  assert.is(called, 1);
  await f.close();
});

test('without punch-hole: canUnmap false, mapping reports all mapped', async () => {
  const f = await openFile({ name: 'f', path: img(), size: 1 << 20 });
  assert.is(f.canUnmap, false);
  assert.is(f.unmapReadsZero, false);
  assert.equal(await f.mapping(4096, 8192), { mapped: true, length: 8192 });
  await rejects(f.unmap(0, 4096), 'EINVAL', 'cannot unmap');
  await f.close();
});

const haveFallocate = (() => {
  try {
    require('node:child_process').execFileSync('fallocate', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test(`unmap 'punch-hole' zeroes the range and frees blocks${haveFallocate ? '' : ' [SKIPPED: no fallocate(1) on this system]'}`, async () => {
  if (!haveFallocate) return;
  const p = img();
  const f = await openFile({ name: 'f', path: p, size: 4 << 20, unmap: 'punch-hole' });
  assert.is(f.canUnmap, true);
  assert.is(f.unmapReadsZero, true);
  await f.write(pattern(4 << 20), 0);
  await f.flush();
  const before = (await fsp.stat(p)).blocks;
  await f.unmap(1000, 2 << 20); // unaligned both ends: partial blocks are zeroed by the kernel
  const after = (await fsp.stat(p)).blocks;
  assert.ok(after < before - 3000, `blocks ${before} → ${after}`);
  const out = Buffer.alloc(4 << 20);
  await f.read(out, 0, out.length, 0);
  assert.ok(out.equals(pattern(4 << 20).fill(0, 1000, 1000 + (2 << 20))));
  assert.is((await fsp.stat(p)).size, 4 << 20, 'size kept');
  await f.close();
});

test(`unmap 'punch-hole': ranges under 1 MiB are zero-filled in place, not punched${haveFallocate ? '' : ' [SKIPPED: no fallocate(1) on this system]'}`, async () => {
  if (!haveFallocate) return;
  const p = img();
  const f = await openFile({ name: 'f', path: p, size: 4 << 20, unmap: 'punch-hole' });
  await f.write(pattern(4 << 20), 0);
  await f.flush();
  const before = (await fsp.stat(p)).blocks;
  // A host unmapping block by block: 512 single-block UNMAPs must not fork 512 children.
  for (let i = 0; i < 512; i++) await f.unmap(8192 + i * 512, 512);
  const out = Buffer.alloc(4 << 20);
  await f.read(out, 0, out.length, 0);
  assert.ok(out.equals(pattern(4 << 20).fill(0, 8192, 8192 + 512 * 512)), 'the ranges read back as zeros');
  assert.is((await fsp.stat(p)).blocks, before, 'small ranges stay allocated: zero-filled, no fallocate child');
  await f.close();
});

test('resize grows and shrinks the file', async () => {
  const p = img();
  const f = await openFile({ name: 'f', path: p, size: 8192 });
  await f.resize(16384);
  assert.is(f.size, 16384);
  assert.is((await fsp.stat(p)).size, 16384);
  await f.resize(4096);
  assert.is((await fsp.stat(p)).size, 4096);
  await f.close();
});

test('reading past a file cut short behind our back gives zeros', async () => {
  const p = img();
  const f = await openFile({ name: 'f', path: p, size: 8192 });
  await f.write(Buffer.alloc(8192, 7), 0);
  await fsp.truncate(p, 4096);
  const out = Buffer.alloc(8192, 0xee);
  await f.read(out, 0, 8192, 0);
  assert.ok(out.subarray(0, 4096).every((b) => b === 7));
  assert.ok(out.subarray(4096).every((b) => b === 0));
  await f.close();
});

test('read-ahead: a sequential stream is served from the prefetch, byte for byte', async () => {
  const p = img();
  const data = pattern(1 << 20, 7);
  await fsp.writeFile(p, data);
  const f = await openFile({ name: 'f', path: p });
  const step = 64 * 1024;
  for (let off = 0; off < data.length; off += step) {
    const b = Buffer.alloc(step);
    await f.read(b, 0, step, off);
    assert.ok(b.equals(data.subarray(off, off + step)), `offset ${off}`);
  }
  // The first read has nothing before it; the second starts the stream; every later one hits.
  assert.is(f.readAheadStats.hits, data.length / step - 2);
  assert.is(f.readAheadStats.stale, 0);
  await f.close();
});

test('read-ahead: readOwned hands over the prefetch buffer on a hit, reads fresh otherwise', async () => {
  const p = img();
  const data = pattern(512 * 1024, 9);
  await fsp.writeFile(p, data);
  const f = await openFile({ name: 'f', path: p });
  const step = 128 * 1024;
  const got: Buffer[] = [];
  for (let off = 0; off < data.length; off += step) got.push(await f.readOwned(step, off));
  assert.ok(Buffer.concat(got).equals(data));
  assert.is(f.readAheadStats.hits, 2);
  assert.ok(got[2]?.buffer !== got[3]?.buffer, 'each buffer is the caller\'s own');
  await f.close();
});

test('read-ahead: a host splitting 1 MiB as 8 x 120 KiB + 64 KiB still hits after the short piece', async () => {
  const p = img();
  const data = pattern(3 * 1024 * 1024, 11);
  await fsp.writeFile(p, data);
  const f = await openFile({ name: 'f', path: p });
  let off = 0;
  let n = 0;
  while (off < data.length) {
    const len = Math.min(n % 9 === 8 ? 64 * 1024 : 120 * 1024, data.length - off);
    const b = await f.readOwned(len, off);
    assert.ok(b.equals(data.subarray(off, off + len)), `read ${n} at ${off}`);
    off += len;
    n++;
  }
  assert.is(f.readAheadStats.hits, n - 2, 'every read after the first two is a hit');
  await f.close();
});

test('read-ahead: random reads prefetch nothing; concurrent reads do not start one', async () => {
  const p = img();
  const data = pattern(256 * 1024, 3);
  await fsp.writeFile(p, data);
  const f = await openFile({ name: 'f', path: p });
  for (const off of [8192, 65536, 4096, 131072]) await f.read(Buffer.alloc(4096), 0, 4096, off);
  assert.is(f.readAheadStats.issued, 0);
  await f.read(Buffer.alloc(4096), 0, 4096, 0);
  const a = Buffer.alloc(4096);
  const b = Buffer.alloc(4096);
  await Promise.all([f.read(a, 0, 4096, 4096), f.read(b, 0, 4096, 8192)]);
  assert.is(f.readAheadStats.issued, 0, 'two reads in flight: no prefetch');
  assert.ok(a.equals(data.subarray(4096, 8192)) && b.equals(data.subarray(8192, 12288)));
  await f.close();
});

test('read-ahead: a write over the prefetched range (before or while it is read) is never hidden', async () => {
  const p = img();
  const data = pattern(512 * 1024, 5);
  await fsp.writeFile(p, data);
  const f = await openFile({ name: 'f', path: p });
  const n = 16 * 1024;
  const read = async (off: number): Promise<Buffer> => {
    const b = Buffer.alloc(n);
    await f.read(b, 0, n, off);
    return b;
  };
  await read(0);
  await read(n); // prefetch of [2n, 3n) now in flight
  const fresh = Buffer.alloc(n, 0xee);
  await f.write(fresh.subarray(0, 512), 2 * n + 100); // overlaps it, racing the pread
  const got = await read(2 * n);
  const want = Buffer.from(data.subarray(2 * n, 3 * n));
  fresh.copy(want, 100, 0, 512);
  assert.ok(got.equals(want), 'the write is visible');
  assert.is(f.readAheadStats.stale, 1);
  // A write elsewhere leaves the next prefetch in place.
  await f.write(fresh, 0);
  assert.ok((await read(3 * n)).equals(data.subarray(3 * n, 4 * n)));
  assert.is(f.readAheadStats.hits, 1);
  await f.close();
});

test('close waits for I/O in flight and refuses I/O after it began', async () => {
  const p = img();
  await fsp.writeFile(p, pattern(1 << 20));
  const f = await openFile({ name: 'f', path: p, readAhead: false });
  const b = Buffer.alloc(1 << 20);
  const reading = f.read(b, 0, b.length, 0);
  const closing = f.close();
  await reading; // not EBADF: the descriptor stayed open for it
  assert.ok(b.equals(pattern(1 << 20)));
  await closing;
  await rejects(f.read(Buffer.alloc(512), 0, 512, 0), 'EIO', 'closed');
});

test('read-ahead: readAhead false turns it off; close waits for a prefetch in flight', async () => {
  const p = img();
  await fsp.writeFile(p, pattern(128 * 1024));
  const f = await openFile({ name: 'f', path: p, readAhead: false });
  for (let off = 0; off < 65536; off += 8192) await f.read(Buffer.alloc(8192), 0, 8192, off);
  assert.is(f.readAheadStats.issued, 0);
  await f.close();
  const g = await openFile({ name: 'g', path: p });
  await g.read(Buffer.alloc(8192), 0, 8192, 0);
  await g.read(Buffer.alloc(8192), 0, 8192, 8192);
  assert.is(g.readAheadStats.issued, 1);
  await g.close(); // must not reject with EBADF from the orphaned pread
});

test.run();
