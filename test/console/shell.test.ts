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

test('help on every node; CD-ROM medium change and SBP-2 say "not yet"', async () => {
  const { ok, run } = setup();
  await buildTree(ok);
  for (const p of ['/', '/backstores', '/backstores/ram', '/backstores/ram/r0', '/iscsi', `/iscsi/${IQN}`, `/iscsi/${IQN}/tpg1`, `/iscsi/${IQN}/tpg1/luns`, `/iscsi/${IQN}/tpg1/luns/lun0`, `/iscsi/${IQN}/tpg1/acls/${INI}`, `/iscsi/${IQN}/tpg1/acls/${INI}/mapped_lun0`, `/iscsi/${IQN}/tpg1/portals/127.0.0.1:3296`, '/usb', '/usb/gadget', '/usb/luns', '/sbp2']) {
    const out = await ok(`${p} help`);
    assert.match(out, /Commands here: /, p);
  }
  assert.match(await ok('help create'), /usage: create/);
  const cd = await run(`/iscsi/${IQN}/tpg1/luns/lun0 changemedium /srv/new.iso`);
  assert.not.ok(cd.ok);
  assert.match(cd.output, /not yet: CD-ROM/);
  const sbp = await run('/sbp2 create');
  assert.not.ok(sbp.ok);
  assert.match(sbp.output, /not yet/);
});

test('USB gadget and LUNs are kept in the config (not live yet)', async () => {
  const { ok, model } = setup();
  await ok('/backstores/ram create r0 1M');
  await ok('/usb/gadget set attribute vendorId=0x1234 product="My Disk"');
  const out = await ok('/usb/luns create r0 readOnly=true');
  assert.match(out, /not yet live/);
  assert.equal(model.config.usb, { gadget: { vendorId: 0x1234, product: 'My Disk' }, luns: [{ lun: 0, backstore: 'r0', readOnly: true }] });
  assert.is(await ok('/usb/gadget get attribute vendorId'), 'vendorId=0x1234');
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

test.run();
