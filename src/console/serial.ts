// The shell on a serial line: the USB ACM gadget port (/dev/ttyGS0) or a UART. The port
// is opened with `serialport`, an optional native dependency loaded only here, only when a
// console device is configured. The port may come and go (ttyGS0 exists only while the
// gadget is bound; a UART adapter may be unplugged): it is reopened every few seconds.

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
    throw new Error(`the serial console needs the 'serialport' package (npm install serialport): ${(err as Error).message.split('\n')[0]}`);
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
}

export class SerialConsole {
  private port: SerialPortLike | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private warned = false;

  constructor(
    private readonly model: ConfigModel,
    private readonly o: SerialConsoleOptions,
  ) {}

  /** Open the port (throws only when serialport itself is missing). */
  start(): void {
    const factory = this.o.factory ?? serialPortFactory();
    this.open(factory);
  }

  private open(factory: SerialPortFactory): void {
    if (this.stopped) return;
    const baud = this.o.baudRate ?? DEFAULT_BAUD_RATE;
    const port = factory(this.o.device, baud);
    this.port = port;
    let session: ConsoleSession | undefined;
    port.on('open', () => {
      this.warned = false;
      this.o.log?.('info', `serial console on ${this.o.device} (${baud} baud)`);
      session = new ConsoleSession(this.model, { write: (t) => void port.write(t) }, {
        ...(this.o.banner !== undefined ? { banner: this.o.banner } : {}),
        log: (m) => this.o.log?.('debug', m),
      });
      session.start();
    });
    port.on('data', (d) => session?.feed(d));
    const retry = (why: string): void => {
      if (this.stopped || this.port !== port) return;
      this.port = undefined;
      if (!this.warned) this.o.log?.('warn', `serial console ${this.o.device}: ${why}; retrying every ${(this.o.retryMs ?? 3000) / 1000} s`);
      this.warned = true;
      this.timer = setTimeout(() => this.open(factory), this.o.retryMs ?? 3000);
      this.timer.unref();
    };
    port.on('error', (e) => retry(e.message));
    port.on('close', () => retry('closed'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const p = this.port;
    this.port = undefined;
    if (p?.isOpen !== false) await new Promise<void>((r) => p?.close(() => r()) ?? r());
  }
}
