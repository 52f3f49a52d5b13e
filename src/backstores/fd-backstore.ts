// The I/O half shared by the file and block backstores: pread/pwrite on a FileHandle
// straight into the caller's Buffer, FUA, flush, and the errno → BackstoreError mapping.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { BackstoreError } from './backstore';
import type { Backstore, BackstoreKind, ProtectionInfoStore, WriteOptions } from './backstore';

/**
 * How a FUA write reaches stable storage.
 * - 'fdatasync': write on the main fd, then fdatasync it (also flushes other dirty data).
 * - 'dsync': write on a second fd opened O_DSYNC, so only that write is waited for.
 */
export type FuaMode = 'fdatasync' | 'dsync';

export interface FdBackstoreParts {
  readonly kind: BackstoreKind;
  readonly name: string;
  readonly path: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly volatileCache: boolean;
  readonly handle: FileHandle;
  /** Second handle opened O_DSYNC, used for FUA writes when present. */
  readonly dsyncHandle?: FileHandle;
  /** Deallocate with `fallocate --punch-hole` (see file.ts for why a child process). */
  readonly punchHole?: boolean;
  /** Protection information side store (file.ts: the `<image>.pi` sidecar). */
  readonly pi?: FdSideStore;
  /** Sequential read-ahead (FdBackstore.read); default true. */
  readonly readAhead?: boolean;
}

/**
 * pread/pwrite on a FileHandle's descriptor through the callback API: FileHandle.read/write
 * cost a fifth more per I/O (a promise and a ref-count round per call), which is main-thread
 * time on every command. FileHandle's safety is kept: no I/O starts after close() began, and
 * close() waits for the I/O in flight, so a descriptor number reused by a later open is never
 * read or written.
 */
export class PositionalIo {
  private inflight = 0;
  private closing: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  constructor(readonly handle: FileHandle) {}

  private io(write: boolean, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.closing !== undefined) return Promise.reject(new BackstoreError('EIO', 'the backstore is closed'));
    this.inflight++;
    return new Promise<number>((resolve, reject) => {
      const done = (err: NodeJS.ErrnoException | null, n: number): void => {
        if (--this.inflight === 0) this.drained?.();
        if (err) reject(err);
        else resolve(n);
      };
      if (write) fs.write(this.handle.fd, buf, offset, length, position, done);
      else fs.read(this.handle.fd, buf, offset, length, position, done);
    });
  }

  /**
   * pread until `length` bytes are in: short reads go on, and a range past the end of the file
   * (a sidecar not yet grown, an image cut short behind our back) reads as zeros.
   */
  async readFully(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const n = await this.io(false, into, intoOffset + done, length - done, position + done);
      if (n === 0) {
        into.fill(0, intoOffset + done, intoOffset + length);
        return;
      }
      done += n;
    }
  }

  /** pwrite all of `data` (short writes go on). */
  async writeAll(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) done += await this.io(true, data, done, data.length - done, position + done);
  }

  /** Close the handle once the I/O in flight has finished. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.inflight > 0) await new Promise<void>((r) => (this.drained = r));
      await this.handle.close();
    })();
    return this.closing;
  }
}

/**
 * A sidecar file used through pread/pwrite (protection information). It is sparse and
 * grows on write: ranges past its end or in holes read as zeros.
 */
export class FdSideStore implements ProtectionInfoStore {
  private readonly pio: PositionalIo;

  constructor(
    readonly path: string,
    readonly handle: FileHandle,
    readonly readOnly: boolean,
  ) {
    this.pio = new PositionalIo(handle);
  }

  read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    return this.pio.readFully(into, intoOffset, length, position);
  }

  async write(data: Buffer, position: number, opts?: WriteOptions): Promise<void> {
    if (this.readOnly) throw new BackstoreError('EACCES', `${this.path} is read-only`);
    await this.pio.writeAll(data, position);
    if (opts?.fua === true) await this.handle.datasync();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.handle.datasync();
  }

  close(): Promise<void> {
    return this.pio.close();
  }
}

const PUNCH_CONCURRENCY = 2;

/** Unmaps smaller than this are zero-filled rather than hole-punched (see unmap()). */
export const PUNCH_MIN = 1024 * 1024;
/** Holes are punched on filesystem-block boundaries (4 KiB covers ext4, xfs, btrfs, f2fs). */
const PUNCH_ALIGN = 4096;
const ZEROS = Buffer.alloc(PUNCH_MIN);

/** Reads longer than this are not read ahead (the prefetch buffer is at most this big). */
export const READ_AHEAD_MAX = 1024 * 1024;

/** A read issued before anyone asked for it: the next stretch of a sequential stream. */
interface Prefetch {
  readonly position: number;
  readonly length: number;
  /** Allocated when the read starts (just after the command that triggered it has gone on). */
  buf: Buffer | undefined;
  /** Resolves true when `buf` holds the range, false when the read failed (then read again). */
  readonly done: Promise<boolean>;
  /** A write or unmap overlapped the range while or after it was read: the data is old. */
  stale: boolean;
  /** The read has finished (a hit that finds it false had to wait). */
  settled: boolean;
}

export class FdBackstore implements Backstore {
  readonly kind: BackstoreKind;
  readonly name: string;
  readonly path: string;
  readonly readOnly: boolean;
  readonly volatileCache: boolean;
  readonly canUnmap: boolean;
  readonly unmapReadsZero: boolean;
  /** The main handle; public so tests can spy on datasync/write. */
  readonly handle: FileHandle;
  readonly dsyncHandle: FileHandle | undefined;
  private readonly pio: PositionalIo;
  private readonly dsyncPio: PositionalIo | undefined;
  readonly fuaMode: FuaMode;
  readonly pi: FdSideStore | undefined;
  protected _size: number;
  private punching = 0;
  private readonly punchWaiters: (() => void)[] = [];
  /** Sequential read-ahead (see read()); off with readAhead: false. */
  private readonly readAhead: boolean;
  private prefetch: Prefetch | undefined;
  private lastReadEnd = -1;
  private lastReadLength = 0;
  /** Prefetch reads still running (close() waits for them, dropped ones too). */
  private readonly prefetching = new Set<Promise<boolean>>();
  private readsInFlight = 0;
  private readSeq = 0;
  /** Counters for tests and the console. */
  readonly readAheadStats = { issued: 0, hits: 0, stale: 0, waited: 0 };

  constructor(parts: FdBackstoreParts) {
    this.kind = parts.kind;
    this.name = parts.name;
    this.path = parts.path;
    this._size = parts.size;
    this.readOnly = parts.readOnly;
    this.volatileCache = parts.volatileCache;
    this.handle = parts.handle;
    this.dsyncHandle = parts.dsyncHandle;
    this.pio = new PositionalIo(parts.handle);
    this.dsyncPio = parts.dsyncHandle ? new PositionalIo(parts.dsyncHandle) : undefined;
    this.fuaMode = parts.dsyncHandle ? 'dsync' : 'fdatasync';
    this.pi = parts.pi;
    this.canUnmap = !parts.readOnly && parts.punchHole === true;
    this.unmapReadsZero = this.canUnmap;
    this.readAhead = parts.readAhead !== false;
  }

  get size(): number {
    return this._size;
  }

  /**
   * pread into the caller's buffer. A stream of back-to-back reads with nothing else in flight
   * (a USB host or a QD1 initiator copying a file) is read ahead: once a read follows the one
   * before it, the next stretch of the same length is read while the caller moves this one,
   * so the next command finds its data in memory instead of waiting for the threadpool. A
   * write or unmap that overlaps a prefetched range, before or after it was read, makes it
   * stale: it is then dropped and the range read again.
   */
  async read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    const ahead = await this.prefetched(length, position);
    if (ahead !== undefined) ahead.copy(into, intoOffset);
    else await this.readNow(into, intoOffset, length, position);
  }

  /** As read(), into a buffer of its own: a read-ahead hit hands over the prefetch buffer. */
  async readOwned(length: number, position: number): Promise<Buffer> {
    const ahead = await this.prefetched(length, position);
    if (ahead !== undefined) return ahead;
    const buf = Buffer.allocUnsafe(length);
    await this.readNow(buf, 0, length, position);
    return buf;
  }

  /** The range from the prefetch when it holds it (a hit, counted), else undefined. */
  private async prefetched(length: number, position: number): Promise<Buffer | undefined> {
    const p = this.takePrefetch(length, position);
    if (p === undefined) return undefined;
    if (!p.settled) this.readAheadStats.waited++;
    if ((await p.done) && !p.stale && p.buf !== undefined) {
      this.readAheadStats.hits++;
      this.afterRead(position, length);
      return p.length === length ? p.buf : p.buf.subarray(0, length);
    }
    if (p.stale) this.readAheadStats.stale++;
    return undefined;
  }

  /** pread now, then maybe read ahead. */
  private async readNow(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    // Alone: no other read in flight when it started, none started or still running at its end.
    const othersAtStart = this.readsInFlight;
    const seq = ++this.readSeq;
    this.readsInFlight++;
    try {
      await this.pio.readFully(into, intoOffset, length, position);
    } finally {
      this.readsInFlight--;
    }
    this.afterRead(position, length, othersAtStart === 0 && seq === this.readSeq && this.readsInFlight === 0);
  }

  /**
   * The prefetch if it starts at `position` and covers `length`, taken out. Any other prefetch
   * is dropped: the stream went elsewhere (its read still finishes; close() waits for it).
   */
  private takePrefetch(length: number, position: number): Prefetch | undefined {
    const p = this.prefetch;
    if (p === undefined) return undefined;
    this.prefetch = undefined;
    if (p.position === position && p.length >= length) return p;
    return undefined;
  }

  private afterRead(position: number, length: number, alone = true): void {
    const sequential = position === this.lastReadEnd;
    const next = position + length;
    // A host splits big reads unevenly (1 MiB as 8 × 120 KiB + 64 KiB): read ahead as much as
    // the longer of the last two, so the short one does not shrink the next prefetch.
    const ahead = Math.min(READ_AHEAD_MAX, Math.max(length, this.lastReadLength), this._size - next);
    this.lastReadEnd = next;
    this.lastReadLength = length;
    if (!this.readAhead || !sequential || !alone || length > READ_AHEAD_MAX || ahead <= 0) return;
    if (this.prefetch !== undefined) return;
    this.readAheadStats.issued++;
    // The read is claimed now (a write from here on makes it stale) but queued on the next turn
    // of the event loop: handing a read to the threadpool wakes a thread, which costs the
    // caller tens of microseconds, and the caller (a USB READ) should first queue its data.
    let start!: () => void;
    const done = new Promise<void>((r) => (start = r))
      .then(() => {
        const buf = Buffer.allocUnsafe(ahead);
        p.buf = buf;
        return this.pio.readFully(buf, 0, ahead, next);
      })
      .then(
        () => true,
        () => false,
      );
    const p: Prefetch = { position: next, length: ahead, buf: undefined, done, stale: false, settled: false };
    this.prefetching.add(done);
    void done.then(() => {
      p.settled = true;
      this.prefetching.delete(done);
    });
    this.prefetch = p;
    setImmediate(start);
  }

  directFd(): number | undefined {
    return this.handle.fd;
  }

  dropReadAhead(): void {
    if (this.prefetch !== undefined) this.prefetch.stale = true;
    this.prefetch = undefined;
    this.lastReadEnd = -1;
  }

  /** A write or unmap of [position, position+length) makes an overlapping prefetch stale. */
  private invalidate(position: number, length: number): void {
    const p = this.prefetch;
    if (p !== undefined && position < p.position + p.length && p.position < position + length) p.stale = true;
  }

  async write(data: Buffer, position: number, opts?: WriteOptions): Promise<void> {
    if (this.readOnly) {
      throw new BackstoreError('EACCES', `${this.kind} backstore ${this.name} (${this.path}) is read-only`);
    }
    // Before (a prefetch issued now may read either version) and after (one issued meanwhile).
    this.invalidate(position, data.length);
    try {
      await this.writeAll(data, position, opts);
    } finally {
      this.invalidate(position, data.length);
    }
  }

  private async writeAll(data: Buffer, position: number, opts?: WriteOptions): Promise<void> {
    const fua = opts?.fua === true;
    const dsync = fua ? this.dsyncPio : undefined;
    await (dsync ?? this.pio).writeAll(data, position);
    if (fua && dsync === undefined) await this.handle.datasync();
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    await this.handle.datasync();
    await this.pi?.flush();
  }

  async unmap(position: number, length: number): Promise<void> {
    if (!this.canUnmap) {
      throw new BackstoreError('EINVAL', `${this.kind} backstore ${this.name} (${this.path}) cannot unmap`);
    }
    // A fork+exec per punch costs ~5 ms: a host that unmaps block by block would crawl.
    // Small ranges and the unaligned edges of big ones are zero-filled instead (they read
    // back as zeros, as LBPRZ promises, but stay allocated); only whole 4 KiB-aligned
    // stretches of at least PUNCH_MIN bytes are really deallocated (fstrim, mkfs discard).
    const start = Math.ceil(position / PUNCH_ALIGN) * PUNCH_ALIGN;
    const end = Math.floor((position + length) / PUNCH_ALIGN) * PUNCH_ALIGN;
    if (end - start < PUNCH_MIN) {
      await this.zeroFill(position, length);
      return;
    }
    await this.zeroFill(position, start - position);
    await this.zeroFill(end, position + length - end);
    // At most PUNCH_CONCURRENCY children at once: a big UNMAP list must not fork-bomb a 512 MiB board.
    while (this.punching >= PUNCH_CONCURRENCY) await new Promise<void>((r) => this.punchWaiters.push(r));
    this.punching++;
    this.invalidate(start, end - start);
    try {
      // /proc/PID/fd/N names the file we hold open, even if its path was renamed or replaced.
      await punchHole(`/proc/${process.pid}/fd/${this.handle.fd}`, start, end - start);
    } finally {
      this.invalidate(start, end - start);
      this.punching--;
      this.punchWaiters.shift()?.();
    }
  }

  private async zeroFill(position: number, length: number): Promise<void> {
    for (let done = 0; done < length; ) {
      const n = Math.min(length - done, ZEROS.length);
      await this.write(ZEROS.subarray(0, n), position + done);
      done += n;
    }
  }

  async mapping(position: number, length: number): Promise<{ mapped: boolean; length: number }> {
    // Node has no lseek(SEEK_DATA/SEEK_HOLE): report mapped, as SBC allows when unknown.
    void position;
    return { mapped: true, length };
  }

  async close(): Promise<void> {
    this.prefetch = undefined;
    await Promise.all([...this.prefetching]);
    await this.dsyncPio?.close();
    await this.pi?.close();
    await this.pio.close();
  }
}

/** `fallocate --punch-hole --keep-size`: the range reads as zeros and its blocks are freed. */
export function punchHole(path: string, position: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'fallocate',
      ['--punch-hole', '--keep-size', '--offset', String(position), '--length', String(length), path],
      { timeout: 30_000 },
      (err, _stdout, stderr) => {
        if (err) reject(new BackstoreError('EIO', `punch hole in ${path} at ${position}+${length}: ${String(stderr).trim() || err.message}`));
        else resolve();
      },
    );
  });
}

/** Map an errno from open/stat to a BackstoreError naming the path. */
export function openError(err: unknown, kind: BackstoreKind, name: string, path: string): BackstoreError {
  if (err instanceof BackstoreError) return err;
  const e = err as NodeJS.ErrnoException;
  const what = `${kind} backstore ${name}: ${path}`;
  switch (e.code) {
    case 'ENOENT':
      return new BackstoreError('ENOENT', `${what} does not exist`);
    case 'EEXIST':
      return new BackstoreError('EEXIST', `${what} already exists`);
    case 'EACCES':
    case 'EPERM':
      return new BackstoreError('EACCES', `${what}: permission denied`);
    case 'EROFS':
      return new BackstoreError('EACCES', `${what} is on a read-only filesystem (use readOnly)`);
    case 'EBUSY':
      return new BackstoreError('EACCES', `${what} is in use (mounted, or held open exclusively by another program)`);
    case 'EISDIR':
      return new BackstoreError('EINVAL', `${what} is a directory`);
    default:
      return new BackstoreError('EIO', `${what}: ${e.message ?? String(err)}`);
  }
}
