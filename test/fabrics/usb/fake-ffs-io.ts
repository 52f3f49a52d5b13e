// FunctionFS at the file-descriptor level (FfsIo) over the in-memory bus of fake-ffs.ts, so
// functionfs.ts and usb-target.ts run against kernel-like files without a kernel:
// - mount/umount keep a /proc/mounts text; ep0 opens once mounted, ep1/ep2 only after the
//   descriptor and strings blobs were written to ep0 (f_fs creates them then: ENOENT before);
// - ep0 read/write go to FakeEp0 (events, SETUP data/status stages, EL2HLT stalls);
// - ep1 (bulk IN): write = packets to the host; read = halt, failing with EBADMSG (errno -74
//   without a name, as libuv reports it; FfsIo implementations normalise);
// - ep2 (bulk OUT): read = packets from the host; write = halt (EBADMSG);
// - disable(): pending and later endpoint I/O fail with ESHUTDOWN until enable().

import type { FfsIo } from '../../../src/fabrics/usb/functionfs';
import { FakeFfs } from './fake-ffs';
import type { FakeFfsOptions } from './fake-ffs';

const err = (code: string, msg: string, errno?: number): Error =>
  Object.assign(new Error(`${code}: ${msg}`), { code, ...(errno !== undefined ? { errno } : {}) });

/** What libuv gives for errnos it has no name for. */
const unnamed = (errno: number): Error =>
  Object.assign(new Error(`Unknown system error -${errno}: Unknown system error -${errno}, read`), {
    code: `Unknown system error -${errno}`,
    errno: -errno,
  });

type FileKind = 'ep0' | 'ep1' | 'ep2';

export class FakeFfsIo implements FfsIo {
  readonly bus: FakeFfs;
  readonly log: string[] = [];
  readonly sysfs = new Map<string, string>();
  readonly mounts: { instance: string; dir: string }[] = [];
  readonly dirs = new Set<string>();
  private readonly files = new Map<number, FileKind>();
  private nextFd = 10;
  private blobs = 0;
  private enabled = true;
  /** Errors to throw from the next halts (e.g. EAGAIN as dummy_hcd does with a busy queue). */
  readonly haltErrors: string[] = [];
  /** Every write size on ep1 and whether it was a writev, in order. */
  readonly inWrites: { bytes: number; parts: number }[] = [];
  /** Every read size asked of ep2, in order. */
  readonly outReads: number[] = [];
  /** Transfers bigger than this fail with ENOMEM, as f_fs does when kmalloc fails. */
  maxAlloc = Infinity;

  constructor(opts: FakeFfsOptions = {}) {
    this.bus = new FakeFfs({ reportClearHalt: false, ...opts });
  }

  get procMounts(): string {
    return this.mounts.map((m) => `${m.instance} ${m.dir} functionfs rw,relatime 0 0\n`).join('');
  }

  async readText(p: string): Promise<string | undefined> {
    if (p === '/proc/mounts') return `proc /proc proc rw 0 0\n${this.procMounts}`;
    return this.sysfs.get(p);
  }

  async mkdirp(p: string): Promise<void> {
    this.dirs.add(p);
  }

  async mount(instance: string, dir: string, options?: string): Promise<void> {
    this.log.push(`mount ${instance} ${dir}${options ? ' -o ' + options : ''}`);
    this.mounts.push({ instance, dir });
    this.blobs = 0;
  }

  async umount(dir: string, lazy?: boolean): Promise<void> {
    const i = this.mounts.findIndex((m) => m.dir === dir);
    if (i < 0) throw err('EINVAL', `umount: ${dir}: not mounted`);
    this.log.push(`umount${lazy ? ' -l' : ''} ${dir}`);
    this.mounts.splice(i, 1);
  }

  async open(p: string): Promise<number> {
    const name = p.slice(p.lastIndexOf('/') + 1);
    const dir = p.slice(0, p.lastIndexOf('/'));
    if (!this.mounts.some((m) => m.dir === dir)) throw err('ENOENT', p);
    if (name !== 'ep0' && name !== 'ep1' && name !== 'ep2') throw err('ENOENT', p);
    if (name !== 'ep0' && this.blobs < 2) throw err('ENOENT', `${p} (descriptors not written yet)`);
    const fd = this.nextFd++;
    this.files.set(fd, name);
    this.log.push(`open ${name}`);
    return fd;
  }

  async close(fd: number): Promise<void> {
    const k = this.files.get(fd);
    if (!k) throw err('EBADF', `fd ${fd}`);
    this.files.delete(fd);
    this.log.push(`close ${k}`);
  }

  private kind(fd: number): FileKind {
    const k = this.files.get(fd);
    if (!k) throw err('EBADF', `fd ${fd}`);
    return k;
  }

  private live(): void {
    if (!this.enabled) throw err('ESHUTDOWN', 'function disabled', -108);
  }

  /** Pending endpoint transfers fail and new ones too, as on FUNCTIONFS_DISABLE. */
  disable(): void {
    this.enabled = false;
    this.bus.in.cancel();
    this.bus.out.cancel();
  }

  enable(): void {
    this.enabled = true;
  }

  private halt(pipe: 'in' | 'out'): never {
    const e = this.haltErrors.shift();
    if (e) throw err(e, `halt ${pipe}`);
    const p = pipe === 'in' ? this.bus.in : this.bus.out;
    p.halted = true;
    this.bus.trace.push(`HALT ${pipe.toUpperCase()}`);
    p.changed.notify();
    throw unnamed(74); // EBADMSG: the halt is done
  }

  private shutdownOnCancel<T>(p: Promise<T>): Promise<T> {
    return p.catch((e: unknown) => {
      if ((e as { code?: string }).code === 'ECANCELED') throw err('ESHUTDOWN', 'function disabled', -108);
      throw e;
    });
  }

  async read(fd: number, buf: Buffer, offset: number, length: number): Promise<number> {
    const k = this.kind(fd);
    if (k === 'ep0') {
      const got = await this.bus.ep0.read(length);
      got.copy(buf, offset);
      return got.length;
    }
    this.live();
    if (k === 'ep1') this.halt('in');
    this.outReads.push(length);
    if (length > this.maxAlloc) throw err('ENOMEM', `read of ${length} bytes`, -12);
    const got = await this.shutdownOnCancel(this.bus.out.deviceRead(length));
    got.copy(buf, offset);
    return got.length;
  }

  async write(fd: number, buf: Buffer, offset: number, length: number): Promise<number> {
    const k = this.kind(fd);
    const data = Buffer.from(buf.subarray(offset, offset + length));
    if (k === 'ep0') {
      if (this.blobs < 2 && this.bus.ep0.blobs.length === this.blobs) this.blobs++;
      await this.bus.ep0.write(data);
      return length;
    }
    this.live();
    if (k === 'ep2') this.halt('out');
    if (length > this.maxAlloc) throw err('ENOMEM', `write of ${length} bytes`, -12);
    this.inWrites.push({ bytes: length, parts: 1 });
    await this.shutdownOnCancel(this.bus.in.deviceWrite(data));
    return length;
  }

  async writev(fd: number, bufs: readonly Buffer[]): Promise<number> {
    const k = this.kind(fd);
    const data = Buffer.concat(bufs as Buffer[]);
    if (k !== 'ep1') return this.write(fd, data, 0, data.length);
    this.live();
    if (data.length > this.maxAlloc) throw err('ENOMEM', `writev of ${data.length} bytes`, -12);
    this.inWrites.push({ bytes: data.length, parts: bufs.length });
    await this.shutdownOnCancel(this.bus.in.deviceWrite(data));
    return data.length;
  }
}
