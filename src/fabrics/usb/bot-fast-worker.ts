// The USB fast path's worker thread: it owns the bulk endpoints, reads every CBW itself and
// serves plain READ(10/16) and WRITE(10/16) straight between the endpoint files and the
// backstore's file descriptor, with blocking I/O on one thread (as the kernel's
// f_mass_storage does in its own thread). Everything else goes to the main thread's
// Bulk-Only Transport machine and SCSI core (bot-fast.ts), with the worker stopped until the
// main thread says go on.
//
// Why: on the main thread a READ costs a threadpool wake-up for the CBW, the event loop, the
// whole BOT/SCSI path with its promises, and another wake-up for the write. On a slow CPU
// (a Pi Zero, or QEMU's TCG emulation) that is milliseconds per command; here it is a few
// syscalls and a few dozen lines of JavaScript, with buffers reused so no page is faulted in.
//
// What the worker may serve is decided by the main thread, per LUN, in shared memory (the
// lease, see bot-fast.ts and LogicalUnit.fastPathGrant): read, write, the file descriptor,
// block size and count. The worker only ever answers GOOD. Whatever it cannot serve exactly
// as the core would (other opcodes, any flag but DPO/FUA, a length that does not match the
// host's, a range beyond the end, a failed pread or pwrite, a short data-out, a lease taken
// back meanwhile) is handed over unchanged, with the data-out already read, and the core
// gives the real answer.
//
// With the lunbox-fast addon (src/native/lunbox-fast.c, found by fast-addon.ts) the worker
// runs the same loop in C, with the same rules (planFast's twin is plan_fast there) and the
// same control block (nativeLayout gives it the indices): a READ's data then goes out with
// one copy, from a mapping of the backstore, and a command costs no JavaScript at all.
//
// These functions run in the worker from their source text (fastWorkerSource): they use
// only their arguments, `require` and literals.

/** Indices into the shared Int32Array (the control block), then the leases. */
export const Ctl = {
  /** Non-zero: the worker may read CBWs (the value is the main thread's epoch). 0: it waits. */
  GO: 0,
  /** 1 while the worker does backstore I/O under a lease. */
  BUSY: 1,
  /** Bumped by every Bulk-Only Mass Storage Reset: a transfer that spans one is abandoned. */
  RESET: 2,
  /** 1: the worker returns. */
  STOP: 3,
  /** Bulk max packet size of the current speed. */
  MPS: 4,
  FAST_READS: 5,
  FAST_WRITES: 6,
  FORWARDED: 7,
  /** MiB moved by the fast path, and the bytes of the MiB not yet full. */
  MIB: 8,
  BYTES: 9,
  /**
   * The JavaScript loop: 1 while it writes bulk-IN. Its writes block until the host takes the
   * data and cannot be taken back: should a Bulk-Only reset find one outstanding, the reset is
   * refused, so that the host resets the port (which ends the write), rather than the data
   * going out as the next command's (BotFastPath.reset). The C loop cancels its queued
   * requests instead (the addon's cancelIn), and sets this word only around the few blocking
   * bulk-IN writes it still makes (write_in in lunbox-fast.c).
   */
  IN_BUSY: 10,
  LEASES: 16,
} as const;

/** Per-LUN lease fields, from Ctl.LEASES + lun × LEASE_STRIDE. */
export const Lease = { FLAGS: 0, FD: 1, BLOCK_SIZE: 2, BLOCKS_LO: 3, BLOCKS_HI: 4, MAX_BLOCKS: 5 } as const;
export const LEASE_STRIDE = 8;
export const LeaseFlag = { READ: 1, WRITE: 2, WRITE_THROUGH: 4 } as const;
export const CTL_WORDS = Ctl.LEASES + 16 * LEASE_STRIDE;

/** The indices the C loop (src/native/lunbox-fast.c) is given, in the order it reads them. */
export function nativeLayout(): Int32Array {
  const c = Ctl;
  const l = Lease;
  return Int32Array.from([c.GO, c.BUSY, c.RESET, c.STOP, c.MPS, c.FAST_READS, c.FAST_WRITES, c.FORWARDED, c.MIB, c.BYTES, c.LEASES, LEASE_STRIDE,
    l.FLAGS, l.FD, l.BLOCK_SIZE, l.BLOCKS_LO, l.BLOCKS_HI, l.MAX_BLOCKS, c.IN_BUSY]);
}

/** The lunbox-fast addon (src/native/lunbox-fast.c). */
export interface FastAddon {
  serve(ctl: Int32Array, layout: Int32Array, inFd: number, outFd: number, lunCount: number, cbw: Uint8Array, data: Uint8Array, out: Int32Array): number;
  release(): number;
  /** Main thread, on a Bulk-Only reset: cancel what the loop serving `ctl` queued on bulk-IN. */
  cancelIn?(ctl: Int32Array): number;
}

/** One command the fast path serves, from planFast. */
export interface FastPlan {
  readonly write: boolean;
  readonly lun: number;
  readonly tag: number;
  readonly fd: number;
  /** Byte offset in the backstore. */
  readonly position: number;
  readonly bytes: number;
  /** Make the write durable before the CSW (FUA, or the unit's write cache is off). */
  readonly sync: boolean;
}

/**
 * The fast plan for a CBW, or undefined when the core must answer it. Only a valid and
 * meaningful CBW (BOT §6.2) for a leased LUN carrying READ(10)/(16) or WRITE(10)/(16) with
 * no field but DPO and FUA set, a non-zero length within the lease's capacity and maximum
 * transfer, whose byte count and direction are exactly the host's (case 6 or 12), and at most
 * `maxBytes`.
 */
export function planFast(b: Uint8Array, n: number, lunCount: number, ctl: Int32Array, maxBytes: number): FastPlan | undefined {
  if (n !== 31) return undefined;
  // dCBWSignature 'USBC', little-endian.
  if (b[0] !== 0x55 || b[1] !== 0x53 || b[2] !== 0x42 || b[3] !== 0x43) return undefined;
  const flags = b[12] as number;
  const lun = b[13] as number;
  const cbLength = b[14] as number;
  if ((flags & 0x7f) !== 0 || lun >= lunCount || cbLength > 16) return undefined;
  const c = 15;
  const op = b[c] as number;
  let lba: number;
  let blocks: number;
  if (op === 0x28 || op === 0x2a) {
    // READ(10)/WRITE(10): GROUP NUMBER (byte 6) and CONTROL (byte 9) must be zero.
    if (cbLength < 10 || b[c + 6] !== 0 || b[c + 9] !== 0) return undefined;
    lba = (((b[c + 2] as number) << 24) | ((b[c + 3] as number) << 16) | ((b[c + 4] as number) << 8) | (b[c + 5] as number)) >>> 0;
    blocks = ((b[c + 7] as number) << 8) | (b[c + 8] as number);
  } else if (op === 0x88 || op === 0x8a) {
    // READ(16)/WRITE(16): GROUP NUMBER (byte 14) and CONTROL (byte 15) must be zero.
    if (cbLength < 16 || b[c + 14] !== 0 || b[c + 15] !== 0) return undefined;
    const hi = (((b[c + 2] as number) << 24) | ((b[c + 3] as number) << 16) | ((b[c + 4] as number) << 8) | (b[c + 5] as number)) >>> 0;
    const lo = (((b[c + 6] as number) << 24) | ((b[c + 7] as number) << 16) | ((b[c + 8] as number) << 8) | (b[c + 9] as number)) >>> 0;
    if (hi >= 0x200000) return undefined; // beyond 2^53: no backstore is that big
    lba = hi * 4294967296 + lo;
    blocks = ((((b[c + 10] as number) << 24) | ((b[c + 11] as number) << 16) | ((b[c + 12] as number) << 8) | (b[c + 13] as number)) >>> 0);
  } else {
    return undefined;
  }
  const write = op === 0x2a || op === 0x8a;
  // Byte 1: RDPROTECT/WRPROTECT (7:5) must be 0 (no protection information here), DPO (4) and
  // FUA (3) are allowed, the rest is reserved or obsolete.
  const b1 = b[c + 1] as number;
  if ((b1 & ~0x18) !== 0 || blocks === 0) return undefined;
  const at = 16 + lun * 8; // Ctl.LEASES + lun × LEASE_STRIDE
  const lease = Atomics.load(ctl, at);
  if ((lease & (write ? 2 : 1)) === 0) return undefined;
  const blockSize = ctl[at + 2] as number;
  const capacity = ((ctl[at + 3] as number) >>> 0) + ((ctl[at + 4] as number) >>> 0) * 4294967296;
  if (lba + blocks > capacity || blocks > (ctl[at + 5] as number)) return undefined;
  const bytes = blocks * blockSize;
  const hostLength = ((b[8] as number) | ((b[9] as number) << 8) | ((b[10] as number) << 16) | ((b[11] as number) << 24)) >>> 0;
  if (bytes !== hostLength || bytes > maxBytes) return undefined;
  if (((flags & 0x80) !== 0) === write) return undefined; // the host moves data the other way
  const tag = ((b[4] as number) | ((b[5] as number) << 8) | ((b[6] as number) << 16) | ((b[7] as number) << 24)) >>> 0;
  const sync = write && ((b1 & 0x08) !== 0 || (lease & 4) !== 0);
  return { write, lun, tag, fd: ctl[at + 1] as number, position: lba * blockSize, bytes, sync };
}

/** What the worker is started with. */
export interface FastWorkerData {
  readonly ctl: SharedArrayBuffer;
  readonly inFd: number;
  readonly outFd: number;
  readonly lunCount: number;
  /** Largest single endpoint transfer to try (halved on ENOMEM, down to 16 KiB). */
  readonly maxTransfer: number;
  /** Largest command the worker serves (its buffer grows to this). */
  readonly maxBytes: number;
  /** The control block's layout (Ctl, LEASE_STRIDE): the worker's source cannot import them. */
  readonly layout: typeof Ctl & { readonly LEASE_STRIDE: number };
  /** The same for the C loop (nativeLayout). */
  readonly nativeLayout: Int32Array;
  /** The lunbox-fast addon to run the loop in C, if any (fast-addon.ts). */
  readonly native?: string;
}

/** Messages from the worker. */
export type FastWorkerMessage =
  /** A CBW for the core, and for a WRITE the data-out already taken off the pipe. */
  | { readonly t: 'cbw'; readonly cbw: Uint8Array; readonly data?: Uint8Array }
  /** Endpoint I/O failed: the worker waits for the next go. */
  | { readonly t: 'io-error'; readonly code: string; readonly message: string; readonly paused: boolean }
  /** Whether the addon's C loop runs (sent once, at start, when an addon was given). */
  | { readonly t: 'native'; readonly ok: boolean; readonly message: string }
  /**
   * A READ of LUN `lun` whose backstore failed after part of its data went out (the C loop,
   * reading from a mapping): it was answered with CSW FAILED; the core holds MEDIUM ERROR
   * sense at `lba` (the first block the host did not get) for the REQUEST SENSE that follows.
   * Posted before the worker reads the next CBW.
   */
  | { readonly t: 'read-error'; readonly lun: number; readonly lba: number };

/** The worker's loop (runs in the worker thread). */
export function fastWorkerMain(plan: typeof planFast): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const data0 = wt.workerData as FastWorkerData;
  const port = wt.parentPort as import('node:worker_threads').MessagePort;
  const ctl = new Int32Array(data0.ctl);
  const { GO, BUSY, RESET, STOP, MPS, FAST_READS, FAST_WRITES, FORWARDED, MIB, BYTES, IN_BUSY, LEASES, LEASE_STRIDE } = data0.layout;
  const { inFd, outFd, lunCount, maxBytes } = data0;
  let maxTransfer = data0.maxTransfer;
  const MIN_TRANSFER = 16 * 1024;
  const cbw = Buffer.alloc(1024);
  const csw = Buffer.alloc(13);
  csw.writeUInt32LE(0x53425355, 0);
  let buf = Buffer.allocUnsafe(128 * 1024);
  /** A CBW already read (a data-out read that a reset turned into the next CBW). */
  let pending: Buffer | undefined;

  const errno = (e: unknown): string => {
    const x = e as { code?: unknown; errno?: unknown };
    if (typeof x.code === 'string' && !x.code.startsWith('Unknown')) return x.code;
    return typeof x.errno === 'number' ? `errno ${-x.errno}` : 'EIO';
  };
  const shrink = (size: number): boolean => {
    if (size <= MIN_TRANSFER) return false;
    maxTransfer = Math.max(MIN_TRANSFER, Math.floor(Math.min(size, maxTransfer) / 2 / MIN_TRANSFER) * MIN_TRANSFER);
    return true;
  };
  /** Stop and tell the main thread; it sends go again with the next ENABLE. */
  const ioError = (e: unknown, go: number): void => {
    const paused = Atomics.compareExchange(ctl, GO, go, 0) === go;
    port.postMessage({ t: 'io-error', code: errno(e), message: e instanceof Error ? e.message : String(e), paused });
  };
  /** Hand the CBW (its first n bytes) and any data-out read to the main thread. */
  const handOver = (n: number, data?: Buffer): void => {
    const msg: FastWorkerMessage = data ? { t: 'cbw', cbw: Uint8Array.from(cbw.subarray(0, n)), data: Uint8Array.from(data) } : { t: 'cbw', cbw: Uint8Array.from(cbw.subarray(0, n)) };
    port.postMessage(msg);
  };
  const forward = (n: number, data?: Buffer): void => {
    Atomics.store(ctl, GO, 0);
    Atomics.add(ctl, FORWARDED, 1);
    handOver(n, data);
  };
  const unbusy = (): void => {
    Atomics.store(ctl, BUSY, 0);
    Atomics.notify(ctl, BUSY);
  };
  /**
   * Set BUSY, then check the lease again (`bit`: 1 read, 2 write): a revoke either sees BUSY
   * and waits for this I/O, or this sees the flags cleared. False (and not busy) when revoked.
   */
  const claim = (lun: number, bit: number): boolean => {
    Atomics.store(ctl, BUSY, 1);
    if ((Atomics.load(ctl, LEASES + lun * LEASE_STRIDE) & bit) !== 0) return true;
    unbusy();
    return false;
  };
  const count = (slot: number, bytes: number): void => {
    Atomics.add(ctl, slot, 1);
    const b = Atomics.add(ctl, BYTES, bytes) + bytes;
    if (b >= 1048576) {
      Atomics.sub(ctl, BYTES, 1048576 * Math.floor(b / 1048576));
      Atomics.add(ctl, MIB, Math.floor(b / 1048576));
    }
  };
  /**
   * One bulk-IN transfer of bytes [off, off+len) of `from`, plus the CSW when given; ENOMEM
   * splits. IN_BUSY meanwhile, set before RESET is looked at (a reset bumps RESET, then looks
   * at IN_BUSY: one of the two sees the other). False when a reset came first: nothing is sent.
   */
  const writeIn = (from: Buffer, off: number, len: number, withCsw: boolean, resetAt: number): boolean => {
    Atomics.store(ctl, IN_BUSY, 1);
    try {
      if (Atomics.load(ctl, RESET) !== resetAt) return false;
      writeInNow(from, off, len, withCsw);
      return true;
    } finally {
      Atomics.store(ctl, IN_BUSY, 0);
      Atomics.notify(ctl, IN_BUSY);
    }
  };
  const writeInNow = (from: Buffer, off: number, len: number, withCsw: boolean): void => {
    let done = 0;
    while (done < len || (withCsw && done === len)) {
      const piece = Math.min(len - done, maxTransfer);
      const last = done + piece === len;
      try {
        if (last && withCsw) {
          const n = fs.writevSync(inFd, piece > 0 ? [from.subarray(off + done, off + done + piece), csw] : [csw]);
          if (n !== piece + 13) throw new Error(`bulk-IN write of ${piece + 13} bytes took ${n}`);
          return;
        }
        const n = fs.writeSync(inFd, from, off + done, piece);
        if (n !== piece) throw new Error(`bulk-IN write of ${piece} bytes took ${n}`);
      } catch (e) {
        if (errno(e) === 'ENOMEM' && shrink(piece)) continue;
        throw e;
      }
      done += piece;
    }
  };

  const serveRead = (p: FastPlan, n: number, resetAt: number): void => {
    if (!claim(p.lun, 1)) {
      forward(n);
      return;
    }
    if (buf.length < p.bytes) buf = Buffer.allocUnsafe(p.bytes);
    try {
      let got = 0;
      while (got < p.bytes) {
        const r = fs.readSync(p.fd, buf, got, p.bytes - got, p.position + got);
        if (r === 0) throw new Error('end of file');
        got += r;
      }
    } catch {
      // The core reads it again and answers (MEDIUM ERROR, logged, if it fails there too).
      unbusy();
      forward(n);
      return;
    }
    unbusy();
    csw.writeUInt32LE(p.tag, 4); // residue and status stay 0: the worker answers only GOOD
    const mps = ctl[MPS] as number;
    // The CSW rides on the data's last transfer when the data ends on a packet boundary (BOT
    // case 6, as bot.ts does); else it would share the data's short packet.
    // A reset before the data went out abandons the command: nothing is sent.
    if (p.bytes % mps === 0) {
      if (!writeIn(buf, 0, p.bytes, true, resetAt)) return;
    } else if (!writeIn(buf, 0, p.bytes, false, resetAt) || !writeIn(csw, 0, 0, true, resetAt)) return;
    count(FAST_READS, p.bytes);
  };

  /** A reset while data-out is read abandons the command (`pending` may then hold the next CBW). */
  const serveWrite = (p: FastPlan, n: number, resetAt: number): void => {
    if (buf.length < p.bytes) buf = Buffer.allocUnsafe(p.bytes);
    let got = 0;
    while (got < p.bytes) {
      const ask = Math.min(p.bytes - got, maxTransfer);
      let r: number;
      try {
        r = fs.readSync(outFd, buf, got, ask, null);
      } catch (e) {
        if (errno(e) === 'ENOMEM' && shrink(ask)) continue;
        throw e;
      }
      if (Atomics.load(ctl, RESET) !== resetAt) {
        // Reset Recovery happened while this read waited: it ends with the next CBW, the short
        // packet after whatever whole packets of the abandoned data-out had come in.
        const tail = r % (ctl[MPS] as number);
        if (tail > 0) pending = Buffer.from(buf.subarray(got + r - tail, got + r));
        return;
      }
      got += r;
      if (r < ask) break; // a short packet: the host sent less than it said
    }
    if (got < p.bytes || !claim(p.lun, 2)) {
      forward(n, buf.subarray(0, got));
      return;
    }
    try {
      let put = 0;
      while (put < p.bytes) put += fs.writeSync(p.fd, buf, put, p.bytes - put, p.position + put);
      if (p.sync) fs.fdatasyncSync(p.fd);
    } catch {
      // The core writes it again from the same data and answers (MEDIUM ERROR if it fails too).
      unbusy();
      forward(n, buf.subarray(0, got));
      return;
    }
    unbusy();
    csw.writeUInt32LE(p.tag, 4);
    if (!writeIn(csw, 0, 0, true, resetAt)) return;
    count(FAST_WRITES, p.bytes);
  };

  let native: FastAddon | undefined;
  if (data0.native !== undefined) {
    try {
      native = require(data0.native) as FastAddon;
      if (typeof native.serve !== 'function') throw new Error(`${data0.native} has no serve()`);
      port.postMessage({ t: 'native', ok: true, message: data0.native });
    } catch (e) {
      native = undefined;
      port.postMessage({ t: 'native', ok: false, message: e instanceof Error ? e.message : String(e) });
    }
  }
  if (native !== undefined) {
    // The same loop in C: it returns to hand a CBW over (1), after a READ failed midway (2),
    // when it must wait for go, or on an endpoint failure (-errno, out[0]: 0 CBW read, 1
    // bulk-IN write, 2 data-out read).
    const util = require('node:util') as typeof import('node:util');
    const what = ['bulk-OUT read (CBW)', 'bulk-IN write', 'bulk-OUT read (data-out)'];
    const wbuf = Buffer.allocUnsafe(maxBytes);
    const out = new Int32Array(3);
    for (;;) {
      if (Atomics.load(ctl, STOP) !== 0) {
        native.release();
        return;
      }
      const go = Atomics.load(ctl, GO);
      if (go === 0) {
        Atomics.wait(ctl, GO, 0);
        continue;
      }
      const r = native.serve(ctl, data0.nativeLayout, inFd, outFd, lunCount, cbw, wbuf, out);
      if (r === 1) {
        // The C loop has set GO to 0 and counted it, as forward() does.
        const held = out[1] as number;
        handOver(out[0] as number, held >= 0 ? wbuf.subarray(0, held) : undefined);
      } else if (r === 2) {
        port.postMessage({ t: 'read-error', lun: out[0] as number, lba: ((out[1] as number) >>> 0) + ((out[2] as number) >>> 0) * 0x100000000 });
      } else if (r < 0) {
        let code = `errno ${-r}`;
        try {
          code = util.getSystemErrorName(r);
        } catch {
          // not an errno libuv knows
        }
        ioError(Object.assign(new Error(`${what[out[0] as number] ?? 'endpoint I/O'}: ${code}`), { code }), go);
      }
    }
  }

  for (;;) {
    if (Atomics.load(ctl, STOP) !== 0) return;
    const go = Atomics.load(ctl, GO);
    if (go === 0) {
      Atomics.wait(ctl, GO, 0);
      continue;
    }
    let n: number;
    try {
      if (pending !== undefined) {
        n = pending.copy(cbw);
        pending = undefined;
      } else {
        n = fs.readSync(outFd, cbw, 0, ctl[MPS] as number, null);
      }
    } catch (e) {
      ioError(e, go);
      continue;
    }
    if (Atomics.load(ctl, STOP) !== 0) return;
    const p = plan(cbw, n, lunCount, ctl, maxBytes);
    if (p === undefined) {
      forward(n);
      continue;
    }
    const resetAt = Atomics.load(ctl, RESET);
    try {
      if (p.write) serveWrite(p, n, resetAt);
      else serveRead(p, n, resetAt);
    } catch (e) {
      unbusy();
      ioError(e, go);
    }
  }
}

/** The worker's source text: planFast and the loop, self-contained. */
export function fastWorkerSource(): string {
  // A bundler may wrap functions in a naming helper (__name): give the worker a no-op one.
  return `"use strict";\nvar __name = (f) => f;\n(${fastWorkerMain.toString()})((${planFast.toString()}));\n`;
}
