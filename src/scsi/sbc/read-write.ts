// READ / WRITE 6/10/12/16, VERIFY 10/12/16, WRITE AND VERIFY 10/12/16 (SBC-3 §5).
//
// Byte 1 of the 10/12/16-byte forms: RDPROTECT/WRPROTECT/VRPROTECT(7:5) DPO(4) FUA(3)
// BYTCHK(2:1, VERIFY) / BYTCHK(1, WRITE AND VERIFY). The protection fields are checked here
// (INVALID FIELD IN CDB unless the medium is formatted with PI); a formatted medium goes
// through protection.ts. The 6-byte forms have no field and act as 000b (SBC-3 §4.22.3).

import type { ScsiResult } from '../types';
import { Asc, SenseKey, invalidCdb } from '../sense';
import type { CommandContext, Handler } from '../command';
import { decodeLbaRange } from '../cdb';
import { PULL_CHUNK } from '../limits';
import { checkRange, checkTransferLength, dataInBuffer, goodOut, guarded, readMedium, readOwnedResult, streamDataOut, writeMedium, writeResult } from './io';
import { checkProtectField, protectField } from './pi';
import { readProtected, verifyProtected, writeAndVerifyProtected, writeProtected } from './protection';

/** Byte offset of the TRANSFER LENGTH field, for field pointers. */
function lengthByte(len: number): number {
  return len === 6 ? 4 : len === 10 ? 7 : len === 12 ? 6 : 10;
}

const FUA = 0x08;

export function read(len: 6 | 10 | 12 | 16): Handler {
  return (ctx) => {
    const { lba, blocks } = decodeLbaRange(ctx.cmd.cdb, len);
    const rdprotect = len === 6 ? 0 : protectField(ctx.cmd.cdb);
    const type = ctx.lu.protectionType;
    const bad = checkProtectField(type, rdprotect) ?? checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, lengthByte(len));
    if (bad) return ctx.fail(bad);
    // SBC-3 §5.11: a TRANSFER LENGTH of zero transfers nothing and is not an error.
    if (blocks === 0) return ctx.good();
    if (type !== 0) return readProtected(ctx, lba, blocks, rdprotect);
    const bsz = ctx.lu.blockSize;
    // One buffer, read straight into it (or the backstore's read-ahead buffer): the fabric sends it without copying.
    return readOwnedResult(ctx, blocks * bsz, Number(lba) * bsz);
  };
}

export function write(len: 6 | 10 | 12 | 16): Handler {
  return (ctx) => {
    const cdb = ctx.cmd.cdb;
    const { lba, blocks } = decodeLbaRange(cdb, len);
    const wrprotect = len === 6 ? 0 : protectField(cdb);
    const type = ctx.lu.protectionType;
    const bad = checkProtectField(type, wrprotect) ?? checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, lengthByte(len));
    if (bad) return ctx.fail(bad);
    const bsz = ctx.lu.blockSize;
    const expected = blocks * bsz;
    if (blocks === 0) return goodOut(0);
    // SBC-3 §5.40: FUA, or a disabled write cache (WCE=0), makes every write durable.
    const fua = (len !== 6 && ((cdb[1] ?? 0) & FUA) !== 0) || !ctx.lu.writeCacheEnabled;
    if (type !== 0) return writeProtected(ctx, lba, blocks, wrprotect, fua);
    const base = Number(lba) * bsz;
    if (expected <= PULL_CHUNK) {
      // One pull, one backstore write (what streamDataOut does for a single chunk).
      const available = Math.min(expected, ctx.cmd.dataOutLength);
      if (available < bsz) return goodOut(expected);
      return ctx.pull(Math.floor(available / bsz) * bsz).then((got) => {
        const whole = Math.floor(got.length / bsz) * bsz;
        if (whole === 0) return goodOut(expected);
        return writeResult(ctx, whole === got.length ? got : got.subarray(0, whole), base, fua, goodOut(expected));
      });
    }
    return guarded(ctx, async () => {
      await streamDataOut(ctx, expected, (chunk, off) => writeMedium(ctx, chunk, base + off, fua));
      return goodOut(expected);
    });
  };
}

/** First differing byte of a and b (same length), or -1. */
function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

function miscompare(ctx: CommandContext, offset: number): ScsiResult {
  // SBC-3 §5.31: MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, INFORMATION = offset
  // from the start of the Data-Out Buffer of the first byte that did not match.
  return ctx.fail({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: offset });
}

export function verify(len: 10 | 12 | 16): Handler {
  return (ctx) =>
    guarded(ctx, async () => {
      const cdb = ctx.cmd.cdb;
      const { lba, blocks } = decodeLbaRange(cdb, len);
      const bytchk = ((cdb[1] ?? 0) >> 1) & 0x03;
      const vrprotect = protectField(cdb);
      const type = ctx.lu.protectionType;
      // SBC-3 §5.31 table: BYTCHK 10b is reserved.
      if (bytchk === 2) return ctx.fail(invalidCdb(1, 2));
      const bad = checkProtectField(type, vrprotect) ?? checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, lengthByte(len));
      if (bad) return ctx.fail(bad);
      const bsz = ctx.lu.blockSize;
      const base = Number(lba) * bsz;
      if (blocks === 0) return goodOut(0);
      if (type !== 0) return verifyProtected(ctx, lba, blocks, vrprotect, bytchk);
      if (bytchk === 0) {
        // Medium verification: read the range back so unreadable blocks surface as MEDIUM ERROR.
        const scratch = Buffer.allocUnsafe(Math.min(PULL_CHUNK, blocks * bsz));
        for (let done = 0; done < blocks * bsz; done += scratch.length) {
          const n = Math.min(scratch.length, blocks * bsz - done);
          await readMedium(ctx, scratch, 0, n, base + done);
        }
        return goodOut(0);
      }
      if (bytchk === 1) {
        const expected = blocks * bsz;
        let mismatch = -1;
        const medium = Buffer.allocUnsafe(Math.min(PULL_CHUNK, expected));
        await streamDataOut(ctx, expected, async (chunk, off) => {
          if (mismatch >= 0) return;
          const m = medium.subarray(0, chunk.length);
          await readMedium(ctx, m, 0, chunk.length, base + off);
          const d = firstDifference(chunk, m);
          if (d >= 0) mismatch = off + d;
        });
        return mismatch >= 0 ? miscompare(ctx, mismatch) : goodOut(expected);
      }
      // BYTCHK 11b: one block of data-out compared with every block of the range.
      const got = await ctx.pull(Math.min(bsz, ctx.cmd.dataOutLength));
      if (got.length < bsz) return { ...ctx.fail(invalidCdb(1, 2)), dataOutExpected: bsz };
      const medium = Buffer.allocUnsafe(bsz);
      for (let i = 0; i < blocks; i++) {
        if (ctx.aborted) break;
        await readMedium(ctx, medium, 0, bsz, base + i * bsz);
        const d = firstDifference(got, medium);
        if (d >= 0) return miscompare(ctx, d);
      }
      return goodOut(bsz);
    });
}

export function writeAndVerify(len: 10 | 12 | 16): Handler {
  return (ctx) =>
    guarded(ctx, async () => {
      const cdb = ctx.cmd.cdb;
      const { lba, blocks } = decodeLbaRange(cdb, len);
      const wrprotect = protectField(cdb);
      const type = ctx.lu.protectionType;
      const bad = checkProtectField(type, wrprotect) ?? checkRange(ctx, lba, blocks) ?? checkTransferLength(ctx, blocks, lengthByte(len));
      if (bad) return ctx.fail(bad);
      const bsz = ctx.lu.blockSize;
      const expected = blocks * bsz;
      if (blocks === 0) return goodOut(0);
      const base = Number(lba) * bsz;
      const bytchk = ((cdb[1] ?? 0) & 0x02) !== 0;
      if (type !== 0) return writeAndVerifyProtected(ctx, lba, blocks, wrprotect, bytchk);
      let mismatch = -1;
      const medium = Buffer.allocUnsafe(Math.min(PULL_CHUNK, expected));
      // SBC-3 §5.41: the data is written, then read back from the medium and checked.
      await streamDataOut(ctx, expected, async (chunk, off) => {
        await writeMedium(ctx, chunk, base + off, true);
        const m = medium.subarray(0, chunk.length);
        await readMedium(ctx, m, 0, chunk.length, base + off);
        if (bytchk && mismatch < 0) {
          const d = firstDifference(chunk, m);
          if (d >= 0) mismatch = off + d;
        }
      });
      return mismatch >= 0 ? miscompare(ctx, mismatch) : goodOut(expected);
    });
}
