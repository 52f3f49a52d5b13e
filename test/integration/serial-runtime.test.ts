// The bundle laid out as on a board: lunbox.js alone in a directory (/usr/lib/lunbox), then
// with serialport staged beside it in node_modules by scripts/stage-serialport, as make-image
// installs it. Node's own resolution from the bundle's directory must find it there; the shell
// then answers over a real PTY pair (socat), and SIGTERM does not wait for an unread console.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, constants, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE, ROOT, ptyPair, run, tempDir, writeJson } from './helpers';

const STAGE = join(ROOT, 'scripts', 'stage-serialport');
/** The prebuild this machine's Node loads (the VM and CI machines are x86-64 glibc). */
const PREBUILD: Record<string, string> = { x64: 'linux-x64/node.napi.glibc.node', arm64: 'linux-arm64/node.napi.armv8.node' };

const tmp = tempDir('lunbox-serial-runtime-');
const LIB = join(tmp.dir, 'lib', 'lunbox');
const JS = join(LIB, 'lunbox.js');


test('the bundle alone: the serial console names what is missing and where it looked', async () => {
  await run('mkdir', ['-p', LIB]);
  copyFileSync(BUNDLE, JS);
  assert.throws(() => require.resolve('serialport', { paths: [LIB] }), /Cannot find module/, 'no serialport above the test directory');
  const r = await run(process.execPath, [JS, 'console', '-c', 'ls /', '/dev/lunbox-no-such-port'], { env: { NODE_PATH: '' } });
  assert.is(r.code, 1);
  assert.match(r.stderr, `the serial console needs the 'serialport' package in a node_modules beside or above ${LIB} (npm install serialport; scripts/make-image puts it on a board): Cannot find module 'serialport'`);
});

test('serialport staged beside the bundle: found there, addon loaded, the shell answers; SIGTERM with the console unread is quick', async () => {
  const prebuild = PREBUILD[process.arch];
  assert.ok(prebuild, `no known serialport prebuild for ${process.arch}`);
  const st = await run(process.execPath, [STAGE, '--from', join(ROOT, 'node_modules'), '--to', join(LIB, 'node_modules'), '--prebuild', prebuild!]);
  assert.is(st.code, 0, st.stderr);
  assert.is(require.resolve('serialport', { paths: [LIB] }), join(LIB, 'node_modules/serialport/dist/index.js'));
  // serialport is loaded now: opening a missing device fails at the open, not at the require.
  const miss = await run(process.execPath, [JS, 'console', '-c', 'ls /', '/dev/lunbox-no-such-port'], { env: { NODE_PATH: '' } });
  assert.is(miss.code, 1);
  assert.match(miss.stderr, 'cannot open /dev/lunbox-no-such-port');

  const pty = await ptyPair();
  const cfg = writeJson(join(tmp.dir, 'config.json'), { version: 1, backstores: [{ name: 'disk0', type: 'ram', size: '1M' }], console: { device: pty.a } });
  const daemon = spawn(process.execPath, [JS, 'serve', '--config', cfg, '--control', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_PATH: '' } });
  let err = '';
  daemon.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => daemon.on('exit', (c) => r(c)));
  try {
    for (let i = 0; i < 100 && !err.includes(`serial console on ${pty.a}`); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(err, `serial console on ${pty.a}`);
    // The daemon has the addon from the staged tree mapped.
    const maps = (await run('cat', [`/proc/${daemon.pid}/maps`])).stdout;
    assert.match(maps, join(LIB, 'node_modules/@serialport/bindings-cpp/prebuilds', prebuild!));

    const r = await run(process.execPath, [JS, 'console', '-c', 'ls /', pty.b], { timeoutMs: 15_000, env: { NODE_PATH: '' } });
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /o- disk0 \.+ \[\(1MiB\)/);

    // The other end sends commands and reads nothing: the answers pile up (socat stops reading
    // when its write to the unread PTY blocks). SIGTERM must not wait for them.
    const fd = openSync(pty.b, constants.O_RDWR | constants.O_NOCTTY);
    for (let i = 0; i < 300; i++) writeSync(fd, 'ls /\r');
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    daemon.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    const ms = Date.now() - t0;
    closeSync(fd);
    assert.is(code, 0, err);
    assert.ok(ms < 3000, `SIGTERM took ${ms} ms`);
    assert.not.match(err, 'did not finish within');
  } finally {
    daemon.kill('SIGKILL');
    pty.proc.kill();
  }
});

test.after(() => tmp.cleanup());

test.run();
