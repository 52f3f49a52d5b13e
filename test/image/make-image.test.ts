// scripts/make-image on synthetic SD-card images (FAT boot + ext4 root built here with sfdisk,
// mkfs.vfat, mkfs.ext4 -d): what it installs, and that nothing else in the image changes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { boards } from '../../src/board/detect';

const REPO = join(__dirname, '..', '..');
const MAKE_IMAGE = join(REPO, 'scripts', 'make-image');
const ROOTFS = join(REPO, 'rootfs');
const MODULES = join(REPO, 'node_modules');
const SECTOR = 512;
const MiB = 1024 * 1024;

// Tools the test and the script use, with the Debian package that has each.
const TOOLS: Record<string, string> = { sfdisk: 'fdisk', 'mkfs.vfat': 'dosfstools', mcopy: 'mtools', mtype: 'mtools', debugfs: 'e2fsprogs', 'mkfs.ext4': 'e2fsprogs', e2fsck: 'e2fsprogs', xz: 'xz-utils', tar: 'tar' };

function sh(cmd: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB, ...opts });
  if (r.error) throw r.error;
  return r;
}
function must(cmd: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}): string {
  const r = sh(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

// tmpfs when there is one: mkfs, debugfs and e2fsck fsync, which is slow on a real disk.
const WORK = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'lunbox-image-test-'));
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface Layout {
  /** [start sector, size in sectors, MBR type, filesystem] per partition. */
  readonly parts: ReadonlyArray<readonly [number, number, string, 'fat' | 'ext4' | 'raw']>;
  readonly totalMiB: number;
  readonly userland: 'arm64' | 'armhf';
  readonly beagle?: boolean;
}
const PI_LAYOUT = (userland: 'arm64' | 'armhf'): Layout => ({ parts: [[8192, 65536, 'c', 'fat'], [73728, 131072, '83', 'ext4']], totalMiB: 104, userland });
// BeagleBoard Debian 12: FAT firmware, swap, ext4 root; raw bootloader bytes before partition 1.
const BBB_LAYOUT: Layout = { parts: [[8192, 32768, 'c', 'fat'], [40960, 16384, '82', 'raw'], [57344, 131072, '83', 'ext4']], totalMiB: 96, userland: 'armhf', beagle: true };

function buildImage(name: string, layout: Layout, rootMiB?: number): string {
  const dir = join(WORK, `src-${name}`);
  const root = join(dir, 'root');
  for (const d of ['etc/systemd/system/multi-user.target.wants', 'etc/systemd/system/getty.target.wants', 'usr/lib/systemd/system', 'usr/bin', 'home/pi', 'var/lib']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'usr/lib/os-release'), 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n');
  symlinkSync('../usr/lib/os-release', join(root, 'etc/os-release'));
  writeFileSync(join(root, layout.userland === 'arm64' ? 'usr/lib/ld-linux-aarch64.so.1' : 'usr/lib/ld-linux-armhf.so.3'), randomBytes(3000));
  writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(root, 'usr/bin/tool'), randomBytes(50000));
  chmodSync(join(root, 'usr/bin/tool'), 0o755);
  writeFileSync(join(root, 'home/pi/.bashrc'), 'PS1=x\n');
  symlinkSync('/usr/lib/systemd/system/ssh.service', join(root, 'etc/systemd/system/multi-user.target.wants/ssh.service'));
  writeFileSync(join(root, 'usr/lib/systemd/system/ssh.service'), '[Service]\nExecStart=/usr/sbin/sshd\n');
  if (layout.beagle) {
    writeFileSync(join(root, 'usr/lib/systemd/system/bb-usb-gadgets.service'), '[Service]\nExecStart=/usr/bin/bb-start-usb-gadgets\n');
    symlinkSync('/lib/systemd/system/serial-getty@.service', join(root, 'etc/systemd/system/getty.target.wants/serial-getty@ttyGS0.service'));
  }
  const ext = layout.parts.find((p) => p[3] === 'ext4');
  const fat = layout.parts.find((p) => p[3] === 'fat');
  const img = join(WORK, `${name}.img`);
  // Noise in the gaps (where a BeagleBone keeps MLO/u-boot), in the raw partitions and in the
  // tail: make-image must leave it as it is. Filesystem partitions start as zeros (and compress).
  const bytes = Buffer.alloc(layout.totalMiB * MiB);
  let at = SECTOR;
  for (const [start, size, , fs] of layout.parts) {
    randomBytes(start * SECTOR - at).copy(bytes, at);
    if (fs === 'raw') randomBytes(size * SECTOR).copy(bytes, start * SECTOR);
    at = (start + size) * SECTOR;
  }
  randomBytes(bytes.length - at).copy(bytes, at);
  writeFileSync(img, bytes);
  must('sfdisk', ['--quiet', '--no-reread', img], { input: `label: dos\n${layout.parts.map((p) => `start=${p[0]}, size=${p[1]}, type=${p[2]}`).join('\n')}\n` });
  if (fat) {
    const boot = join(dir, 'boot');
    mkdirSync(join(boot, 'overlays'), { recursive: true });
    writeFileSync(join(boot, 'config.txt'), layout.beagle ? '' : '# stock\narm_64bit=1\n\n[cm4]\notg_mode=1\n');
    writeFileSync(join(boot, 'cmdline.txt'), 'console=serial0,115200 root=PARTUUID=0-02 rootwait\n');
    writeFileSync(join(boot, 'overlays/dwc2.dtbo'), randomBytes(1500));
    const fatImg = join(dir, 'boot.fat');
    writeFileSync(fatImg, Buffer.alloc(fat[1] * SECTOR));
    must('mkfs.vfat', ['-n', 'BOOTFS', fatImg]);
    must('mcopy', ['-s', '-i', fatImg, join(boot, 'config.txt'), join(boot, 'cmdline.txt'), join(boot, 'overlays'), '::/']);
    must('dd', [`if=${fatImg}`, `of=${img}`, `bs=${SECTOR}`, `seek=${fat[0]}`, 'conv=notrunc', 'status=none']);
  }
  if (ext) {
    const extImg = join(dir, 'root.ext4');
    const mib = rootMiB ?? (ext[1] * SECTOR) / MiB;
    must('mkfs.ext4', ['-q', '-F', '-d', root, extImg, `${mib}M`]);
    must('dd', [`if=${extImg}`, `of=${img}`, `bs=${SECTOR}`, `seek=${ext[0]}`, 'conv=notrunc', 'status=none']);
  }
  return img;
}

/** A fake official Node.js tarball: bin/node is an ELF header of the right machine. */
function nodeTarball(arch: string, padMiB = 0): string {
  const name = `node-v22.12.0-linux-${arch}`;
  const dir = join(WORK, `node-${arch}-${padMiB}`);
  mkdirSync(join(dir, name, 'bin'), { recursive: true });
  mkdirSync(join(dir, name, 'lib/node_modules/npm'), { recursive: true });
  const elf = Buffer.alloc(64 + padMiB * MiB);
  elf.write('\x7fELF', 0, 'latin1');
  elf[4] = arch === 'arm64' ? 2 : 1;
  elf.writeUInt16LE(arch === 'arm64' ? 0xb7 : 0x28, 18);
  if (padMiB > 0) randomBytes(padMiB * MiB).copy(elf, 64);
  writeFileSync(join(dir, name, 'bin/node'), elf);
  chmodSync(join(dir, name, 'bin/node'), 0o755);
  writeFileSync(join(dir, name, 'lib/node_modules/npm/package.json'), '{}');
  const tgz = join(WORK, `${name}.tar.gz`);
  must('tar', ['-C', dir, '-czf', tgz, name]);
  return tgz;
}

const BUNDLE = join(WORK, 'lunbox.js');
writeFileSync(BUNDLE, '#!/usr/bin/env node\n"use strict";\nconsole.log("lunbox test bundle");\n');

function makeImage(args: string[], env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  return sh(MAKE_IMAGE, [...args, '--bundle', BUNDLE], { env });
}

interface Tree { [path: string]: string }
/** path -> 'dir' | 'link:TARGET' | sha256 of the content, for a directory tree on this host. */
function walk(base: string, rel = ''): Tree {
  const out: Tree = {};
  for (const e of readdirSync(join(base, rel))) {
    const r = `${rel}/${e}`;
    const st = lstatSync(join(base, r));
    if (st.isSymbolicLink()) out[r] = `link:${readlinkSync(join(base, r))}`;
    else if (st.isDirectory()) {
      out[r] = 'dir';
      Object.assign(out, walk(base, r));
    } else out[r] = sha(readFileSync(join(base, r)));
  }
  return out;
}
function partOffsets(img: string): Array<{ start: number; size: number }> {
  const pt = JSON.parse(must('sfdisk', ['--json', img])) as { partitiontable: { partitions: Array<{ start: number; size: number }> } };
  return pt.partitiontable.partitions.map((p) => ({ start: p.start * SECTOR, size: p.size * SECTOR }));
}
function extTree(img: string, off: number, tag: string): Tree {
  const d = join(WORK, `rdump-${tag}`);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  must('debugfs', ['-R', `rdump / ${d}`, `${img}?offset=${off}`]);
  return walk(d);
}
function fatTree(img: string, off: number, tag: string): Tree {
  const d = join(WORK, `fat-${tag}`);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  must('mcopy', ['-s', '-n', '-i', `${img}@@${off}`, '::*', d + '/'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return walk(d);
}
function readRange(img: string, start: number, end: number): Buffer {
  const b = Buffer.alloc(end - start);
  const fd = openSync(img, 'r');
  readSync(fd, b, 0, b.length, start);
  closeSync(fd);
  return b;
}
/** Every byte outside the partitions: MBR, gaps (bootloaders), tail. */
function outside(img: string): string {
  const parts = partOffsets(img).sort((a, b) => a.start - b.start);
  const size = lstatSync(img).size;
  const h = createHash('sha256');
  let at = 0;
  for (const p of parts) {
    h.update(readRange(img, at, p.start));
    at = p.start + p.size;
  }
  h.update(readRange(img, at, size));
  return h.digest('hex');
}
function e2stat(img: string, off: number, p: string): { mode: string; uid: string } {
  const s = must('debugfs', ['-R', `stat ${p}`, `${img}?offset=${off}`]);
  return { mode: /Mode:\s+(\d+)/.exec(s)?.[1] ?? '?', uid: /User:\s+(\d+)/.exec(s)?.[1] ?? '?' };
}
function e2cat(img: string, off: number, p: string): string {
  return must('debugfs', ['-R', `cat ${p}`, `${img}?offset=${off}`]);
}

// --- the serial console's runtime: /usr/lib/lunbox/node_modules ------------------------------
const NM = '/usr/lib/lunbox/node_modules';
const A6 = 'linux-arm/node.napi.armv6.node';
const A7 = 'linux-arm/node.napi.armv7.node';
const A8 = 'linux-arm64/node.napi.armv8.node';
/** What node-gyp-build reads to choose a prebuild on a given Node (its platform, arch, arm_version). */
const NODE_ENV: Record<string, NodeJS.ProcessEnv> = {
  [A6]: { npm_config_platform: 'linux', npm_config_arch: 'arm', ARM_VERSION: '6' },
  [A7]: { npm_config_platform: 'linux', npm_config_arch: 'arm', ARM_VERSION: '7' },
  [A8]: { npm_config_platform: 'linux', npm_config_arch: 'arm64' },
};

/**
 * The serialport runtime as installed in a dumped root (`dump`, with its tree `t`): copies of
 * the project's files only; exactly the expected prebuilds; Node's own resolution from the
 * bundle's directory finds serialport there and every dependency of every installed package
 * inside the tree, with no package left over; the installed node-gyp-build picks each prebuild
 * on the Node it is for. Returns the installed paths.
 */
function checkSerialRuntime(dump: string, t: Tree, prebuilds: readonly string[]): string[] {
  const paths = Object.keys(t).filter((p) => p === NM || p.startsWith(`${NM}/`));
  for (const p of paths) {
    if (t[p] === 'dir') continue;
    assert.is(t[p], sha(readFileSync(join(MODULES, p.slice(NM.length)))), `${p} is not a copy of node_modules${p.slice(NM.length)}`);
  }
  const pre = `${NM}/@serialport/bindings-cpp/prebuilds/`;
  assert.equal(paths.filter((p) => p.startsWith(pre) && t[p] !== 'dir').map((p) => p.slice(pre.length)).sort(), [...prebuilds].sort());
  assert.not.ok(paths.some((p) => /\/build(\/|$)/.test(p.slice(NM.length))), 'no build/ directory (node-gyp-build would prefer it)');
  const nm = join(dump, NM);
  assert.is(require.resolve('serialport', { paths: [join(dump, '/usr/lib/lunbox')] }), join(nm, 'serialport/dist/index.js'));
  // Reachability from serialport through Node's resolution = every package installed.
  const installed = paths
    .filter((p) => p.endsWith('/package.json'))
    .map((p) => p.slice(0, -'/package.json'.length))
    .filter((d) => /\/node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(d));
  const reached = new Set<string>();
  const queue = [join(nm, 'serialport')];
  while (queue.length > 0) {
    const dir = queue.shift()!;
    const rel = `/${relative(dump, dir)}`;
    if (reached.has(rel)) continue;
    reached.add(rel);
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pj.dependencies ?? {})) {
      if (dep === 'node-addon-api') continue; // C++ headers for building the addon, left out on purpose
      const main = require.resolve(dep, { paths: [dir] });
      assert.ok(main.startsWith(nm + '/'), `${rel} -> ${dep} resolves outside the installed tree: ${main}`);
      const at = main.lastIndexOf(`/node_modules/${dep}/`);
      queue.push(main.slice(0, at + `/node_modules/${dep}`.length));
    }
  }
  assert.equal([...reached].sort(), installed.sort(), 'installed packages = those serialport needs');
  const addon = join(nm, '@serialport/bindings-cpp');
  const loader = require.resolve('node-gyp-build', { paths: [addon] });
  for (const p of prebuilds) {
    const r = sh(process.execPath, ['-e', 'process.stdout.write(require(process.argv[1]).resolve(process.argv[2]))', loader, addon], { env: { PATH: process.env['PATH'] ?? '', ...NODE_ENV[p] } });
    assert.is(r.status, 0, r.stderr);
    assert.is(relative(join(addon, 'prebuilds'), r.stdout), p, `node-gyp-build's pick for ${JSON.stringify(NODE_ENV[p])}`);
  }
  return paths;
}

/** The paths the overlay brings (files, dirs, links), as absolute image paths. */
function overlayPaths(): Set<string> {
  const s = new Set<string>();
  for (const [p] of Object.entries(walk(ROOTFS))) if (p !== '/README.md') s.add(p);
  return s;
}

test('the tools are installed (Debian packages: fdisk, dosfstools, mtools, e2fsprogs, xz-utils)', () => {
  const missing = Object.entries(TOOLS).filter(([t]) => sh('sh', ['-c', `command -v ${t}`]).status !== 0);
  assert.equal(missing, [], `missing: ${missing.map(([t, p]) => `${t} (Debian package ${p})`).join(', ')}`);
});

// board, image, Node tarball arch, the serialport prebuild that Node loads
const CASES: ReadonlyArray<readonly [string, Layout, string, string]> = [
  ['pi-zero-w', PI_LAYOUT('armhf'), 'armv6l', A6],
  ['pi-zero-2-w', PI_LAYOUT('arm64'), 'arm64', A8],
  ['pi-4', PI_LAYOUT('armhf'), 'armv7l', A7],
  ['pi-5', PI_LAYOUT('arm64'), 'arm64', A8],
  ['beaglebone-black', BBB_LAYOUT, 'armv7l', A7],
];

for (const [boardId, layout, nodeArch, prebuild] of CASES) {
  test(`make-image ${boardId}: bundle, serialport (${prebuild} only), unit, config, boot fragments installed; nothing else changed`, () => {
    const board = boards.find((b) => b.id === boardId);
    assert.ok(board);
    if (!board) return;
    let input = buildImage(boardId, layout);
    const parts = partOffsets(input);
    const extOff = parts[layout.parts.findIndex((p) => p[3] === 'ext4')]!.start;
    const fatOff = parts[layout.parts.findIndex((p) => p[3] === 'fat')]!.start;
    const before = { ext: extTree(input, extOff, `${boardId}-before`), fat: fatTree(input, fatOff, `${boardId}-before`), outside: outside(input) };
    const rawSha = sha(readFileSync(input));
    if (boardId === 'beaglebone-black') {
      // .img.xz input, decompressed on the fly.
      must('xz', ['-0', '-k', '-T0', input]);
      input = `${input}.xz`;
    }
    const inputSha = sha(readFileSync(input));
    const out = join(WORK, `${boardId}-out.img`);
    const r = makeImage([input, boardId, '--node', nodeTarball(nodeArch), '-o', out]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, '[5/9] serial console runtime (serialport)'); // progress shown
    assert.match(r.stderr, `make-image: serialport ${(JSON.parse(readFileSync(join(MODULES, 'serialport/package.json'), 'utf8')) as { version: string }).version} + `);
    assert.match(r.stderr, `-> ${NM}; native: ${prebuild}\n`);
    assert.match(r.stderr, '[9/9] finishing');
    assert.is(sha(readFileSync(input)), inputSha, 'the input image is never modified');
    if (input.endsWith('.xz')) assert.is(sha(readFileSync(input.slice(0, -3))), rawSha);
    assert.is(lstatSync(out).size, layout.totalMiB * MiB);
    assert.ok(!existsSync(`${out}.partial`));

    // Bytes outside the partitions (MBR, bootloader gap, tail) are untouched.
    assert.is(outside(out), before.outside);
    must('e2fsck', ['-fn', `${out}?offset=${extOff}`]);

    // ext4: everything that was there is unchanged; the new paths are lunbox's and only those.
    const after = extTree(out, extOff, `${boardId}-after`);
    for (const [p, v] of Object.entries(before.ext)) assert.is(after[p], v, `changed: ${p}`);
    const runtime = checkSerialRuntime(join(WORK, `rdump-${boardId}-after`), after, [prebuild]);
    assert.ok(runtime.length > 50, `${runtime.length} paths in ${NM}`);
    const allowed = new Set([...overlayPaths(), ...runtime, '/usr/lib/lunbox/lunbox.js', '/opt', '/opt/lunbox', '/opt/lunbox/node', '/opt/lunbox/node/bin', '/opt/lunbox/node/bin/node', '/usr/local', '/usr/local/bin', '/usr/local/bin/lunbox', '/etc/systemd/system/multi-user.target.wants/lunbox.service', ...board.boot.maskUnits.map((u) => `/etc/systemd/system/${u}`)]);
    const added = Object.keys(after).filter((p) => !(p in before.ext));
    for (const p of added) assert.ok(allowed.has(p), `unexpected new path ${p}`);
    for (const p of allowed) assert.ok(p in after, `missing ${p}`);

    // The bundle, the unit, the config, as given; modes and owners right.
    assert.is(after['/usr/lib/lunbox/lunbox.js'], sha(readFileSync(BUNDLE)));
    assert.is(after['/etc/systemd/system/lunbox.service'], sha(readFileSync(join(ROOTFS, 'etc/systemd/system/lunbox.service'))));
    assert.is(after['/etc/lunbox/config.json'], sha(readFileSync(join(ROOTFS, 'etc/lunbox/config.json'))));
    assert.is(after['/etc/systemd/system/multi-user.target.wants/lunbox.service'], 'link:/etc/systemd/system/lunbox.service');
    assert.is(after['/usr/local/bin/lunbox'], 'link:/usr/lib/lunbox/lunbox');
    for (const u of board.boot.maskUnits) assert.is(after[`/etc/systemd/system/${u}`], 'link:/dev/null');
    assert.equal(e2stat(out, extOff, '/usr/lib/lunbox/lunbox-prepare'), { mode: '0755', uid: '0' });
    assert.equal(e2stat(out, extOff, '/opt/lunbox/node/bin/node'), { mode: '0755', uid: '0' });
    assert.equal(e2stat(out, extOff, '/etc/lunbox/config.json'), { mode: '0644', uid: '0' });
    assert.equal(e2stat(out, extOff, '/etc/NetworkManager/conf.d/lunbox-usb0.conf'), { mode: '0644', uid: '0' });
    assert.equal(e2stat(out, extOff, `${NM}/serialport/package.json`), { mode: '0644', uid: '0' });
    assert.equal(e2stat(out, extOff, `${NM}/@serialport/bindings-cpp/prebuilds/${prebuild}`), { mode: '0644', uid: '0' });
    assert.equal(e2stat(out, extOff, `${NM}/@serialport/bindings-cpp/node_modules/@serialport`), { mode: '0755', uid: '0' });
    const modules = e2cat(out, extOff, '/etc/modules-load.d/lunbox.conf').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(modules, [...board.boot.modules]);
    const defaults = e2cat(out, extOff, '/etc/default/lunbox');
    assert.match(defaults, 'LUNBOX_NODE=/opt/lunbox/node/bin/node');
    assert.match(defaults, `LUNBOX_STOCK_GADGETS="${board.boot.stockGadgets.join(' ')}"`);

    // FAT: only config.txt changes, by the board's lines appended under [all].
    const fatAfter = fatTree(out, fatOff, `${boardId}-after`);
    assert.equal(Object.keys(fatAfter).sort(), Object.keys(before.fat).sort());
    for (const [p, v] of Object.entries(before.fat)) if (p !== '/config.txt' || board.boot.configTxt.length === 0) assert.is(fatAfter[p], v, `changed: ${p}`);
    if (board.boot.configTxt.length > 0) {
      const cfg = must('mtype', ['-i', `${out}@@${fatOff}`, '::/config.txt'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
      assert.ok(cfg.startsWith('# stock\narm_64bit=1\n\n[cm4]\notg_mode=1\n'), 'stock config.txt kept as it was');
      assert.match(cfg, /\n\[all\]\ndtoverlay=dwc2,dr_mode=peripheral\n$/);
      // Idempotent: a second run adds nothing more.
      const again = join(WORK, `${boardId}-again.img`);
      const r2 = makeImage([out, boardId, '--node', nodeTarball(nodeArch), '-o', again]);
      assert.is(r2.status, 0, r2.stderr);
      assert.match(r2.stderr, 'already has the board');
      assert.is(must('mtype', ['-i', `${again}@@${fatOff}`, '::/config.txt'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } }), cfg);
      // The runtime is replaced as a whole: the same tree, nothing doubled.
      assert.match(r2.stderr, /removing the serialport runtime an earlier lunbox left \(\d+ files\)/);
      const againTree = extTree(again, extOff, `${boardId}-again`);
      assert.equal(Object.keys(againTree).sort(), Object.keys(after).sort());
      for (const p of runtime) assert.is(againTree[p], after[p], p);
      must('e2fsck', ['-fn', `${again}?offset=${extOff}`]);
      rmSync(again, { force: true });
    }
    rmSync(out, { force: true });
  });
}

test('errors: unknown board, missing partitions, missing tool, no space, wrong Node arch, output = input', () => {
  const pi = buildImage('err-pi', PI_LAYOUT('arm64'));
  const node = nodeTarball('arm64');
  const out = join(WORK, 'err-out.img');
  const unknown = makeImage([pi, 'pi-9', '--node', node, '-o', out]);
  assert.is(unknown.status, 1);
  assert.match(unknown.stderr, "unknown board 'pi-9'; valid: beaglebone-black pi-4 pi-5 pi-zero-2-w pi-zero-w");

  // Only an ext4 partition: a Pi needs its FAT boot partition.
  const noFat = buildImage('err-nofat', { parts: [[2048, 131072, '83', 'ext4']], totalMiB: 66, userland: 'arm64' });
  const nf = makeImage([noFat, 'pi-5', '--node', node, '-o', out]);
  assert.is(nf.status, 1);
  assert.match(nf.stderr, 'has no FAT boot partition (found: 1: ext4 64 MiB)');
  const noExt = buildImage('err-noext', { parts: [[2048, 65536, 'c', 'fat']], totalMiB: 34, userland: 'arm64' });
  const ne = makeImage([noExt, 'pi-5', '--node', node, '-o', out]);
  assert.is(ne.status, 1);
  assert.match(ne.stderr, 'has no ext4 root partition (found: 1: fat 32 MiB)');

  // A PATH without debugfs: the error names the Debian package.
  const bin = join(WORK, 'bin-nodebugfs');
  mkdirSync(bin, { recursive: true });
  for (const t of ['bash', 'env', 'sfdisk', 'mcopy', 'mtype', 'minfo', 'dumpe2fs', 'e2fsck', 'tar', 'node', 'xz', 'dirname', 'basename', 'cat', 'sed', 'ls', 'tr', 'mktemp', 'rm', 'readlink']) {
    const p = must('sh', ['-c', `command -v ${t}`]).trim();
    if (p && !existsSync(join(bin, t))) symlinkSync(p, join(bin, t));
  }
  const nt = makeImage([pi, 'pi-5', '--node', node, '-o', out], { ...process.env, PATH: bin });
  assert.is(nt.status, 1);
  assert.match(nt.stderr, 'missing tool(s): debugfs; install the Debian package(s): e2fsprogs');

  // A 12 MiB root and a 24 MiB node binary.
  const small = buildImage('err-small', PI_LAYOUT('arm64'), 12);
  const ns = makeImage([small, 'pi-5', '--node', nodeTarball('arm64', 24), '-o', out]);
  assert.is(ns.status, 1);
  assert.match(ns.stderr, /not enough free space on the root filesystem: \d+ MiB free, lunbox needs \d+ MiB/);
  assert.ok(!existsSync(out) && !existsSync(`${out}.partial`), 'no output left behind on failure');

  const wrongArch = makeImage([pi, 'pi-zero-w', '--node', nodeTarball('arm64'), '-o', out]);
  assert.is(wrongArch.status, 1);
  assert.match(wrongArch.stderr, 'is for linux-arm64; Raspberry Pi Zero W (armv6) needs linux-armv6l');
  const bitness = makeImage([pi, 'pi-4', '--node', nodeTarball('armv7l'), '-o', out]);
  assert.is(bitness.status, 1);
  assert.match(bitness.stderr, 'is 32-bit but the image is 64-bit (arm64): use linux-arm64');
  // No serialport to install: said before any work is done, with both ways out.
  const empty = join(WORK, 'modules-empty');
  mkdirSync(empty, { recursive: true });
  const ns1 = makeImage([pi, 'pi-5', '--node', node, '-o', out, '--node-modules', empty]);
  assert.is(ns1.status, 1);
  assert.match(ns1.stderr, `no serialport in ${empty}: the board's serial console needs it; run 'npm install' in ${REPO} (or point --node-modules at a node_modules that has it), or give --no-serial-console to build an image without a console`);
  assert.not.match(ns1.stderr, '[1/9]');
  // A serialport whose dependencies were not installed.
  const partial = join(WORK, 'modules-partial');
  mkdirSync(join(partial, 'serialport'), { recursive: true });
  writeFileSync(join(partial, 'serialport/package.json'), readFileSync(join(MODULES, 'serialport/package.json')));
  const ns2 = makeImage([pi, 'pi-5', '--node', node, '-o', out, '--node-modules', partial]);
  assert.is(ns2.status, 1);
  assert.match(ns2.stderr, `make-image: error: serial console runtime: ${partial} is incomplete: serialport needs @serialport/binding-mock, which is not installed (run npm install)`);
  assert.ok(!existsSync(out) && !existsSync(`${out}.partial`), 'no output left behind on failure');
  const both = makeImage([pi, 'pi-5', '--node', node, '-o', out, '--node-modules', MODULES, '--no-serial-console']);
  assert.is(both.status, 1);
  assert.match(both.stderr, 'contradict');

  const same = makeImage([pi, 'pi-4', '--node', node, '-o', pi]);
  assert.is(same.status, 1);
  assert.match(same.stderr, 'is the input image');
});

test('--node distro: no binary copied, first boot installs the package', () => {
  const pi = buildImage('distro', PI_LAYOUT('arm64'));
  const out = join(WORK, 'distro-out.img');
  const r = makeImage([pi, 'pi-5', '-o', out]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, "no --node given: using the image's Node.js package");
  const extOff = partOffsets(out)[1]!.start;
  const defaults = e2cat(out, extOff, '/etc/default/lunbox');
  assert.match(defaults, 'LUNBOX_NODE=/usr/bin/node');
  assert.match(defaults, 'LUNBOX_NODE_FROM=distro');
  assert.not.ok(sh('debugfs', ['-R', 'stat /opt/lunbox/node/bin/node', `${out}?offset=${extOff}`]).stdout.includes('Inode:'));
  rmSync(out, { force: true });
});

test("serialport with the image's own Node on a 32-bit OS; replaced on a rerun; --no-serial-console", () => {
  const pi = buildImage('serial', PI_LAYOUT('armhf'));
  const extOff = partOffsets(pi)[1]!.start;
  const run = (input: string, board: string, tag: string, extra: string[]): { out: string; tree: Tree; stderr: string } => {
    const out = join(WORK, `serial-${tag}.img`);
    const r = makeImage([input, board, '-o', out, ...extra]);
    assert.is(r.status, 0, r.stderr);
    must('e2fsck', ['-fn', `${out}?offset=${extOff}`]);
    return { out, tree: extTree(out, extOff, `serial-${tag}`), stderr: r.stderr };
  };
  // A Pi 4 on 32-bit Raspberry Pi OS with its distro Node: which ARM version that Node was built
  // for is not known here, so both 32-bit builds go in and node-gyp-build chooses on the board.
  const d4 = run(pi, 'pi-4', 'distro-pi4', []);
  assert.match(d4.stderr, `native: ${A6}, ${A7}\n`);
  checkSerialRuntime(join(WORK, 'rdump-serial-distro-pi4'), d4.tree, [A6, A7]);
  // A Pi Zero W's CPU runs armv6 code only.
  const dz = run(pi, 'pi-zero-w', 'distro-zero', []);
  checkSerialRuntime(join(WORK, 'rdump-serial-distro-zero'), dz.tree, [A6]);
  rmSync(dz.out);
  // Rebuilt from the first output with an armv7l Node: the earlier runtime goes, armv6 with it.
  const t7 = run(d4.out, 'pi-4', 'tarball-pi4', ['--node', nodeTarball('armv7l')]);
  assert.match(t7.stderr, 'removing the serialport runtime an earlier lunbox left');
  const rt7 = checkSerialRuntime(join(WORK, 'rdump-serial-tarball-pi4'), t7.tree, [A7]);
  // --no-serial-console: no runtime left; everything else as it was.
  const none = run(t7.out, 'pi-4', 'none', ['--node', nodeTarball('armv7l'), '--no-serial-console']);
  assert.match(none.stderr, '--no-serial-console: no serialport; the ACM port will be there but nothing answers on it');
  const rest = Object.keys(t7.tree).filter((p) => !rt7.includes(p));
  assert.equal(Object.keys(none.tree).sort(), rest.sort());
  for (const p of rest) assert.is(none.tree[p], t7.tree[p], p);
  for (const o of [d4.out, t7.out, none.out]) rmSync(o);
});

test.after(() => rmSync(WORK, { recursive: true, force: true }));

test.run();
