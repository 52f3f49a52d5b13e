// WRITE SAME 10/16 and UNMAP (SBC-3 §5.42, §5.43, §5.28).
//
// WRITE SAME(10): 0 opcode, 1 WRPROTECT(7:5) ANCHOR(4) UNMAP(3) PBDATA(2) LBDATA(1),
//   2..5 LBA, 6 GROUP, 7..8 NUMBER OF LOGICAL BLOCKS, 9 control.
// WRITE SAME(16): 1 as above + NDOB(0), 2..9 LBA, 10..13 NUMBER OF LOGICAL BLOCKS, 14 GROUP.
// UNMAP parameter list (SBC-3 §5.28.2): 0..1 UNMAP DATA LENGTH, 2..3 UNMAP BLOCK DESCRIPTOR
//   DATA LENGTH, 4..7 reserved, then 16-byte descriptors: 0..7 LBA, 8..11 NUMBER OF BLOCKS.

import { Asc, illegal, invalidCdb, invalidParam, lbaOutOfRange } from '../sense';
import type { Handler } from '../command';
import { MAX_UNMAP_DESCRIPTORS } from '../limits';
import { checkRange, deallocate, goodOut, guarded, writeRepeated } from './io';

const UNMAP_BIT = 0x08;

export function writeSame(len: 10 | 16): Handler {
  return (ctx) =>
    guarded(ctx, async () => {
      const cdb = ctx.cmd.cdb;
      const lba = len === 10 ? BigInt(cdb.readUInt32BE(2)) : cdb.readBigUInt64BE(2);
      const requested = len === 10 ? cdb.readUInt16BE(7) : cdb.readUInt32BE(10);
      const lengthByte = len === 10 ? 7 : 10;
      const unmap = ((cdb[1] ?? 0) & UNMAP_BIT) !== 0;
      // VPD B2 LBPWS/LBPWS10 are clear on a fully provisioned unit: UNMAP=1 is not supported.
      if (unmap && !ctx.lu.thin) return ctx.fail(invalidCdb(1, 3));
      const bad = checkRange(ctx, lba, requested);
      if (bad) return ctx.fail(bad);
      // VPD B0 WSNZ=0, SBC-3 §5.42: zero blocks means from LBA to the last logical block,
      // still bounded by MAXIMUM WRITE SAME LENGTH (libiscsi's ZeroBlocks checks both edges).
      const blocks = requested === 0 ? ctx.lu.blockCount - Number(lba) : requested;
      if (blocks === 0) return goodOut(0);
      if (blocks > ctx.lu.maxWriteSameBlocks) return ctx.fail(invalidCdb(lengthByte));
      const bsz = ctx.lu.blockSize;
      // SBC-4 §5.49 NDOB (WRITE SAME(16) byte 1 bit 0): no Data-Out Buffer, the block is zeros.
      if (len === 16 && ((cdb[1] ?? 0) & 0x01) !== 0) {
        if (ctx.cmd.dataOutLength !== 0) return { ...ctx.fail(illegal(Asc.INVALID_FIELD_IN_CDB)), dataOutExpected: 0 };
        const position = Number(lba) * bsz;
        if (unmap && ctx.lu.thin) await deallocate(ctx, position, blocks * bsz);
        else await writeRepeated(ctx, Buffer.alloc(bsz), position, blocks, !ctx.lu.writeCacheEnabled);
        return goodOut(0);
      }
      // The Data-Out Buffer is exactly one logical block.
      if (ctx.cmd.dataOutLength !== bsz) {
        return { ...ctx.fail(illegal(Asc.INVALID_FIELD_IN_CDB)), dataOutExpected: bsz };
      }
      const block = await ctx.pull(bsz);
      if (block.length < bsz) return { ...ctx.fail(illegal(Asc.INVALID_FIELD_IN_CDB)), dataOutExpected: bsz };
      const position = Number(lba) * bsz;
      // SBC-3 §4.7.3.4: UNMAP=1 asks for the range to be deallocated, whatever the data
      // (as LIO and tgt do; libiscsi's UnmapUntilEnd sends 0xFF and expects zeros back).
      if (unmap && ctx.lu.thin) {
        await deallocate(ctx, position, blocks * bsz);
      } else {
        await writeRepeated(ctx, block, position, blocks, !ctx.lu.writeCacheEnabled);
      }
      return goodOut(bsz);
    });
}

export const unmap: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const paramLen = cdb.readUInt16BE(7);
    // SBC-3 §5.28: a PARAMETER LIST LENGTH of zero is not an error; nothing is unmapped.
    if (paramLen === 0) return goodOut(0);
    if (paramLen < 8) return { ...ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)), dataOutExpected: paramLen };
    const data = await ctx.pull(Math.min(paramLen, ctx.cmd.dataOutLength));
    if (data.length < 8) return { ...ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)), dataOutExpected: paramLen };
    const descLen = data.readUInt16BE(2);
    const usable = Math.min(descLen, data.length - 8);
    const count = Math.floor(usable / 16);
    if (count > MAX_UNMAP_DESCRIPTORS) return { ...ctx.fail(invalidParam(2)), dataOutExpected: paramLen };
    const capacity = BigInt(ctx.lu.blockCount);
    const ranges: [number, number][] = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const o = 8 + i * 16;
      const lba = data.readBigUInt64BE(o);
      const n = data.readUInt32BE(o + 8);
      if (lba + BigInt(n) > capacity) return { ...ctx.fail(lbaOutOfRange), dataOutExpected: paramLen };
      total += n;
      if (n > 0) ranges.push([Number(lba), n]);
    }
    // SBC-3 §6.6.4: MAXIMUM UNMAP LBA COUNT bounds the sum of all descriptors.
    if (total > ctx.lu.maxUnmapBlocks) return { ...ctx.fail(invalidParam(8 + 8)), dataOutExpected: paramLen };
    const bsz = ctx.lu.blockSize;
    for (const [lba, n] of ranges) {
      if (ctx.aborted) break;
      await deallocate(ctx, lba * bsz, n * bsz);
    }
    return goodOut(paramLen);
  });

