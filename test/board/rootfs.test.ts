import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config';

const REPO = join(__dirname, '..', '..');
const ROOTFS = join(REPO, 'rootfs');
const UNIT = join(ROOTFS, 'etc/systemd/system/lunbox.service');

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

test('systemd-analyze verify accepts lunbox.service (no warnings)', () => {
  if (!which('systemd-analyze')) assert.unreachable('systemd-analyze not found: install the Debian package systemd (apt-get install systemd)');
  // An alternate root holding the overlay and the system's units, so ExecStart paths and
  // the units named in After=/WantedBy= resolve without installing anything on this host.
  const root = mkdtempSync(join(tmpdir(), 'lunbox-verify-'));
  try {
    cpSync(ROOTFS, root, { recursive: true });
    const sysUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(d));
    if (sysUnits) cpSync(sysUnits, join(root, 'usr/lib/systemd/system'), { recursive: true, dereference: false });
    const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/lunbox.service'], { encoding: 'utf8' });
    assert.is(r.stderr.trim(), '', `systemd-analyze verify: ${r.stderr}`);
    assert.is(r.status, 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('unit: after configfs, restarts on failure, tears the gadget down, enabled for multi-user', () => {
  const u = readFileSync(UNIT, 'utf8');
  assert.match(u, /^Requires=sys-kernel-config\.mount$/m);
  assert.match(u, /^After=.*sys-kernel-config\.mount/m);
  assert.match(u, /^Restart=on-failure$/m);
  assert.match(u, /^ExecStopPost=\/usr\/lib\/lunbox\/lunbox-teardown$/m);
  assert.match(u, /^ExecStart=\/usr\/lib\/lunbox\/lunbox serve --config \/etc\/lunbox\/config\.json$/m);
  assert.match(u, /^WantedBy=multi-user\.target$/m);
});

test('default config: valid, a USB disk on a file with the ACM console beside it', () => {
  const raw = JSON.parse(readFileSync(join(ROOTFS, 'etc/lunbox/config.json'), 'utf8')) as Record<string, unknown>;
  const cfg = validateConfig(raw);
  const disk = cfg.backstores[0];
  assert.is(disk?.type, 'file');
  assert.is(disk?.path, '/var/lib/lunbox/disk0.img');
  assert.is(cfg.usb?.luns[0]?.backstore, 'disk0');
  assert.is(cfg.usb?.gadget?.acm, true);
  assert.is(cfg.console?.device, '/dev/ttyGS0');
  // No NCM function yet: the default config serves no iSCSI portal it could not bind.
  assert.is(cfg.iscsi, undefined);
});

test('shell scripts parse, are executable and have --help', () => {
  const scripts = ['scripts/make-image', 'scripts/flash', 'rootfs/usr/lib/lunbox/lunbox', 'rootfs/usr/lib/lunbox/lunbox-prepare', 'rootfs/usr/lib/lunbox/lunbox-teardown'];
  for (const s of [...scripts, 'rootfs/usr/lib/lunbox/gadget-lib.sh']) {
    const r = spawnSync('bash', ['-n', join(REPO, s)], { encoding: 'utf8' });
    assert.is(r.status, 0, `${s}: ${r.stderr}`);
  }
  for (const s of scripts) assert.ok((statSync(join(REPO, s)).mode & 0o111) !== 0, `${s} is not executable`);
  for (const s of ['scripts/make-image', 'scripts/flash']) {
    const r = spawnSync(join(REPO, s), ['--help'], { encoding: 'utf8' });
    assert.is(r.status, 0);
    assert.match(r.stdout, /^Usage: scripts\//);
    assert.match(readFileSync(join(REPO, s), 'utf8'), /^set -euo pipefail$/m);
  }
});

function prepare(env: Record<string, string>): { status: number | null; stderr: string } {
  const r = spawnSync(join(ROOTFS, 'usr/lib/lunbox/lunbox-prepare'), [], { encoding: 'utf8', env: { ...process.env, LUNBOX_MODULES: '', ...env } });
  return { status: r.status, stderr: r.stderr };
}

test('lunbox-prepare: first start creates the disk with one FAT partition; second start keeps it', () => {
  for (const t of ['sfdisk', 'mkfs.vfat']) if (!which(t)) assert.unreachable(`${t} not found: install the Debian packages fdisk and dosfstools`);
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-prepare-'));
  try {
    mkdirSync(join(dir, 'cfg/usb_gadget'), { recursive: true });
    const disk = join(dir, 'state/disk0.img');
    const env = { LUNBOX_CONFIGFS: join(dir, 'cfg'), LUNBOX_DISK: disk, LUNBOX_DISK_SIZE: '80M' };
    const r = prepare(env);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, 'creating');
    assert.is(statSync(disk).size, 80 * 1024 * 1024);
    const b = Buffer.alloc(512);
    const fd = openSync(disk, 'r');
    readSync(fd, b, 0, 512, 0);
    assert.is(b[446 + 4], 0x0c, 'MBR partition 1 type FAT32 LBA');
    assert.is(b.readUInt32LE(446 + 8), 2048, 'partition starts at 1 MiB');
    assert.is(b.readUInt16LE(510), 0xaa55);
    readSync(fd, b, 0, 512, 1024 * 1024);
    closeSync(fd);
    assert.is(b.readUInt16LE(510), 0xaa55, 'FAT boot sector at 1 MiB');
    const again = prepare(env);
    assert.is(again.status, 0, again.stderr);
    assert.not.match(again.stderr, 'creating');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lunbox-prepare: no configfs gadget directory is a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-prepare-'));
  try {
    const r = prepare({ LUNBOX_CONFIGFS: join(dir, 'none'), LUNBOX_DISK: join(dir, 'd.img') });
    assert.is(r.status, 1);
    assert.match(r.stderr, 'usb_gadget is missing: configfs is not mounted or libcomposite is not loaded');
    const big = prepare({ LUNBOX_CONFIGFS: dir, LUNBOX_DISK: join(dir, 'd.img'), LUNBOX_DISK_SIZE: '1P' });
    assert.ok(big.status !== 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
