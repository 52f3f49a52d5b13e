// READ DISC INFORMATION (MMC-6 §6.22), READ TRACK INFORMATION (§6.27), READ DVD STRUCTURE
// (§6.29), SET CD SPEED (§6.37) and GET PERFORMANCE (§6.8) for a finalized, single-session,
// single-track, read-only disc.
//
// Disc information (data type 000b), 34 bytes: 0..1 LENGTH (32), 2 ERASABLE(4) STATE OF LAST
//   SESSION(3:2) DISC STATUS(1:0), 3 FIRST TRACK, 4 SESSIONS (LSB), 5 FIRST TRACK IN LAST
//   SESSION (LSB), 6 LAST TRACK IN LAST SESSION (LSB), 7 DID_V DBC_V URU(5), 8 DISC TYPE,
//   16..19 LAST SESSION LEAD-IN START, 20..23 LAST POSSIBLE LEAD-OUT START.
// Track information, 48 bytes: 0..1 LENGTH (46), 2 TRACK (LSB), 3 SESSION (LSB), 5 DAMAGE COPY
//   TRACK MODE(3:0), 6 RT BLANK PACKET FP DATA MODE(3:0), 7 LRA_V NWA_V, 8..11 TRACK START,
//   12..15 NEXT WRITABLE, 16..19 FREE BLOCKS, 20..23 FIXED PACKET SIZE, 24..27 TRACK SIZE,
//   28..31 LAST RECORDED ADDRESS.
// DVD structure format 00h, 4 + 2048 bytes: 0..1 LENGTH, 4 BOOK TYPE(7:4) PART VERSION(3:0),
//   5 DISC SIZE(7:4) MAXIMUM RATE(3:0), 6 LAYERS(6:5) TRACK PATH(4) LAYER TYPE(3:0),
//   7 DENSITIES, 9..11 START PSN, 13..15 END PSN, 17..19 END PSN LAYER 0, 20 BCA(7).

import { Asc, SenseKey, invalidCdb } from '../sense';
import type { Handler } from '../command';
import { Profile, profileFor } from './mmc';

export function encodeDiscInformation(): Buffer {
  const b = Buffer.alloc(34);
  b.writeUInt16BE(32, 0);
  b[2] = 0x0e; // last session complete (11b), disc finalized (10b), not erasable
  b[3] = 1;
  b[4] = 1;
  b[5] = 1;
  b[6] = 1;
  b[7] = 0x20; // URU: unrestricted use
  b[8] = 0x00; // CD-DA or CD-ROM
  b.writeUInt32BE(0xffffffff, 16);
  b.writeUInt32BE(0xffffffff, 20);
  return b;
}

export const readDiscInformation: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  // Only the standard disc information (data type 000b): no track resources or POW data.
  if (((cdb[1] ?? 0) & 0x07) !== 0) return ctx.fail(invalidCdb(1, 2));
  return ctx.good(encodeDiscInformation(), cdb.readUInt16BE(7));
};

export const AddressType = { LBA: 0, TRACK: 1, SESSION: 2 } as const;

/** Track 1 is the whole disc; undefined when the address names no track. */
export function encodeTrackInformation(blocks: number, type: number, value: number): Buffer | undefined {
  const ok =
    type === AddressType.LBA ? value < blocks
    : type === AddressType.TRACK || type === AddressType.SESSION ? value === 1
    : false;
  if (!ok) return undefined;
  const b = Buffer.alloc(48);
  b.writeUInt16BE(46, 0);
  b[2] = 1;
  b[3] = 1;
  b[5] = 0x04; // data track, recorded uninterrupted
  b[6] = 0x01; // data mode 1
  b.writeUInt32BE(blocks, 24);
  b.writeUInt32BE(Math.max(0, blocks - 1), 28);
  return b;
}

export const readTrackInformation: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const out = encodeTrackInformation(ctx.lu.blockCount, (cdb[1] ?? 0) & 0x03, cdb.readUInt32BE(2));
  if (!out) return ctx.fail(invalidCdb(2));
  return ctx.good(out, cdb.readUInt16BE(7));
};

export const DvdFormat = { PHYSICAL: 0x00, COPYRIGHT: 0x01, MANUFACTURING: 0x04, LIST: 0xff } as const;

/** First physical sector number of the data zone of a DVD (ECMA-267). */
const DVD_START_PSN = 0x030000;

function structure(body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b.writeUInt16BE(body.length + 2, 0);
  body.copy(b, 4);
  return b;
}

/** READ DVD STRUCTURE data for a DVD-ROM of `blocks` sectors; undefined for an unknown format. */
export function encodeDvdStructure(format: number, blocks: number): Buffer | undefined {
  switch (format) {
    case DvdFormat.PHYSICAL: {
      const p = Buffer.alloc(2048);
      p[0] = 0x01; // DVD-ROM, part version 1
      p[1] = 0x0f; // 120 mm, maximum rate not specified
      p[2] = 0x01; // one layer, parallel track path, embossed
      p.writeUInt32BE(DVD_START_PSN, 4);
      p.writeUInt32BE(DVD_START_PSN + Math.max(0, blocks - 1), 8);
      return structure(p);
    }
    case DvdFormat.COPYRIGHT:
      return structure(Buffer.alloc(4)); // no copy protection, all regions
    case DvdFormat.MANUFACTURING:
      return structure(Buffer.alloc(2048));
    case DvdFormat.LIST: {
      // Structure list: 0 FORMAT CODE, 1 SDS(7) RDS(6), 2..3 STRUCTURE LENGTH.
      const l = Buffer.alloc(12);
      [[DvdFormat.PHYSICAL, 2052], [DvdFormat.COPYRIGHT, 8], [DvdFormat.MANUFACTURING, 2052]].forEach(([f, n], i) => {
        l[i * 4] = f ?? 0;
        l[i * 4 + 1] = 0x40;
        l.writeUInt16BE(n ?? 0, i * 4 + 2);
      });
      return structure(l);
    }
    default:
      return undefined;
  }
}

/** CDB: 1 MEDIA TYPE(3:0), 2..5 ADDRESS, 6 LAYER, 7 FORMAT, 8..9 ALLOCATION, 10 AGID(7:6). */
export const readDvdStructure: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const format = cdb[7] ?? 0;
  // MEDIA TYPE 0001b asks for BD structures: this drive has none.
  if (((cdb[1] ?? 0) & 0x0f) !== 0) return ctx.fail(invalidCdb(1, 0));
  const dvd = profileFor(ctx.lu.blockCount, true) === Profile.DVD_ROM;
  // MMC-6 §6.29.2.1: a DVD structure asked of a CD is CANNOT READ MEDIUM - INCOMPATIBLE FORMAT.
  if (!dvd && format < 0xc0 && format !== DvdFormat.LIST) {
    return ctx.fail({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.CANNOT_READ_MEDIUM_INCOMPATIBLE_FORMAT });
  }
  if (format === DvdFormat.PHYSICAL && (cdb[6] ?? 0) !== 0) return ctx.fail(invalidCdb(6));
  const out = encodeDvdStructure(format, ctx.lu.blockCount);
  if (!out) return ctx.fail(invalidCdb(7));
  return ctx.good(out, cdb.readUInt16BE(8));
};

/** SET CD SPEED: accepted; an image is read as fast as the backstore allows. */
export const setCdSpeed: Handler = (ctx) => ctx.good();

/** 1×CD is 176.4 kB/s; report 24× for reads. */
const READ_SPEED_KBS = 4234;

/**
 * GET PERFORMANCE CDB: 1 DATA TYPE(4:0), 2..5 START LBA, 8..9 MAXIMUM DESCRIPTORS, 10 TYPE.
 * Type 00h answers one nominal performance descriptor (16 bytes: START LBA, START PERFORMANCE,
 * END LBA, END PERFORMANCE) after an 8-byte header; other types an empty list.
 */
export function encodePerformance(type: number, write: boolean, max: number, blocks: number): Buffer {
  const n = type === 0 && !write && max > 0 ? 1 : 0;
  const b = Buffer.alloc(8 + 16 * n);
  b.writeUInt32BE(b.length - 4, 0);
  b[4] = write ? 0x02 : 0;
  if (n === 1) {
    b.writeUInt32BE(READ_SPEED_KBS, 12);
    b.writeUInt32BE(Math.max(0, blocks - 1), 16);
    b.writeUInt32BE(READ_SPEED_KBS, 20);
  }
  return b;
}

export const getPerformance: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const max = cdb.readUInt16BE(8);
  const out = encodePerformance(cdb[10] ?? 0, ((cdb[1] ?? 0) & 0x04) !== 0, max, ctx.lu.blockCount);
  return ctx.good(out);
};
