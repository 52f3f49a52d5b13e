// A serial port without the native `serialport` addon: the device is opened as a tty with
// Node's own libuv tty handles (non-blocking, no thread parked in a read), put in raw mode by
// them, and its line speed set with stty(1) for UARTs (an ACM gadget port has no speed). This
// keeps the board's console working with nothing but the one-file bundle installed.
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { close as closeFd, constants, open } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import type { SerialPortLike } from './serial';

export class TtyPort extends EventEmitter implements SerialPortLike {
  private rd: ReadStream | undefined;
  private wr: WriteStream | undefined;
  private fd: number | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    readonly baudRate: number,
  ) {
    super();
    // A UART needs its speed; an ACM port ignores it. Errors here are not fatal: the open
    // below reports a missing device clearly.
    execFile('stty', ['-F', path, String(baudRate)], { timeout: 5000 }, () => this.openDevice());
  }

  get isOpen(): boolean {
    return this.fd !== undefined && !this.closed;
  }

  private openDevice(): void {
    if (this.closed) return;
    // O_NOCTTY: the daemon must not make the board's console its controlling terminal.
    open(this.path, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK, (err, fd) => {
      if (err) {
        this.emit('error', err);
        return;
      }
      if (this.closed) return void closeFd(fd, () => undefined);
      this.fd = fd;
      try {
        this.rd = new ReadStream(fd);
        this.rd.setRawMode(true);
        this.wr = new WriteStream(fd);
      } catch (e) {
        this.emit('error', e as Error);
        return;
      }
      this.rd.on('data', (d: Buffer) => this.emit('data', d));
      // The ACM port goes away when the host closes it or the gadget unbinds: EIO / end.
      this.rd.on('error', (e: Error) => this.emit('error', e));
      this.rd.on('end', () => this.close());
      this.wr.on('error', (e: Error) => this.emit('error', e));
      this.emit('open');
    });
  }

  write(data: string | Buffer, cb?: (err: Error | null | undefined) => void): boolean {
    if (!this.wr) {
      cb?.(new Error(`${this.path} is not open`));
      return false;
    }
    return this.wr.write(data, cb);
  }

  close(cb?: (err: Error | null) => void): void {
    if (this.closed) return void cb?.(null);
    this.closed = true;
    // Destroying the streams closes the shared fd once.
    this.rd?.destroy();
    this.wr?.destroy();
    this.fd = undefined;
    this.emit('close');
    cb?.(null);
  }
}
