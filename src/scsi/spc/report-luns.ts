// REPORT LUNS (SPC-4 §6.33): 2 SELECT REPORT, 6..9 ALLOCATION LENGTH.
// Parameter data: 0..3 LUN LIST LENGTH, 4..7 reserved, then 8-byte LUNs (SAM-5 §4.7).

import { invalidCdb, type SenseSpec } from '../sense';

/** SAM-5 §4.7.3: LUNs below 256 use peripheral addressing, larger ones flat space (01b). */
export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun < 256) b[1] = lun;
  else b.writeUInt16BE(0x4000 | (lun & 0x3fff), 0);
  return b;
}

/**
 * Build REPORT LUNS parameter data, or the sense for a bad CDB.
 * SELECT REPORT 00h (all LUNs with logical units), 01h (well-known LUNs: none here),
 * 02h (all LUNs); anything else is INVALID FIELD IN CDB.
 */
export function reportLuns(cdb: Buffer, luns: readonly number[]): { data: Buffer; alloc: number } | SenseSpec {
  const select = cdb[2] ?? 0;
  const alloc = cdb.readUInt32BE(6);
  let list: readonly number[];
  if (select === 0x00 || select === 0x02) list = [...luns].sort((a, b) => a - b);
  else if (select === 0x01) list = [];
  else return invalidCdb(2);
  const data = Buffer.alloc(8 + list.length * 8);
  data.writeUInt32BE(list.length * 8, 0);
  list.forEach((l, i) => encodeLun(l).copy(data, 8 + i * 8));
  return { data, alloc };
}
