// READ CAPACITY 10/16, SYNCHRONIZE CACHE 10/16, START STOP UNIT, PREVENT ALLOW MEDIUM
// REMOVAL (SBC-3 §5.16, §5.17, §5.22, §5.23, §5.25, §5.15).

import { Asc, SenseKey, invalidCdb } from '../sense';
import type { Handler } from '../command';
import { checkRange, goodOut, guarded } from './io';

export const readCapacity10: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  // SBC-3 §5.16: with PMI=0 the LOGICAL BLOCK ADDRESS field shall be zero.
  if (((cdb[8] ?? 0) & 0x01) === 0 && cdb.readUInt32BE(2) !== 0) return ctx.fail(invalidCdb(2));
  const out = Buffer.alloc(8);
  const last = Math.max(0, ctx.lu.blockCount - 1);
  // RETURNED LOGICAL BLOCK ADDRESS: FFFFFFFFh tells the initiator to use READ CAPACITY(16).
  out.writeUInt32BE(last > 0xfffffffe ? 0xffffffff : last, 0);
  out.writeUInt32BE(ctx.lu.blockSize, 4);
  return ctx.good(out);
};

/**
 * READ CAPACITY(16) parameter data (SBC-3 §5.17.2), 32 bytes:
 *   0..7 RETURNED LOGICAL BLOCK ADDRESS, 8..11 LOGICAL BLOCK LENGTH, 12 P_TYPE/PROT_EN,
 *   13 P_I_EXPONENT(7:4) LBPPBE(3:0), 14 LBPME(7) LBPRZ(6) LALBA(13:8), 15 LALBA(7:0).
 */
export const readCapacity16: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  if (((cdb[14] ?? 0) & 0x01) === 0 && cdb.readBigUInt64BE(2) !== 0n) return ctx.fail(invalidCdb(2));
  const alloc = cdb.readUInt32BE(10);
  const out = Buffer.alloc(32);
  out.writeBigUInt64BE(BigInt(Math.max(0, ctx.lu.blockCount - 1)), 0);
  out.writeUInt32BE(ctx.lu.blockSize, 8);
  if (ctx.lu.thin) out[14] = 0x80 | (ctx.lu.unmapReadsZero ? 0x40 : 0);
  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (13, bits 3:0).
  out[13] = (out[13] ?? 0) | (Math.log2(ctx.lu.options.physicalBlockSize / ctx.lu.blockSize) & 0x0f);
  // SBC-3 §5.16.2 P_TYPE(3:1) PROT_EN(0): type 1 is P_TYPE 000b, type 3 is 010b.
  const pt = ctx.lu.protectionType;
  if (pt !== 0) out[12] = ((pt - 1) << 1) | 0x01;
  return ctx.good(out, alloc);
};

export function synchronizeCache(len: 10 | 16): Handler {
  return (ctx) =>
    guarded(ctx, async () => {
      const cdb = ctx.cmd.cdb;
      const lba = len === 10 ? BigInt(cdb.readUInt32BE(2)) : cdb.readBigUInt64BE(2);
      const blocks = len === 10 ? cdb.readUInt16BE(7) : cdb.readUInt32BE(10);
      // SBC-3 §5.22: NUMBER OF LOGICAL BLOCKS zero means "to the end of the medium".
      const bad = blocks === 0 ? (lba > BigInt(ctx.lu.blockCount) ? checkRange(ctx, lba, 0) : undefined) : checkRange(ctx, lba, blocks);
      if (bad) return ctx.fail(bad);
      const flush = ctx.lu.backstore.flush();
      if (((cdb[1] ?? 0) & 0x02) !== 0) {
        // IMMED: GOOD now; a later failure can only be logged (no deferred sense support).
        flush.catch((e: unknown) => process.stderr.write(`lunbox scsi: ${ctx.lu.name}: flush failed: ${String(e)}\n`));
        return goodOut(0);
      }
      try {
        await flush;
      } catch (e) {
        process.stderr.write(`lunbox scsi: ${ctx.lu.name}: flush failed: ${String(e)}\n`);
        return ctx.fail({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR });
      }
      return goodOut(0);
    });
}

/**
 * START STOP UNIT: 1 IMMED(0), 3 POWER CONDITION MODIFIER(3:0),
 * 4 POWER CONDITION(7:4) NO_FLUSH(2) LOEJ(1) START(0).
 */
export const startStopUnit: Handler = async (ctx) => {
  const cdb = ctx.cmd.cdb;
  const b4 = cdb[4] ?? 0;
  const pc = b4 >> 4;
  // SBC-3 §5.25: a non-zero POWER CONDITION makes START and LOEJ ignored. There are no
  // power states to enter, so every value is accepted as a no-op (libiscsi's
  // StartStopUnit.PwrCnd expects GOOD for all of 1..15, reserved codes included).
  if (pc !== 0) return goodOut(0);
  const loej = (b4 & 0x02) !== 0;
  const start = (b4 & 0x01) !== 0;
  if (!loej) return goodOut(0);
  if (!ctx.lu.options.removable) return ctx.fail(invalidCdb(4, 1));
  // SBC-3 §5.15: while a PREVENT is in effect the medium can be neither ejected nor loaded.
  if (ctx.lu.isPrevented()) {
    return ctx.fail({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.MEDIUM_REMOVAL_PREVENTED });
  }
  if (!start && ctx.lu.mediumLoaded && (b4 & 0x04) === 0) {
    // Eject: write back the cache first unless NO_FLUSH.
    try {
      await ctx.lu.backstore.flush();
    } catch (e) {
      process.stderr.write(`lunbox scsi: ${ctx.lu.name}: flush before eject failed: ${String(e)}\n`);
    }
  }
  ctx.lu.mediumLoaded = start;
  return goodOut(0);
};

/** PREVENT ALLOW MEDIUM REMOVAL: 4 PREVENT(1:0); per I_T nexus (SBC-3 §5.15). */
export const preventAllow: Handler = (ctx) => {
  const prevent = (ctx.cmd.cdb[4] ?? 0) & 0x03;
  if (prevent > 1) return ctx.fail(invalidCdb(4, 1));
  if (!ctx.lu.options.removable) {
    return prevent === 0 ? goodOut(0) : ctx.fail(invalidCdb(4, 0));
  }
  ctx.lu.setPrevent(ctx.cmd.nexus.id, prevent === 1);
  return goodOut(0);
};

export const testUnitReady: Handler = (ctx) => ctx.good();
