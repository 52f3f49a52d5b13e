// The shell as a pure interpreter over the config model: a fake runtime records what
// would be applied live; no sockets.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LunboxConfig } from '../../src/config';
import { ConfigModel } from '../../src/console/model';
import type { ShellRuntime } from '../../src/console/model';
import { Shell } from '../../src/console/shell';
import { withOverrides } from '../../src/cli/main';

const IQN = 'iqn.2026-11.org.lunbox:t1';
const INI = 'iqn.1993-08.org.debian:01:abc';

function fakeRuntime(fail?: (c: LunboxConfig) => string | undefined) {
  const applied: LunboxConfig[] = [];
  const rt: ShellRuntime = {
    async apply(next) {
      const why = fail?.(next);
      if (why) throw new Error(why);
      applied.push(structuredClone(next));
      return { changes: ['changed'], notes: [] };
    },
    sessions: () => [{ initiator: 'iqn.1994-05.com.redhat:live', target: IQN, connections: 1 }],
  };
  return { rt, applied };
}

function setup(config: LunboxConfig = { version: 1, backstores: [] }, fail?: (c: LunboxConfig) => string | undefined) {
  const { rt, applied } = fakeRuntime(fail);
  const model = new ConfigModel({ config, runtime: rt });
  const shell = new Shell(model);
  const run = async (line: string) => {
    const r = await shell.exec(line);
    return r;
  };
  const ok = async (line: string) => {
    const r = await shell.exec(line);
    assert.ok(r.ok, `${line} -> ${r.output}`);
    return r.output;
  };
  return { shell, model, applied, run, ok };
}

async function buildTree(ok: (l: string) => Promise<string>) {
  await ok('cd /backstores/ram');
  await ok('create r0 64M');
  await ok('/iscsi create ' + IQN);
  await ok(`cd /iscsi/${IQN}/tpg1/luns`);
  await ok('create r0');
  await ok(`../acls create ${INI}`);
  await ok(`../portals create 127.0.0.1:3296`);
}

test('create a backstore, target, LUN, ACL and portal; each change applied live', async () => {
  const { ok, model, applied } = setup();
  await buildTree(ok);
  const t = model.config.iscsi!.targets[0]!;
  assert.equal(model.config.backstores, [{ name: 'r0', type: 'ram', size: '64M' }]);
  assert.is(t.iqn, IQN);
  assert.equal(t.luns, [{ lun: 0, backstore: 'r0' }]);
  assert.equal(t.acls, [{ initiator: INI }]);
  assert.equal(t.portals, [{ address: '127.0.0.1', port: 3296 }]);
  assert.is(applied.length, 5);
  assert.equal(applied[4], model.config);
  assert.ok(model.dirty);
});

test('ls draws the tree with summaries, like targetcli', async () => {
  const { ok } = setup();
  await buildTree(ok);
  const out = await ok('ls /');
  assert.match(out, /^o- \/ \.+ \[\.\.\.\]$/m);
  assert.match(out, /^  \| o- ram \.+ \[Storage Objects: 1\]$/m);
  assert.match(out, /^  \|   o- r0 \.+ \[\(64MiB\) activated\]$/m);
  assert.match(out, new RegExp(`o- ${IQN.replace(/\./g, '\\.')} \\.+ \\[TPGs: 1\\]`));
  assert.match(out, /o- lun0 \.+ \[ram\/r0\]/);
  assert.match(out, /o- sbp2 \.+ \[not yet/);
  for (const line of out.split('\n')) assert.ok(line.length <= 80, line);
  assert.match(await ok('ls /backstores 1'), /^o- backstores[^\n]*\n  o- block/);
});

test('a change the config rejects leaves everything as it was', async () => {
  const { ok, run, model, applied } = setup();
  await ok('/backstores/ram create r0 64M');
  const r = await run('/backstores/ram create bad 0');
  assert.not.ok(r.ok);
  assert.match(r.output, /refused[\s\S]*backstores\[1\]\.size/);
  assert.is(model.config.backstores.length, 1);
  assert.is(applied.length, 1);
  const dup = await run('/backstores/file create r0 /tmp/x.img 1M');
  assert.not.ok(dup.ok);
  assert.match(dup.output, /exists already/);
});

test('a change the daemon refuses is not kept', async () => {
  const { ok, run, model } = setup(undefined, (c) => (c.backstores.some((b) => b.name === 'nope') ? 'cannot open /dev/nope' : undefined));
  await ok('/backstores/ram create r0 1M');
  const r = await run('/backstores/block create nope /dev/nope');
  assert.not.ok(r.ok);
  assert.match(r.output, /cannot open \/dev\/nope/);
  assert.equal(model.config.backstores.map((b) => b.name), ['r0']);
});

test('CHAP secrets never appear in ls, info, get or set output', async () => {
  const { ok, model } = setup();
  await buildTree(ok);
  const acl = `/iscsi/${IQN}/tpg1/acls/${INI}`;
  const out = await ok(`${acl} set auth userid=alice password=alice-secret-1 mutual_userid=tgt mutual_password=target-secret-1`);
  await ok(`/iscsi/${IQN}/tpg1 set auth userid=t password=tpg-secret-123`);
  const all = [out, await ok('ls /'), await ok('info /'), await ok(`info ${acl}`), await ok(`${acl} get auth`), await ok(`/iscsi/${IQN}/tpg1 get`)].join('\n');
  for (const s of ['alice-secret-1', 'target-secret-1', 'tpg-secret-123']) assert.not.ok(all.includes(s), `leaked ${s}`);
  assert.match(all, /password=\*{8}/);
  assert.is(model.config.iscsi!.targets[0]!.acls![0]!.auth!.password, 'alice-secret-1');
  // Half a CHAP pair is refused with a hint.
  const { run } = setup(model.config);
  const half = await run(`${acl} set auth password=`);
  assert.not.ok(half.ok);
  assert.match(half.output, /userid and password together/);
});

test('set/get attributes and RFC 7143 parameters', async () => {
  const { ok, run, model } = setup();
  await buildTree(ok);
  await ok('/backstores/ram/r0 set attribute blockSize=4096 readOnly=yes vendor=ACME');
  const b = model.config.backstores[0]!;
  assert.is(b.blockSize, 4096);
  assert.is(b.readOnly, true);
  assert.is(await ok('/backstores/ram/r0 get attribute blockSize vendor'), 'blockSize=4096\nvendor=ACME');
  await ok(`/iscsi/${IQN}/tpg1 set parameter MaxBurstLength=1048576 HeaderDigest=CRC32C,None ImmediateData=No`);
  assert.equal(model.config.iscsi!.targets[0]!.params, { maxBurstLength: 1048576, headerDigest: ['CRC32C', 'None'], immediateData: false });
  await ok(`/iscsi/${IQN}/tpg1 set parameter MaxBurstLength= HeaderDigest= ImmediateData=`);
  assert.is(model.config.iscsi!.targets[0]!.params, undefined);
  await ok(`/iscsi/${IQN}/tpg1 set attribute demoMode=true`);
  assert.is(model.config.iscsi!.targets[0]!.demoMode, true);
  const bad = await run('/backstores/ram/r0 set attribute blockSize=777');
  assert.not.ok(bad.ok);
  assert.match(bad.output, /blockSize/);
  assert.not.ok((await run('/backstores/ram/r0 set attribute colour=red')).ok);
});

test('delete: a used backstore is refused; deleting a LUN removes its mapped LUNs', async () => {
  const { ok, run, model } = setup();
  await buildTree(ok);
  const acl = `/iscsi/${IQN}/tpg1/acls/${INI}`;
  await ok('/backstores/ram create r1 1M');
  await ok(`/iscsi/${IQN}/tpg1/luns create /backstores/ram/r1 5`);
  await ok(`${acl} create 7 5 readOnly=true`);
  assert.equal(model.config.iscsi!.targets[0]!.acls![0]!.luns, [{ lun: 0 }, { lun: 5 }, { lun: 7, targetLun: 5, readOnly: true }]);
  const r = await run('/backstores/ram delete r1');
  assert.not.ok(r.ok);
  assert.match(r.output, /in use by .*lun5/);
  await ok(`/iscsi/${IQN}/tpg1/luns delete lun5`);
  assert.equal(model.config.iscsi!.targets[0]!.acls![0]!.luns, [{ lun: 0 }]);
  await ok('/backstores/ram delete r1');
  await ok(`/iscsi delete ${IQN}`);
  assert.equal(model.config.iscsi!.targets, []);
});

test('cd, pwd, relative paths, PATH COMMAND form, and a cwd deleted under us', async () => {
  const { shell, ok, run } = setup();
  await buildTree(ok);
  assert.is(await ok('pwd'), `/iscsi/${IQN}/tpg1/luns`);
  await ok('..');
  assert.is(await ok('pwd'), `/iscsi/${IQN}/tpg1`);
  await ok('acls');
  assert.is(shell.pwd, `/iscsi/${IQN}/tpg1/acls`);
  await ok('cd /ISCSI'.toLowerCase());
  await ok(`cd ${IQN.toUpperCase()}`);
  assert.is(shell.pwd, `/iscsi/${IQN}`);
  const r = await run('cd /nowhere');
  assert.not.ok(r.ok);
  assert.match(r.output, /nothing called 'nowhere' in \//);
  await ok(`cd /iscsi/${IQN}/tpg1/luns/lun0`);
  await ok('/iscsi/' + IQN + '/tpg1/luns delete lun0');
  assert.is(shell.pwd, `/iscsi/${IQN}/tpg1/luns`);
  assert.match(shell.prompt, /^lunbox .*luns> $/);
  assert.ok((await shell.exec('exit')).exit);
});

test('help on every node; SBP-2 says "not yet"', async () => {
  const { ok, run } = setup();
  await buildTree(ok);
  for (const p of ['/', '/backstores', '/backstores/ram', '/backstores/ram/r0', '/iscsi', `/iscsi/${IQN}`, `/iscsi/${IQN}/tpg1`, `/iscsi/${IQN}/tpg1/luns`, `/iscsi/${IQN}/tpg1/luns/lun0`, `/iscsi/${IQN}/tpg1/acls/${INI}`, `/iscsi/${IQN}/tpg1/acls/${INI}/mapped_lun0`, `/iscsi/${IQN}/tpg1/portals/127.0.0.1:3296`, '/usb', '/usb/gadget', '/usb/luns', '/sbp2']) {
    const out = await ok(`${p} help`);
    assert.match(out, /Commands here: /, p);
  }
  assert.match(await ok('help create'), /usage: create/);
  const sbp = await run('/sbp2 create');
  assert.not.ok(sbp.ok);
  assert.match(sbp.output, /not yet/);
});

test('USB gadget and LUNs: set and created live (positional or lun=N backstore=NAME); bad input is named', async () => {
  const { ok, run, model, applied } = setup();
  await ok('/backstores/ram create r0 1M');
  await ok('/backstores/ram create r1 1M');
  await ok('/usb/gadget set attribute vendorId=0x1234 product="My Disk"');
  const out = await ok('/usb/luns create r0 readOnly=true');
  assert.match(out, /^created USB lun0 -> r0$/);
  assert.match(await ok('/usb help'), /disconnect and\s+reconnect/);
  assert.not.match(await ok('/usb help'), /next start/);
  assert.match(await ok('help create'), /create lun=N backstore=NAME/);
  assert.equal(model.config.usb, { gadget: { vendorId: 0x1234, product: 'My Disk' }, luns: [{ lun: 0, backstore: 'r0', readOnly: true }] });
  assert.is(await ok('/usb/gadget get attribute vendorId'), 'vendorId=0x1234');
  assert.match(await ok('ls /usb'), /o- gadget \.+ \[1234:0104 My Disk\]/);
  // targetcli-style keys, in any order; the path form of a backstore too.
  assert.is(await ok('/usb/luns create lun=3 backstore=r1'), 'created USB lun3 -> r1');
  assert.is(await ok('/usb/luns create backstore=/backstores/ram/r0 lun=lun5'), 'created USB lun5 -> r0');
  assert.equal(model.config.usb?.luns.map((l) => l.lun), [0, 3, 5]);
  assert.equal(applied[applied.length - 1]?.usb, model.config.usb, 'each one applied to the runtime');
  assert.is(await ok('/usb/luns delete lun3'), 'deleted USB lun3');
  for (const [line, why] of [
    ['/usb/luns create lun=5 backstore=r1', /USB LUN 5 exists already \(it exports r0; delete lun5 first/],
    ['/usb/luns create lun=16 backstore=r1', /LUNs 0\.\.15/],
    ['/usb/luns create lun=x backstore=r1', /LUN 'x': expected a number/],
    ['/usb/luns create backstore=nope', /no backstore 'nope' \(have: r0, r1\)/],
    ['/usb/luns create', /usage: create BACKSTORE \[LUN\].*lun=N backstore=NAME/],
    ['/usb/luns create r1 2 extra', /usage: create BACKSTORE/],
    ['/usb/luns create r1 color=blue', /unknown setting 'color'; valid: readOnly/],
  ] as const) {
    const r = await run(line);
    assert.not.ok(r.ok, line);
    assert.match(r.output, why, `${line} -> ${r.output}`);
  }
  assert.equal(model.config.usb?.luns.map((l) => l.lun), [0, 5], 'refused changes change nothing');
});

test("the runtime's note about the USB host reconnecting is shown; a refused rebuild is an error with the runtime's words", async () => {
  const notes: string[] = [];
  const rt: ShellRuntime = {
    async apply(next) {
      if (next.usb?.gadget?.udc === 'nope.0') throw new Error('usb: the gadget with the new settings did not start: no UDC nope.0. Nothing was changed: the previous gadget is back with LUN 0 (r0)');
      return { changes: [], notes: [...notes] };
    },
  };
  const model = new ConfigModel({ config: { version: 1, backstores: [{ name: 'r0', type: 'ram', size: '1M' }] }, runtime: rt });
  const shell = new Shell(model);
  notes.push('usb: the USB host sees the device disconnect and reconnect with LUN 0 (r0) (LUN 0 (r0) added)');
  const r = await shell.exec('/usb/luns create lun=0 backstore=r0');
  assert.ok(r.ok);
  assert.is(r.output, 'created USB lun0 -> r0\nnote: usb: the USB host sees the device disconnect and reconnect with LUN 0 (r0) (LUN 0 (r0) added)');
  const bad = await shell.exec('/usb/gadget set attribute udc=nope.0');
  assert.not.ok(bad.ok);
  assert.match(bad.output, /^error: usb: the gadget with the new settings did not start: no UDC nope\.0\. Nothing was changed: the previous gadget is back/);
  assert.is(model.config.usb?.gadget, undefined, 'the config keeps what runs');
});

/** A runtime that also changes discs, refusing like a host PREVENT would until forced. */
function cdRuntime() {
  const calls: { name: string; iso: string | null; force: boolean }[] = [];
  const state = { locked: false };
  const rt: ShellRuntime = {
    apply: async () => ({ changes: [], notes: [] }),
    async changeMedium(name, iso, opts) {
      const force = opts.force === true;
      if (state.locked && !force) throw Object.assign(new Error(`${name}: the host prevents medium removal`), { code: 'EPREVENTED' });
      calls.push({ name, iso, force });
      return { forced: state.locked && force };
    },
  };
  return { rt, calls, state };
}

async function cdTree(ok: (l: string) => Promise<string>) {
  await ok('/backstores/file create cd0 /srv/iso/a.iso cdrom=true');
  await ok('/backstores/ram create r0 1M');
  await ok(`/iscsi create ${IQN}`);
  await ok(`/iscsi/${IQN}/tpg1/luns create cd0`);
  await ok(`/iscsi/${IQN}/tpg1/luns create r0`);
  await ok('/usb/luns create cd0');
}

test('changemedium and eject on a CD-ROM LUN: live through the runtime, the config follows', async () => {
  const { rt, calls } = cdRuntime();
  const model = new ConfigModel({ config: { version: 1, backstores: [] }, runtime: rt });
  const shell = new Shell(model);
  const ok = async (line: string) => {
    const r = await shell.exec(line);
    assert.ok(r.ok, `${line} -> ${r.output}`);
    return r.output;
  };
  await cdTree(ok);
  assert.equal(model.config.backstores[0], { name: 'cd0', type: 'file', path: '/srv/iso/a.iso', cdrom: true });
  assert.match(await ok('ls /backstores/file'), /o- cd0 \.+ \[cdrom \/srv\/iso\/a\.iso activated\]/);
  assert.match(await ok(`ls /iscsi/${IQN}/tpg1/luns`), /o- lun0 \.+ \[file\/cd0 cdrom\]/);
  // Listed where it applies: the drive, a LUN exporting it; not at a disk LUN.
  assert.match(await ok(`/iscsi/${IQN}/tpg1/luns/lun0 help`), /Commands here: .*changemedium.*eject/);
  assert.not.match(await ok(`/iscsi/${IQN}/tpg1/luns/lun1 help`), /Commands here: [^\n]*changemedium/);
  assert.match(await ok('help changemedium'), /usage: changemedium \[ISO\] \[force=true\][\s\S]*PREVENT/);

  const out = await ok(`/iscsi/${IQN}/tpg1/luns/lun0 changemedium /srv/iso/b.iso`);
  assert.match(out, /medium \/srv\/iso\/b\.iso inserted in cd0: initiators get UNIT ATTENTION 06\/28\/00/);
  assert.equal(calls, [{ name: 'cd0', iso: '/srv/iso/b.iso', force: false }]);
  assert.is(model.config.backstores[0]!.path, '/srv/iso/b.iso');
  assert.is(model.savedConfig.backstores[0]!.path, '/srv/iso/b.iso', 'saveconfig would keep the new disc');
  assert.ok(model.dirty);

  // From the USB LUN: eject, and changemedium with no ISO ejects too.
  const ej = await ok('/usb/luns/lun0 eject');
  assert.match(ej, /medium ejected from cd0: the tray is open; initiators get NOT READY 02\/3A\/02/);
  assert.is(model.config.backstores[0]!.path, undefined);
  assert.match(await ok('/backstores/file/cd0 changemedium'), /cd0 had no disc; the tray is open/);
  assert.equal(calls.slice(1), [{ name: 'cd0', iso: null, force: false }, { name: 'cd0', iso: null, force: false }]);
  assert.match(await ok('ls /backstores/file'), /\[cdrom \(no disc\) activated\]/);
});

test('changemedium: PREVENT refuses unless force=true; bad input gets a clear message', async () => {
  const { rt, calls, state } = cdRuntime();
  const model = new ConfigModel({ config: { version: 1, backstores: [] }, runtime: rt });
  const shell = new Shell(model);
  const ok = async (line: string) => {
    const r = await shell.exec(line);
    assert.ok(r.ok, `${line} -> ${r.output}`);
    return r.output;
  };
  await cdTree(ok);
  model.dirty = false;
  state.locked = true;
  const refused = await shell.exec('/backstores/file/cd0 changemedium /srv/iso/b.iso');
  assert.not.ok(refused.ok);
  assert.match(refused.output, /^error: cd0: the host has locked the tray \(PREVENT ALLOW MEDIUM REMOVAL.*eject request.*force=true/);
  assert.is(model.config.backstores[0]!.path, '/srv/iso/a.iso', 'nothing changed');
  assert.not.ok(model.dirty);
  const forced = await ok('/backstores/file/cd0 changemedium /srv/iso/b.iso force=true');
  assert.match(forced, /inserted in cd0[\s\S]*note: the host had locked the tray .*changed anyway \(force=true\)/);
  assert.equal(calls, [{ name: 'cd0', iso: '/srv/iso/b.iso', force: true }]);

  const bad = async (line: string, re: RegExp) => {
    const r = await shell.exec(line);
    assert.not.ok(r.ok, line);
    assert.match(r.output, re, line);
  };
  await bad('/backstores/file/cd0 changemedium b.iso', /ISO 'b\.iso': give an absolute path/);
  await bad('/backstores/file/cd0 changemedium /a.iso /b.iso', /usage: changemedium \[ISO\] \[force=true\]/);
  await bad('/backstores/file/cd0 eject /a.iso', /usage: eject \[force=true\]/);
  await bad('/backstores/file/cd0 changemedium /a.iso force=maybe', /force=maybe: expected true or false/);
  await bad('/backstores/file/cd0 changemedium /a.iso colour=red', /usage: changemedium/);
  await bad('/backstores/ram/r0 changemedium /a.iso', /'changemedium' does not apply at \/backstores\/ram\/r0: it works on a CD-ROM backstore or a LUN that exports one \(CD-ROMs: \/backstores\/file\/cd0\)/);
  await bad(`/iscsi/${IQN}/tpg1/luns/lun1 eject`, /does not apply .*CD-ROMs: \/backstores\/file\/cd0/);
  const none = new Shell(new ConfigModel({ config: { version: 1, backstores: [] } }));
  const r = await none.exec('/ changemedium /a.iso');
  assert.match(r.output, /there is no CD-ROM here \(create one: \/backstores\/file create NAME ISO cdrom=true\)/);
  // The same disc change through set attribute path=, refused by the runtime's apply.
  const viaSet = new Shell(
    new ConfigModel({
      config: model.config,
      runtime: {
        apply: async () => {
          throw Object.assign(new Error('cd0: the host prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL); an eject request was sent to it'), { code: 'EPREVENTED' });
        },
      },
    }),
  );
  const r3 = await viaSet.exec('/backstores/file/cd0 set attribute path=/srv/iso/c.iso');
  assert.not.ok(r3.ok);
  assert.match(r3.output, /^error: cd0: the host prevents medium removal .*; changemedium ISO force=true changes it anyway$/);
  // A daemon that cannot change discs says so.
  const old = new Shell(new ConfigModel({ config: model.config, runtime: { apply: async () => ({ changes: [], notes: [] }) } }));
  const r2 = await old.exec('/backstores/file/cd0 eject');
  assert.match(r2.output, /cannot change a medium live/);
});

test('changemedium without a daemon edits the config only; an empty drive is created without an ISO', async () => {
  const model = new ConfigModel({ config: { version: 1, backstores: [] } });
  const shell = new Shell(model);
  assert.ok((await shell.exec('/backstores/file create cd1 cdrom=true')).ok);
  assert.equal(model.config.backstores, [{ name: 'cd1', type: 'file', cdrom: true }]);
  const r = await shell.exec('/backstores/file/cd1 changemedium /srv/c.iso');
  assert.ok(r.ok, r.output);
  assert.match(r.output, /note: no daemon attached/);
  assert.is(model.config.backstores[0]!.path, '/srv/c.iso');
  const disk = await shell.exec('/backstores/file create d1');
  assert.not.ok(disk.ok);
  assert.match(disk.output, /usage: create NAME PATH \[SIZE\] \(a CD-ROM: create NAME \[ISO\] cdrom=true\)/);
});

test('changemedium tab completion: directories and .iso files on the daemon side, force=true', async () => {
  const dirs: Record<string, { name: string; dir: boolean }[]> = {
    '/srv/iso/': [{ name: 'a.iso', dir: false }, { name: 'b.ISO', dir: false }, { name: 'notes.txt', dir: false }, { name: 'old', dir: true }, { name: '.hidden', dir: true }],
    '/': [{ name: 'srv', dir: true }, { name: 'etc', dir: true }],
  };
  const { rt } = cdRuntime();
  const model = new ConfigModel({
    config: { version: 1, backstores: [] },
    runtime: rt,
    listDir: (d) => {
      const l = dirs[d];
      if (!l) throw new Error('ENOENT');
      return l;
    },
  });
  const shell = new Shell(model);
  for (const l of ['/backstores/file create cd0 /srv/iso/a.iso cdrom=true', '/backstores/ram create r0 1M']) assert.ok((await shell.exec(l)).ok);
  assert.ok((await shell.exec('cd /backstores/file/cd0')).ok);
  assert.equal(shell.complete('chan').candidates, ['changemedium']);
  // No word yet: what is beside the disc in the drive, and the force flag.
  assert.equal(shell.complete('changemedium ').candidates, ['/srv/iso/a.iso', '/srv/iso/b.ISO', '/srv/iso/old/', 'force=true']);
  assert.equal(shell.complete('changemedium /srv/iso/').candidates, ['/srv/iso/a.iso', '/srv/iso/b.ISO', '/srv/iso/old/']);
  assert.equal(shell.complete('changemedium /srv/iso/b'), { start: 13, candidates: ['/srv/iso/b.ISO'] });
  assert.equal(shell.complete('changemedium /s').candidates, ['/srv/']);
  assert.equal(shell.complete('changemedium /nowhere/x').candidates, []);
  assert.equal(shell.complete('changemedium /srv/iso/a.iso ').candidates, ['force=true']);
  assert.equal(shell.complete('eject ').candidates, ['force=true']);
  assert.equal(shell.complete('/backstores/file create cd1 /srv/iso/a').candidates, ['/srv/iso/a.iso']);
  assert.ok(shell.complete('/backstores/file create cd1 /srv/iso/a.iso c').candidates.includes('cdrom=true'));
  // Not offered where it does not apply.
  assert.not.ok(shell.complete('/backstores/ram/r0 ').candidates.includes('changemedium'));
});

test('tab completion: commands, paths, groups, keys, values, backstores, live initiators', async () => {
  const { shell, ok } = setup();
  await buildTree(ok);
  await ok('cd /');
  assert.equal(shell.complete('cd /ba'), { start: 3, candidates: ['/backstores/'] });
  assert.equal(shell.complete('cd /backstores/r').candidates, ['/backstores/ram/']);
  assert.equal(shell.complete('ls /iscsi/').candidates, [`/iscsi/${IQN}/`]);
  assert.equal(shell.complete('sa').candidates, ['saveconfig']);
  assert.equal(shell.complete('/backstores/ram/r0 set ').candidates, ['attribute']);
  assert.ok(shell.complete('/backstores/ram/r0 set attribute read').candidates.includes('readOnly='));
  assert.equal(shell.complete('/backstores/ram/r0 set attribute readOnly=t').candidates, ['readOnly=true']);
  await ok(`cd /iscsi/${IQN}/tpg1/luns`);
  assert.equal(shell.complete('create ').candidates, ['r0']);
  assert.equal(shell.complete('delete l').candidates, ['lun0']);
  assert.equal(shell.complete('cd ../p').candidates, ['../portals/']);
  await ok('cd ../acls');
  assert.equal(shell.complete('create ').candidates, ['iqn.1994-05.com.redhat:live']);
  const c = shell.complete('cre');
  assert.equal(c, { start: 0, candidates: ['create'] });
});

test('saveconfig writes atomically with a .bak; restoreconfig applies the file again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-shell-'));
  try {
    const file = join(dir, 'config.json');
    const { rt, applied } = fakeRuntime();
    const model = new ConfigModel({ config: { version: 1, backstores: [] }, runtime: rt, file });
    const shell = new Shell(model);
    assert.ok((await shell.exec('/backstores/ram create r0 1M')).ok);
    assert.match((await shell.exec('saveconfig')).output, /saved to/);
    assert.not.ok(model.dirty);
    assert.ok((await shell.exec('/backstores/ram create r1 1M')).ok);
    assert.ok((await shell.exec('saveconfig')).ok);
    assert.ok(existsSync(`${file}.bak`));
    assert.is(JSON.parse(readFileSync(`${file}.bak`, 'utf8')).backstores.length, 1);
    assert.is(JSON.parse(readFileSync(file, 'utf8')).backstores.length, 2);
    assert.ok((await shell.exec('/backstores/ram delete r1')).ok);
    const r = await shell.exec('restoreconfig');
    assert.ok(r.ok, r.output);
    assert.is(model.config.backstores.length, 2);
    assert.is(applied[applied.length - 1]!.backstores.length, 2);
    const none = new Shell(new ConfigModel({ config: { version: 1, backstores: [] } }));
    const s = await none.exec('saveconfig');
    assert.not.ok(s.ok);
    assert.match(s.output, /saveconfig FILE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('saveconfig writes the file\'s own config plus the shell\'s changes, not serve --listen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-shell-'));
  try {
    const file = join(dir, 'config.json');
    const fromFile: LunboxConfig = {
      version: 1,
      backstores: [{ name: 'r0', type: 'ram', size: '1M' }],
      iscsi: { portals: [{ address: '127.0.0.1', port: 3402 }], targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'r0' }] }] },
    };
    const listen = [{ address: '127.0.0.1', port: 3403 }, { address: '127.0.0.1', port: 3404 }];
    const overlay = (c: LunboxConfig) => withOverrides(c, { listen });
    const { rt, applied } = fakeRuntime();
    const model = new ConfigModel({ config: overlay(fromFile), saved: fromFile, overlay, runtime: rt, file, load: async () => structuredClone(fromFile) });
    const shell = new Shell(model);
    const ok = async (line: string) => {
      const r = await shell.exec(line);
      assert.ok(r.ok, `${line} -> ${r.output}`);
      return r.output;
    };
    const portals = `/iscsi/${IQN}/tpg1/portals`;
    assert.match(await ok(`ls ${portals}`), /127\.0\.0\.1:3403[\s\S]*127\.0\.0\.1:3404/, 'the shell shows what runs');
    await ok('/backstores/ram create r1 2M');
    await ok(`/iscsi/${IQN}/tpg1/luns create r1`);
    assert.match(await ok(`${portals} delete 127.0.0.1:3404`), /new connections to it are refused now/);
    await ok(`${portals} create 127.0.0.1:3405`);
    // Running: the overrides plus the changes.
    const t = model.config.iscsi!.targets[0]!;
    assert.equal(t.portals, [{ address: '127.0.0.1', port: 3403 }, { address: '127.0.0.1', port: 3405 }]);
    assert.equal(applied[applied.length - 1]!.iscsi!.targets[0]!.portals, t.portals);
    // A portal the file has but --listen hid: live now; the file keeps its own version.
    const again = await ok(`${portals} create 127.0.0.1:3402`);
    assert.match(again, /note: saveconfig keeps the file's own version here .*portal 127\.0\.0\.1:3402 exists already/);

    assert.ok((await shell.exec('saveconfig')).ok);
    const saved = JSON.parse(readFileSync(file, 'utf8')) as LunboxConfig;
    assert.equal(saved, model.savedConfig);
    assert.equal(saved.iscsi!.portals, [{ address: '127.0.0.1', port: 3402 }], 'the file\'s own portals');
    assert.equal(saved.iscsi!.targets[0]!.portals, [{ address: '127.0.0.1', port: 3402 }, { address: '127.0.0.1', port: 3405 }], 'plus the one the shell added');
    assert.equal(saved.iscsi!.targets[0]!.luns, [{ lun: 0, backstore: 'r0' }, { lun: 1, backstore: 'r1' }]);
    assert.equal(saved.backstores.map((b) => b.name), ['r0', 'r1']);
    assert.not.match(readFileSync(file, 'utf8'), /340[34]/, 'no --listen portal in the file');
    // restoreconfig: the file again, with the overrides in force again.
    await ok('restoreconfig');
    assert.equal(model.config.iscsi!.targets[0]!.portals, listen);
    assert.equal(model.savedConfig.backstores.map((b) => b.name), ['r0']);
    assert.equal(applied[applied.length - 1]!.iscsi!.portals, listen);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
