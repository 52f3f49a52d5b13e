// READ TOC/PMA/ATIP (MMC-6 §6.26) for a single-session, single-track data disc (an ISO image).
//
// CDB: 0 43h, 1 MSF(1), 2 FORMAT(3:0), 6 TRACK/SESSION NUMBER, 7..8 ALLOCATION LENGTH,
//   9 CONTROL (SFF-8020i: FORMAT in bits 7:6 when byte 2 says 0; Linux sr uses this for format 1).
// Every format: 0..1 DATA LENGTH (n-2), 2 FIRST, 3 LAST, then descriptors.
// Format 0 (TOC) descriptor, 8 bytes: 1 ADR(7:4) CONTROL(3:0), 2 TRACK NUMBER, 4..7 START ADDRESS.
// Format 1 (session info): one descriptor as format 0 for the first track of the last session.
// Format 2 (full TOC) descriptor, 11 bytes: 0 SESSION, 1 ADR/CONTROL, 2 TNO, 3 POINT,
//   4..6 MIN SEC FRAME, 7 ZERO, 8..10 PMIN PSEC PFRAME (A0h first track, A1h last, A2h lead-out).

import { invalidCdb } from '../sense';
import type { Handler } from '../command';
import { lbaToMsf } from './mmc';

export const TocFormat = { TOC: 0, SESSION_INFO: 1, FULL_TOC: 2 } as const;

/** ADR 1 (Q sub-channel position), CONTROL 4 (data track, recorded uninterrupted). */
const ADR_CONTROL_DATA = 0x14;
const LEAD_OUT = 0xaa;

function address(out: Buffer, at: number, lba: number, msf: boolean): void {
  if (msf) Buffer.from(lbaToMsf(lba)).copy(out, at);
  else out.writeUInt32BE(lba >>> 0, at);
}

/** Format 0: track 1 at LBA 0 and the lead-out at `blocks`; undefined when `start` names no track. */
export function encodeToc(blocks: number, msf: boolean, start: number): Buffer | undefined {
  const tracks: [number, number][] = [];
  if (start <= 1) tracks.push([1, 0]);
  else if (start !== LEAD_OUT) return undefined;
  tracks.push([LEAD_OUT, blocks]);
  const out = Buffer.alloc(4 + 8 * tracks.length);
  out.writeUInt16BE(out.length - 2, 0);
  out[2] = 1;
  out[3] = 1;
  tracks.forEach(([n, lba], i) => {
    const o = 4 + i * 8;
    out[o + 1] = ADR_CONTROL_DATA;
    out[o + 2] = n;
    address(out, o + 4, lba, msf);
  });
  return out;
}

/** Format 1: one session, whose first track (1) starts at LBA 0. */
export function encodeSessionInfo(msf: boolean): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(10, 0);
  out[2] = 1;
  out[3] = 1;
  out[5] = ADR_CONTROL_DATA;
  out[6] = 1;
  address(out, 8, 0, msf);
  return out;
}

/** Format 2: the session 1 lead-in Q entries A0h, A1h, A2h and track 1, addresses in MSF. */
export function encodeFullToc(blocks: number): Buffer {
  const entries: [number, [number, number, number]][] = [
    [0xa0, [1, 0x00, 0]], // first track 1, disc type 00h (CD-DA or CD-ROM)
    [0xa1, [1, 0, 0]], // last track 1
    [0xa2, lbaToMsf(blocks).slice(1) as [number, number, number]],
    [0x01, lbaToMsf(0).slice(1) as [number, number, number]],
  ];
  const out = Buffer.alloc(4 + 11 * entries.length);
  out.writeUInt16BE(out.length - 2, 0);
  out[2] = 1;
  out[3] = 1;
  entries.forEach(([point, [m, s, f]], i) => {
    const o = 4 + i * 11;
    out[o] = 1;
    out[o + 1] = ADR_CONTROL_DATA;
    out[o + 3] = point;
    out[o + 8] = m;
    out[o + 9] = s;
    out[o + 10] = f;
  });
  return out;
}

export const readToc: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const msf = ((cdb[1] ?? 0) & 0x02) !== 0;
  const format = (cdb[2] ?? 0) & 0x0f || (cdb[9] ?? 0) >> 6;
  const start = cdb[6] ?? 0;
  const alloc = cdb.readUInt16BE(7);
  let out: Buffer | undefined;
  switch (format) {
    case TocFormat.TOC:
      out = encodeToc(ctx.lu.blockCount, msf, start);
      if (!out) return ctx.fail(invalidCdb(6));
      break;
    case TocFormat.SESSION_INFO:
      out = encodeSessionInfo(msf);
      break;
    case TocFormat.FULL_TOC:
      out = encodeFullToc(ctx.lu.blockCount);
      break;
    default:
      // PMA, ATIP and CD-TEXT exist only on recordable or audio media.
      return ctx.fail(invalidCdb(2, 3));
  }
  return ctx.good(out, alloc);
};
