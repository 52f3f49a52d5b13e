import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openFile, openRam } from '../../src/backstores';

let dir = '';
test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-pi-'));
});
test.after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('RAM: no PI store unless asked', () => {
  assert.is(openRam({ name: 'r', size: 1 << 20 }).pi, undefined);
});

test('RAM: the PI store is sparse, reads zeros until written, round-trips, is dropped on close', async () => {
  const r = openRam({ name: 'r', size: 1 << 30, protectionInfo: true, chunkSize: 4096 });
  const pi = r.pi!;
  const b = Buffer.alloc(64, 0xaa);
  await pi.read(b, 0, 64, 8 * 1000);
  assert.ok(b.every((x) => x === 0));
  assert.is(pi.allocatedChunks, 0);
  const t = Buffer.from('0102030405060708', 'hex');
  await pi.write(t, 8 * 123456);
  const back = Buffer.alloc(8);
  await pi.read(back, 0, 8, 8 * 123456);
  assert.equal(back, t);
  assert.is(pi.allocatedChunks, 1);
  // Data and PI are separate maps.
  const d = Buffer.alloc(8);
  await r.read(d, 0, 8, 8 * 123456);
  assert.ok(d.every((x) => x === 0));
  await r.close();
  assert.is(pi.allocatedChunks, 0);
});

test('file: the sidecar <image>.pi is created sparse, round-trips, survives reopen', async () => {
  const p = path.join(dir, 'a.img');
  const f = await openFile({ name: 'f', path: p, size: 1 << 20, protectionInfo: true });
  assert.ok(fs.existsSync(`${p}.pi`));
  const miss = Buffer.alloc(16, 0xee);
  await f.pi!.read(miss, 0, 16, 4096);
  assert.ok(miss.every((x) => x === 0), 'past the end reads zeros');
  const t = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
  await f.pi!.write(t, 8 * 100, { fua: true });
  await f.flush();
  await f.close();
  const g = await openFile({ name: 'f', path: p, protectionInfo: true });
  const back = Buffer.alloc(8);
  await g.pi!.read(back, 0, 8, 8 * 100);
  assert.equal(back, t);
  await g.close();
  const h = await openFile({ name: 'f', path: p });
  assert.is(h.pi, undefined);
  await h.close();
});

test('file: read-only opens an existing sidecar read-only and does not create a missing one', async () => {
  const p = path.join(dir, 'b.img');
  const f = await openFile({ name: 'f', path: p, size: 1 << 20 });
  await f.close();
  try {
    await openFile({ name: 'f', path: p, readOnly: true, protectionInfo: true });
    assert.unreachable('should reject');
  } catch (e) {
    assert.ok((e as Error).message.includes('.pi'), (e as Error).message);
  }
  assert.not.ok(fs.existsSync(`${p}.pi`));
  const w = await openFile({ name: 'f', path: p, protectionInfo: true });
  await w.close();
  const ro = await openFile({ name: 'f', path: p, readOnly: true, protectionInfo: true });
  try {
    await ro.pi!.write(Buffer.alloc(8), 0);
    assert.unreachable('should reject');
  } catch (e) {
    assert.ok((e as Error).message.includes('read-only'));
  }
  await ro.close();
});

test('file: shrinking cuts the sidecar so re-grown blocks read unwritten PI', async () => {
  const p = path.join(dir, 'c.img');
  const f = await openFile({ name: 'f', path: p, size: 1 << 20, protectionInfo: true });
  const lastLba = (1 << 20) / 512 - 1;
  await f.pi!.write(Buffer.alloc(8, 0x55), lastLba * 8);
  await f.resize(1 << 19);
  await f.resize(1 << 20);
  const b = Buffer.alloc(8, 0xee);
  await f.pi!.read(b, 0, 8, lastLba * 8);
  assert.ok(b.every((x) => x === 0));
  await f.close();
});

test.run();
