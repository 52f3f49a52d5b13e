// scripts/flash against fake /sys, /proc and /dev trees (LUNBOX_SYSFS, LUNBOX_PROC, LUNBOX_DEV):
// the refusals, and a write + read-back verify onto a regular file standing in for a card.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const FLASH = join(__dirname, '..', '..', 'scripts', 'flash');
const MiB = 1024 * 1024;

interface Disk {
  name: string;
  devnum: string;
  sizeMiB: number;
  model?: string;
  parts?: Array<{ name: string; devnum: string; holders?: string[] }>;
}

/** A fake machine: sda is the system disk (/ and /boot on it), others as given. */
function machine(disks: Disk[], mounts: string[] = [], swaps: string[] = []): { root: string; env: NodeJS.ProcessEnv } {
  const root = mkdtempSync(join(tmpdir(), 'lunbox-flash-'));
  const sys = join(root, 'sys');
  const dev = join(root, 'dev');
  mkdirSync(join(sys, 'class/block'), { recursive: true });
  mkdirSync(join(sys, 'devices'), { recursive: true });
  mkdirSync(dev);
  for (const d of disks) {
    const real = join(sys, 'devices', d.name);
    mkdirSync(join(real, 'device'), { recursive: true });
    mkdirSync(join(real, 'holders'));
    writeFileSync(join(real, 'size'), String((d.sizeMiB * MiB) / 512));
    writeFileSync(join(real, 'dev'), d.devnum);
    writeFileSync(join(real, 'removable'), '1');
    writeFileSync(join(real, 'device/model'), d.model ?? 'Fake Card');
    writeFileSync(join(real, 'device/vendor'), 'ACME');
    symlinkSync(real, join(sys, 'class/block', d.name));
    writeFileSync(join(dev, d.name), '');
    for (const p of d.parts ?? []) {
      const pr = join(real, p.name);
      mkdirSync(join(pr, 'holders'), { recursive: true });
      writeFileSync(join(pr, 'partition'), '1');
      writeFileSync(join(pr, 'dev'), p.devnum);
      writeFileSync(join(pr, 'size'), '1024');
      for (const h of p.holders ?? []) mkdirSync(join(pr, 'holders', h));
      symlinkSync(pr, join(sys, 'class/block', p.name));
      writeFileSync(join(dev, p.name), '');
    }
  }
  const proc = join(root, 'proc');
  mkdirSync(join(proc, 'self'), { recursive: true });
  const mi = ['22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw', '23 22 8:1 / /boot/firmware rw - vfat /dev/sda1 rw', '24 22 0:21 / /proc rw - proc proc rw', ...mounts];
  writeFileSync(join(proc, 'self/mountinfo'), mi.join('\n') + '\n');
  writeFileSync(join(proc, 'mounts'), mi.map((l) => { const f = l.split(' - ')[1]?.split(' ') ?? []; return `${f[1]} ${l.split(' ')[4]} ${f[0]} rw 0 0`; }).join('\n') + '\n');
  writeFileSync(join(proc, 'swaps'), ['Filename\tType\tSize\tUsed\tPriority', ...swaps].join('\n') + '\n');
  return { root, env: { ...process.env, LUNBOX_SYSFS: sys, LUNBOX_PROC: proc, LUNBOX_DEV: dev } };
}

const SYSTEM: Disk = { name: 'sda', devnum: '8:0', sizeMiB: 500000, model: 'Samsung SSD', parts: [{ name: 'sda1', devnum: '8:1' }, { name: 'sda2', devnum: '8:2' }] };

function flash(env: NodeJS.ProcessEnv, args: string[], input = ''): { status: number | null; out: string; err: string } {
  const r = spawnSync(FLASH, args, { env, input, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function image(root: string, mib: number): string {
  const p = join(root, 'test.img');
  const b = Buffer.alloc(mib * MiB);
  for (let i = 0; i < b.length; i += 4096) b.writeUInt32LE(i ^ 0x5a5a5a5a, i);
  writeFileSync(p, b);
  return p;
}

test('refuses the system disk (/ is on it)', () => {
  const m = machine([SYSTEM]);
  try {
    const r = flash(m.env, [image(m.root, 1), '/dev/sda', '--yes']);
    assert.is(r.status, 3);
    assert.match(r.err, 'refusing: /dev/sda holds the running system (/ is on it)');
  } finally {
    rmSync(m.root, { recursive: true, force: true });
  }
});

test('refuses a disk with a mounted partition, naming it and how to unmount', () => {
  const m = machine([SYSTEM, { name: 'sdb', devnum: '8:16', sizeMiB: 16000, parts: [{ name: 'sdb1', devnum: '8:17' }] }], ['40 22 8:17 / /media/me/bootfs rw - vfat /dev/sdb1 rw']);
  try {
    const r = flash(m.env, [image(m.root, 1), '/dev/sdb', '--yes']);
    assert.is(r.status, 3);
    assert.match(r.err, '/dev/sdb1 is mounted on /media/me/bootfs');
    assert.match(r.err, 'udisksctl unmount -b /dev/sdb1');
  } finally {
    rmSync(m.root, { recursive: true, force: true });
  }
});

test('refuses a partition, a disk with swap, a held (LVM) disk, no medium, too small', () => {
  const m = machine(
    [
      SYSTEM,
      { name: 'sdb', devnum: '8:16', sizeMiB: 16000, parts: [{ name: 'sdb1', devnum: '8:17' }] },
      { name: 'sdc', devnum: '8:32', sizeMiB: 16000, parts: [{ name: 'sdc1', devnum: '8:33' }] },
      { name: 'sdd', devnum: '8:48', sizeMiB: 16000, parts: [{ name: 'sdd1', devnum: '8:49', holders: ['dm-0'] }] },
      { name: 'sde', devnum: '8:64', sizeMiB: 0 },
      { name: 'mmcblk0', devnum: '179:0', sizeMiB: 2 },
    ],
    [],
    ['/dev/sdc1\tpartition\t1000\t0\t-2'],
  );
  try {
    const img = image(m.root, 4);
    const cases: Array<[string, string]> = [
      ['/dev/sdb1', 'is a partition: give the whole disk (/dev/sdb)'],
      ['/dev/sdc', 'holds active swap (/dev/sdc1)'],
      ['/dev/sdd', 'held by dm-0'],
      ['/dev/sde', 'has no medium'],
      ['/dev/mmcblk0', 'does not fit on /dev/mmcblk0'],
    ];
    for (const [dev, msg] of cases) {
      const r = flash(m.env, [img, dev, '--yes']);
      assert.is(r.status, 3, `${dev}: ${r.err}`);
      assert.match(r.err, msg);
    }
    const none = flash(m.env, [img, '/dev/sdz', '--yes']);
    assert.is(none.status, 1);
    assert.match(none.err, 'no such block device');
  } finally {
    rmSync(m.root, { recursive: true, force: true });
  }
});

test('shows size and model, asks, and writes nothing unless the answer is yes', () => {
  const m = machine([SYSTEM, { name: 'sdb', devnum: '8:16', sizeMiB: 8, model: 'SD Card Reader' }]);
  try {
    const img = image(m.root, 2);
    const r = flash(m.env, [img, '/dev/sdb'], 'no\n');
    assert.is(r.status, 1);
    assert.match(r.err, 'ACME SD Card Reader (0 GB, 8 MiB');
    assert.match(r.err, 'Type "yes" to write');
    assert.match(r.err, 'aborted: nothing written');
    assert.is(readFileSync(join(m.root, 'dev/sdb')).length, 0);
    const dry = flash(m.env, [img, '/dev/sdb', '--dry-run']);
    assert.is(dry.status, 0);
    assert.match(dry.err, 'dry run');
    assert.is(readFileSync(join(m.root, 'dev/sdb')).length, 0);
  } finally {
    rmSync(m.root, { recursive: true, force: true });
  }
});

test('writes and verifies by reading back (a regular file stands in for the card)', () => {
  const m = machine([SYSTEM, { name: 'mmcblk0', devnum: '179:0', sizeMiB: 8 }]);
  try {
    const img = image(m.root, 3);
    const r = flash(m.env, [img, '/dev/mmcblk0'], 'yes\n');
    assert.is(r.status, 0, r.err);
    assert.match(r.err, 'verified');
    assert.ok(readFileSync(join(m.root, 'dev/mmcblk0')).equals(readFileSync(img)));
    if (spawnSync('sh', ['-c', 'command -v xz']).status === 0) {
      spawnSync('xz', ['-k', '-0', img]);
      writeFileSync(join(m.root, 'dev/mmcblk0'), '');
      const x = flash(m.env, [`${img}.xz`, '/dev/mmcblk0', '--yes']);
      assert.is(x.status, 0, x.err);
      assert.ok(readFileSync(join(m.root, 'dev/mmcblk0')).equals(readFileSync(img)));
    }
  } finally {
    rmSync(m.root, { recursive: true, force: true });
  }
});

test.run();
