// The dependency-free serial port over a real pseudo-terminal pair (socat), as the board's
// ACM console uses it when the native serialport addon is not installed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { TtyPort } from '../../src/console/tty-port';

function ptyPair(): Promise<{ a: string; b: string; stop: () => void }> {
  const p = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socat gave no PTYs: ${err}`)), 5000);
    p.on('error', (e) => reject(new Error(`socat is needed (apt-get install socat): ${e.message}`)));
    p.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const ptys = [...err.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((m) => m[1] ?? '');
      if (ptys.length === 2) {
        clearTimeout(t);
        resolve({ a: ptys[0] ?? '', b: ptys[1] ?? '', stop: () => p.kill() });
      }
    });
  });
}

test('TtyPort opens a tty without serialport, reads and writes both ways, closes', async () => {
  const pty = await ptyPair();
  try {
    const port = new TtyPort(pty.a, 115200);
    await new Promise<void>((resolve, reject) => {
      port.once('open', () => resolve());
      port.once('error', reject);
    });
    assert.ok(port.isOpen);
    const got = new Promise<string>((resolve) => port.once('data', (d: Buffer) => resolve(d.toString())));
    const other = openSync(pty.b, 'r+');
    writeSync(other, 'ls /\r');
    assert.is(await got, 'ls /\r', 'bytes from the far end arrive unchanged (raw mode)');
    await new Promise<void>((r) => port.write('lunbox> ', () => r()));
    const buf = Buffer.alloc(64);
    const n = readSync(other, buf, 0, buf.length, null);
    assert.is(buf.subarray(0, n).toString(), 'lunbox> ');
    closeSync(other);
    await new Promise<void>((r) => port.close(() => r()));
    assert.not.ok(port.isOpen);
  } finally {
    pty.stop();
  }
});

test('TtyPort reports a missing device as an error, not a throw', async () => {
  const port = new TtyPort('/dev/lunbox-no-such-tty', 115200);
  const err = await new Promise<Error>((resolve) => port.once('error', resolve));
  assert.match(err.message, /ENOENT/);
});

test.run();
