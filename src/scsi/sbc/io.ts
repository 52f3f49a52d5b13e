// Shared pieces of the SBC data path: range checks, backstore calls that turn I/O
// errors into sense, data-out streaming in bounded chunks.

import { Status, type ScsiResult } from '../types';
import { Asc, SenseKey, invalidCdb, lbaOutOfRange, type SenseSpec } from '../sense';
import type { CommandContext } from '../command';
import { PULL_CHUNK } from '../limits';
import { rangeLockOf } from './range-lock';
import { generatePi, resetPi, writePi } from './pi';

/** SBC-3 §4.5: LBA + blocks beyond the capacity → LOGICAL BLOCK ADDRESS OUT OF RANGE. */
export function checkRange(ctx: CommandContext, lba: bigint, blocks: number): SenseSpec | undefined {
  if (lba + BigInt(blocks) > BigInt(ctx.lu.blockCount)) return lbaOutOfRange;
  return undefined;
}

/** SBC-3 §6.6.4: a transfer above MAXIMUM TRANSFER LENGTH is an INVALID FIELD IN CDB. */
export function checkTransferLength(ctx: CommandContext, blocks: number, lengthByte: number): SenseSpec | undefined {
  return blocks > ctx.lu.maxTransferBlocks ? invalidCdb(lengthByte) : undefined;
}

export class MediumError extends Error {
  constructor(readonly spec: SenseSpec, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

export async function readMedium(ctx: CommandContext, into: Buffer, offset: number, length: number, position: number): Promise<void> {
  try {
    await ctx.lu.backstore.read(into, offset, length, position);
  } catch (e) {
    throw new MediumError({ key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR }, e);
  }
}

/** Write with the range lock held for this call only (see range-lock.ts). */
export async function writeMedium(ctx: CommandContext, data: Buffer, position: number, fua: boolean): Promise<void> {
  const release = await rangeLockOf(ctx.lu).acquire(position, data.length);
  try {
    await writeMediumLocked(ctx, data, position, fua);
  } finally {
    release();
  }
}

/** Write when the caller already holds the range lock (COMPARE AND WRITE, ORWRITE, ...). */
export async function writeMediumLocked(ctx: CommandContext, data: Buffer, position: number, fua: boolean): Promise<void> {
  try {
    await ctx.lu.backstore.write(data, position, fua ? { fua: true } : {});
    // SBC-3 §4.22: on a medium formatted with PI, writes without PI get generated tuples.
    const type = ctx.lu.protectionType;
    if (type !== 0) {
      const lba = BigInt(position / ctx.lu.blockSize);
      await writePi(ctx.lu.backstore, lba, generatePi(data, ctx.lu.blockSize, lba, type), fua ? FUA_WRITE : PLAIN_WRITE);
    }
  } catch (e) {
    throw new MediumError({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR }, e);
  }
}

const READ_ERROR: SenseSpec = { key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR };
const WRITE_ERROR: SenseSpec = { key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR };
const FUA_WRITE = Object.freeze({ fua: true });
const PLAIN_WRITE = Object.freeze({});

/** A backstore failure as the command's result: logged, MEDIUM ERROR sense (as `guarded`). */
function mediumFailure(ctx: CommandContext, spec: SenseSpec, e: unknown): ScsiResult {
  process.stderr.write(`lunbox scsi: ${ctx.lu.name}: backstore I/O failed: ${e instanceof Error ? e.message : String(e)}\n`);
  return ctx.fail(spec);
}

/**
 * The first block of [position, position + length) the backstore cannot read, as an LBA, or
 * undefined when every part reads now (a transient error). Bisection: a failing range is
 * halved until one block is left, reading about `length` bytes in all. Only on the error path.
 */
export async function firstUnreadableBlock(ctx: CommandContext, position: number, length: number): Promise<bigint | undefined> {
  const bs = ctx.lu.blockSize;
  let lo = 0;
  let hi = Math.floor(length / bs);
  if (hi === 0) return undefined;
  const buf = Buffer.allocUnsafe(Math.max(bs, Math.ceil(hi / 2) * bs));
  const fails = async (from: number, to: number): Promise<boolean> => {
    try {
      await ctx.lu.backstore.read(buf, 0, (to - from) * bs, position + from * bs);
      return false;
    } catch {
      return true;
    }
  };
  // [lo, hi) holds a block that fails: the whole read did.
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (await fails(lo, mid)) hi = mid;
    else lo = mid;
  }
  if (!(await fails(lo, hi))) return undefined;
  return BigInt(Math.floor(position / bs) + lo);
}

/**
 * A READ the backstore failed: logged, MEDIUM ERROR / UNRECOVERED READ ERROR with INFORMATION
 * set to the first block that cannot be read (SBC-3 §4.18.2), so that an initiator can keep
 * what comes before it and retry the rest.
 */
function readFailure(ctx: CommandContext, position: number, length: number, e: unknown): Promise<ScsiResult> {
  return firstUnreadableBlock(ctx, position, length).then(
    (lba) => mediumFailure(ctx, lba === undefined ? READ_ERROR : { ...READ_ERROR, information: lba }, e),
    () => mediumFailure(ctx, READ_ERROR, e),
  );
}

// The two functions below are READ and WRITE's whole I/O: plain promise chains rather than
// nested async functions (guarded → body → readMedium), which cost a few promises and
// about a kilobyte of garbage per command.

/** Read `into.length` bytes at `position`; GOOD with them, or MEDIUM ERROR. */
export function readResult(ctx: CommandContext, into: Buffer, position: number): Promise<ScsiResult> {
  let p: Promise<void>;
  try {
    p = ctx.lu.backstore.read(into, 0, into.length, position);
  } catch (e) {
    p = Promise.reject(e);
  }
  return p.then(
    () => ctx.good(into),
    (e: unknown) => readFailure(ctx, position, into.length, e),
  );
}

/**
 * Read `length` bytes at `position` into a buffer the backstore hands over (a read-ahead hit
 * costs no copy); GOOD with them, or MEDIUM ERROR. Backstores without readOwned: readResult.
 */
export function readOwnedResult(ctx: CommandContext, length: number, position: number): Promise<ScsiResult> {
  const bs = ctx.lu.backstore;
  if (bs.readOwned === undefined || length <= SLAB_MAX) return readResult(ctx, dataInBuffer(length), position);
  let p: Promise<Buffer>;
  try {
    p = bs.readOwned(length, position);
  } catch (e) {
    p = Promise.reject(e);
  }
  return p.then(
    (data) => ctx.good(data),
    (e: unknown) => readFailure(ctx, position, length, e),
  );
}

/** Write `data` at `position` under the range lock (as writeMedium); `done`, or MEDIUM ERROR. */
export function writeResult(ctx: CommandContext, data: Buffer, position: number, fua: boolean, done: ScsiResult): Promise<ScsiResult> {
  return rangeLockOf(ctx.lu)
    .acquire(position, data.length)
    .then((release) => {
      let p: Promise<void>;
      try {
        p = ctx.lu.backstore.write(data, position, fua ? FUA_WRITE : PLAIN_WRITE);
      } catch (e) {
        p = Promise.reject(e);
      }
      return p.then(
        () => {
          release();
          return done;
        },
        (e: unknown) => {
          release();
          return mediumFailure(ctx, WRITE_ERROR, e);
        },
      );
    });
}

/**
 * Data-in buffers up to 32 KiB are carved from a shared 128 KiB slab (what Buffer.allocUnsafe
 * does below 4 KiB), so a 4 KiB read makes no ArrayBuffer of its own: that allocation and
 * the external-memory GCs it drives were a tenth of a 4 KiB READ's cost. Views are never
 * handed out twice; a slab is freed when its last view is gone.
 */
const SLAB_SIZE = 128 * 1024;
const SLAB_MAX = 32 * 1024;
let slab: Buffer | null = null;
let slabOffset = 0;

export function dataInBuffer(length: number): Buffer {
  if (length > SLAB_MAX) return Buffer.allocUnsafe(length);
  if (slab === null || slabOffset + length > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabOffset = 0;
  }
  const b = slab.subarray(slabOffset, slabOffset + length);
  slabOffset = (slabOffset + length + 7) & ~7; // keep views 8-byte aligned
  return b;
}

/** Deallocate a byte range: backstore unmap, or zeros written when it cannot unmap. */
export async function deallocate(ctx: CommandContext, position: number, length: number): Promise<void> {
  const bs = ctx.lu.backstore;
  if (bs.canUnmap) {
    const release = await rangeLockOf(ctx.lu).acquire(position, length);
    try {
      await bs.unmap(position, length);
      // SBC-3 §4.7.4.5: a deallocated block's PI reads as FFFF_FFFF_FFFF_FFFFh.
      if (ctx.lu.protectionType !== 0) await resetPi(bs, BigInt(position / ctx.lu.blockSize), length / ctx.lu.blockSize);
    } catch (e) {
      throw new MediumError({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR }, e);
    } finally {
      release();
    }
    return;
  }
  await writeRepeated(ctx, Buffer.alloc(ctx.lu.blockSize), position, length / ctx.lu.blockSize, false);
}

/** Write `block` to `count` consecutive blocks starting at byte `position`. */
export async function writeRepeated(ctx: CommandContext, block: Buffer, position: number, count: number, fua: boolean): Promise<void> {
  const total = count * block.length;
  const chunkBlocks = Math.max(1, Math.min(count, Math.floor(PULL_CHUNK / block.length)));
  const chunk = Buffer.allocUnsafe(chunkBlocks * block.length);
  chunk.fill(block);
  for (let done = 0; done < total; ) {
    if (ctx.aborted) return;
    const n = Math.min(chunk.length, total - done);
    await writeMedium(ctx, n === chunk.length ? chunk : chunk.subarray(0, n), position + done, fua);
    done += n;
  }
}

/**
 * Stream `expected` bytes of data-out (whole blocks only) in chunks of at most 1 MiB,
 * handing each chunk to `sink`. Returns the number of bytes consumed. When the
 * initiator sent less than `expected`, only the whole blocks it sent are handed on.
 */
export async function streamDataOut(
  ctx: CommandContext,
  expected: number,
  sink: (chunk: Buffer, offset: number) => Promise<void>,
): Promise<number> {
  const bsz = ctx.lu.blockSize;
  const available = Math.min(expected, ctx.cmd.dataOutLength);
  const step = Math.max(bsz, Math.floor(PULL_CHUNK / bsz) * bsz);
  let offset = 0;
  // The sink of one chunk runs while the next chunk is pulled (one of each at a time), so a
  // fabric's R2T round trip overlaps the backstore write.
  let pending: Promise<void> = Promise.resolve();
  try {
    while (available - offset >= bsz) {
      const want = Math.min(step, Math.floor((available - offset) / bsz) * bsz);
      const got = await ctx.pull(want);
      await pending;
      const whole = Math.floor(got.length / bsz) * bsz;
      if (whole > 0) {
        const p = sink(whole === got.length ? got : got.subarray(0, whole), offset);
        p.catch(() => undefined); // observed by the next `await pending`
        pending = p;
      }
      offset += whole;
      if (got.length < want) break;
    }
  } catch (e) {
    // Aborted or failed pull: let the write in flight finish before the task is reported done.
    await pending.catch(() => undefined);
    throw e;
  }
  await pending;
  return offset;
}

/** Result for a data-out command: GOOD plus the length the CDB asked for (residuals). */
export function goodOut(expected: number): ScsiResult {
  return { status: Status.GOOD, dataOutExpected: expected };
}

/** Run a handler body, mapping MediumError to its sense. */
export async function guarded(ctx: CommandContext, body: () => Promise<ScsiResult>): Promise<ScsiResult> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof MediumError) {
      process.stderr.write(`lunbox scsi: ${ctx.lu.name}: backstore I/O failed: ${e.message}\n`);
      return ctx.fail(e.spec);
    }
    throw e;
  }
}
