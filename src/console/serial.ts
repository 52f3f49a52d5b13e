// The shell on a serial line: the USB ACM gadget port (/dev/ttyGS0) or a UART. The port
// is opened with `serialport`, an optional native dependency loaded only here, only when a
// console device is configured (a board gets it in /usr/lib/lunbox/node_modules from
// scripts/make-image). The port may come and go (ttyGS0 exists only while the gadget is
// bound; a UART adapter may be unplugged): it is reopened every few seconds.
//
// Stopping never waits for the computer. serialport writes without blocking, but close(2) of
// a tty with unsent output waits for it to drain, in a libuv pool thread that Node's exit
// joins: a UART until its buffer is sent (closing_wait, 30 s), the gadget port ttyGS0 until
// the host reads it, the gadget is unbound, or 15 s pass (u_serial's gs_close). So:
// - output goes out one write at a time (PortOutput): a computer that does not read makes
//   lunbox drop output, not buffer it without end, and stop knows when the last write is done;
// - stop() discards unsent output (tcflush: a UART's buffer; u_serial has no flush_buffer, so
//   ttyGS0 keeps its 8 KiB) with no write after it, and only begins the close;
// - the daemon then removes the USB gadget, which ends a ttyGS0 close at once (the port is
//   disconnected), and only then waits for the close (closed()). The gadget must not be
//   removed with the port open and no close begun: removing the ACM function waits for it.

import type { ConfigModel } from './model';
import { ConsoleSession } from './session';

export const DEFAULT_CONSOLE_DEVICE = '/dev/ttyGS0';
export const DEFAULT_BAUD_RATE = 115200;

/** The part of serialport's SerialPort the console uses (a fake in tests). */
export interface SerialPortLike {
  on(ev: 'data', cb: (d: Buffer) => void): unknown;
  on(ev: 'open' | 'close', cb: () => void): unknown;
  on(ev: 'error', cb: (e: Error) => void): unknown;
  write(data: string | Buffer, cb?: (err: Error | null | undefined) => void): unknown;
  /** Discard input not read and output not sent (tcflush TCIOFLUSH). */
  flush?(cb?: (err: Error | null) => void): unknown;
  close(cb?: (err: Error | null) => void): unknown;
  readonly isOpen?: boolean;
}

export type SerialPortFactory = (path: string, baudRate: number) => SerialPortLike;

let cached: SerialPortFactory | undefined;

/** `serialport` loaded on first use; a clear error when it is not installed. */
export function serialPortFactory(): SerialPortFactory {
  if (cached) return cached;
  let mod: { SerialPort: new (o: { path: string; baudRate: number; autoOpen?: boolean }) => SerialPortLike };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('serialport') as typeof mod;
  } catch (err) {
    // On a board it lives in /usr/lib/lunbox/node_modules, next to lunbox.js (scripts/make-image).
    throw new Error(
      `the serial console needs the 'serialport' package in a node_modules beside or above ${__dirname} ` +
        `(npm install serialport; scripts/make-image puts it on a board): ${(err as Error).message.split('\n')[0]}`,
    );
  }
  cached = (path, baudRate) => new mod.SerialPort({ path, baudRate });
  return cached;
}

/** List serial ports (serialport's SerialPort.list()). */
export async function listSerialPorts(): Promise<SerialPortInfo[]> {
  let mod: { SerialPort: { list(): Promise<SerialPortInfo[]> } };
  try {
    mod = require('serialport') as typeof mod;
  } catch (err) {
    throw new Error(`listing serial ports needs the 'serialport' package: ${(err as Error).message.split('\n')[0]}`);
  }
  return mod.SerialPort.list();
}

export interface SerialPortInfo {
  readonly path: string;
  readonly manufacturer?: string | undefined;
  readonly serialNumber?: string | undefined;
  readonly pnpId?: string | undefined;
  readonly vendorId?: string | undefined;
  readonly productId?: string | undefined;
}

export interface SerialConsoleOptions {
  readonly device: string;
  readonly baudRate?: number;
  readonly factory?: SerialPortFactory;
  readonly log?: (level: 'info' | 'warn' | 'debug', msg: string) => void;
  readonly banner?: string;
  /** Milliseconds between reopen attempts. */
  readonly retryMs?: number;
  /** Longest wait for the port's flush on stop, and for its close in closed() (default 2000 ms). */
  readonly stopWaitMs?: number;
  /** Output waiting for the port beyond this many characters is dropped (default 256 Ki). */
  readonly maxQueued?: number;
}

/** Characters handed to the port in one write. */
const WRITE_CHUNK = 4096;
/** How long stop lets a blocked write finish after discarding the port's backlog. */
const PENDING_WRITE_WAIT_MS = 500;

/**
 * Console output to a port: at most one write in flight (so stopping knows when the port has
 * taken everything it was given) and at most `maxQueued` characters waiting; beyond that
 * output is dropped, and a note says so once the port takes output again.
 */
export class PortOutput {
  private readonly queue: string[] = [];
  private queued = 0;
  private dropped = 0;
  private inFlight = false;
  private stopped = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly port: Pick<SerialPortLike, 'write'>,
    private readonly maxQueued = 256 * 1024,
  ) {}

  /** A write was handed to the port and has not completed. */
  get busy(): boolean {
    return this.inFlight;
  }

  write(text: string): void {
    if (this.stopped || text === '') return;
    if (this.queued + text.length > this.maxQueued) {
      this.dropped += text.length;
      return;
    }
    this.queue.push(text);
    this.queued += text.length;
    this.pump();
  }

  /** No more writes: what is queued is discarded. */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.queued = 0;
  }

  /** Calls back once no write is in flight. */
  whenIdle(cb: () => void): void {
    if (this.inFlight) this.idle.push(cb);
    else cb();
  }

  private pump(): void {
    if (this.inFlight || this.stopped) return;
    if (this.queue.length === 0 && this.dropped > 0) {
      this.queue.push(`\r\n[lunbox: ${this.dropped} characters of output dropped: nothing was reading this port]\r\n`);
      this.dropped = 0;
    }
    let chunk = '';
    while (this.queue.length > 0 && chunk.length < WRITE_CHUNK) {
      const head = this.queue[0] ?? '';
      let take = Math.min(head.length, WRITE_CHUNK - chunk.length);
      // Never split a UTF-16 surrogate pair across two writes.
      if (take < head.length && take > 0 && /[\ud800-\udbff]/.test(head.charAt(take - 1))) take--;
      if (take === 0) break;
      chunk += head.slice(0, take);
      if (take === head.length) this.queue.shift();
      else this.queue[0] = head.slice(take);
    }
    if (chunk === '') return;
    this.queued -= chunk.length;
    this.inFlight = true;
    this.port.write(chunk, () => {
      this.inFlight = false;
      for (const cb of this.idle.splice(0)) cb();
      this.pump();
    });
  }
}

/** Resolves when `start` calls back or after `ms`, whichever is first; says which. */
function within(ms: number, start: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    // Not unref'd: during shutdown this timer may be all that keeps the loop (and the
    // rest of the shutdown after it) alive.
    const t = setTimeout(() => resolve(false), ms);
    try {
      start(() => {
        clearTimeout(t);
        resolve(true);
      });
    } catch {
      clearTimeout(t);
      resolve(true);
    }
  });
}

export class SerialConsole {
  private port: SerialPortLike | undefined;
  private output: PortOutput | undefined;
  /** The current port has emitted 'open' (serialport's isOpen is false until then). */
  private opened = false;
  private closing: Promise<boolean> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Let go of while the USB gadget is rebuilt (pause/resume): no session, no reopening. */
  private paused = false;
  private factory: SerialPortFactory | undefined;
  private warned = false;

  constructor(
    private readonly model: ConfigModel,
    private readonly o: SerialConsoleOptions,
  ) {}

  /** Open the port (throws only when serialport itself is missing). */
  start(): void {
    const factory = this.o.factory ?? serialPortFactory();
    this.factory = factory;
    this.open(factory);
  }

  private open(factory: SerialPortFactory): void {
    if (this.stopped || this.paused) return;
    const baud = this.o.baudRate ?? DEFAULT_BAUD_RATE;
    const port = factory(this.o.device, baud);
    const output = new PortOutput(port, this.o.maxQueued);
    this.port = port;
    this.output = output;
    this.opened = false;
    let session: ConsoleSession | undefined;
    port.on('open', () => {
      if (this.port === port) this.opened = true;
      if (this.stopped || this.paused) return;
      this.warned = false;
      this.o.log?.('info', `serial console on ${this.o.device} (${baud} baud)`);
      session = new ConsoleSession(this.model, { write: (t) => output.write(t) }, {
        ...(this.o.banner !== undefined ? { banner: this.o.banner } : {}),
        log: (m) => this.o.log?.('debug', m),
      });
      session.start();
    });
    port.on('data', (d) => session?.feed(d));
    const retry = (why: string): void => {
      if (this.stopped || this.paused || this.port !== port) return;
      output.stop();
      this.port = undefined;
      if (!this.warned) this.o.log?.('warn', `serial console ${this.o.device}: ${why}; retrying every ${(this.o.retryMs ?? 3000) / 1000} s`);
      this.warned = true;
      this.timer = setTimeout(() => this.open(factory), this.o.retryMs ?? 3000);
      this.timer.unref();
    };
    port.on('error', (e) => retry(e.message));
    port.on('close', () => retry('closed'));
  }

  /**
   * Stop the shell and begin closing the port: writes stop, unsent output is discarded, the
   * close is issued. Resolves once it is issued; closed() waits for it to finish.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.beginClose();
  }

  /**
   * Let go of the port while a live change rebuilds the USB gadget (ttyGS0 goes away with it,
   * and removing the ACM function waits for the port's close): `note` is the last output, then
   * the close is begun as in stop(). resume() opens the port again with a new session.
   */
  async pause(note?: string): Promise<void> {
    if (this.stopped || this.paused) return;
    this.paused = true;
    if (this.timer) clearTimeout(this.timer);
    if (note !== undefined && this.opened) this.output?.write(note);
    await this.beginClose();
  }

  /** After pause(): open the port again (retrying as at start until the new gadget has it). */
  resume(): void {
    if (this.stopped || !this.paused) return;
    this.paused = false;
    this.warned = false;
    if (this.factory) this.open(this.factory);
  }

  /** Discard unsent output and begin closing the current port (stop and pause). */
  private async beginClose(): Promise<void> {
    const p = this.port;
    const out = this.output;
    out?.stop();
    if (!p) return;
    try {
      await this.closePort(p, out);
    } finally {
      // Closed (or never opened): a later stop() after pause() has nothing left to close.
      if (this.port === p) this.port = undefined;
    }
  }

  private async closePort(p: SerialPortLike, out: PortOutput | undefined): Promise<void> {
    const ms = this.o.stopWaitMs ?? 2000;
    // A port still opening is closed once open: an open ttyGS0 would block the gadget's removal.
    if (!this.opened) await within(ms, (done) => void (p.on('open', done), p.on('error', done)));
    if (!this.opened || p.isOpen === false) return;
    const flush = (): Promise<boolean> => (p.flush ? within(ms, (done) => p.flush?.(() => done())) : Promise.resolve(true));
    // A write the port is not taking completes once the backlog is discarded (a UART wakes
    // writers then); after it no write starts, so the last discard leaves nothing to send.
    let flushed = true;
    const until = Date.now() + Math.min(ms, PENDING_WRITE_WAIT_MS);
    while (out?.busy && flushed && Date.now() < until) {
      flushed = await flush();
      await within(50, (done) => out.whenIdle(done));
    }
    if (flushed) flushed = await flush();
    if (!flushed) this.o.log?.('warn', `serial console ${this.o.device}: flush did not finish within ${ms} ms; closing anyway`);
    this.closing = new Promise<boolean>((resolve) => p.close(() => resolve(true)));
  }

  /** After stop(): wait for the port's close, at most stopWaitMs (then warn and go on). */
  async closed(): Promise<void> {
    const c = this.closing;
    if (!c) return;
    const ms = this.o.stopWaitMs ?? 2000;
    if (!(await within(ms, (done) => void c.then(done)))) {
      this.o.log?.('warn', `serial console ${this.o.device}: close did not finish within ${ms} ms; not waiting for it`);
    }
  }
}
