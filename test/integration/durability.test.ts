// Acknowledged writes survive kill -9: data written over iSCSI and flushed with
// SYNCHRONIZE CACHE (qemu-img convert -t none ends with a flush) is in the image file
// after the target is killed without any chance to clean up. A SIGKILL keeps the page
// cache, so this proves lunbox holds no acknowledged write in its own memory; that FUA and
// SYNCHRONIZE CACHE reach fdatasync/O_DSYNC is tested in test/backstores/.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImageOpts, run, startLunbox, tempDir } from './helpers';

test('data flushed by SYNCHRONIZE CACHE is in the file after kill -9', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const img = join(dir, 'disk.img');
    const lb = await startLunbox(['--listen', '127.0.0.1:0', '--backstore', `file:${img}:32M`, '--iqn', 'iqn.2026-11.org.lunbox:durable']);
    const data = randomBytes(8 * 1024 * 1024);
    const src = join(dir, 'src.raw');
    writeFileSync(src, data);
    const opts = qemuImageOpts(lb.urls[0] ?? '').replace('driver=raw,', `driver=raw,size=${data.length},`);
    const w = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-t', 'none', '--target-image-opts', src, opts], { timeoutMs: 60_000 });
    assert.is(w.code, 0, w.stderr);
    lb.proc.kill('SIGKILL');
    await lb.stop();
    const fd = openSync(img, 'r');
    const back = Buffer.alloc(data.length);
    readSync(fd, back, 0, back.length, 0);
    closeSync(fd);
    assert.ok(back.equals(data), 'image file holds every acknowledged byte');
  } finally {
    cleanup();
  }
});

test.run();
