// WRITE ATOMIC(16) (SBC-4 §5.48): the whole range is written as one, or not at all.
//
// CDB: 0 opcode 9Ch, 1 WRPROTECT(7:5) DPO(4) FUA(3), 2..9 LBA, 10..11 ATOMIC BOUNDARY,
//   12..13 TRANSFER LENGTH, 14 GROUP NUMBER(5:0), 15 control.
// VPD B0 reports MAXIMUM ATOMIC TRANSFER LENGTH = MAXIMUM TRANSFER LENGTH, no alignment or
// granularity rule, and MAXIMUM ATOMIC BOUNDARY SIZE 0: ATOMIC BOUNDARY is outside the
// usage mask, so a non-zero value is INVALID FIELD IN CDB.
//
// The data-out is collected first, then written with one backstore call under the range
// lock, so no other write interleaves with it. Readers do not take the lock: on a file
// backstore a concurrent READ may see part of a large atomic write.

import type { Handler } from '../command';
import { invalidCdb } from '../sense';
import { checkRange, checkTransferLength, goodOut, guarded, streamDataOut, writeMediumLocked } from './io';
import { rangeLockOf } from './range-lock';

const FUA = 0x08;

export const writeAtomic16: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const lba = cdb.readBigUInt64BE(2);
    const blocks = cdb.readUInt16BE(12);
    const bad = checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, 12);
    if (bad) return ctx.fail(bad);
    if (blocks === 0) return goodOut(0);
    const bsz = ctx.lu.blockSize;
    const expected = blocks * bsz;
    const data = Buffer.allocUnsafe(expected);
    const got = await streamDataOut(ctx, expected, async (chunk, off) => {
      chunk.copy(data, off);
    });
    // All or nothing: a short Data-Out Buffer writes nothing and is reported.
    if (ctx.aborted) return goodOut(expected);
    if (got < expected) return { ...ctx.fail(invalidCdb(12)), dataOutExpected: expected };
    const fua = (cdb[1]! & FUA) !== 0 || !ctx.lu.writeCacheEnabled;
    const base = Number(lba) * bsz;
    await rangeLockOf(ctx.lu).with(base, expected, () => writeMediumLocked(ctx, data, base, fua));
    return goodOut(expected);
  });
