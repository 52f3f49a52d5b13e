// READ DEFECT DATA(10) and (12) (SBC-3 §5.18, §5.19): a virtual medium has no defects, so
// both lists are valid and empty, in whatever address descriptor format was asked for.
//
// READ DEFECT DATA(10) CDB: 2 REQ_PLIST(4) REQ_GLIST(3) DEFECT LIST FORMAT(2:0),
//   7..8 ALLOCATION LENGTH.  Parameter data (4 bytes): 1 PLISTV(4) GLISTV(3) FORMAT(2:0),
//   2..3 DEFECT LIST LENGTH.
// READ DEFECT DATA(12) CDB: 1 REQ_PLIST(4) REQ_GLIST(3) FORMAT(2:0), 2..5 ADDRESS
//   DESCRIPTOR INDEX, 6..9 ALLOCATION LENGTH.  Parameter data (8 bytes): 1 as above,
//   2..3 GENERATION CODE, 4..7 DEFECT LIST LENGTH.

import type { Handler } from '../command';

const LIST_BITS = 0x18; // REQ_PLIST | REQ_GLIST → PLISTV | GLISTV
const FORMAT = 0x07;

export const readDefectData10: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const b = Buffer.alloc(4);
  b[1] = (cdb[2] ?? 0) & (LIST_BITS | FORMAT);
  return ctx.good(b, cdb.readUInt16BE(7));
};

export const readDefectData12: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const b = Buffer.alloc(8);
  b[1] = (cdb[1] ?? 0) & (LIST_BITS | FORMAT);
  return ctx.good(b, cdb.readUInt32BE(6));
};
