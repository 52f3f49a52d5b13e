// MODE SENSE 6/10 and MODE SELECT 6/10 (SPC-4 §6.11-§6.14, §7.5).
//
// Mode parameter header(6):  0 MODE DATA LENGTH, 1 MEDIUM TYPE, 2 DEVICE-SPECIFIC (WP(7) DPOFUA(4)),
//                            3 BLOCK DESCRIPTOR LENGTH
// Mode parameter header(10): 0..1 MODE DATA LENGTH, 2 MEDIUM TYPE, 3 DEVICE-SPECIFIC, 4 LONGLBA(0),
//                            6..7 BLOCK DESCRIPTOR LENGTH
// Short block descriptor (8): 0..3 NUMBER OF BLOCKS, 5..7 LOGICAL BLOCK LENGTH
// Long block descriptor (16): 0..7 NUMBER OF BLOCKS, 12..15 LOGICAL BLOCK LENGTH
// Pages: 01h read-write error recovery, 08h caching (WCE changeable), 0Ah control (D_SENSE and
// SWP changeable), 1Ch informational exceptions control; 3Fh = all pages.
// A CD-ROM (MMC-6 §7) has 01h, 0Ah, 1Ah power condition and 2Ah CD/DVD capabilities and
// mechanical status, and no block descriptor.

import { Asc, SenseKey, illegal, invalidCdb, invalidParam } from '../sense';
import type { CommandContext, Handler } from '../command';
import type { LogicalUnit } from '../logical-unit';

export const ModePage = {
  RW_ERROR_RECOVERY: 0x01,
  CACHING: 0x08,
  CONTROL: 0x0a,
  POWER_CONDITION: 0x1a,
  INFORMATIONAL_EXCEPTIONS: 0x1c,
  CAPABILITIES: 0x2a,
  ALL: 0x3f,
} as const;

/** Page control (SPC-4 §6.11.1 PC field). */
export const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;
type Pc = (typeof PageControl)[keyof typeof PageControl];

interface PageValues {
  wce: boolean;
  dsense: boolean;
  swp: boolean;
  qerr: 0 | 1 | 3;
  uaIntlck: 0 | 2 | 3;
  tas: boolean;
  /** A PREVENT is in effect (page 2Ah LOCK STATE). */
  locked: boolean;
}

/** Page 2Ah READ SPEED fields, kB/s: 24× CD (1× = 176.4 kB/s). */
const CD_READ_SPEED = 4234;

/** Build one mode page for the given values; `changeable` yields the changeable-bits mask. */
function buildPage(code: number, v: PageValues, changeable: boolean): Buffer {
  switch (code) {
    case ModePage.RW_ERROR_RECOVERY: {
      const b = Buffer.alloc(12);
      b[0] = code;
      b[1] = 10;
      return b;
    }
    case ModePage.CACHING: {
      // SBC-3 §6.4.5: 2 IC ABPF CAP DISC SIZE WCE(2) MF RCD(0).
      const b = Buffer.alloc(20);
      b[0] = code;
      b[1] = 18;
      if (changeable) b[2] = 0x04;
      else b[2] = v.wce ? 0x04 : 0x00;
      return b;
    }
    case ModePage.CONTROL: {
      // SPC-4 §7.5.8: 2 TST(7:5) TMF_ONLY DPICZ D_SENSE(2) GLTSD RLEC; 3 QUEUE ALGORITHM
      // MODIFIER(7:4) NUAR(3) QERR(2:1); 4 VS RAC UA_INTLCK_CTRL(5:4) SWP(3);
      // 5 ATO(7) TAS(6) ATMPE RWWP AUTOLOAD MODE(2:0); 8..9 BUSY TIMEOUT PERIOD.
      const b = Buffer.alloc(12);
      b[0] = code;
      b[1] = 10;
      if (changeable) {
        b[2] = 0x04;
        b[3] = 0x06;
        b[4] = 0x30 | 0x08;
        b[5] = 0x40;
        return b;
      }
      b[2] = v.dsense ? 0x04 : 0;
      b[3] = 0x10 | (v.qerr << 1); // unrestricted reordering of SIMPLE tasks
      b[4] = (v.uaIntlck << 4) | (v.swp ? 0x08 : 0);
      b[5] = v.tas ? 0x40 : 0;
      b.writeUInt16BE(0xffff, 8); // busy timeout: unlimited
      return b;
    }
    case ModePage.POWER_CONDITION: {
      // SPC-4 §7.5.13: no idle or standby timers.
      const b = Buffer.alloc(12);
      b[0] = code;
      b[1] = 10;
      return b;
    }
    case ModePage.CAPABILITIES: {
      // MMC-6 Annex / MMC-3 §5.5.10, page length 14h: 2 read media (DVD-ROM(3) CD-RW(1) CD-R(0)),
      // 3 write media (none), 4 MULTI SESSION(6) MODE 2 FORM 1(4), 5 CD-DA features (none),
      // 6 MECHANISM(7:5)=001b tray, EJECT(3), PREVENT JUMPER(2), LOCK STATE(1), LOCK(0),
      // 8..9 MAXIMUM READ SPEED, 10..11 VOLUME LEVELS, 12..13 BUFFER SIZE (KiB), 14..15 CURRENT READ SPEED.
      const b = Buffer.alloc(22);
      b[0] = code;
      b[1] = 0x14;
      if (changeable) return b;
      b[2] = 0x08 | 0x02 | 0x01;
      b[4] = 0x40 | 0x10;
      b[6] = 0x20 | 0x08 | 0x04 | (v.locked ? 0x02 : 0) | 0x01;
      b.writeUInt16BE(CD_READ_SPEED, 8);
      b.writeUInt16BE(512, 12);
      b.writeUInt16BE(CD_READ_SPEED, 14);
      return b;
    }
    case ModePage.INFORMATIONAL_EXCEPTIONS: {
      const b = Buffer.alloc(12);
      b[0] = code;
      b[1] = 10;
      return b;
    }
    default:
      throw new RangeError(`mode page ${code}`);
  }
}

const PAGES: readonly number[] = [ModePage.RW_ERROR_RECOVERY, ModePage.CACHING, ModePage.CONTROL, ModePage.INFORMATIONAL_EXCEPTIONS];
const MMC_PAGES: readonly number[] = [ModePage.RW_ERROR_RECOVERY, ModePage.CONTROL, ModePage.POWER_CONDITION, ModePage.CAPABILITIES];

const pagesOf = (lu: LogicalUnit): readonly number[] => (lu.isCdrom ? MMC_PAGES : PAGES);

function values(lu: LogicalUnit, pc: Pc): PageValues {
  if (pc === PageControl.DEFAULT) return { wce: lu.options.writeCache, dsense: false, swp: false, qerr: 0, uaIntlck: 0, tas: true, locked: false };
  return {
    wce: lu.writeCacheEnabled,
    dsense: lu.descriptorSense,
    swp: lu.softwareWriteProtect,
    qerr: lu.qerr,
    uaIntlck: lu.uaInterlock,
    tas: lu.taskAbortedStatus,
    locked: lu.isPrevented(),
  };
}

function modeSense(ten: boolean): Handler {
  return (ctx: CommandContext) => {
    const cdb = ctx.cmd.cdb;
    const lu = ctx.lu;
    const dbd = ((cdb[1] ?? 0) & 0x08) !== 0;
    const llbaa = ten && ((cdb[1] ?? 0) & 0x10) !== 0;
    const pc = ((cdb[2] ?? 0) >> 6) as Pc;
    const code = (cdb[2] ?? 0) & 0x3f;
    const subpage = cdb[3] ?? 0;
    const alloc = ten ? cdb.readUInt16BE(7) : (cdb[4] ?? 0);
    // SPC-4 §6.11.1: saved values are not supported.
    if (pc === PageControl.SAVED) return ctx.fail(illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED));
    let codes: number[];
    if (code === ModePage.ALL) {
      // Subpage 00h: all pages; FFh: all pages and subpages (we have no subpages).
      if (subpage !== 0x00 && subpage !== 0xff) return ctx.fail(invalidCdb(3));
      codes = [...pagesOf(lu)];
    } else {
      if (!pagesOf(lu).includes(code)) return ctx.fail(invalidCdb(2, 5));
      if (subpage !== 0 && subpage !== 0xff) return ctx.fail(invalidCdb(3));
      codes = [code];
    }
    const v = values(lu, pc);
    const pages = codes.map((c) => buildPage(c, v, pc === PageControl.CHANGEABLE));

    const blocks = lu.blockCount;
    let desc: Buffer;
    // MMC-6 §7.2: a CD/DVD device returns no block descriptor.
    if (dbd || lu.isCdrom) desc = Buffer.alloc(0);
    else if (llbaa) {
      desc = Buffer.alloc(16);
      desc.writeBigUInt64BE(BigInt(blocks), 0);
      desc.writeUInt32BE(lu.blockSize, 12);
    } else {
      desc = Buffer.alloc(8);
      desc.writeUInt32BE(blocks > 0xffffffff ? 0xffffffff : blocks, 0);
      desc.writeUIntBE(lu.blockSize, 5, 3);
    }
    // Device-specific parameter (SBC-3 §6.4.1): WP when write protected, DPOFUA supported.
    const dsp = lu.isCdrom ? 0 : (ctx.writeProtected ? 0x80 : 0) | 0x10;
    const header = Buffer.alloc(ten ? 8 : 4);
    const total = header.length + desc.length + pages.reduce((n, p) => n + p.length, 0);
    if (ten) {
      header.writeUInt16BE(total - 2, 0);
      header[3] = dsp;
      header[4] = llbaa && desc.length > 0 ? 0x01 : 0;
      header.writeUInt16BE(desc.length, 6);
    } else {
      header[0] = Math.min(0xff, total - 1);
      header[2] = dsp;
      header[3] = desc.length;
    }
    if (pc === PageControl.CHANGEABLE) {
      // Nothing in the header or block descriptor is changeable.
      header[ten ? 3 : 2] = 0;
      desc.fill(0);
    }
    return ctx.good(Buffer.concat([header, desc, ...pages], total), alloc);
  };
}

export const modeSense6 = modeSense(false);
export const modeSense10 = modeSense(true);

function modeSelect(ten: boolean): Handler {
  return async (ctx: CommandContext) => {
    const cdb = ctx.cmd.cdb;
    const lu = ctx.lu;
    const sp = ((cdb[1] ?? 0) & 0x01) !== 0;
    const paramLen = ten ? cdb.readUInt16BE(7) : (cdb[4] ?? 0);
    if (sp) return ctx.fail(illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED));
    if (paramLen === 0) return { ...ctx.good(), dataOutExpected: 0 };
    const hdrLen = ten ? 8 : 4;
    const fail = (s: Parameters<typeof ctx.fail>[0]) => ({ ...ctx.fail(s), dataOutExpected: paramLen });
    if (paramLen < hdrLen) return fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
    const data = await ctx.pull(Math.min(paramLen, ctx.cmd.dataOutLength));
    if (data.length < hdrLen) return fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
    const descLen = ten ? data.readUInt16BE(6) : (data[3] ?? 0);
    const longLba = ten && ((data[4] ?? 0) & 0x01) !== 0;
    let o = hdrLen;
    if (descLen > 0) {
      const one = longLba ? 16 : 8;
      if (descLen !== one || o + descLen > data.length) return fail(invalidParam(ten ? 6 : 3));
      // The block length cannot change (SBC-3 §6.4.2): accept zero or the current value.
      const bl = longLba ? data.readUInt32BE(o + 12) : data.readUIntBE(o + 5, 3);
      if (bl !== 0 && bl !== lu.blockSize) return fail(invalidParam(o + (longLba ? 12 : 5)));
      o += descLen;
    }
    const next: PageValues = values(lu, PageControl.CURRENT);
    while (o < data.length) {
      if (o + 2 > data.length) return fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
      const code = (data[o] ?? 0) & 0x3f;
      if (((data[o] ?? 0) & 0x40) !== 0) return fail(invalidParam(o, 6)); // SPF: no subpages
      if (!pagesOf(lu).includes(code)) return fail(invalidParam(o, 5));
      const cur = buildPage(code, next, false);
      const mask = buildPage(code, next, true);
      const plen = (data[o + 1] ?? 0) + 2;
      if (plen !== cur.length) return fail(invalidParam(o + 1));
      if (o + plen > data.length) return fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
      const page = data.subarray(o, o + plen);
      // SPC-4 §6.13: a change to a non-changeable field is INVALID FIELD IN PARAMETER LIST.
      for (let i = 2; i < plen; i++) {
        const diff = ((page[i] ?? 0) ^ (cur[i] ?? 0)) & ~(mask[i] ?? 0) & 0xff;
        if (diff !== 0) return fail(invalidParam(o + i, 31 - Math.clz32(diff)));
      }
      if (code === ModePage.CACHING) next.wce = ((page[2] ?? 0) & 0x04) !== 0;
      if (code === ModePage.CONTROL) {
        next.dsense = ((page[2] ?? 0) & 0x04) !== 0;
        next.swp = ((page[4] ?? 0) & 0x08) !== 0;
        // QERR 10b and UA_INTLCK_CTRL 01b are reserved.
        const qerr = ((page[3] ?? 0) >> 1) & 0x03;
        if (qerr === 2) return fail(invalidParam(o + 3, 2));
        const ui = ((page[4] ?? 0) >> 4) & 0x03;
        if (ui === 1) return fail(invalidParam(o + 4, 5));
        next.qerr = qerr as 0 | 1 | 3;
        next.uaIntlck = ui as 0 | 2 | 3;
        next.tas = ((page[5] ?? 0) & 0x40) !== 0;
      }
      o += plen;
    }
    const changed =
      next.wce !== lu.writeCacheEnabled ||
      next.dsense !== lu.descriptorSense ||
      next.swp !== lu.softwareWriteProtect ||
      next.qerr !== lu.qerr ||
      next.uaIntlck !== lu.uaInterlock ||
      next.tas !== lu.taskAbortedStatus;
    if (lu.writeCacheEnabled && !next.wce) {
      // Turning the write cache off: what it held must reach the medium now.
      try {
        await lu.backstore.flush();
      } catch (e) {
        process.stderr.write(`lunbox scsi: ${lu.name}: flush failed: ${String(e)}\n`);
        return fail({ key: SenseKey.MEDIUM_ERROR, asc: Asc.WRITE_ERROR });
      }
    }
    lu.writeCacheEnabled = next.wce;
    lu.descriptorSense = next.dsense;
    lu.softwareWriteProtect = next.swp;
    lu.qerr = next.qerr;
    lu.uaInterlock = next.uaIntlck;
    lu.taskAbortedStatus = next.tas;
    // SPC-4 §7.5.1: other I_T nexuses learn of the change by MODE PARAMETERS CHANGED.
    if (changed) lu.raiseUaAll(Asc.MODE_PARAMETERS_CHANGED, ctx.cmd.nexus.id);
    return { ...ctx.good(), dataOutExpected: paramLen };
  };
}

export const modeSelect6 = modeSelect(false);
export const modeSelect10 = modeSelect(true);
