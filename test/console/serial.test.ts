// The serial console over an in-memory port shaped like serialport's SerialPort on a tty: the
// shell answers on it, output goes out one bounded write at a time, and stopping never waits
// for a computer that does not read.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EventEmitter } from 'node:events';
import { ConfigModel } from '../../src/console/model';
import { PortOutput, SerialConsole } from '../../src/console/serial';
import type { SerialPortLike } from '../../src/console/serial';

/**
 * A tty as the kernel keeps it: `room` characters of output buffer, which the computer empties
 * when `reading`. A write that does not fit stays pending until there is room and something
 * wakes the writer. The two kinds of port differ where it matters:
 * - 'uart': a flush empties the buffer and wakes the writer; a close with output left waits
 *   for it to be sent (closing_wait), i.e. never here;
 * - 'gadget' (u_serial's ttyGS0): a flush leaves the buffer as it is (no flush_buffer); a close
 *   with output left waits until the host reads it or the gadget is unbound (disconnect()).
 */
class FakePort extends EventEmitter implements SerialPortLike {
  readonly calls: string[] = [];
  readonly written: string[] = [];
  unsent = 0;
  unsentAtClose = -1;
  /** Writes handed over while another was still in flight. */
  overlaps = 0;
  isOpen = false;
  private pending: { left: number; cb: () => void } | undefined;
  private closeCb: (() => void) | undefined;
  constructor(
    readonly o: { kind: 'uart' | 'gadget'; reading: boolean; room?: number; flushAnswers?: boolean; openFails?: boolean; openDelayMs?: number },
  ) {
    super();
    setTimeout(() => {
      if (o.openFails) return void this.emit('error', new Error('Error: No such file or directory, cannot open /dev/ttyGS0'));
      this.isOpen = true;
      this.emit('open');
    }, o.openDelayMs ?? 0);
  }
  write(data: string | Buffer, cb?: (err: Error | null | undefined) => void): boolean {
    this.calls.push('write');
    this.written.push(data.toString());
    if (this.pending) this.overlaps++;
    this.pending = { left: data.length, cb: () => cb?.(null) };
    this.drain();
    return true;
  }
  private drain(): void {
    const p = this.pending;
    if (!p) return;
    const n = this.o.reading ? p.left : Math.min((this.o.room ?? 8192) - this.unsent, p.left);
    p.left -= n;
    if (!this.o.reading) this.unsent += n;
    if (p.left === 0) {
      this.pending = undefined;
      setImmediate(p.cb);
    }
  }
  flush(cb?: (err: Error | null) => void): void {
    this.calls.push('flush');
    if (this.o.flushAnswers === false) return;
    setImmediate(() => {
      if (this.o.kind === 'uart') {
        this.unsent = 0;
        this.drain();
      }
      cb?.(null);
    });
  }
  close(cb?: (err: Error | null) => void): void {
    this.calls.push('close');
    this.unsentAtClose = this.unsent;
    this.isOpen = false;
    this.closeCb = () => cb?.(null);
    if (this.unsent === 0) setImmediate(() => this.closeCb?.());
  }
  /** The gadget is unbound: a ttyGS0 close stops waiting. */
  disconnect(): void {
    if (this.o.kind === 'gadget') setImmediate(() => this.closeCb?.());
  }
}

const model = (): ConfigModel =>
  new ConfigModel({
    config: { version: 1, backstores: [{ name: 'disk0', type: 'ram', size: 1 << 20 }] },
    runtime: { apply: async () => ({ changes: [], notes: [] }), sessions: () => [] },
  });

function setup(portOpts: FakePort['o'] = { kind: 'uart', reading: true }, extra: { stopWaitMs?: number; retryMs?: number } = {}) {
  const ports: FakePort[] = [];
  const logs: string[] = [];
  const con = new SerialConsole(model(), {
    device: '/dev/ttyGS0',
    banner: 'lunbox test shell',
    factory: () => {
      const p = new FakePort(portOpts);
      ports.push(p);
      return p;
    },
    log: (level, m) => logs.push(`${level}: ${m}`),
    ...extra,
  });
  con.start();
  return { con, ports, logs, warnings: () => logs.filter((l) => l.startsWith('warn')) };
}
const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));
const timed = async (f: () => Promise<void>): Promise<number> => {
  const t0 = Date.now();
  await f();
  return Date.now() - t0;
};
/** What stop did after the last write: flushes (one per pending write), then flush, close. */
function assertStopCalls(p: FakePort): void {
  const after = p.calls.slice(p.calls.lastIndexOf('write') + 1);
  assert.equal(after.slice(-2), ['flush', 'close'], after.join(' '));
  assert.ok(after.every((c) => c === 'flush' || c === 'close'), after.join(' '));
}
/** Send `n` commands from the computer, whose answers fill the port when it does not read. */
async function flood(p: FakePort, n = 200): Promise<void> {
  for (let i = 0; i < n; i++) p.emit('data', Buffer.from('ls /\r'));
  await tick(100);
}

test('the shell answers on the port: banner on open, a command typed gets its output', async () => {
  const { con, ports, warnings } = setup();
  await tick();
  const port = ports[0]!;
  assert.match(port.written.join(''), 'lunbox test shell');
  port.written.length = 0;
  port.emit('data', Buffer.from('ls /\r'));
  await tick(50);
  assert.match(port.written.join(''), /o- disk0 \.+ \[\(1MiB\) deactivated\]/);
  await con.stop();
  await con.closed();
  assertStopCalls(port);
  assert.is(port.unsentAtClose, 0);
  assert.equal(warnings(), []);
});

test('output goes out one write at a time, at most 4096 characters each; the rest waits in lunbox', async () => {
  const { con, ports } = setup({ kind: 'uart', reading: false });
  await tick();
  const port = ports[0]!;
  await flood(port);
  assert.is(port.unsent, 8192, 'the port buffer is full');
  assert.is(port.overlaps, 0);
  assert.ok(port.written.every((w) => w.length <= 4096));
  assert.ok(port.written.join('').length < 8192 + 4096, `${port.written.join('').length} characters handed to the port`);
  await con.stop();
});

test('UART not read: stop discards the backlog with no write after it, so the close has nothing to send', async () => {
  const { con, ports, warnings } = setup({ kind: 'uart', reading: false });
  await tick();
  const port = ports[0]!;
  await flood(port);
  assert.ok((await timed(() => con.stop())) < 1000);
  assert.ok((await timed(() => con.closed())) < 100);
  assert.is(port.unsentAtClose, 0);
  assertStopCalls(port);
  assert.equal(warnings(), []);
  // Input arriving after the stop is not answered.
  const n = port.calls.length;
  port.emit('data', Buffer.from('ls /\r'));
  await tick(30);
  assert.is(port.calls.length, n);
});

test('ttyGS0 not read: stop only begins the close; unbinding the gadget ends it; closed() then returns', async () => {
  const { con, ports, warnings } = setup({ kind: 'gadget', reading: false }, { stopWaitMs: 300 });
  await tick();
  const port = ports[0]!;
  await flood(port);
  // The flush cannot empty a gadget port: stop gives the pending write half a second, then
  // closes and returns; nothing is written after the close.
  assert.ok((await timed(() => con.stop())) < 1000);
  assert.is(port.calls.at(-1), 'close');
  assert.is(port.unsentAtClose, 8192);
  port.disconnect(); // what the daemon's USB teardown does next
  assert.ok((await timed(() => con.closed())) < 100);
  assert.equal(warnings(), []);
  assert.is(port.calls.at(-1), 'close');
});

test('ttyGS0 not read and never unbound: closed() gives up after stopWaitMs with a warning', async () => {
  const { con, ports, warnings } = setup({ kind: 'gadget', reading: false }, { stopWaitMs: 100 });
  await tick();
  await flood(ports[0]!);
  await con.stop();
  const ms = await timed(() => con.closed());
  assert.ok(ms >= 90 && ms < 1000, `closed() took ${ms} ms`);
  assert.equal(warnings(), ['warn: serial console /dev/ttyGS0: close did not finish within 100 ms; not waiting for it']);
});

test('a flush that never returns: the close is still issued, with a warning', async () => {
  const { con, ports, warnings } = setup({ kind: 'uart', reading: true, flushAnswers: false }, { stopWaitMs: 100 });
  await tick();
  assert.ok((await timed(() => con.stop())) < 1000);
  await con.closed();
  assertStopCalls(ports[0]!);
  assert.equal(warnings(), ['warn: serial console /dev/ttyGS0: flush did not finish within 100 ms; closing anyway']);
});

test('stopped while the port is still opening: closed once open (an open ttyGS0 blocks the gadget removal)', async () => {
  const { con, ports } = setup({ kind: 'gadget', reading: true, openDelayMs: 50 });
  await con.stop();
  await con.closed();
  const port = ports[0]!;
  assert.equal(port.calls, ['flush', 'close'], 'no banner, no session: just closed');
  const failing = setup({ kind: 'gadget', reading: true, openFails: true }, { retryMs: 10 });
  await failing.con.stop();
  await failing.con.closed();
  await tick(40);
  assert.equal(failing.ports.length, 1, 'not reopened after stop');
  assert.equal(failing.ports[0]!.calls, []);
});

test('a port that closes by itself is reopened; after stop it is not', async () => {
  const { con, ports } = setup({ kind: 'uart', reading: true }, { retryMs: 10 });
  await tick();
  ports[0]!.emit('close');
  await tick(40);
  assert.is(ports.length, 2);
  await con.stop();
  ports[1]!.emit('close');
  await tick(40);
  assert.is(ports.length, 2);
});

test('pause for a gadget rebuild: a last note, the close begun (the unbind ends it), no reopening; resume opens a new session', async () => {
  const { con, ports, warnings } = setup({ kind: 'gadget', reading: true }, { retryMs: 10, stopWaitMs: 300 });
  await tick();
  const old = ports[0]!;
  old.written.length = 0;
  await con.pause('[rebuilding]');
  assert.equal(old.written, ['[rebuilding]'], 'the note is the last output');
  assert.is(old.calls.at(-1), 'close');
  old.disconnect();
  assert.ok((await timed(() => con.closed())) < 100);
  // Closed while paused: not reopened, and input to the old port gets no answer.
  old.emit('close');
  old.emit('data', Buffer.from('ls /\r'));
  await tick(40);
  assert.is(ports.length, 1);
  assert.equal(old.written, ['[rebuilding]']);
  con.resume();
  await tick();
  assert.is(ports.length, 2);
  const port = ports[1]!;
  assert.match(port.written.join(''), 'lunbox test shell', 'a new session with its banner');
  port.emit('data', Buffer.from('ls /\r'));
  await tick(50);
  assert.match(port.written.join(''), /o- disk0/);
  // A stop after that closes the new port, once.
  await con.stop();
  await con.closed();
  assert.equal(port.calls.filter((c) => c === 'close'), ['close']);
  assert.equal(old.calls.filter((c) => c === 'close'), ['close']);
  assert.equal(warnings(), []);
});

test('pause while the port is away (retrying): no reopen until resume; stop while paused closes nothing twice', async () => {
  const { con, ports } = setup({ kind: 'gadget', reading: true, openFails: true }, { retryMs: 10 });
  await tick(5);
  await con.pause();
  const n = ports.length;
  await tick(40);
  assert.is(ports.length, n, 'the retry timer is off while paused');
  con.resume();
  await tick(5);
  assert.is(ports.length, n + 1, 'resume tries at once');
  await con.pause();
  await con.stop();
  con.resume(); // after stop: nothing
  await tick(40);
  assert.is(ports.length, n + 1);
  assert.ok(ports.every((p) => p.calls.length === 0), 'a port that never opened is never closed');
});

// --- PortOutput on its own ---------------------------------------------------------------------

function recorder() {
  const writes: string[] = [];
  const cbs: (() => void)[] = [];
  const port = {
    write: (d: string | Buffer, cb?: (err: Error | null | undefined) => void): boolean => {
      writes.push(d.toString());
      cbs.push(() => cb?.(null));
      return true;
    },
  };
  return { writes, port, complete: () => cbs.shift()?.() };
}

test('PortOutput: one write in flight, queued text joined up to 4096 characters per write', () => {
  const r = recorder();
  const out = new PortOutput(r.port);
  out.write('a');
  out.write('b');
  out.write('c'.repeat(5000));
  assert.equal(r.writes, ['a']);
  assert.ok(out.busy);
  r.complete();
  assert.equal(r.writes.slice(1), ['b' + 'c'.repeat(4095)]);
  r.complete();
  assert.equal(r.writes.slice(2), ['c'.repeat(905)]);
  let idle = false;
  out.whenIdle(() => (idle = true));
  assert.not.ok(idle);
  r.complete();
  assert.ok(idle);
  assert.not.ok(out.busy);
});

test('PortOutput: a surrogate pair is never split between writes', () => {
  const r = recorder();
  const out = new PortOutput(r.port);
  out.write('x');
  out.write('y'.repeat(4095) + '😀z');
  r.complete();
  assert.is(r.writes[1], 'y'.repeat(4095)); // 4096 characters would end in half of the emoji
  r.complete();
  assert.is(r.writes[2], '😀z');
});

test('PortOutput: beyond maxQueued output is dropped, and a note says how much once it drains', () => {
  const r = recorder();
  const out = new PortOutput(r.port, 100);
  out.write('first');
  for (let i = 0; i < 30; i++) out.write('0123456789');
  r.complete(); // 'first' done; ten strings (100) were queued, twenty dropped
  assert.is(r.writes[1], '0123456789'.repeat(10));
  r.complete();
  assert.match(r.writes[2] ?? '', '[lunbox: 200 characters of output dropped: nothing was reading this port]');
});

test('PortOutput: stop discards the queue and writes nothing more', () => {
  const r = recorder();
  const out = new PortOutput(r.port);
  out.write('a');
  out.write('b');
  out.stop();
  out.write('c');
  r.complete();
  assert.equal(r.writes, ['a']);
  assert.not.ok(out.busy);
});

test.run();
