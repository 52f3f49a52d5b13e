// lunbox against real iSCSI initiators: libiscsi's tools and QEMU's iSCSI block driver.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseUrl, qemuImageOpts, run, startLunbox, tempDir } from './helpers';
import type { Lunbox } from './helpers';

const DATA_MIB = 24;

for (const kind of ['ram', 'file'] as const) {
  const t = suite<{ lb?: Lunbox; dir: string; cleanup: () => void }>(`iscsi initiators, ${kind} backstore`, { dir: '', cleanup: () => undefined });

  t.before(async (ctx) => {
    const td = tempDir();
    ctx.dir = td.dir;
    ctx.cleanup = td.cleanup;
    const spec = kind === 'ram' ? 'ram:64M' : `file:${join(td.dir, 'disk.img')}:64M`;
    ctx.lb = await startLunbox(['--listen', '127.0.0.1:0', '--backstore', spec, '--iqn', `iqn.2026-11.org.lunbox:it-${kind}`]);
  });
  t.after(async (ctx) => {
    const code = await ctx.lb?.stop();
    ctx.cleanup();
    assert.is(code, 0, 'clean exit on SIGTERM');
  });

  t('prints an iscsi:// URL for LUN 0', (ctx) => {
    const url = ctx.lb?.urls[0] ?? '';
    const u = parseUrl(url);
    assert.is(u.iqn, `iqn.2026-11.org.lunbox:it-${kind}`);
    assert.is(u.lun, 0);
    assert.ok(u.port > 0);
  });

  t('iscsi-ls discovers the target and its LUN', async (ctx) => {
    const u = parseUrl(ctx.lb?.urls[0] ?? '');
    const r = await run('iscsi-ls', ['-s', `iscsi://${u.host}:${u.port}`]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Target:${u.iqn.replace(/\./g, '\\.')} Portal:${u.host}:${u.port},1`));
    assert.match(r.stdout, /Lun:0\s+Type:DIRECT_ACCESS/);
  });

  t('iscsi-inq reads standard INQUIRY data and VPD pages', async (ctx) => {
    const url = ctx.lb?.urls[0] ?? '';
    const r = await run('iscsi-inq', [url]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
    assert.match(r.stdout, /Vendor:LUNBOX/);
    const vpd = await run('iscsi-inq', ['-e', '1', '-c', '0', url]);
    assert.is(vpd.code, 0, vpd.stderr);
    for (const page of ['0x80', '0x83', '0xb0', '0xb1', '0xb2']) assert.match(vpd.stdout.toLowerCase(), new RegExp(page));
    const serial = await run('iscsi-inq', ['-e', '1', '-c', '128', url]);
    assert.is(serial.code, 0, serial.stderr);
    assert.match(serial.stdout, /Unit Serial Number:\S+/);
  });

  t('iscsi-readcapacity16 reports 64 MiB in 512-byte blocks', async (ctx) => {
    const r = await run('iscsi-readcapacity16', [ctx.lb?.urls[0] ?? '']);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /RETURNED LOGICAL BLOCK ADDRESS:131071/);
    assert.match(r.stdout, /LOGICAL BLOCK LENGTH IN BYTES:512/);
  });

  t(`qemu-img convert of ${DATA_MIB} MiB of random data reads back identical`, async (ctx) => {
    const src = join(ctx.dir, 'src.raw');
    writeFileSync(src, randomBytes(DATA_MIB * 1024 * 1024));
    const img = qemuImageOpts(ctx.lb?.urls[0] ?? '').replace('driver=raw,', `driver=raw,size=${DATA_MIB * 1024 * 1024},`);
    const w = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-t', 'none', '--target-image-opts', src, img], { timeoutMs: 120_000 });
    assert.is(w.code, 0, w.stderr);
    const c = await run('qemu-img', ['compare', '--image-opts', `driver=raw,file.filename=${src}`, img], { timeoutMs: 120_000 });
    assert.is(c.code, 0, `qemu-img compare: ${c.stdout}${c.stderr}`);
    assert.match(c.stdout, /Images are identical/);
    // Read back through a second, independent path as well: qemu-img convert from the LUN.
    const back = join(ctx.dir, 'back.raw');
    const rd = await run('qemu-img', ['convert', '-O', 'raw', '--image-opts', img, back], { timeoutMs: 120_000 });
    assert.is(rd.code, 0, rd.stderr);
    assert.is(statSync(back).size, DATA_MIB * 1024 * 1024);
    const cmp = await run('cmp', [src, back]);
    assert.is(cmp.code, 0, 'byte-identical read-back');
  });

  // libiscsi's tools offer HeaderDigest=None,CRC32C (so None is the right answer, RFC 7143
  // §6.2.1: the first value of the initiator's list); QEMU can insist on CRC32C.
  t('CRC32C header digests: negotiated with QEMU, data intact', async (ctx) => {
    const url = ctx.lb?.urls[0] ?? '';
    const src = join(ctx.dir, 'digest.raw');
    writeFileSync(src, randomBytes(4 * 1024 * 1024));
    const img = qemuImageOpts(url).replace('driver=raw,', 'driver=raw,size=4194304,') + ',file.header-digest=crc32c';
    const w = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-t', 'none', '--target-image-opts', src, img], { timeoutMs: 60_000 });
    assert.is(w.code, 0, w.stderr);
    const c = await run('qemu-img', ['compare', '--image-opts', `driver=raw,file.filename=${src}`, img], { timeoutMs: 60_000 });
    assert.is(c.code, 0, c.stdout + c.stderr);
    assert.match(ctx.lb?.stderr() ?? '', /login Normal iqn\.2008-11\.org\.linux-kvm.*\(HeaderDigest=CRC32C DataDigest=None\b/);
  });

  t.run();
}
