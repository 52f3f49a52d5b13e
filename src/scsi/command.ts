// What every command handler sees, and how a command is described in the command table.
// The table (commands.ts) drives dispatch, the reserved-bit check and REPORT SUPPORTED
// OPERATION CODES from one place, so the CDB usage data we report is the mask we enforce.

import type { ScsiCommand, ScsiResult } from './types';
import type { SenseSpec } from './sense';
import type { LogicalUnit } from './logical-unit';

export interface CommandContext {
  readonly cmd: ScsiCommand;
  readonly lu: LogicalUnit;
  /** The LUN map entry or the unit makes this LUN read-only for this nexus (or SWP is set). */
  readonly writeProtected: boolean;
  /** CHECK CONDITION with sense in the unit's current format (control page D_SENSE). */
  fail(s: SenseSpec): ScsiResult;
  /** GOOD, with data-in cut to `allocation` bytes when given (SPC-4 §4.2.5.6). */
  good(dataIn?: Buffer, allocation?: number): ScsiResult;
  /**
   * Pull up to `length` bytes of data-out (fewer when the initiator sent less).
   * Rejects when the task is aborted.
   */
  pull(length: number): Promise<Buffer>;
  /** The task was aborted by a TMF or by the fabric: stop before the next side effect. */
  readonly aborted: boolean;
}

export type Handler = (ctx: CommandContext) => Promise<ScsiResult> | ScsiResult;

export interface CommandTimeouts {
  /** Seconds (SPC-4 §7.5.4.2 NOMINAL / RECOMMENDED COMMAND TIMEOUT). */
  readonly nominal: number;
  readonly recommended: number;
}

export interface CommandDef {
  readonly name: string;
  readonly opcode: number;
  /** Service action (bits 4:0 of byte 1) for opcodes that have them. */
  readonly serviceAction?: number;
  /**
   * CDB USAGE DATA (SPC-4 §6.35.3): one mask per CDB byte; byte 0 is the opcode, the
   * last byte is the CONTROL byte. A bit set in the CDB and clear in the mask is
   * rejected with INVALID FIELD IN CDB and a field pointer.
   */
  readonly usage: readonly number[];
  /** Accesses the medium: NOT READY / MEDIUM NOT PRESENT when ejected. */
  readonly medium?: boolean;
  /** Modifies the medium: DATA PROTECT / WRITE PROTECTED on read-only LUNs. */
  readonly write?: boolean;
  /** Allowed while another I_T nexus holds an SPC-2 reservation (SPC-2 §5.5.1 table 10). */
  readonly reservationExempt?: boolean;
  /** Neither reports nor clears a unit attention (SAM-5 §5.14, SPC-4 §6.6.2). */
  readonly uaExempt?: boolean;
  /** Runs as HEAD OF QUEUE whatever its task attribute (housekeeping commands). */
  readonly headOfQueue?: boolean;
  readonly timeouts?: CommandTimeouts;
  /** Whether the unit offers the command at all (UNMAP only when thin, ...). */
  readonly supported?: (lu: LogicalUnit) => boolean;
  readonly run: Handler;
}
