// REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) and REPORT SUPPORTED TASK MANAGEMENT
// FUNCTIONS (SPC-4 §6.37), both MAINTENANCE IN service actions.
//
// RSOC CDB: 1 SA=0Ch, 2 RCTD(7) REPORTING OPTIONS(2:0), 3 REQUESTED OPERATION CODE,
//   4..5 REQUESTED SERVICE ACTION, 6..9 ALLOCATION LENGTH.
// All-commands descriptor (8, +12 with RCTD): 0 OPCODE, 2..3 SERVICE ACTION,
//   5 CTDP(1) SERVACTV(0), 6..7 CDB LENGTH.
// One-command data: 1 CTDP(7) SUPPORT(2:0), 2..3 CDB SIZE, 4.. CDB USAGE DATA.
// Command timeouts descriptor: 0..1 LENGTH (0Ah), 3 COMMAND SPECIFIC, 4..7 NOMINAL, 8..11 RECOMMENDED.

import { invalidCdb } from '../sense';
import type { CommandContext, CommandDef, Handler } from '../command';

const SUPPORT_NOT_SUPPORTED = 0x01;
const SUPPORT_STANDARD = 0x03;

function timeoutsDescriptor(def: CommandDef): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0x0a, 0);
  b.writeUInt32BE(def.timeouts?.nominal ?? 0, 4);
  b.writeUInt32BE(def.timeouts?.recommended ?? 30, 8);
  return b;
}

export function makeReportSupportedOpcodes(table: () => readonly CommandDef[]): Handler {
  return (ctx: CommandContext) => {
    const cdb = ctx.cmd.cdb;
    const rctd = ((cdb[2] ?? 0) & 0x80) !== 0;
    const option = (cdb[2] ?? 0) & 0x07;
    const reqOp = cdb[3] ?? 0;
    const reqSa = cdb.readUInt16BE(4);
    const alloc = cdb.readUInt32BE(6);
    const defs = table().filter((d) => !d.supported || d.supported(ctx.lu));
    const hasSa = (op: number) => table().some((d) => d.opcode === op && d.serviceAction !== undefined);

    if (option === 0) {
      const parts: Buffer[] = [];
      for (const d of defs) {
        const b = Buffer.alloc(8);
        b[0] = d.opcode;
        b.writeUInt16BE(d.serviceAction ?? 0, 2);
        b[5] = (rctd ? 0x02 : 0) | (d.serviceAction !== undefined ? 0x01 : 0);
        b.writeUInt16BE(d.usage.length, 6);
        parts.push(b);
        if (rctd) parts.push(timeoutsDescriptor(d));
      }
      const body = Buffer.concat(parts);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0);
      return ctx.good(Buffer.concat([head, body]), alloc);
    }
    let def: CommandDef | undefined;
    if (option === 1) {
      // SPC-4 §6.35.2: option 001b names an opcode without service actions.
      if (hasSa(reqOp)) return ctx.fail(invalidCdb(3));
      def = defs.find((d) => d.opcode === reqOp);
    } else if (option === 2) {
      if (!hasSa(reqOp)) return ctx.fail(invalidCdb(3));
      def = defs.find((d) => d.opcode === reqOp && d.serviceAction === reqSa);
    } else if (option === 3) {
      def = defs.find((d) => d.opcode === reqOp && (d.serviceAction === undefined ? reqSa === 0 : d.serviceAction === reqSa));
    } else {
      return ctx.fail(invalidCdb(2, 2));
    }
    if (!def) {
      const b = Buffer.alloc(4);
      b[1] = SUPPORT_NOT_SUPPORTED;
      return ctx.good(b, alloc);
    }
    const head = Buffer.alloc(4);
    head[1] = (rctd ? 0x80 : 0) | SUPPORT_STANDARD;
    head.writeUInt16BE(def.usage.length, 2);
    const parts: Buffer[] = [head, Buffer.from(def.usage)];
    if (rctd) parts.push(timeoutsDescriptor(def));
    return ctx.good(Buffer.concat(parts), alloc);
  };
}

/**
 * REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: 0 ATS ATSS CACAS CTSS LURS QTS TRS WAKES,
 * 1 QUAS QTSS ITNRS; REPD=1 asks for the 16-byte extended format.
 */
export const reportSupportedTmfs: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const repd = ((cdb[2] ?? 0) & 0x80) !== 0;
  const alloc = cdb.readUInt32BE(6);
  const b = Buffer.alloc(repd ? 16 : 4);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x04 | 0x02; // ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LUN RESET, QUERY TASK, TARGET RESET
  b[1] = 0x01; // I_T NEXUS RESET
  if (repd) b[3] = 0x0c;
  return ctx.good(b, alloc);
};
