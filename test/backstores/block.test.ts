import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackstoreError, decodeRdev, openBlock, readBlockSysfs } from '../../src/backstores';

let dir = '';
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
/** glibc makedev, to build test rdevs. */
const makedev = (major: number, minor: number): bigint =>
  ((BigInt(major) & 0xfffn) << 8n) | ((BigInt(major) & ~0xfffn) << 32n) | (BigInt(minor) & 0xffn) | ((BigInt(minor) & ~0xffn) << 12n);

async function fakeSysfs(entries: Record<string, { size?: string; ro?: string }>): Promise<string> {
  const root = await fsp.mkdtemp(path.join(dir, 'sys-'));
  for (const [majmin, files] of Object.entries(entries)) {
    const d = path.join(root, 'dev', 'block', majmin);
    await fsp.mkdir(d, { recursive: true });
    if (files.size !== undefined) await fsp.writeFile(path.join(d, 'size'), files.size);
    if (files.ro !== undefined) await fsp.writeFile(path.join(d, 'ro'), files.ro);
  }
  return root;
}

// A real loop device when losetup works here (root, loop module); otherwise only fakes.
let loopDev: string | undefined;
let loopRoDev: string | undefined;
let loopImg = '';
function losetup(...args: string[]): string | undefined {
  try {
    return execFileSync('losetup', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-block-'));
  loopImg = path.join(dir, 'loop.img');
  await fsp.writeFile(loopImg, Buffer.alloc(0));
  await fsp.truncate(loopImg, 8 << 20);
  loopDev = losetup('-f', '--show', loopImg) || undefined;
  loopRoDev = losetup('-f', '--show', '-r', loopImg) || undefined;
});
test.after(async () => {
  if (loopDev) losetup('-d', loopDev);
  if (loopRoDev) losetup('-d', loopRoDev);
  await fsp.rm(dir, { recursive: true, force: true });
});

test('decodeRdev follows the glibc dev_t layout, small and large numbers', () => {
  assert.equal(decodeRdev(makedev(8, 1)), { major: 8, minor: 1 });
  assert.equal(decodeRdev(0x801n), { major: 8, minor: 1 });
  assert.equal(decodeRdev(makedev(259, 65537)), { major: 259, minor: 65537 });
  assert.equal(decodeRdev(makedev(4095, 1048575)), { major: 4095, minor: 1048575 });
  assert.equal(decodeRdev(makedev(70000, 3)), { major: 70000, minor: 3 });
});

test('sysfs size is in 512-byte sectors; ro=1 means read-only (fake sysfs root)', async () => {
  const root = await fakeSysfs({ '179:0': { size: '62333952\n', ro: '0\n' }, '179:1': { size: '1024\n', ro: '1\n' } });
  assert.equal(await readBlockSysfs(root, 179, 0), { size: 62333952 * 512, readOnly: false });
  assert.equal(await readBlockSysfs(root, 179, 1), { size: 1024 * 512, readOnly: true });
});

test('sysfs without an ro file: writable (fake sysfs root)', async () => {
  const root = await fakeSysfs({ '8:0': { size: '16' } });
  assert.equal(await readBlockSysfs(root, 8, 0), { size: 8192, readOnly: false });
});

test('missing or garbled sysfs size is EIO naming the file (fake sysfs root)', async () => {
  const root = await fakeSysfs({ '8:0': { size: 'lots' } });
  await rejects(readBlockSysfs(root, 8, 0, '/dev/sda'), 'EIO', 'not a sector count');
  await rejects(readBlockSysfs(root, 8, 16, '/dev/sdb'), 'EIO', path.join(root, 'dev/block/8:16/size'));
});

test('a regular file is refused with ENOTBLK naming the path', async () => {
  const p = path.join(dir, 'plain.img');
  await fsp.writeFile(p, Buffer.alloc(4096));
  await rejects(openBlock({ name: 'b', path: p }), 'ENOTBLK', p);
});

test('a character device is refused with ENOTBLK', async () => {
  await rejects(openBlock({ name: 'b', path: '/dev/null' }), 'ENOTBLK', '/dev/null');
});

test('a missing device is ENOENT', async () => {
  await rejects(openBlock({ name: 'b', path: path.join(dir, 'nope') }), 'ENOENT', 'nope');
});

const real = (t: string): string => (loopDev ? `${t} [real loop device]` : `${t} [SKIPPED: losetup unavailable here, no real block device]`);

test(real('loop device: size from sysfs, round trip, flush, FUA'), async () => {
  if (!loopDev) return;
  const b = await openBlock({ name: 'b', path: loopDev });
  assert.is(b.kind, 'block');
  assert.is(b.size, 8 << 20);
  assert.is(b.readOnly, false);
  assert.is(b.canUnmap, false);
  const data = Buffer.alloc(10_000, 0x5a);
  await b.write(data, 4097, { fua: true });
  await b.flush();
  const out = Buffer.alloc(10_000);
  await b.read(out, 0, out.length, 4097);
  assert.ok(out.equals(data));
  await b.close();
});

test(real('loop device: opened exclusively, a second open is refused'), async () => {
  if (!loopDev) return;
  const b = await openBlock({ name: 'b', path: loopDev });
  await rejects(openBlock({ name: 'b2', path: loopDev }), 'EACCES', 'in use');
  await b.close();
});

test(real('loop device attached read-only: sysfs ro=1 makes the backstore read-only'), async () => {
  if (!loopRoDev) return;
  const b = await openBlock({ name: 'b', path: loopRoDev });
  assert.is(b.readOnly, true);
  await rejects(b.write(Buffer.alloc(512), 0), 'EACCES', 'read-only');
  await b.close();
});

test(real('loop device with an injected sysfs root: size and ro come from it'), async () => {
  if (!loopDev) return;
  const st = await fsp.stat(loopDev, { bigint: true });
  const { major, minor } = decodeRdev(st.rdev);
  const root = await fakeSysfs({ [`${major}:${minor}`]: { size: '100', ro: '1' } });
  const b = await openBlock({ name: 'b', path: loopDev, sysfsRoot: root });
  assert.is(b.size, 51_200);
  assert.is(b.readOnly, true);
  await b.close();
});

test(real('resize is refused for a block device'), async () => {
  if (!loopDev) return;
  const b = await openBlock({ name: 'b', path: loopDev });
  await rejects(b.resize(4096), 'EINVAL', 'cannot be resized');
  await b.close();
});

test.run();
