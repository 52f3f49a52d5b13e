// ORWRITE(16) (SBC-3 §5.30): each block on the medium becomes (medium OR data-out).
//
// CDB: 0 opcode 8Bh, 1 ORPROTECT(7:5) DPO(4) FUA(3), 2..9 LBA, 10..13 TRANSFER LENGTH,
//   14 GROUP NUMBER(4:0), 15 control. ORPROTECT is outside the usage mask (no PI).
//
// The data-out is pulled first, then the whole range is read, ORed and written with the
// range lock held, so no other write lands between our read and our write (§5.30: the
// operation is atomic with respect to other commands writing those blocks).

import type { Handler } from '../command';
import { decodeLbaRange } from '../cdb';
import { checkRange, checkTransferLength, goodOut, guarded, readMedium, streamDataOut, writeMediumLocked } from './io';
import { rangeLockOf } from './range-lock';

const FUA = 0x08;

export const orWrite16: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const { lba, blocks } = decodeLbaRange(cdb, 16);
    const bad = checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, 10);
    if (bad) return ctx.fail(bad);
    if (blocks === 0) return goodOut(0);
    const bsz = ctx.lu.blockSize;
    const expected = blocks * bsz;
    const data = Buffer.alloc(expected);
    const got = await streamDataOut(ctx, expected, async (chunk, off) => {
      chunk.copy(data, off);
    });
    if (got === 0 || ctx.aborted) return goodOut(expected);
    const fua = (cdb[1]! & FUA) !== 0 || !ctx.lu.writeCacheEnabled;
    const base = Number(lba) * bsz;
    await rangeLockOf(ctx.lu).with(base, got, async () => {
      const medium = Buffer.allocUnsafe(got);
      await readMedium(ctx, medium, 0, got, base);
      for (let i = 0; i < got; i++) medium[i] = medium[i]! | data[i]!;
      await writeMediumLocked(ctx, medium, base, fua);
    });
    return goodOut(expected);
  });
