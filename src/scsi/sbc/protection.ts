// READ / WRITE / VERIFY / WRITE AND VERIFY on a medium formatted with protection
// information, and FORMAT UNIT (SBC-3 §4.22, §5.3).
//
// With RDPROTECT/WRPROTECT/VRPROTECT ≠ 0 the data on the wire is interleaved: each logical
// block is followed by its 8-byte tuple (pi.ts). With 000b the device server checks (read,
// verify) or generates (write) the tuples itself and none cross the wire. Reads and writes
// here take the range lock, so a read never sees a block's new data beside its old tuple.
//
// FORMAT UNIT CDB (SBC-3 §5.3.1): 1 FMTPINFO(7:6) LONGLIST(5) FMTDATA(4) CMPLST(3)
//   DEFECT LIST FORMAT(2:0), 2 vendor specific, 3..4 obsolete, 5 control.
// Parameter list header (§5.3.2.2): short 4 bytes / long 8 bytes (LONGLIST):
//   0 PROTECTION FIELD USAGE(2:0), 1 FOV(7) DPRY DCRT STPF IP(3) IMMED(1) VS,
//   short: 2..3 DEFECT LIST LENGTH; long: 3 P_I_INFORMATION(7:4) PROTECTION INTERVAL
//   EXPONENT(3:0), 4..7 DEFECT LIST LENGTH.

import type { ScsiResult } from '../types';
import { Asc, SenseKey, illegal, invalidCdb, invalidParam, type SenseSpec } from '../sense';
import type { CommandContext, Handler } from '../command';
import { PULL_CHUNK } from '../limits';
import { rangeLockOf } from './range-lock';
import { MediumError, dataInBuffer, goodOut, guarded } from './io';
import { PI_BYTES, PROTECT_CHECKS, checkPi, generatePi, readPi, resetPi, writePi, type PiChecks, type ProtectionType } from './pi';

const READ_ERROR: SenseSpec = { key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR };
const WRITE_ERROR: SenseSpec = { key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR };

class PiFailure extends Error {
  constructor(readonly spec: SenseSpec) {
    super('protection information check failed');
  }
}

/** Blocks and their tuples from the medium (range lock held by the caller). */
async function readBoth(ctx: CommandContext, lba: bigint, blocks: number, into: Buffer): Promise<Buffer> {
  const bs = ctx.lu.backstore;
  try {
    await bs.read(into, 0, blocks * ctx.lu.blockSize, Number(lba) * ctx.lu.blockSize);
    return await readPi(bs, lba, blocks);
  } catch (e) {
    throw new MediumError(READ_ERROR, e);
  }
}

/** Blocks and their tuples to the medium (range lock held by the caller). */
async function writeBoth(ctx: CommandContext, lba: bigint, data: Buffer, pi: Buffer, fua: boolean): Promise<void> {
  const bs = ctx.lu.backstore;
  const opts = fua ? { fua: true } : {};
  try {
    await bs.write(data, Number(lba) * ctx.lu.blockSize, opts);
    await writePi(bs, lba, pi, opts);
  } catch (e) {
    throw new MediumError(WRITE_ERROR, e);
  }
}

/** Blocks per step: whole blocks of data (plus tuples) within PULL_CHUNK. */
function stepBlocks(ctx: CommandContext, withPi: boolean): number {
  return Math.max(1, Math.floor(PULL_CHUNK / (ctx.lu.blockSize + (withPi ? PI_BYTES : 0))));
}

function checksFor(value: number): PiChecks {
  return PROTECT_CHECKS[value] ?? PROTECT_CHECKS[0]!;
}

/** READ with RDPROTECT on a formatted medium: check per the table, return data (and tuples). */
export function readProtected(ctx: CommandContext, lba: bigint, blocks: number, rdprotect: number): Promise<ScsiResult> {
  return guarded(ctx, async () => {
    const bsz = ctx.lu.blockSize;
    const type = ctx.lu.protectionType as ProtectionType;
    const withPi = rdprotect !== 0;
    const data = dataInBuffer(blocks * bsz);
    const release = await rangeLockOf(ctx.lu).acquire(Number(lba) * bsz, blocks * bsz);
    let pi: Buffer;
    try {
      pi = await readBoth(ctx, lba, blocks, data);
    } finally {
      release();
    }
    const bad = checkPi(data, pi, bsz, lba, type, checksFor(rdprotect));
    if (bad) return ctx.fail(bad);
    if (!withPi) return ctx.good(data);
    // SBC-3 §4.22.2: each block followed by its tuple.
    const out = Buffer.allocUnsafe(blocks * (bsz + PI_BYTES));
    for (let i = 0; i < blocks; i++) {
      data.copy(out, i * (bsz + PI_BYTES), i * bsz, (i + 1) * bsz);
      pi.copy(out, i * (bsz + PI_BYTES) + bsz, i * PI_BYTES, (i + 1) * PI_BYTES);
    }
    return ctx.good(out);
  });
}

/**
 * Pull the data-out of a protected write in steps, handing each step's blocks and tuples
 * (checked per WRPROTECT, or generated for 000b) to `sink`. Returns the bytes expected.
 */
async function pullProtected(
  ctx: CommandContext,
  lba: bigint,
  blocks: number,
  wrprotect: number,
  sink: (lba: bigint, data: Buffer, pi: Buffer) => Promise<void>,
): Promise<number> {
  const bsz = ctx.lu.blockSize;
  const type = ctx.lu.protectionType as ProtectionType;
  const withPi = wrprotect !== 0;
  const unit = bsz + (withPi ? PI_BYTES : 0);
  const expected = blocks * unit;
  const available = Math.floor(Math.min(expected, ctx.cmd.dataOutLength) / unit);
  const step = stepBlocks(ctx, withPi);
  for (let done = 0; done < available; ) {
    const want = Math.min(step, available - done);
    const got = await ctx.pull(want * unit);
    const n = Math.floor(got.length / unit);
    if (n === 0) break;
    const at = lba + BigInt(done);
    let data: Buffer;
    let pi: Buffer;
    if (withPi) {
      data = Buffer.allocUnsafe(n * bsz);
      pi = Buffer.allocUnsafe(n * PI_BYTES);
      for (let i = 0; i < n; i++) {
        got.copy(data, i * bsz, i * unit, i * unit + bsz);
        got.copy(pi, i * PI_BYTES, i * unit + bsz, (i + 1) * unit);
      }
      const bad = checkPi(data, pi, bsz, at, type, checksFor(wrprotect));
      if (bad) throw new PiFailure(bad);
    } else {
      data = got.length === n * bsz ? got : got.subarray(0, n * bsz);
      pi = generatePi(data, bsz, at, type);
    }
    await sink(at, data, pi);
    done += n;
    if (n < want) break;
  }
  return expected;
}

async function lockedWrite(ctx: CommandContext, at: bigint, data: Buffer, pi: Buffer, fua: boolean): Promise<void> {
  const bsz = ctx.lu.blockSize;
  const release = await rangeLockOf(ctx.lu).acquire(Number(at) * bsz, data.length);
  try {
    await writeBoth(ctx, at, data, pi, fua);
  } finally {
    release();
  }
}

function dataOutLengthOf(ctx: CommandContext, blocks: number, protect: number): number {
  return blocks * (ctx.lu.blockSize + (protect !== 0 ? PI_BYTES : 0));
}

/** WRITE with WRPROTECT on a formatted medium. */
export function writeProtected(ctx: CommandContext, lba: bigint, blocks: number, wrprotect: number, fua: boolean): Promise<ScsiResult> {
  return guarded(ctx, async () => {
    try {
      const expected = await pullProtected(ctx, lba, blocks, wrprotect, (at, data, pi) => lockedWrite(ctx, at, data, pi, fua));
      return goodOut(expected);
    } catch (e) {
      if (e instanceof PiFailure) return { ...ctx.fail(e.spec), dataOutExpected: dataOutLengthOf(ctx, blocks, wrprotect) };
      throw e;
    }
  });
}

/** WRITE AND VERIFY with WRPROTECT: the write, then the stored blocks read back and checked. */
export function writeAndVerifyProtected(ctx: CommandContext, lba: bigint, blocks: number, wrprotect: number, bytchk: boolean): Promise<ScsiResult> {
  return guarded(ctx, async () => {
    const bsz = ctx.lu.blockSize;
    const type = ctx.lu.protectionType as ProtectionType;
    let mismatch = -1;
    try {
      const expected = await pullProtected(ctx, lba, blocks, wrprotect, async (at, data, pi) => {
        await lockedWrite(ctx, at, data, pi, true);
        const back = Buffer.allocUnsafe(data.length);
        const release = await rangeLockOf(ctx.lu).acquire(Number(at) * bsz, data.length);
        let stored: Buffer;
        try {
          stored = await readBoth(ctx, at, data.length / bsz, back);
        } finally {
          release();
        }
        // The medium's copy must carry valid protection information (guard and reference tag).
        const bad = checkPi(back, stored, bsz, at, type, PROTECT_CHECKS[1]!);
        if (bad) throw new PiFailure(bad);
        if (bytchk && mismatch < 0 && !back.equals(data)) {
          for (let i = 0; i < data.length; i++) {
            if (back[i] !== data[i]) {
              mismatch = Number(at - lba) * bsz + i;
              break;
            }
          }
        }
      });
      if (mismatch >= 0) return ctx.fail({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: mismatch });
      return goodOut(expected);
    } catch (e) {
      if (e instanceof PiFailure) return { ...ctx.fail(e.spec), dataOutExpected: dataOutLengthOf(ctx, blocks, wrprotect) };
      throw e;
    }
  });
}

/**
 * VERIFY on a formatted medium. BYTCHK=0: the stored blocks are checked per VRPROTECT.
 * BYTCHK=1: the data-out (with tuples when VRPROTECT ≠ 0, checked per the table) is
 * compared with the medium's user data. BYTCHK=11b compares one block with every block.
 */
export function verifyProtected(ctx: CommandContext, lba: bigint, blocks: number, vrprotect: number, bytchk: number): Promise<ScsiResult> {
  return guarded(ctx, async () => {
    const bsz = ctx.lu.blockSize;
    const type = ctx.lu.protectionType as ProtectionType;
    if (bytchk === 0) {
      const step = stepBlocks(ctx, false);
      const scratch = Buffer.allocUnsafe(Math.min(step, blocks) * bsz);
      for (let done = 0; done < blocks; ) {
        const n = Math.min(step, blocks - done);
        const at = lba + BigInt(done);
        const release = await rangeLockOf(ctx.lu).acquire(Number(at) * bsz, n * bsz);
        let pi: Buffer;
        try {
          pi = await readBoth(ctx, at, n, scratch);
        } finally {
          release();
        }
        const bad = checkPi(scratch.subarray(0, n * bsz), pi, bsz, at, type, checksFor(vrprotect));
        if (bad) return ctx.fail(bad);
        done += n;
      }
      return goodOut(0);
    }
    const count = bytchk === 3 ? 1 : blocks;
    let mismatch = -1;
    try {
      const expected = await pullProtected(ctx, lba, count, vrprotect, async (at, data) => {
        const per = bytchk === 3 ? blocks : data.length / bsz;
        const medium = Buffer.allocUnsafe(bsz);
        for (let i = 0; i < per && mismatch < 0; i++) {
          const blk = bytchk === 3 ? lba + BigInt(i) : at + BigInt(i);
          const want = bytchk === 3 ? data : data.subarray(i * bsz, (i + 1) * bsz);
          const release = await rangeLockOf(ctx.lu).acquire(Number(blk) * bsz, bsz);
          let pi: Buffer;
          try {
            pi = await readBoth(ctx, blk, 1, medium);
          } finally {
            release();
          }
          // VRPROTECT 000b with BYTCHK=1 still checks what the medium stores (SBC-3 §5.33.2).
          if (vrprotect === 0) {
            const bad = checkPi(medium, pi, bsz, blk, type, PROTECT_CHECKS[0]!);
            if (bad) throw new PiFailure(bad);
          }
          if (!medium.equals(want)) {
            for (let j = 0; j < bsz; j++) {
              if (medium[j] !== want[j]) {
                mismatch = (bytchk === 3 ? 0 : Number(blk - lba) * bsz) + j;
                break;
              }
            }
          }
        }
      });
      if (mismatch >= 0) return ctx.fail({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: mismatch });
      return goodOut(expected);
    } catch (e) {
      if (e instanceof PiFailure) return { ...ctx.fail(e.spec), dataOutExpected: dataOutLengthOf(ctx, count, vrprotect) };
      throw e;
    }
  });
}

const FMTPINFO_SHIFT = 6;
const LONGLIST = 0x20;
const FMTDATA = 0x10;

/**
 * SBC-3 §5.3.2.2 table "FMTPINFO and PROTECTION FIELD USAGE": the protection type asked
 * for, or undefined (type 2 and the reserved combinations are not supported).
 */
export function requestedProtectionType(fmtpinfo: number, pfu: number): ProtectionType | 2 | undefined {
  if (fmtpinfo === 0 && pfu === 0) return 0;
  if (fmtpinfo === 2 && pfu === 0) return 1;
  if (fmtpinfo === 3 && pfu === 0) return 2;
  if (fmtpinfo === 3 && pfu === 1) return 3;
  return undefined;
}

/** FORMAT UNIT: (re)formats with or without PI; every tuple becomes the FFh escape. */
export const formatUnit: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const lu = ctx.lu;
    const b1 = cdb[1] ?? 0;
    const fmtpinfo = b1 >> FMTPINFO_SHIFT;
    const fmtdata = (b1 & FMTDATA) !== 0;
    const long = (b1 & LONGLIST) !== 0;
    // Without FMTDATA there is no parameter list; DEFECT LIST FORMAT and LONGLIST are moot.
    let pfu = 0;
    let paramLen = 0;
    if (fmtdata) {
      const hdr = long ? 8 : 4;
      paramLen = Math.min(ctx.cmd.dataOutLength, hdr);
      const data = await ctx.pull(paramLen);
      if (data.length < hdr) return { ...ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)), dataOutExpected: hdr };
      pfu = (data[0] ?? 0) & 0x07;
      const defectLen = long ? data.readUInt32BE(4) : data.readUInt16BE(2);
      // No defect lists (there is no medium to have defects); P_I_INFORMATION and the
      // protection interval exponent must be zero (one tuple per logical block).
      if (defectLen !== 0) return { ...ctx.fail(invalidParam(long ? 4 : 2)), dataOutExpected: hdr };
      if (long && (data[3] ?? 0) !== 0) return { ...ctx.fail(invalidParam(3)), dataOutExpected: hdr };
      if (((data[0] ?? 0) & 0xf8) !== 0) return { ...ctx.fail(invalidParam(0, 31 - Math.clz32((data[0] ?? 0) & 0xf8))), dataOutExpected: hdr };
      paramLen = hdr;
    }
    const type = requestedProtectionType(fmtpinfo, pfu);
    if (type === undefined || type === 2 || (type !== 0 && !lu.options.protectionCapable)) {
      // SBC-3 §5.3.2.2: an unsupported combination is INVALID FIELD IN CDB (FMTPINFO), or
      // INVALID FIELD IN PARAMETER LIST when it is the PROTECTION FIELD USAGE that is wrong.
      const spec = fmtdata && pfu !== 0 ? invalidParam(0, 2) : invalidCdb(1, 7);
      return { ...ctx.fail(spec), dataOutExpected: paramLen };
    }
    const before = lu.protectionType;
    if (lu.backstore.pi) {
      const release = await rangeLockOf(lu).acquire(0, lu.blockCount * lu.blockSize);
      try {
        await resetPi(lu.backstore, 0n, lu.blockCount);
      } catch (e) {
        throw new MediumError(WRITE_ERROR, e);
      } finally {
        release();
      }
    }
    lu.protectionType = type;
    // READ CAPACITY(16) P_TYPE/PROT_EN changed: the other nexuses learn of it (SBC-3 §4.?).
    if (before !== type) lu.raiseUaAll(Asc.CAPACITY_DATA_HAS_CHANGED, ctx.cmd.nexus.id);
    return goodOut(paramLen);
  });
