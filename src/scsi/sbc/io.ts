// Shared pieces of the SBC data path: range checks, backstore calls that turn I/O
// errors into sense, data-out streaming in bounded chunks.

import { Status, type ScsiResult } from '../types';
import { Asc, SenseKey, invalidCdb, lbaOutOfRange, type SenseSpec } from '../sense';
import type { CommandContext } from '../command';
import { PULL_CHUNK } from '../limits';

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

export async function writeMedium(ctx: CommandContext, data: Buffer, position: number, fua: boolean): Promise<void> {
  try {
    await ctx.lu.backstore.write(data, position, fua ? { fua: true } : {});
  } catch (e) {
    throw new MediumError({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR }, e);
  }
}

/** Deallocate a byte range: backstore unmap, or zeros written when it cannot unmap. */
export async function deallocate(ctx: CommandContext, position: number, length: number): Promise<void> {
  const bs = ctx.lu.backstore;
  if (bs.canUnmap) {
    try {
      await bs.unmap(position, length);
    } catch (e) {
      throw new MediumError({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR }, e);
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
