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
    /PASS: the READs were served by the fast path's worker thread/,
    /PASS: the worker ran the C loop/,
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

test('a CD-ROM LUN from an ISO: sr, iso9660, PREVENT, eject and load, the disc swapped from the shell (QEMU VM, dummy_hcd)', async () => {
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
    // The board's shell swaps the disc at run time; the host reads the new one.
    /PASS: changemedium while the host has the disc mounted: refused/,
    /PASS: changemedium \/mnt\/store\/b\.iso from the shell/,
    /PASS: the host sees the new disc's size/,
    /PASS: the host reads the new disc's files/,
    /PASS: set attribute path= swaps the disc back/,
    /PASS: its files are the first disc's/,
    /PASS: the disc changes were medium changes: the same USB device \(number \d+\), no reconnect/,
    /PASS: the host sees an open tray/,
  ]) {
    assert.match(out, check);
  }
});

// Live changes of the gadget from the board's shell: a LUN added and deleted while the host
// uses the disk (a re-enumeration each time), a gadget string and a setting of the exported disk
// changed, a bad UDC refused with the old gadget back; the kernel engine too.
test('live USB changes from the shell: LUN 1 added and deleted, the host re-enumerates, LUN 0 keeps its data (QEMU VM, dummy_hcd)', async () => {
  const missing = await missingPackages();
  if (missing.length > 0) {
    assert.unreachable(`the live USB VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-usb-live.sh', 'guest-usb-live');
  for (const check of [
    /PASS: the host sees \/dev\/sd[a-z]+ \(LUN 0/,
    /PASS: a new backstore alone: no reconnect/,
    /PASS: \/usb\/luns create lun=1 backstore=disk1 \(exit 0\): the shell says the host sees the device reconnect/,
    /PASS: the host sees a second disk \/dev\/sd[a-z]+ \(LUN 1\)/,
    /PASS: it is the new backstore: 32 MiB/,
    /PASS: the device was re-enumerated/,
    /PASS: the first disk's data is intact/,
    /PASS: 1 MiB written to \/dev\/sd[a-z]+ reads back/,
    /PASS: the shell answers on \/dev\/ttyACM0 after the rebuild, with LUN 1 listed/,
    /PASS: the host reads the new product string \(LiveDisk\)/,
    /PASS: the host sees vendor ACME/,
    /PASS: same data under the new INQUIRY/,
    /PASS: udc=nope\.0 refused \(exit 1\) naming the UDC and that the previous gadget is back/,
    /PASS: the disk is back as \/dev\/sd[a-z]+/,
    /PASS: LUN 1 is gone from the host/,
    /PASS: LUN 0 readable, data intact/,
    /PASS: kernel engine: LUN 1 added live/,
    /PASS: kernel engine: the host sees LUN 1/,
    /PASS: kernel engine: LUN 1 gone from the host/,
    /PASS: kernel engine: LUN 0 readable, data intact/,
  ]) {
    assert.match(out, check);
  }
});

// `lunbox probe` on the computer's side: node-usb (libusb) talks Bulk-Only Transport to the
// gadget with the kernel's usb-storage driver detached meanwhile, and gives the device back.
test('lunbox probe lists the gadget and talks BOT to it, usb-storage detached and re-attached (QEMU VM, dummy_hcd)', async () => {
  const missing = await missingPackages();
  if (missing.length > 0) {
    assert.unreachable(`the probe VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  assert.ok(existsSync(join(ROOT, 'node_modules', 'usb', 'package.json')), "the probe needs the optional dependency 'usb' (npm install)");
  const out = await runGuest('guest-probe.sh', 'guest-probe');
  for (const check of [
    /PASS: probe lists it: \d+:\d+ 1d6b:0104, serial, mass storage, serial console/,
    /PASS: probe --json: one device/,
    /PASS: probe \d+:\d+ --read 32 --json: exit status 0/,
    /PASS: usb-storage was detached while probe talked BOT/,
    /PASS: INQUIRY: LUNBOX FILEIO, type 0 \(disk\), removable/,
    /PASS: READ CAPACITY: 196608 blocks of 512 bytes; GET MAX LUN: 1/,
    /PASS: read test: 32 MiB at a plausible rate/,
    /PASS: usb-storage attached again afterwards/,
    /PASS: \/dev\/sd[a-z]+ is back/,
    /PASS: probe --lun 1 --read 0: the CD-ROM/,
    /PASS: a LUN that does not exist: exit 1/,
    /PASS: usb-storage attached again after the failed probe/,
    /PASS: SIGTERM after the probes: exit status 0/,
  ]) {
    assert.match(out, check);
  }
});

// A disk that cannot read some blocks (device-mapper's error target under a block backstore)
// answers MEDIUM ERROR at once, naming the first bad block, in both of the fast path's loops:
// the host never has to time a command out and reset the device, and never gets wrong data.
test('a backstore with bad blocks: MEDIUM ERROR at once, the first bad block named, no reset, both loops (QEMU VM, dummy_hcd)', async () => {
  const missing = await missingPackages();
  for (const [cmd, pkg] of [['dmsetup', 'dmsetup'], ['losetup', 'mount']] as const) {
    if ((await run('sh', ['-c', `command -v ${cmd}`])).code !== 0) missing.push(pkg);
  }
  if (missing.length > 0) {
    assert.unreachable(`the bad-blocks VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-usb-media.sh', 'guest-usb-media');
  for (const loop of ['C loop', 'JavaScript loop']) {
    for (const check of [
      'the worker runs the',
      '4 KiB READ of a bad block fails',
      'the host logs MEDIUM ERROR, unrecovered read error',
      '120 KiB READ whose last 24 KiB are bad fails',
      'its sense names the first bad block: INFORMATION 32768',
      'the 96 KiB before the bad blocks read back identical',
      '8 MiB after the bad blocks read back identical',
      'no USB reset was needed (host resets: 0)',
      'SYNCHRONIZE CACHE after a WRITE to a bad block fails',
      'a FUA WRITE to a bad block fails',
      'the disk still reads after it',
    ]) {
      assert.ok(out.includes(`PASS: ${loop}: ${check}`), `${loop}: ${check}\n${out.slice(-3000)}`);
    }
  }
  assert.ok(out.includes('PASS: C loop: it failed after 96 KiB had gone out, answered in the worker'), out.slice(-3000));
});

// Commands the host abandons midway (a Bulk-Only reset after part of the data): the next
// command gets its own data and CSW, even when the host polls bulk-IN as soon as it sends the
// CBW. The C loop's bulk-IN requests are cancelled before the reset completes; the JavaScript
// loop, the core's own path and the C loop without AIO cannot take back their blocking writes,
// so they refuse the reset and the host resets the port (as Linux's usb-storage does).
test('commands abandoned by a Bulk-Only reset midway: the next command gets its own data, every path (QEMU VM, dummy_hcd, libusb)', async () => {
  const missing = await missingPackages();
  if (missing.length > 0) {
    assert.unreachable(`the abandon VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  assert.ok(existsSync(join(ROOT, 'node_modules', 'usb', 'package.json')), "the test's host side needs the dependency 'usb' (npm install)");
  assert.ok(existsSync(join(ROOT, 'dist', 'lunbox-fast.node')), 'the C loop needs dist/lunbox-fast.node (npm run build with a C compiler)');
  const out = await runGuest('guest-usb-abandon.sh', 'guest-usb-abandon');
  assert.ok(out.includes('PASS: C loop: the worker runs the C loop'), out.slice(-3000));
  assert.ok(out.includes('PASS: JavaScript loop: the worker runs the JavaScript loop'), out.slice(-3000));
  assert.ok(out.includes('PASS: C loop without AIO: the worker runs the C loop'), out.slice(-3000));
  for (const path of ['C loop', 'C loop without AIO', 'JavaScript loop', 'core path']) {
    for (const take of [0, 512, 16384, 65536, 122880]) {
      for (const next of ['the next READ (LBA 2000, 8 blocks) gets its own data', 'the next READ (LBA 4000, 240 blocks) gets its own data']) {
        assert.ok(out.includes(`PASS: ${path}: READ of 240 blocks abandoned after ${take} bytes: ${next}`), `${path}, ${take}: ${next}\n${out.slice(-3000)}`);
      }
    }
    for (const give of [0, 16384, 98304]) {
      assert.ok(out.includes(`PASS: ${path}: WRITE of 240 blocks abandoned after ${give} bytes: the next READ (LBA 2000, 8 blocks) gets its own data`), `${path}, WRITE ${give}\n${out.slice(-3000)}`);
    }
    for (const check of ['a whole WRITE after the resets: good CSW', 'and it reads back', 'bot-abandon.js ran to the end (exit 0)', 'usb-storage has the device back', 'SIGTERM: exit status 0']) {
      assert.ok(out.includes(`PASS: ${path}: ${check}`), `${path}: ${check}\n${out.slice(-3000)}`);
    }
  }
  // The C loop takes its data back: it never needs the port reset the other two ask for.
  assert.not.ok(out.includes('PASS: C loop: READ of 240 blocks abandoned after 0 bytes: the device refused'), out.slice(-3000));
  assert.ok(out.includes('PASS: core path: READ of 240 blocks abandoned after 0 bytes: the device refused the Bulk-Only reset; the host resets the port'), out.slice(-3000));
});

test('the kernel engine (--usb-engine kernel): the same LUNs served by the kernel mass_storage function (QEMU VM)', async () => {
  const missing = await missingPackages();
  if ((await run('sh', ['-c', 'command -v xorriso || command -v genisoimage'])).code !== 0) missing.push('xorriso');
  if (missing.length > 0) {
    assert.unreachable(`the kernel-engine VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-kernel-usb.sh', 'guest-kernel-usb');
  for (const check of [
    /PASS: gadget has the kernel's mass_storage.lunbox function/,
    /PASS: no FunctionFS function and no functionfs mount/,
    /PASS: usb-storage attached \/dev\/sd[a-z]+/,
    /PASS: 8 MiB written through \/dev\/sd[a-z]+ read back identical/,
    /PASS: the data is in lunbox's backing file/,
    /PASS: ISO files read back identical/,
    /PASS: mounted: the shell's changemedium is refused by the kernel's PREVENT/,
    /PASS: the host reads the new disc's files/,
    /PASS: SIGTERM: gadget removed from configfs/,
  ]) {
    assert.match(out, check);
  }
});

// The board's first boot apart from the CPU: rootfs/, the bundle and the serialport runtime
// installed as make-image installs them (linux-x64 prebuild), lunbox.service's own lines run in
// systemd's order, the default config; the shell answers `lunbox console -c` on ttyACM0, the
// computer gets iSCSI on the USB network, and SIGTERM does not wait for a computer that leaves
// the console unread.
test('first boot: the rootfs service with the default config gives the computer a disk, a console shell and iSCSI on the USB network (QEMU VM)', async () => {
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
    /PASS: the iSCSI disk was created on first start/,
    /PASS: the computer sees a network interface/,
    /PASS: it gets 10\.55\.0\.2 by DHCP/,
    /PASS: and reaches the iSCSI disk at iscsi:\/\/10\.55\.0\.1:3260\/iqn\.2026-11\.org\.lunbox:board\/0/,
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

// The USB network beside the disk: NCM on dummy_hcd, the computer's end (cdc_ncm) in its own
// network namespace, its address from lunbox's DHCP server (busybox udhcpc), iSCSI over it.
test('NCM: the computer gets an address by DHCP on the cable and reaches the iSCSI portal there (QEMU VM)', async () => {
  const missing = await missingPackages();
  for (const [cmd, pkg] of [['iscsi-ls', 'libiscsi-bin'], ['qemu-img', 'qemu-utils'], ['ip', 'iproute2']] as const) {
    if ((await run('sh', ['-c', `command -v ${cmd}`])).code !== 0) missing.push(pkg);
  }
  if (missing.length > 0) {
    assert.unreachable(`the NCM VM test cannot run: missing Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  }
  const out = await runGuest('guest-ncm.sh', 'guest-ncm');
  for (const check of [
    /PASS: board usb0 is up with 10\.55\.0\.1\/30/,
    /PASS: permanent neighbour entry 10\.55\.0\.2/,
    /PASS: device class EF\/02\/01 \(IAD\), bcdDevice 0x0101/,
    /PASS: Extended Compat ID: WINNCM on the NCM interface \(\d+\)/,
    /PASS: the computer's interface has host_addr 06:/,
    /PASS: lease: 10\.55\.0\.2, mask 255\.255\.255\.252, 3600 s, server 10\.55\.0\.1/,
    /PASS: no router and no DNS given/,
    /PASS: udhcpc -B \(BROADCAST flag/,
    /PASS: no packet left the board's other interface during either exchange/,
    /PASS: RENEWING \(unicast REQUEST, ciaddr 10\.55\.0\.2\) → ACK/,
    /PASS: INIT-REBOOT for another network's address → NAK/,
    /PASS: a DHCP client on the board's other network \(another MAC\) gets no answer/,
    /PASS: even a DISCOVER there spoofing the computer's MAC gets no reply on that network/,
    /PASS: the iSCSI portal listens on 10\.55\.0\.1:3260 only/,
    /PASS: iscsi-ls from 'host' discovers/,
    /PASS: qemu-img reads the 32 MiB LUN over iSCSI identical/,
    /PASS: with the same MAC 06:/,
    /PASS: SIGTERM: the computer's interface is gone/,
  ]) {
    assert.match(out, check);
  }
});

test.run();
