// USB mass storage against the real Linux kernel: scripts/vm/run-in-vm.sh boots Debian's kernel
// under QEMU with the host's root filesystem, and scripts/vm/guest-usb.sh runs lunbox's gadget
// (FunctionFS + Bulk-Only Transport) on dummy_hcd, where the same kernel's usb-storage driver
// uses it: INQUIRY/READ CAPACITY, a vfat filesystem with 100 MiB of data, device and bus
// resets, the ACM console, kill -9 and restart, clean stop. A machine that cannot run the VM
// fails this test with what is missing: it never passes without having run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, run } from './helpers';

const RUNNER = join(ROOT, 'scripts', 'vm', 'run-in-vm.sh');
const GUEST = join(ROOT, 'scripts', 'vm', 'guest-usb.sh');

/** Debian packages the VM test needs, by the command that shows each is installed. */
const NEEDS: readonly [string, string][] = [
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['cpio', 'cpio'],
  ['dpkg-deb', 'dpkg'],
  ['apt-get', 'apt'],
  ['sg_inq', 'sg3-utils'],
  ['mkfs.vfat', 'dosfstools'],
  ['python3', 'python3'], // guest-firstboot.sh reads ttyGS0's output queue (TIOCOUTQ) with it
];

async function missingPackages(): Promise<string[]> {
  const missing: string[] = [];
  for (const [cmd, pkg] of NEEDS) {
    const r = await run('sh', ['-c', `command -v ${cmd}`]);
    if (r.code !== 0) missing.push(pkg);
  }
  // The initramfs needs a static busybox (a dynamic one has no libc in the initramfs).
  const bb = existsSync('/bin/busybox') ? readFileSync('/bin/busybox') : undefined;
  if (!bb || bb.includes('/ld-linux')) missing.push('busybox-static');
  return missing;
}

test('lunbox USB mass storage works with the Linux usb-storage driver (QEMU VM, dummy_hcd)', async () => {
  const missing = await missingPackages();
  if (missing.length > 0) {
    assert.unreachable(`the USB VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  assert.ok(existsSync(join(ROOT, 'dist', 'lunbox.js')), 'dist/lunbox.js is needed in the VM (npm run build)');
  const r = await run(RUNNER, [GUEST], { timeoutMs: 20 * 60_000, env: { VM_TIMEOUT: '1080' } });
  const out = r.stdout + r.stderr;
  if (r.code === 125 || r.code === 124) {
    assert.unreachable(`the VM did not run the test (exit ${r.code}: ${r.code === 124 ? 'timeout' : 'VM/harness failure'}):\n${out.slice(-3000)}`);
  }
  const failed = out.split('\n').filter((l) => l.startsWith('FAIL: '));
  assert.equal(failed, [], `guest checks failed:\n${out.slice(-4000)}`);
  const summary = /guest-usb: (\d+) passed, (\d+) failed/.exec(out);
  assert.ok(summary, `no summary line from the guest script:\n${out.slice(-3000)}`);
  assert.is(summary?.[2], '0');
  for (const check of [
    /PASS: usb-storage attached \/dev\/sd[a-z]+/,
    /PASS: sg_inq answers \(vendor LUNBOX\)/,
    /PASS: sg_readcap: 524288 blocks of 512 bytes/,
    /PASS: sha256 after remount matches/,
    /PASS: sg_inq after device reset/,
    /PASS: sg_inq after bus reset/,
    /PASS: data intact after resets/,
    /PASS: ACM console: \/dev\/ttyACM0/,
    /PASS: restart after kill -9/,
    /PASS: SIGTERM: gadget removed/,
  ]) {
    assert.match(out, check);
  }
  assert.match(out, /speed=480Mb\/s/, 'the gadget enumerates at high speed');
  assert.is(r.code, 0, out.slice(-2000));
});

/** Run one guest script in the VM; fails with the reason when the VM did not run it. */
async function runGuest(script: string, label: string): Promise<string> {
  assert.ok(existsSync(join(ROOT, 'dist', 'lunbox.js')), 'dist/lunbox.js is needed in the VM (npm run build)');
  const r = await run(RUNNER, [join(ROOT, 'scripts', 'vm', script)], { timeoutMs: 20 * 60_000, env: { VM_TIMEOUT: '1080' } });
  const out = r.stdout + r.stderr;
  if (r.code === 125 || r.code === 124) {
    assert.unreachable(`the VM did not run the test (exit ${r.code}: ${r.code === 124 ? 'timeout' : 'VM/harness failure'}):\n${out.slice(-3000)}`);
  }
  const failed = out.split('\n').filter((l) => l.startsWith('FAIL: '));
  assert.equal(failed, [], `guest checks failed:\n${out.slice(-4000)}`);
  const summary = new RegExp(`${label}: (\\d+) passed, (\\d+) failed`).exec(out);
  assert.ok(summary, `no summary line from the guest script:\n${out.slice(-3000)}`);
  assert.is(summary?.[2], '0');
  assert.is(r.code, 0, out.slice(-2000));
  return out;
}

test('a CD-ROM LUN from an ISO: sr, iso9660, PREVENT, eject and load (QEMU VM, dummy_hcd)', async () => {
  const missing = await missingPackages();
  if ((await run('sh', ['-c', 'command -v xorriso || command -v genisoimage'])).code !== 0) missing.push('xorriso');
  if (missing.length > 0) {
    assert.unreachable(`the CD-ROM VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-cdrom.sh', 'guest-cdrom');
  for (const check of [
    /PASS: sr driver attached \/dev\/sr\d+/,
    /PASS: INQUIRY: peripheral device type cd\/dvd/,
    /PASS: every file reads back identical/,
    /PASS: eject refused while mounted/,
    /PASS: TEST UNIT READY: not ready, medium not present - tray open/,
    /PASS: TEST UNIT READY after load: UNIT ATTENTION 28\/00/,
    /PASS: files identical after eject \+ load/,
  ]) {
    assert.match(out, check);
  }
});

// The board's first boot apart from the CPU: rootfs/, the bundle and the serialport runtime
// installed as make-image installs them (linux-x64 prebuild), lunbox.service's own lines run in
// systemd's order, the default config; the shell answers `lunbox console -c` on ttyACM0, and
// SIGTERM does not wait for a computer that leaves the console unread.
test('first boot: the rootfs service with the default config gives the computer a disk and a console shell (QEMU VM)', async () => {
  const missing = await missingPackages();
  if (missing.length > 0) {
    assert.unreachable(`the first-boot VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-firstboot.sh', 'guest-firstboot');
  for (const check of [
    /PASS: ExecStartPre: \/usr\/lib\/lunbox\/lunbox-prepare/,
    /PASS: the disk was created on first start/,
    /PASS: the computer sees the disk as \/dev\/sd[a-z]+/,
    /PASS: its partition is FAT labelled LUNBOX/,
    /PASS: the ACM console is \/dev\/ttyACM0 on the computer/,
    /PASS: serial console runtime installed: serialport in \/usr\/lib\/lunbox\/node_modules, linux-x64\/node.napi.glibc.node only/,
    /PASS: lunbox loaded serialport's addon from \/usr\/lib\/lunbox\/node_modules/,
    /PASS: the shell answers on \/dev\/ttyACM0: lunbox console -c 'ls \/' exits 0 and prints the tree/,
    /PASS: the console's output is backed up on the board \(\d+ bytes unsent on ttyGS0\)/,
    /PASS: SIGTERM: lunbox exits 0/,
    /PASS: SIGTERM with the console unread: lunbox is gone in \d+ ms/,
    /PASS: the console closed without waiting/,
    /PASS: the gadget is gone from configfs/,
  ]) {
    assert.match(out, check);
  }
});

test.run();
