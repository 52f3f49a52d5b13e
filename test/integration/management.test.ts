// Management end to end with the real bundle: the shell over a real pseudo-terminal pair
// (socat; the daemon opens one end with serialport, the test types into the other),
// saveconfig + restart, `lunbox console -c` and `lunbox shell -c`, and a LUN added live
// while initiators (libiscsi) are logged in.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MiniInitiator, senseKey } from './mini-initiator';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE, ptyPair, run, startLunbox, tcp, tempDir, writeJson } from './helpers';
import type { Lunbox } from './helpers';

const IQN1 = 'iqn.2026-11.org.lunbox:mgmt1';
const IQN2 = 'iqn.2026-11.org.lunbox:mgmt2';
const HOST = 'iqn.2026-11.org.example:host1';


/** A terminal on the test end of the PTY: type a line, wait for the next prompt. */
async function terminal(path: string) {
  const { SerialPort } = require('serialport') as { SerialPort: new (o: { path: string; baudRate: number }) => NodeJS.EventEmitter & { write(d: string): void; close(cb?: () => void): void } };
  const port = new SerialPort({ path, baudRate: 115200 });
  await new Promise<void>((resolve, reject) => {
    port.once('open', () => resolve());
    port.once('error', reject);
  });
  let out = '';
  port.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const waitFor = async (re: RegExp, from: number, ms = 5000): Promise<string> => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const seen = out.slice(from);
      if (re.test(seen)) return seen;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timed out waiting for ${re} in ${JSON.stringify(out.slice(from))}`);
  };
  return {
    /** Type text (no Enter) and return what came back once it stops changing. */
    async type(text: string): Promise<string> {
      const from = out.length;
      port.write(text);
      await new Promise((r) => setTimeout(r, 300));
      return out.slice(from);
    },
    /** Type a command + Enter; resolve with the output up to the next prompt. */
    async cmd(line: string): Promise<string> {
      const from = out.length;
      port.write(line + '\r');
      const seen = await waitFor(/\r\nlunbox [^\r\n]*> $/, from);
      return seen.replace(/\r\n/g, '\n');
    },
    waitFor: (re: RegExp) => waitFor(re, 0),
    close: () => new Promise<void>((r) => port.close(() => r())),
  };
}

const stripPrompt = (s: string): string => s.split('\n').filter((l) => l.startsWith(' ') || l.startsWith('o-')).join('\n');

test('shell over a PTY: create backstore, target, LUN, ACL; saveconfig; restart; same state; console -c', async () => {
  const { dir, cleanup } = tempDir('lunbox-mgmt-');
  const pty = await ptyPair();
  let lb: Lunbox | undefined;
  try {
    const file = writeJson(join(dir, 'config.json'), {
      version: 1,
      backstores: [{ name: 'r0', type: 'ram', size: '8M' }],
      iscsi: { portals: [{ address: '127.0.0.1', port: 3297 }], targets: [{ iqn: IQN1, luns: [{ lun: 0, backstore: 'r0' }] }] },
    });
    const sock = join(dir, 'control.sock');
    lb = await startLunbox(['--config', file, '--console', pty.a, '--control', sock]);
    assert.is((statSync(sock).mode & 0o777).toString(8), '600', 'control socket is owner-only');
    const term = await terminal(pty.b);
    await term.cmd(''); // a fresh prompt
    // Tab completion and line editing on the serial line.
    const echoed = await term.type('cd /back\t');
    assert.match(echoed, /stores\//);
    await term.cmd('\x15cd /backstores/file');
    assert.match(await term.cmd(`create disk1 ${join(dir, 'disk1.img')} 8M`), /created file backstore disk1/);
    await term.cmd('cd /iscsi');
    assert.match(await term.cmd(`create ${IQN2}`), /created target/);
    await term.cmd(`cd ${IQN2}/tpg1/luns`);
    assert.match(await term.cmd('create disk1'), /created lun0 -> disk1/);
    await term.cmd('cd ../portals');
    // It inherits 127.0.0.1:3297 from /iscsi; a second portal starts listening at once.
    assert.match(await term.cmd('create 127.0.0.1:3297'), /exists already/);
    assert.match(await term.cmd('create 127.0.0.1:3299'), /created portal 127\.0\.0\.1:3299/);
    await term.cmd('cd ../acls');
    assert.match(await term.cmd(`create ${HOST}`), /created ACL/);
    assert.match(await term.cmd(`${HOST} set auth userid=host1 password=host1-secret-long`), /password=\*{8}/);
    // History: up arrow brings back the last command.
    await term.type('\x1b[A');
    const hist = await term.type('\x15');
    void hist;
    assert.match(await term.cmd('saveconfig'), new RegExp(`saved to ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    const before = stripPrompt(await term.cmd('ls /'));
    assert.match(before, /o- disk1 \.+ \[.*disk1\.img \(8MiB\) activated\]/);
    assert.match(before, new RegExp(`o- ${HOST.replace(/\./g, '\\.')} \\.+ \\[Mapped LUNs: all, auth\\]`));
    assert.not.match(before, /host1-secret-long/);
    // The new target is live: the ACL'd initiator sees its LUN, others see nothing.
    const seen = await run('iscsi-ls', ['-s', '-i', HOST, `iscsi://host1%host1-secret-long@127.0.0.1:3299`]);
    assert.match(seen.stdout, new RegExp(`Target:${IQN2}[\\s\\S]*Lun:0`));
    await term.close();

    // Saved: the file has everything, with the old one as .bak; no secret in the daemon's log.
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(saved.backstores.map((b: { name: string }) => b.name), ['r0', 'disk1']);
    assert.ok(existsSync(`${file}.bak`));
    assert.is((statSync(file).mode & 0o777).toString(8), '600');
    assert.is((await lb.stop()), 0);
    assert.not.match(lb.stderr(), /host1-secret-long/);

    // Restart from the saved file: the same tree, read with `lunbox console -c` over the PTY.
    lb = await startLunbox(['--config', file, '--console', pty.a, '--control', sock], { count: 2 });
    const r = await run(process.execPath, [BUNDLE, 'console', pty.b, '-c', 'ls /'], { timeoutMs: 15_000 });
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stdout.trimEnd(), before.trimEnd());
    const bad = await run(process.execPath, [BUNDLE, 'console', pty.b, '-c', 'cd /nowhere'], { timeoutMs: 15_000 });
    assert.is(bad.code, 1);
    assert.match(bad.stdout, /error: no such path/);
    const viaSocket = await run(process.execPath, [BUNDLE, 'shell', '--control', sock, '-c', `ls /iscsi/${IQN2}/tpg1/acls`]);
    assert.is(viaSocket.code, 0);
    assert.match(viaSocket.stdout, /Mapped LUNs: all, auth/);
  } finally {
    await lb?.stop();
    pty.proc.kill();
    cleanup();
  }
});

test('a LUN added live is seen by initiators; a session logged in across the change keeps working', async () => {
  const { dir, cleanup } = tempDir('lunbox-live-');
  let lb: Lunbox | undefined;
  try {
    const file = writeJson(join(dir, 'config.json'), {
      version: 1,
      backstores: [{ name: 'r0', type: 'ram', size: '16M' }],
      iscsi: { portals: [{ address: '127.0.0.1', port: 3298 }], targets: [{ iqn: IQN1, luns: [{ lun: 0, backstore: 'r0' }] }] },
    });
    const sock = join(dir, 'control.sock');
    lb = await startLunbox(['--config', file, '--control', sock]);
    const before = await run('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3298']);
    assert.match(before.stdout, /Lun:0/);
    assert.not.match(before.stdout, /Lun:1/);
    // Load on a logged-in session while the LUN map changes. (libiscsi's iscsi-perf answers the
    // REPORTED LUNS DATA HAS CHANGED attention by reconnecting, and then miscounts its in-flight
    // reads and never exits: its exit status is not asserted. That an existing nexus carries on
    // through the change is shown in test/console/runtime-live.test.ts.)
    const perfProc = spawn('iscsi-perf', ['-t', '3', `iscsi://127.0.0.1:3298/${IQN1}/0`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let perfOut = '';
    perfProc.stdout?.on('data', (d: Buffer) => (perfOut += d.toString()));
    const perf = new Promise<{ stdout: string }>((resolve) => {
      // It may ignore SIGTERM once confused: SIGKILL after a deadline.
      const t = setTimeout(() => perfProc.kill('SIGKILL'), 8_000);
      perfProc.on('exit', () => {
        clearTimeout(t);
        resolve({ stdout: perfOut });
      });
    });
    // And one session held open across the change by a raw initiator: it must get the unit
    // attention on its next command, then see and use the new LUN without logging in again.
    const held = new MiniInitiator('127.0.0.1', 3298, 'iqn.2026-11.org.lunbox:held-session');
    await held.login(IQN1);
    await held.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
    assert.is((await held.command([0, 0, 0, 0, 0, 0])).status, 0);
    await new Promise((r) => setTimeout(r, 1200));
    const shell = (c: string) => run(process.execPath, [BUNDLE, 'shell', '--control', sock, '-c', c]);
    assert.is((await shell('/backstores/ram create r1 8M')).code, 0);
    const add = await shell(`/iscsi/${IQN1}/tpg1/luns create r1`);
    assert.is(add.code, 0, add.stdout);
    const ua = await held.command([0, 0, 0, 0, 0, 0]);
    assert.is(ua.status, 0x02, 'CHECK CONDITION on the next command');
    assert.equal(senseKey(ua.sense), { key: 0x06, asc: 0x3f, ascq: 0x0e }, 'REPORTED LUNS DATA HAS CHANGED');
    const rl = await held.command([0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], { dataIn: 4096 });
    assert.is(rl.status, 0);
    assert.is(rl.data.readUInt32BE(0), 16, 'REPORT LUNS lists two LUNs');
    // A new logical unit starts with a power-on unit attention for every nexus (SAM-5 §6.3).
    const first = await held.command([0, 0, 0, 0, 0, 0], { lun: 1 });
    assert.equal(first.status === 0 ? 'good' : senseKey(first.sense), { key: 0x06, asc: 0x29, ascq: 0x00 }, 'power-on UA from the new LUN');
    assert.is((await held.command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { lun: 1, dataIn: 512 })).status, 0, 'the new LUN reads on the same session');
    assert.is((await held.command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { lun: 0, dataIn: 512 })).status, 0, 'the old LUN still reads');
    held.close();
    const after = await run('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3298']);
    assert.match(after.stdout, /Lun:0[\s\S]*Lun:1\s+Type:DIRECT_ACCESS \(Size:7M\)/);
    const p = await perf;
    assert.match(p.stdout, /iops average/);
    for (const lun of [0, 1]) {
      const rc = await run('iscsi-readcapacity16', [`iscsi://127.0.0.1:3298/${IQN1}/${lun}`]);
      assert.is(rc.code, 0, rc.stderr);
    }
    assert.not.match(lb.stderr(), /<3>/, 'no errors logged');
    // And removed again: it goes away cleanly.
    assert.is((await shell(`/iscsi/${IQN1}/tpg1/luns delete lun1`)).code, 0);
    const gone = await run('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3298']);
    assert.not.match(gone.stdout, /Lun:1/);
    assert.match(lb.stderr(), /live change: iscsi target .* LUNs 0, 1/);
  } finally {
    await lb?.stop();
    cleanup();
  }
});

test('changemedium over the control socket: an iSCSI initiator sees 06/28/00 and the new disc; PREVENT refuses unless forced', async () => {
  const { dir, cleanup } = tempDir('lunbox-cd-');
  let lb: Lunbox | undefined;
  let held: MiniInitiator | undefined;
  const IQN3 = 'iqn.2026-11.org.lunbox:mgmt-cd';
  try {
    // Two "discs": A of 16 blocks of 0xaa, B of 40 blocks whose first block names it.
    const a = join(dir, 'a.iso');
    const b = join(dir, 'b.iso');
    writeFileSync(a, Buffer.alloc(2048 * 16, 0xaa));
    const discB = Buffer.alloc(2048 * 40, 0xbb);
    discB.write('LUNBOX DISC B', 0, 'latin1');
    writeFileSync(b, discB);
    const file = writeJson(join(dir, 'config.json'), {
      version: 1,
      backstores: [{ name: 'cd0', type: 'file', path: a, cdrom: true }],
      iscsi: { portals: [{ address: '127.0.0.1', port: 3401 }], targets: [{ iqn: IQN3, luns: [{ lun: 0, backstore: 'cd0' }] }] },
    });
    const sock = join(dir, 'control.sock');
    lb = await startLunbox(['--config', file, '--control', sock]);
    const shell = (c: string) => run(process.execPath, [BUNDLE, 'shell', '--control', sock, '-c', c]);
    const lunPath = `/iscsi/${IQN3}/tpg1/luns/lun0`;
    const TUR = [0, 0, 0, 0, 0, 0];
    const CAP = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    held = new MiniInitiator('127.0.0.1', 3401, 'iqn.2026-11.org.lunbox:cd-host');
    await held.login(IQN3);
    await held.command(TUR); // the power-on unit attention
    assert.is((await held.command(TUR)).status, 0);
    let cap = await held.command(CAP, { dataIn: 8 });
    assert.equal([cap.data.readUInt32BE(0), cap.data.readUInt32BE(4)], [15, 2048], 'disc A: 16 blocks of 2048 bytes');

    // The host locks the tray (PREVENT ALLOW MEDIUM REMOVAL, PREVENT=1): the change is refused.
    assert.is((await held.command([0x1e, 0, 0, 0, 1, 0])).status, 0);
    const refused = await shell(`${lunPath} changemedium ${b}`);
    assert.is(refused.code, 1);
    assert.match(refused.stdout, /error: cd0: the host has locked the tray \(PREVENT ALLOW MEDIUM REMOVAL.*force=true/);
    // GET EVENT STATUS NOTIFICATION (media class): the refusal asked the host to eject (MMC-6 §6.7.2.5).
    const gesn = await held.command([0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0], { dataIn: 8 });
    assert.is(gesn.data[4]! & 0x0f, 1, 'media event EjectRequest');
    cap = await held.command(CAP, { dataIn: 8 });
    assert.is(cap.data.readUInt32BE(0), 15, 'still disc A');

    // Unlocked: the new disc goes in; the held session gets NOT READY TO READY CHANGE, then disc B.
    assert.is((await held.command([0x1e, 0, 0, 0, 0, 0])).status, 0);
    const swap = await shell(`${lunPath} changemedium ${b}`);
    assert.is(swap.code, 0, swap.stdout);
    assert.match(swap.stdout, /medium .*b\.iso inserted in cd0: initiators get UNIT ATTENTION 06\/28\/00/);
    const ua = await held.command(TUR);
    assert.is(ua.status, 0x02, 'CHECK CONDITION');
    assert.equal(senseKey(ua.sense), { key: 0x06, asc: 0x28, ascq: 0x00 }, 'NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED');
    assert.is((await held.command(TUR)).status, 0);
    cap = await held.command(CAP, { dataIn: 8 });
    assert.equal([cap.data.readUInt32BE(0), cap.data.readUInt32BE(4)], [39, 2048], 'disc B: 40 blocks');
    const rd = await held.command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataIn: 2048 });
    assert.is(rd.status, 0);
    assert.is(rd.data.subarray(0, 13).toString('latin1'), 'LUNBOX DISC B');
    // A new session (libiscsi) sees the drive with the disc in it.
    const inq = await run('iscsi-inq', [`iscsi://127.0.0.1:3401/${IQN3}/0`]);
    assert.match(inq.stdout, /Peripheral Device Type:MMC[\s\S]*Removable:1/);

    // Locked again: eject force=true takes the disc out anyway; the host sees an open tray.
    assert.is((await held.command([0x1e, 0, 0, 0, 1, 0])).status, 0);
    const ej = await shell(`/backstores/file/cd0 eject force=true`);
    assert.is(ej.code, 0, ej.stdout);
    assert.match(ej.stdout, /medium ejected from cd0[\s\S]*note: the host had locked the tray .*force=true/);
    const out = await held.command(TUR);
    assert.equal(senseKey(out.sense), { key: 0x02, asc: 0x3a, ascq: 0x02 }, 'MEDIUM NOT PRESENT - TRAY OPEN');
    assert.match(lb.stderr(), /medium removal was prevented by the host; changed anyway \(force\)/);

    // Disc A back in, saved: the file names it.
    assert.is((await shell(`${lunPath} changemedium ${a}`)).code, 0);
    assert.is(senseKey((await held.command(TUR)).sense).asc, 0x28);
    assert.is((await held.command(CAP, { dataIn: 8 })).data.readUInt32BE(0), 15);
    assert.is((await shell('saveconfig')).code, 0);
    assert.is(JSON.parse(readFileSync(file, 'utf8')).backstores[0].path, a);
    // Bad input: a clear message, exit status 1.
    const rel = await shell(`${lunPath} changemedium b.iso`);
    assert.is(rel.code, 1);
    assert.match(rel.stdout, /give an absolute path/);
    const missing = await shell(`${lunPath} changemedium ${join(dir, 'nope.iso')}`);
    assert.is(missing.code, 1);
    assert.match(missing.stdout, /nope\.iso does not exist/);
    assert.is((await held.command(TUR)).status, 0, 'a failed change leaves disc A in');
  } finally {
    held?.close();
    await lb?.stop();
    cleanup();
  }
});


test('a portal deleted in the shell stops listening at once (sessions stay); saveconfig keeps the file\'s portals, not --listen', async () => {
  const { dir, cleanup } = tempDir('lunbox-portals-');
  let lb: Lunbox | undefined;
  let held: MiniInitiator | undefined;
  const IQN4 = 'iqn.2026-11.org.lunbox:mgmt-portals';
  try {
    const file = writeJson(join(dir, 'config.json'), {
      version: 1,
      backstores: [{ name: 'r0', type: 'ram', size: '8M' }],
      iscsi: { portals: [{ address: '127.0.0.1', port: 3402 }], targets: [{ iqn: IQN4, luns: [{ lun: 0, backstore: 'r0' }] }] },
    });
    const sock = join(dir, 'control.sock');
    lb = await startLunbox(['--config', file, '--listen', '127.0.0.1:3403', '--listen', '127.0.0.1:3404', '--control', sock]);
    const shell = (c: string) => run(process.execPath, [BUNDLE, 'shell', '--control', sock, '-c', c]);
    assert.equal([await tcp(3402), await tcp(3403), await tcp(3404)], ['refused', 'open', 'open'], '--listen replaces the file\'s portal');
    held = new MiniInitiator('127.0.0.1', 3404, 'iqn.2026-11.org.lunbox:portal-host');
    await held.login(IQN4);
    await held.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
    assert.is((await held.command([0, 0, 0, 0, 0, 0])).status, 0);

    const del = await shell(`/iscsi/${IQN4}/tpg1/portals delete 127.0.0.1:3404`);
    assert.is(del.code, 0, del.stdout);
    assert.match(del.stdout, /deleted portal 127\.0\.0\.1:3404/);
    assert.is(await tcp(3404), 'refused', 'a new connection to the deleted portal is refused');
    assert.match((await run('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3403'])).stdout, new RegExp(`Target:${IQN4}[\\s\\S]*Lun:0`), 'the other portal still serves');
    assert.is((await held.command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataIn: 512 })).status, 0, 'the session logged in through it keeps working');
    // SendTargets no longer offers it.
    const disc = await run('iscsi-ls', ['iscsi://127.0.0.1:3403']);
    assert.not.match(disc.stdout, /3404/);

    assert.is((await shell(`/iscsi/${IQN4}/tpg1/portals create 127.0.0.1:3405`)).code, 0);
    assert.is(await tcp(3405), 'open', 'a portal added in the shell listens at once');
    assert.match((await run('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3405'])).stdout, /Lun:0/);
    assert.is((await shell('/backstores/ram create r1 4M')).code, 0);
    assert.is((await shell('saveconfig')).code, 0);
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(saved.iscsi.portals, [{ address: '127.0.0.1', port: 3402 }], 'the file\'s own portal, not --listen');
    assert.equal(saved.iscsi.targets[0].portals, [{ address: '127.0.0.1', port: 3402 }, { address: '127.0.0.1', port: 3405 }], 'plus the shell\'s');
    assert.equal(saved.backstores.map((b: { name: string }) => b.name), ['r0', 'r1']);
    assert.not.match(readFileSync(file, 'utf8'), /340[34]/);
    held.close();
    held = undefined;
    assert.is(await lb.stop(), 0);

    // Restarted from the saved file without --listen: the file's portal and the shell's.
    lb = await startLunbox(['--config', file, '--control', sock]);
    assert.equal([await tcp(3402), await tcp(3403), await tcp(3405)], ['open', 'refused', 'open']);
  } finally {
    held?.close();
    await lb?.stop();
    cleanup();
  }
});

test.run();
