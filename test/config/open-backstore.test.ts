import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackstoreError } from '../../src/backstores';
import { openBackstore } from '../../src/config';

let dir = '';
test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-openbs-'));
});
test.after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('ram from config: human size parsed', async () => {
  const b = await openBackstore({ name: 'r', type: 'ram', size: '2M' });
  assert.is(b.kind, 'ram');
  assert.is(b.size, 2 << 20);
  await b.close();
});

test('file from config: created at its size, read-only passed through', async () => {
  const p = path.join(dir, 'a.img');
  const b = await openBackstore({ name: 'f', type: 'file', path: p, size: '1M' });
  assert.is(b.size, 1 << 20);
  assert.is(b.canUnmap, false);
  await b.close();
  const ro = await openBackstore({ name: 'f', type: 'file', path: p, readOnly: true });
  assert.is(ro.readOnly, true);
  await ro.close();
});

test('file with thinProvisioning: UNMAP by hole punching (or a clear error without fallocate)', async () => {
  try {
    const b = await openBackstore({ name: 'f', type: 'file', path: path.join(dir, 't.img'), size: '1M', thinProvisioning: true });
    assert.is(b.canUnmap, true);
    await b.close();
  } catch (err) {
    assert.instance(err, BackstoreError);
    assert.match((err as Error).message, 'punch-hole');
  }
});

test('block from config: a regular file is ENOTBLK', async () => {
  const p = path.join(dir, 'plain');
  await fsp.writeFile(p, 'x');
  try {
    await openBackstore({ name: 'b', type: 'block', path: p });
    assert.unreachable();
  } catch (err) {
    assert.is((err as BackstoreError).code, 'ENOTBLK');
  }
});

test.run();
