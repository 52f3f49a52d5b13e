// The real FunctionFS binding: mount, ep0 (descriptor/strings blobs, events, SETUP answers)
// and the two bulk endpoint files as BotEndpoints, over a small file-I/O interface so all of
// it runs against an in-memory fake in tests.
//
// Kernel semantics relied on (drivers/usb/gadget/function/f_fs.c, shared/reference §2):
// - ep0: first write = descriptors, second = strings; then ep1.. appear (declaration order).
//   A read returns whole 12-byte events; while a SETUP is pending, ep0 I/O is its data/status
//   stage (ep0-events.ts).
// - epN read/write (ffs_epfile_io) is synchronous: one usb_request, wait for completion. A read
//   completes on `length` bytes or a short packet. A 0-byte write is a zero-length packet.
// - Halt: I/O in the wrong direction (read on IN, write on OUT) sets halt and fails with
//   EBADMSG: that is success here. dummy_hcd answers EAGAIN while an IN queue is non-empty.
// - DISABLE/UNBIND complete pending I/O with ESHUTDOWN; I/O issued while disabled waits for
//   the next ENABLE.
// - There is no way to dequeue a blocked read from JS. `cancel()` therefore abandons only the
//   JS promise: the kernel read stays queued, and whatever it returns is handed to the next
//   readOut (after a Bulk-Only Mass Storage Reset that is the next CBW).
// Node specifics: fs.read of length 0 never reaches the kernel (halting IN reads 1 byte);
// fs.write of length 0 does. Each blocked read/write holds one libuv threadpool thread.

import * as fs from 'node:fs';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import type { BotEndpoints } from './bot';
import type { Ep0Io } from './ep0-events';
import { BotEpFiles, BulkMaxPacket } from './functionfs-descriptors';
import type { UsbSpeed } from './functionfs-descriptors';

/**
 * Blocked endpoint I/O holds libuv threadpool threads (ep0 read, bulk-OUT read, bulk-IN write,
 * plus orphans after a reset), and backstore I/O needs the same pool. libuv reads
 * UV_THREADPOOL_SIZE once, when the pool first starts; this module is evaluated at bundle
 * start-up, before any fs work is queued, so setting it here takes effect.
 */
export const THREADPOOL_SIZE = 16;
if (process.env['UV_THREADPOOL_SIZE'] === undefined) process.env['UV_THREADPOOL_SIZE'] = String(THREADPOOL_SIZE);

/** A FunctionFS error, with a stable code and the errno behind it if any. */
export class FfsError extends Error {
  readonly code: string;
  readonly errno: string | undefined;
  constructor(code: string, message: string, errno?: string) {
    super(message);
    this.name = 'FfsError';
    this.code = code;
    this.errno = errno;
  }
}

/** The file operations FunctionFS needs. Positions are always "current" (ep files are streams). */
export interface FfsIo {
  open(p: string): Promise<number>;
  read(fd: number, buf: Buffer, offset: number, length: number): Promise<number>;
  write(fd: number, buf: Buffer, offset: number, length: number): Promise<number>;
  /** writev(2): the buffers back to back in one write (FunctionFS: one usb_request). */
  writev(fd: number, bufs: readonly Buffer[]): Promise<number>;
  close(fd: number): Promise<void>;
  /** Whole small text file (sysfs, /proc/mounts), or undefined if it does not exist. */
  readText(p: string): Promise<string | undefined>;
  mkdirp(p: string): Promise<void>;
  /** `mount -t functionfs [-o options] <instance> <dir>`. */
  mount(instance: string, dir: string, options?: string): Promise<void>;
  /** `umount [-l] <dir>`. */
  umount(dir: string, lazy?: boolean): Promise<void>;
}

function errnoOf(e: unknown): string {
  const c = (normalizeErrno(e) as NodeJS.ErrnoException | undefined)?.code;
  return typeof c === 'string' ? c : '';
}

/**
 * Errnos FunctionFS answers with that libuv has no name for (its message is then "Unknown
 * system error -74"): Linux asm-generic numbers, the same on x86 and ARM.
 */
const LINUX_ERRNO_NAMES: Readonly<Record<number, string>> = {
  43: 'EIDRM', // ep0: a newer SETUP superseded the pending one
  51: 'EL2HLT', // ep0: stall done
  74: 'EBADMSG', // epN: halt done
  75: 'EOVERFLOW',
  108: 'ESHUTDOWN', // epN: function disabled
};

/** Give an fs error the errno name as `code` when libuv did not (fs errors carry errno < 0). */
export function normalizeErrno<T>(e: T): T {
  const err = e as NodeJS.ErrnoException | undefined;
  if (err !== null && typeof err === 'object' && typeof err.errno === 'number') {
    const name = LINUX_ERRNO_NAMES[-err.errno];
    if (name !== undefined && err.code !== name) {
      err.code = name;
      err.message = err.message.replace(/Unknown system error -?\d+/g, name);
    }
  }
  return e;
}

function runTool(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = String(stderr).trim() || err.message;
      reject(Object.assign(new Error(`${cmd} ${args.join(' ')}: ${why}`), { code: errnoOf(err) || 'ETOOL', stderr: String(stderr) }));
    });
  });
}

/** FfsIo over node:fs (threadpool reads/writes) and the mount/umount tools. */
export function nodeFfsIo(): FfsIo {
  return {
    open: (p) =>
      new Promise((resolve, reject) => fs.open(p, fs.constants.O_RDWR, (e, fd) => (e ? reject(e) : resolve(fd)))),
    read: (fd, buf, offset, length) =>
      new Promise((resolve, reject) =>
        fs.read(fd, buf, offset, length, null, (e, n) => (e ? reject(normalizeErrno(e)) : resolve(n))),
      ),
    write: (fd, buf, offset, length) =>
      new Promise((resolve, reject) =>
        fs.write(fd, buf, offset, length, null, (e, n) => (e ? reject(normalizeErrno(e)) : resolve(n))),
      ),
    writev: (fd, bufs) =>
      new Promise((resolve, reject) =>
        fs.writev(fd, bufs as Buffer[], null, (e, n) => (e ? reject(normalizeErrno(e)) : resolve(n))),
      ),
    close: (fd) => new Promise((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve()))),
    readText: (p) =>
      fs.promises.readFile(p, 'utf8').catch((e: unknown) => {
        if (errnoOf(e) === 'ENOENT') return undefined;
        throw e;
      }),
    mkdirp: async (p) => {
      await fs.promises.mkdir(p, { recursive: true });
    },
    mount: (instance, dir, options) =>
      runTool('mount', ['-t', 'functionfs', ...(options ? ['-o', options] : []), instance, dir]),
    umount: (dir, lazy) => runTool('umount', [...(lazy ? ['-l'] : []), dir]),
  };
}

/** /sys/class/udc/<udc>/current_speed (usb_speed_string) → bulk packet size class. */
export function parseUdcSpeed(text: string | undefined): UsbSpeed | undefined {
  const t = (text ?? '').trim();
  if (t === 'full-speed' || t === 'low-speed') return 'full';
  if (t === 'high-speed' || t === 'wireless') return 'high';
  if (t === 'super-speed' || t === 'super-speed-plus') return 'super';
  return undefined; // "UNKNOWN": not connected
}

/** One /proc/mounts line of a FunctionFS mount. */
export interface FfsMount {
  readonly instance: string;
  readonly dir: string;
}

/** FunctionFS mounts in /proc/mounts text (octal escapes such as \040 decoded). */
export function parseFfsMounts(procMounts: string): FfsMount[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: FfsMount[] = [];
  for (const line of procMounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'functionfs' && f[0] !== undefined && f[1] !== undefined) out.push({ instance: unescape(f[0]), dir: unescape(f[1]) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Bulk endpoints.

/** Rejects (never resolves) when `cancel()` fires; replaced after each cancel. */
interface CancelSignal {
  readonly promise: Promise<never>;
  readonly fire: () => void;
}
function cancelSignal(): CancelSignal {
  let fire!: () => void;
  const promise = new Promise<never>((_, reject) => {
    fire = () => reject(Object.assign(new Error('ECANCELED: endpoint transfer abandoned'), { code: 'ECANCELED' }));
  });
  promise.catch(() => undefined);
  return { promise, fire };
}

/** Halting retries: dummy_hcd refuses set_halt (EAGAIN) while IN requests are still queued. */
const HALT_RETRIES = 100;
const HALT_RETRY_MS = 2;

export interface EndpointStats {
  reads: number;
  writes: number;
  bytesOut: number;
  bytesIn: number;
  halts: number;
  /** Kernel reads abandoned by cancel() and later adopted by a readOut. */
  adopted: number;
  /** Transfers split into smaller pieces after the kernel answered ENOMEM. */
  splits: number;
  /** Bytes of abandoned data-out an adopted read brought in front of the next CBW (dropped). */
  discardedOut: number;
}

/**
 * f_fs copies each transfer through one kmalloc'd kernel buffer; a big one (order 8 for
 * 1 MiB) can fail with ENOMEM on a fragmented 512 MiB board. The transfer is then split into
 * pieces of half the size, down to this floor (a multiple of every bulk packet size, so each
 * piece but the last is whole packets and the host sees the same packet stream).
 */
export const MIN_TRANSFER = 16 * 1024;

/** BotEndpoints over the FunctionFS bulk IN (ep1) and OUT (ep2) files. */
export class FfsEndpoints implements BotEndpoints {
  readonly stats: EndpointStats = { reads: 0, writes: 0, bytesOut: 0, bytesIn: 0, halts: 0, adopted: 0, splits: 0, discardedOut: 0 };
  /** Largest transfer the kernel has accepted since the last ENOMEM (Infinity: none seen). */
  maxTransfer = Infinity;
  private cancelled = cancelSignal();
  /** Bulk-IN writes issued and not yet ended in the kernel. */
  private inPending = 0;
  /** A kernel read whose JS caller was cancelled: its data belongs to the next readOut. */
  private orphan: Promise<Buffer> | undefined;
  /** Bytes an adopted read brought beyond what the reader asked for. */
  private leftover: Buffer | undefined;

  constructor(
    private readonly io: FfsIo,
    readonly inFd: number,
    readonly outFd: number,
  ) {}

  /** After ENOMEM: halve the transfer limit (false when already at the floor). */
  private shrink(size: number): boolean {
    if (size <= MIN_TRANSFER) return false;
    this.maxTransfer = Math.max(MIN_TRANSFER, Math.floor(Math.min(size, this.maxTransfer) / 2 / MIN_TRANSFER) * MIN_TRANSFER);
    this.stats.splits++;
    return true;
  }

  private async kernelRead(max: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(max);
    let got = 0;
    // Pieces of at most maxTransfer; a piece shorter than asked ended the host's transfer.
    while (got < max) {
      const ask = Math.min(max - got, this.maxTransfer);
      let n: number;
      try {
        n = await this.io.read(this.outFd, buf, got, ask);
      } catch (e) {
        if (errnoOf(e) === 'ENOMEM' && this.shrink(ask)) continue;
        throw e;
      }
      this.stats.reads++;
      this.stats.bytesOut += n;
      got += n;
      if (n < ask) break;
    }
    return buf.subarray(0, got);
  }

  private take(buf: Buffer, max: number): Buffer {
    if (buf.length <= max) return buf;
    this.leftover = buf.subarray(max);
    return buf.subarray(0, max);
  }

  async readOut(max: number): Promise<Buffer> {
    if (this.leftover) {
      const l = this.leftover;
      this.leftover = undefined;
      return this.take(l, max);
    }
    const cancelled = this.cancelled.promise;
    let kernel: Promise<Buffer>;
    const adopted = this.orphan;
    this.orphan = undefined;
    if (adopted) {
      this.stats.adopted++;
      // An adopted read that ended with the old session (ESHUTDOWN) is replaced by a fresh one.
      // One that a reset cut short holds whole packets of the abandoned data-out, then what the
      // host sent after the reset (the next CBW: a short packet). Only that tail is the reader's
      // (the CBW is read at the packet size); whole packets only: all of it was abandoned.
      kernel = adopted.then(
        (b) => {
          if (b.length <= max) return b;
          const tail = b.length % max;
          this.stats.discardedOut += b.length - tail;
          return tail > 0 ? b.subarray(b.length - tail) : this.kernelRead(max);
        },
        (e: unknown) => {
          if (errnoOf(e) === 'ESHUTDOWN' || errnoOf(e) === 'ECANCELED') return this.kernelRead(max);
          throw e;
        },
      );
    } else {
      kernel = this.kernelRead(max);
    }
    try {
      return this.take(await Promise.race([kernel, cancelled]), max);
    } catch (e) {
      if (errnoOf(e) === 'ECANCELED') {
        kernel.catch(() => undefined);
        this.orphan = kernel;
      }
      throw e;
    }
  }

  writeIn(data: Buffer): Promise<void> {
    return this.writeInv([data]);
  }

  /** One write(2)/writev(2): FunctionFS queues it as one usb_request (no ZLP added). */
  async writeInv(parts: readonly Buffer[]): Promise<void> {
    const cancelled = this.cancelled.promise;
    const total = parts.reduce((n, b) => n + b.length, 0);
    this.inPending++;
    const kernel = (async () => {
      if (total > this.maxTransfer) return this.writePieces(parts, total);
      let n: number;
      try {
        n = parts.length === 1 ? await this.io.write(this.inFd, parts[0] as Buffer, 0, total) : await this.io.writev(this.inFd, parts);
      } catch (e) {
        // Nothing was queued: the same bytes go again in smaller pieces.
        if (errnoOf(e) === 'ENOMEM' && this.shrink(total)) return this.writePieces(parts, total);
        throw e;
      }
      // f_fs takes the whole request or fails; a short count would be lost data.
      if (n !== total) throw new FfsError('SHORT_WRITE', `bulk-IN write of ${total} bytes took ${n}`);
      this.stats.writes++;
      this.stats.bytesIn += total;
    })();
    // Counted until the kernel ends it; an abandoned write may fail later (ESHUTDOWN): nobody waits.
    kernel.finally(() => this.inPending--).catch(() => undefined);
    await Promise.race([kernel, cancelled]);
  }

  /** Bulk-IN writes the kernel still holds, abandoned ones included. */
  inWritesPending(): number {
    return this.inPending;
  }

  /** The bytes of `parts` in order, as transfers of at most maxTransfer (shrinking on ENOMEM). */
  private async writePieces(parts: readonly Buffer[], total: number): Promise<void> {
    const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts as Buffer[], total);
    let off = 0;
    while (off < total) {
      const len = Math.min(total - off, this.maxTransfer);
      let n: number;
      try {
        n = await this.io.write(this.inFd, all, off, len);
      } catch (e) {
        if (errnoOf(e) === 'ENOMEM' && this.shrink(len)) continue;
        throw e;
      }
      if (n !== len) throw new FfsError('SHORT_WRITE', `bulk-IN write of ${len} bytes took ${n}`);
      this.stats.writes++;
      this.stats.bytesIn += len;
      off += len;
    }
  }

  private async halt(fd: number, wrongWay: () => Promise<number>, what: string): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await wrongWay();
      } catch (e) {
        const code = errnoOf(e);
        if (code === 'EBADMSG') {
          this.stats.halts++;
          return;
        }
        if (code === 'EAGAIN' && i < HALT_RETRIES) {
          await new Promise((r) => setTimeout(r, HALT_RETRY_MS));
          continue;
        }
        throw e;
      }
      // The kernel always fails wrong-direction I/O; a success means this is not FunctionFS.
      throw new FfsError('HALT_FAILED', `halting ${what} (fd ${fd}): wrong-direction I/O succeeded`);
    }
  }

  haltIn(): Promise<void> {
    const one = Buffer.alloc(1);
    return this.halt(this.inFd, () => this.io.read(this.inFd, one, 0, 1), 'bulk-IN');
  }

  haltOut(): Promise<void> {
    return this.halt(this.outFd, () => this.io.write(this.outFd, Buffer.alloc(0), 0, 0), 'bulk-OUT');
  }

  /**
   * Put bytes back in front of the bulk-OUT stream: the next readOut returns them first (the
   * fast path's worker read a WRITE's data, then handed the command to the core).
   */
  unread(data: Buffer): void {
    this.leftover = this.leftover ? Buffer.concat([data, this.leftover]) : data;
  }

  /** A kernel read abandoned by cancel() is still queued: the next readOut adopts it. */
  get hasOrphan(): boolean {
    return this.orphan !== undefined;
  }

  /** Abandon the JS side of every pending transfer (see the header: the kernel keeps reads). */
  cancel(): void {
    const c = this.cancelled;
    this.cancelled = cancelSignal();
    this.leftover = undefined;
    c.fire();
  }
}

/** Ep0Io over the ep0 file descriptor. */
export function ep0Io(io: FfsIo, fd: number): Ep0Io {
  // ep0-events.ts matches errno names (EL2HLT = stall done, EIDRM): make sure they are set.
  return {
    async read(length) {
      const buf = Buffer.alloc(length);
      const n = await io.read(fd, buf, 0, length).catch((e: unknown) => {
        throw normalizeErrno(e);
      });
      return buf.subarray(0, n);
    },
    async write(data) {
      await io.write(fd, data, 0, data.length).catch((e: unknown) => {
        throw normalizeErrno(e);
      });
    },
  };
}

// ---------------------------------------------------------------------------------------
// The mount and its files.

export interface FunctionFsOptions {
  /** The ffs.<instance> function name; also the mount source. */
  readonly instance: string;
  /** Mount point, default /dev/ffs-<instance>. */
  readonly mountPoint?: string;
  /** Extra mount options (uid=, gid=, no_disconnect=1 ...). */
  readonly mountOptions?: string;
  readonly io?: FfsIo;
  /** /proc/mounts, to find leftovers of a crashed run. */
  readonly procMounts?: string;
}

/** One FunctionFS mount with its ep0 and bulk endpoint files. */
export class FunctionFs {
  readonly instance: string;
  readonly mountPoint: string;
  private readonly io: FfsIo;
  private readonly mountOptions: string | undefined;
  private readonly procMounts: string;
  private ep0Fd: number | undefined;
  private eps: FfsEndpoints | undefined;
  private mounted = false;

  constructor(opts: FunctionFsOptions) {
    this.instance = opts.instance;
    this.mountPoint = opts.mountPoint ?? `/dev/ffs-${opts.instance}`;
    this.io = opts.io ?? nodeFfsIo();
    this.mountOptions = opts.mountOptions;
    this.procMounts = opts.procMounts ?? '/proc/mounts';
  }

  /** FunctionFS mounts of this instance or at this mount point. */
  async currentMounts(): Promise<FfsMount[]> {
    const text = (await this.io.readText(this.procMounts)) ?? '';
    return parseFfsMounts(text).filter((m) => m.instance === this.instance || path.resolve(m.dir) === path.resolve(this.mountPoint));
  }

  /** Unmount what a crashed run left (its files are closed, so a plain umount works; else lazy). */
  async unmountLeftovers(): Promise<number> {
    const left = await this.currentMounts();
    for (const m of left.reverse()) await this.umountDir(m.dir);
    return left.length;
  }

  private async umountDir(dir: string): Promise<void> {
    for (let i = 0; i < 10; i++) {
      try {
        await this.io.umount(dir);
        return;
      } catch (e) {
        if (!/busy/i.test((e as Error).message)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      await this.io.umount(dir, true);
    } catch (e) {
      throw new FfsError('UMOUNT_FAILED', `cannot unmount FunctionFS at ${dir}: ${(e as Error).message}`, errnoOf(e));
    }
  }

  /** Mount the instance (the ffs.<instance> function must exist: it registers the name). */
  async mount(): Promise<void> {
    await this.io.mkdirp(this.mountPoint);
    try {
      await this.io.mount(this.instance, this.mountPoint, this.mountOptions);
    } catch (e) {
      const msg = (e as Error).message;
      if (/unknown filesystem type/i.test(msg)) {
        throw new FfsError('NO_FUNCTIONFS', `mount -t functionfs: the kernel has no FunctionFS (modprobe usb_f_fs; CONFIG_USB_CONFIGFS_F_FS): ${msg}`, errnoOf(e));
      }
      if (/permission denied|must be superuser|only root/i.test(msg)) {
        throw new FfsError('NOT_ROOT', `mount -t functionfs needs root (or CAP_SYS_ADMIN): ${msg}`, errnoOf(e));
      }
      throw new FfsError('MOUNT_FAILED', `mount -t functionfs ${this.instance} ${this.mountPoint}: ${msg}`, errnoOf(e));
    }
    this.mounted = true;
  }

  /** Open ep0 and write the descriptor and strings blobs; the ep files appear afterwards. */
  async writeDescriptors(descriptors: Buffer, strings: Buffer): Promise<void> {
    const p = path.join(this.mountPoint, 'ep0');
    try {
      this.ep0Fd = await this.io.open(p);
    } catch (e) {
      throw new FfsError('EP0_OPEN', `open ${p}: ${(e as Error).message}`, errnoOf(e));
    }
    for (const [what, blob] of [['descriptors', descriptors], ['strings', strings]] as const) {
      try {
        await this.io.write(this.ep0Fd, blob, 0, blob.length);
      } catch (e) {
        throw new FfsError('BAD_DESCRIPTORS', `writing ${what} to ${p}: ${(e as Error).message} (see dmesg)`, errnoOf(e));
      }
    }
  }

  /** Open ep1 (bulk IN) and ep2 (bulk OUT) as BotEndpoints. */
  async openEndpoints(): Promise<FfsEndpoints> {
    const open = async (name: string): Promise<number> => {
      const p = path.join(this.mountPoint, name);
      try {
        return await this.io.open(p);
      } catch (e) {
        throw new FfsError('EP_OPEN', `open ${p}: ${(e as Error).message}`, errnoOf(e));
      }
    };
    const inFd = await open(BotEpFiles.bulkIn);
    let outFd: number;
    try {
      outFd = await open(BotEpFiles.bulkOut);
    } catch (e) {
      await this.io.close(inFd).catch(() => undefined);
      throw e;
    }
    this.eps = new FfsEndpoints(this.io, inFd, outFd);
    return this.eps;
  }

  get ep0(): Ep0Io {
    if (this.ep0Fd === undefined) throw new FfsError('NOT_OPEN', 'ep0 is not open: writeDescriptors() first');
    return ep0Io(this.io, this.ep0Fd);
  }

  get endpoints(): FfsEndpoints | undefined {
    return this.eps;
  }

  /** Close the endpoint files and ep0 (the function disables itself when all are closed). */
  async close(): Promise<void> {
    const fds = [this.eps?.inFd, this.eps?.outFd, this.ep0Fd];
    this.eps = undefined;
    this.ep0Fd = undefined;
    for (const fd of fds) if (fd !== undefined) await this.io.close(fd).catch(() => undefined);
  }

  /** Close everything and unmount. */
  async unmount(): Promise<void> {
    await this.close();
    if (!this.mounted) return;
    this.mounted = false;
    await this.umountDir(this.mountPoint);
  }
}

/** The bulk max packet size of the UDC's current speed (default high speed when unknown). */
export async function currentMaxPacket(io: FfsIo, udcClass: string, udc: string): Promise<{ speed: UsbSpeed | undefined; mps: number }> {
  const speed = parseUdcSpeed(await io.readText(path.join(udcClass, udc, 'current_speed')).catch(() => undefined));
  return { speed, mps: BulkMaxPacket[speed ?? 'high'] };
}
