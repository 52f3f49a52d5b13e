// COMPARE AND WRITE (SBC-3 §5.2): VMware's ATS primitive.
//
// CDB: 0 opcode 89h, 1 WRPROTECT(7:5) DPO(4) FUA(3), 2..9 LBA, 10..12 reserved,
//   13 NUMBER OF LOGICAL BLOCKS, 14 GROUP NUMBER(4:0), 15 control.
// Data-Out Buffer: NUMBER OF LOGICAL BLOCKS of verify data, then as many blocks of write data.
//
// The data-out is pulled before anything is locked; the compare and the write then run
// with the range lock held, which every other write also takes (io.ts writeMedium), so
// no write can land between our read and our write.

import type { Handler } from '../command';
import { Asc, SenseKey, invalidCdb } from '../sense';
import { MAX_COMPARE_AND_WRITE_BLOCKS } from '../limits';
import { checkRange, goodOut, guarded, readMedium, writeMediumLocked } from './io';
import { rangeLockOf } from './range-lock';

const FUA = 0x08;
const NOLB_BYTE = 13;

export const compareAndWrite: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const lba = cdb.readBigUInt64BE(2);
    const blocks = cdb[NOLB_BYTE]!;
    // §5.2: the limit is checked before any data is transferred.
    if (blocks > MAX_COMPARE_AND_WRITE_BLOCKS) return ctx.fail(invalidCdb(NOLB_BYTE));
    const bad = checkRange(ctx, lba, blocks);
    if (bad) return ctx.fail(bad);
    const bsz = ctx.lu.blockSize;
    const half = blocks * bsz;
    const expected = 2 * half;
    // A Data-Out Buffer that is not exactly 2 × NoLB blocks is rejected, as LIO does for
    // write-direction overflow/underflow: half a compare is meaningless, and a NoLB that
    // wrapped (libiscsi sends 256 blocks as NoLB 0) must not pass as a no-op.
    if (ctx.cmd.dataOutLength !== expected) return { ...ctx.fail(invalidCdb(NOLB_BYTE)), dataOutExpected: expected };
    // §5.2: NUMBER OF LOGICAL BLOCKS zero transfers nothing and is not an error.
    if (blocks === 0) return goodOut(0);
    const parts: Buffer[] = [];
    for (let got = 0; got < expected; ) {
      const b = await ctx.pull(expected - got);
      if (b.length === 0) break;
      parts.push(b);
      got += b.length;
    }
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (data.length < expected) return { ...ctx.fail(invalidCdb(NOLB_BYTE)), dataOutExpected: expected };
    const verify = data.subarray(0, half);
    const fua = (cdb[1]! & FUA) !== 0 || !ctx.lu.writeCacheEnabled;
    const base = Number(lba) * bsz;
    const mismatch = await rangeLockOf(ctx.lu).with(base, half, async () => {
      const medium = Buffer.allocUnsafe(half);
      await readMedium(ctx, medium, 0, half, base);
      if (!medium.equals(verify)) {
        for (let i = 0; i < half; i++) if (medium[i] !== verify[i]) return i;
      }
      if (ctx.aborted) return -1;
      await writeMediumLocked(ctx, data.subarray(half, expected), base, fua);
      return -1;
    });
    if (mismatch >= 0) {
      // §5.2: MISCOMPARE DURING VERIFY OPERATION, INFORMATION = offset of the first
      // differing byte from the start of the Data-Out Buffer; nothing was written.
      return {
        ...ctx.fail({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: mismatch }),
        dataOutExpected: expected,
      };
    }
    return goodOut(expected);
  });
