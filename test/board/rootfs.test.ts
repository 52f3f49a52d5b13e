import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configWarnings, validateConfig } from '../../src/config';
import { planLink } from '../../src/net/ipv4';

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

test('default config: a USB disk, the ACM console, NCM with iSCSI on the board address of the cable link', () => {
  const raw = JSON.parse(readFileSync(join(ROOTFS, 'etc/lunbox/config.json'), 'utf8')) as Record<string, unknown>;
  const cfg = validateConfig(raw);
  assert.equal(configWarnings(cfg), []);
  const disk = cfg.backstores[0];
  assert.is(disk?.type, 'file');
  assert.is(disk?.path, '/var/lib/lunbox/disk0.img');
  assert.is(cfg.usb?.luns[0]?.backstore, 'disk0');
  assert.is(cfg.usb?.gadget?.acm, true);
  assert.is(cfg.console?.device, '/dev/ttyGS0');
  const ncm = cfg.usb?.gadget?.ncm;
  assert.equal(ncm, { address: '10.55.0.1/30', dhcp: true });
  // The portal is the board's own address on the link, nothing wider.
  assert.equal(cfg.iscsi?.portals, [{ address: '10.55.0.1', port: 3260 }]);
  const plan = planLink((ncm as { address: string }).address);
  assert.is(typeof plan === 'object' ? plan.board : plan, '10.55.0.1');
  // iSCSI serves its own disk, never the USB disk's image: one computer would mount it twice.
  const served = cfg.iscsi?.targets.flatMap((t) => t.luns.map((l) => l.backstore)) ?? [];
  assert.equal(served, ['net0']);
  const net0 = cfg.backstores.find((b) => b.name === 'net0');
  assert.is(net0?.path, '/var/lib/lunbox/net0.img');
  // lunbox-prepare creates both images on first boot.
  const env = readFileSync(join(ROOTFS, 'etc/default/lunbox'), 'utf8');
  assert.match(env, /^LUNBOX_DISK=\/var\/lib\/lunbox\/disk0\.img$/m);
  assert.match(env, /^LUNBOX_NET_DISK=\/var\/lib\/lunbox\/net0\.img$/m);
});

test('network managers keep off usb0: NetworkManager unmanaged, systemd-networkd Unmanaged=yes', () => {
  const nm = readFileSync(join(ROOTFS, 'etc/NetworkManager/conf.d/lunbox-usb0.conf'), 'utf8');
  assert.match(nm, /^\[keyfile\]\nunmanaged-devices=interface-name:usb0$/m);
  const nd = readFileSync(join(ROOTFS, 'etc/systemd/network/60-lunbox-usb0.network'), 'utf8');
  assert.match(nd, /^\[Match\]\nName=usb0$/m);
  assert.match(nd, /^\[Link\]\nUnmanaged=yes$/m);
  // Nothing on the board may run another DHCP server (NetworkManager's "shared" mode) on usb0.
  assert.not.ok(existsSync(join(ROOTFS, 'etc/NetworkManager/system-connections')));
  assert.not.match(nd, /DHCPServer/);
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
    const netDisk = join(dir, 'state/net0.img');
    const env = { LUNBOX_CONFIGFS: join(dir, 'cfg'), LUNBOX_DISK: disk, LUNBOX_DISK_SIZE: '80M', LUNBOX_NET_DISK: netDisk, LUNBOX_NET_DISK_SIZE: '72M' };
    const r = prepare(env);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, 'creating');
    assert.is(statSync(disk).size, 80 * 1024 * 1024);
    assert.is(statSync(netDisk).size, 72 * 1024 * 1024);
    const label = Buffer.alloc(11);
    const nfd = openSync(netDisk, 'r');
    readSync(nfd, label, 0, 11, 1024 * 1024 + 0x47); // FAT32 BPB volume label (the FAT16 one is at 0x2b)
    closeSync(nfd);
    const label16 = Buffer.alloc(11);
    const nfd2 = openSync(netDisk, 'r');
    readSync(nfd2, label16, 0, 11, 1024 * 1024 + 0x2b);
    closeSync(nfd2);
    assert.ok([label.toString('latin1'), label16.toString('latin1')].includes('LUNBOX-NET '), `label: ${label.toString('latin1')} / ${label16.toString('latin1')}`);
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
