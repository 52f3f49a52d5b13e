// iSCSI Basic Header Segment codec (RFC 7143 §11). Pure functions, no I/O.
//
// Every PDU starts with a 48-byte BHS (§11.2.1):
//   byte 0      .|I| Opcode (6 bits)           I = immediate delivery (initiator PDUs)
//   byte 1      F bit + opcode-specific flags
//   bytes 2-3   opcode-specific
//   byte 4      TotalAHSLength (4-byte words)
//   bytes 5-7   DataSegmentLength (bytes, without padding)
//   bytes 8-15  LUN or opcode-specific (ISID+TSIH for login)
//   bytes 16-19 Initiator Task Tag
//   bytes 20-47 opcode-specific
// followed by AHS, HeaderDigest, data segment padded to 4, DataDigest (§11.2).

export const BHS_LENGTH = 48;

/** §11.2.1.2 opcodes. Initiator → target in the 0x00-0x1f range, target → initiator 0x20-0x3f. */
export const Opcode = {
  NOP_OUT: 0x00,
  SCSI_COMMAND: 0x01,
  TASK_MGMT_REQUEST: 0x02,
  LOGIN_REQUEST: 0x03,
  TEXT_REQUEST: 0x04,
  DATA_OUT: 0x05,
  LOGOUT_REQUEST: 0x06,
  SNACK_REQUEST: 0x10,
  NOP_IN: 0x20,
  SCSI_RESPONSE: 0x21,
  TASK_MGMT_RESPONSE: 0x22,
  LOGIN_RESPONSE: 0x23,
  TEXT_RESPONSE: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RESPONSE: 0x26,
  R2T: 0x31,
  ASYNC_MESSAGE: 0x32,
  REJECT: 0x3f,
} as const;
export type OpcodeValue = (typeof Opcode)[keyof typeof Opcode];

/** Common byte offsets (§11.2.1 and the per-PDU sections). */
export const Off = {
  OPCODE: 0,
  FLAGS: 1,
  TOTAL_AHS: 4,
  DSL: 5,
  LUN: 8,
  ITT: 16,
  TTT: 20, // also EDTL (§11.3.4), ReferencedTaskTag (§11.5.3), CID (§11.14.3)
  CMDSN: 24, // StatSN in target PDUs
  EXP_STATSN: 28, // ExpCmdSN in target PDUs
  MAX_CMDSN: 32, // RefCmdSN (§11.5.4) in TMF request
  DATASN: 36, // R2TSN, ExpDataSN, AsyncEvent
  BUFFER_OFFSET: 40,
  RESIDUAL: 44, // Desired Data Transfer Length in R2T
  CDB: 32,
} as const;

export const Flag = {
  IMMEDIATE: 0x40, // byte 0
  F: 0x80,
  C: 0x40, // text/login continue
  T: 0x80, // login transit
  R: 0x40, // SCSI command read
  W: 0x20, // SCSI command write
  ATTR_MASK: 0x07,
  A: 0x40, // Data-In acknowledge
  O: 0x04, // residual overflow
  U: 0x02, // residual underflow
  S: 0x01, // Data-In carries status
} as const;

export const RESERVED_TAG = 0xffffffff;

/** §11.17.1 Reject reason codes. */
export const RejectReason = {
  DATA_DIGEST_ERROR: 0x02,
  SNACK_REJECT: 0x03,
  PROTOCOL_ERROR: 0x04,
  COMMAND_NOT_SUPPORTED: 0x05,
  IMMEDIATE_COMMAND_REJECT: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_PDU_FIELD: 0x09,
  OUT_OF_RESOURCES: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const;

/** §11.5.1 task management function codes. */
export const TmfFunction = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LOGICAL_UNIT_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const;

/** §11.16.1 SNACK types (low 4 bits of byte 1). */
export const SnackType = { DATA_R2T: 0, STATUS: 1, DATA_ACK: 2, R_DATA: 3 } as const;

/** §11.6.1 task management response codes. */
export const TmfResponseCode = {
  FUNCTION_COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  REASSIGNMENT_NOT_SUPPORTED: 4,
  NOT_SUPPORTED: 5,
  AUTHORIZATION_FAILED: 6,
  FUNCTION_REJECTED: 255,
} as const;

/** §11.13.5 login status (class << 8 | detail). */
export const LoginStatus = {
  SUCCESS: 0x0000,
  TARGET_MOVED_TEMPORARILY: 0x0101,
  INITIATOR_ERROR: 0x0200,
  AUTH_FAILURE: 0x0201,
  AUTHORIZATION_FAILURE: 0x0202,
  NOT_FOUND: 0x0203,
  TARGET_REMOVED: 0x0204,
  UNSUPPORTED_VERSION: 0x0205,
  TOO_MANY_CONNECTIONS: 0x0206,
  MISSING_PARAMETER: 0x0207,
  CANT_INCLUDE_IN_SESSION: 0x0208,
  SESSION_TYPE_NOT_SUPPORTED: 0x0209,
  SESSION_DOES_NOT_EXIST: 0x020a,
  INVALID_DURING_LOGIN: 0x020b,
  TARGET_ERROR: 0x0300,
  SERVICE_UNAVAILABLE: 0x0301,
  OUT_OF_RESOURCES: 0x0302,
} as const;

/** §11.13.3 login stages (CSG/NSG). */
export const Stage = { SECURITY: 0, OPERATIONAL: 1, FULL_FEATURE: 3 } as const;

/** §11.14.1 logout reason codes and §11.15.1 responses. */
export const LogoutReason = { CLOSE_SESSION: 0, CLOSE_CONNECTION: 1, REMOVE_FOR_RECOVERY: 2 } as const;
export const LogoutResponseCode = { SUCCESS: 0, CID_NOT_FOUND: 1, RECOVERY_NOT_SUPPORTED: 2, CLEANUP_FAILED: 3 } as const;

/** §11.9.1 AsyncEvent codes. */
export const AsyncEvent = { SCSI: 0, LOGOUT_REQUEST: 1, DROP_CONNECTION: 2, DROP_ALL: 3, RENEGOTIATE: 4 } as const;

/** A protocol error in a PDU, with a stable code and the Reject reason it maps to. */
export class PduError extends Error {
  readonly code: string;
  readonly reason: number;
  constructor(code: string, message: string, reason: number = RejectReason.PROTOCOL_ERROR) {
    super(message);
    this.name = 'PduError';
    this.code = code;
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------
// Decoded initiator PDUs (plain readonly data, field names from §11).

interface BhsCommon {
  readonly opcode: number;
  readonly immediate: boolean;
  readonly final: boolean;
  readonly totalAhsLength: number; // bytes
  readonly dataSegmentLength: number;
  readonly itt: number;
}

export interface NopOut extends BhsCommon {
  readonly kind: 'nop-out';
  readonly lun: number;
  readonly ttt: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}
export interface ScsiCommandPdu extends BhsCommon {
  readonly kind: 'scsi-command';
  readonly read: boolean;
  readonly write: boolean;
  readonly attr: number;
  readonly lun: number;
  readonly expectedDataTransferLength: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly cdb: Buffer; // 16-byte view into the BHS
}
export interface TaskMgmtRequest extends BhsCommon {
  readonly kind: 'task-mgmt';
  readonly function: number;
  readonly lun: number;
  readonly referencedTaskTag: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly refCmdSN: number;
  readonly expDataSN: number;
}
export interface LoginRequest extends BhsCommon {
  readonly kind: 'login';
  readonly transit: boolean;
  readonly continue: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly versionMax: number;
  readonly versionMin: number;
  readonly isid: Buffer; // 6 bytes (copy)
  readonly tsih: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}
export interface TextRequest extends BhsCommon {
  readonly kind: 'text';
  readonly continue: boolean;
  readonly lun: number;
  readonly ttt: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}
export interface DataOut extends BhsCommon {
  readonly kind: 'data-out';
  readonly lun: number;
  readonly ttt: number;
  readonly expStatSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
}
export interface LogoutRequest extends BhsCommon {
  readonly kind: 'logout';
  readonly reason: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}
export interface SnackRequest extends BhsCommon {
  readonly kind: 'snack';
  readonly type: number;
  readonly lun: number;
  /** TTT (DataACK) or SNACK Tag (R-Data); reserved otherwise. */
  readonly ttt: number;
  readonly expStatSN: number;
  readonly begRun: number;
  readonly runLength: number;
}

export type InitiatorPdu =
  | NopOut
  | ScsiCommandPdu
  | TaskMgmtRequest
  | LoginRequest
  | TextRequest
  | DataOut
  | LogoutRequest
  | SnackRequest;

/** 8-byte LUN field → plain number (SAM-5 §4.7: peripheral or flat space addressing). */
export function decodeLun(b: Buffer, off: number): number {
  const b0 = b[off]!;
  const method = b0 >> 6;
  // Peripheral (00b) and flat (01b) addressing use a 14-bit LUN in the first two bytes.
  if (method === 0 || method === 1) return ((b0 & 0x3f) << 8) | b[off + 1]!;
  // Extended/logical-unit addressing: not supported; hand the core a LUN it will not map.
  return 0x10000 + (((b0 & 0x3f) << 8) | b[off + 1]!);
}

/** Plain number → 8-byte LUN field (peripheral below 256, flat space above). */
export function encodeLun(lun: number, b: Buffer, off: number): void {
  b.fill(0, off, off + 8);
  if (lun < 256) {
    b[off + 1] = lun;
  } else {
    b[off] = 0x40 | ((lun >> 8) & 0x3f);
    b[off + 1] = lun & 0xff;
  }
}

function dsl(b: Buffer): number {
  return (b[5]! << 16) | (b[6]! << 8) | b[7]!;
}

/**
 * Decode one initiator BHS. Throws PduError (typed, with a Reject reason) for an unknown
 * opcode or a field the spec forbids; never reads past the 48 bytes.
 */
export function decodeBhs(b: Buffer): InitiatorPdu {
  if (b.length < BHS_LENGTH) throw new PduError('ISCSI_SHORT_BHS', `BHS is ${b.length} bytes, needs 48`);
  // Every case spells out the common fields as one object literal: `{ ...common, more }`
  // takes V8's slow path (about 1 µs per PDU on Node 20), and this runs for every PDU.
  const b0 = b[0]!;
  const b1 = b[1]!;
  const opcode = b0 & 0x3f;
  const immediate = (b0 & Flag.IMMEDIATE) !== 0;
  const final = (b1 & Flag.F) !== 0;
  const totalAhsLength = b[4]! * 4; // §11.2.1.2: TotalAHSLength in 4-byte words
  const dataSegmentLength = dsl(b);
  const itt = b.readUInt32BE(Off.ITT);
  switch (opcode) {
    case Opcode.NOP_OUT:
      return { opcode, immediate, final, totalAhsLength, dataSegmentLength, itt, kind: 'nop-out', lun: decodeLun(b, 8), ttt: b.readUInt32BE(20), cmdSN: b.readUInt32BE(24), expStatSN: b.readUInt32BE(28) };
    case Opcode.SCSI_COMMAND:
      // §11.3: F R W . . ATTR; EDTL at 20; CDB 32..47
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'scsi-command',
        read: (b1 & Flag.R) !== 0,
        write: (b1 & Flag.W) !== 0,
        attr: b1 & Flag.ATTR_MASK,
        lun: decodeLun(b, 8),
        expectedDataTransferLength: b.readUInt32BE(20),
        cmdSN: b.readUInt32BE(24),
        expStatSN: b.readUInt32BE(28),
        cdb: b.subarray(32, 48),
      };
    case Opcode.TASK_MGMT_REQUEST:
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'task-mgmt',
        function: b1 & 0x7f, // §11.5: F bit + 7-bit function
        lun: decodeLun(b, 8),
        referencedTaskTag: b.readUInt32BE(20),
        cmdSN: b.readUInt32BE(24),
        expStatSN: b.readUInt32BE(28),
        refCmdSN: b.readUInt32BE(32),
        expDataSN: b.readUInt32BE(36),
      };
    case Opcode.LOGIN_REQUEST:
      // §11.12: T C . . CSG(2) NSG(2); Version-max 2, Version-min 3; ISID 8..13; TSIH 14; CID 20
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'login',
        transit: (b1 & Flag.T) !== 0,
        continue: (b1 & Flag.C) !== 0,
        csg: (b1 >> 2) & 3,
        nsg: b1 & 3,
        versionMax: b[2]!,
        versionMin: b[3]!,
        isid: Buffer.from(b.subarray(8, 14)),
        tsih: b.readUInt16BE(14),
        cid: b.readUInt16BE(20),
        cmdSN: b.readUInt32BE(24),
        expStatSN: b.readUInt32BE(28),
      };
    case Opcode.TEXT_REQUEST:
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'text',
        continue: (b1 & Flag.C) !== 0,
        lun: decodeLun(b, 8),
        ttt: b.readUInt32BE(20),
        cmdSN: b.readUInt32BE(24),
        expStatSN: b.readUInt32BE(28),
      };
    case Opcode.DATA_OUT:
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'data-out',
        lun: decodeLun(b, 8),
        ttt: b.readUInt32BE(20),
        expStatSN: b.readUInt32BE(28),
        dataSN: b.readUInt32BE(36),
        bufferOffset: b.readUInt32BE(40),
      };
    case Opcode.LOGOUT_REQUEST:
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'logout',
        reason: b1 & 0x7f,
        cid: b.readUInt16BE(20),
        cmdSN: b.readUInt32BE(24),
        expStatSN: b.readUInt32BE(28),
      };
    case Opcode.SNACK_REQUEST:
      // §11.16: F . . . Type(4); LUN 8; ITT 16; TTT/SNACK Tag 20; ExpStatSN 28; BegRun 40; RunLength 44
      return {
        opcode,
        immediate,
        final,
        totalAhsLength,
        dataSegmentLength,
        itt,
        kind: 'snack',
        type: b1 & 0x0f,
        lun: decodeLun(b, 8),
        ttt: b.readUInt32BE(20),
        expStatSN: b.readUInt32BE(28),
        begRun: b.readUInt32BE(40),
        runLength: b.readUInt32BE(44),
      };
    default:
      throw new PduError('ISCSI_BAD_OPCODE', `opcode 0x${opcode.toString(16)} is not an initiator opcode`, RejectReason.COMMAND_NOT_SUPPORTED);
  }
}

// ---------------------------------------------------------------------------------------
// Target PDU encoders: each returns the 48-byte BHS; the data segment is sent separately.

export interface SeqNumbers {
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

function bhs(opcode: number, flags: number, dataLength: number): Buffer {
  const b = Buffer.allocUnsafe(BHS_LENGTH).fill(0);
  b[0] = opcode;
  b[1] = flags;
  b[5] = (dataLength >>> 16) & 0xff;
  b[6] = (dataLength >>> 8) & 0xff;
  b[7] = dataLength & 0xff;
  return b;
}

function putSeq(b: Buffer, s: SeqNumbers): void {
  b.writeUInt32BE(s.statSN >>> 0, 24);
  b.writeUInt32BE(s.expCmdSN >>> 0, 28);
  b.writeUInt32BE(s.maxCmdSN >>> 0, 32);
}

export interface ScsiResponseFields extends SeqNumbers {
  readonly itt: number;
  readonly response: number; // 0 = command completed at target
  readonly status: number;
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly residualCount: number;
  readonly expDataSN: number;
  readonly dataSegmentLength: number;
  /** §11.4: SNACK Tag of the last R-Data SNACK for this task (bytes 20-23), else 0. */
  readonly snackTag?: number | undefined;
}
/** §11.4 SCSI Response: flags .|o|u|O|U|. at byte 1, Response 2, Status 3, ExpDataSN 36, residual 44. */
export function encodeScsiResponse(f: ScsiResponseFields): Buffer {
  const b = bhs(Opcode.SCSI_RESPONSE, Flag.F | (f.overflow ? Flag.O : 0) | (f.underflow ? Flag.U : 0), f.dataSegmentLength);
  b[2] = f.response;
  b[3] = f.status;
  b.writeUInt32BE(f.itt >>> 0, 16);
  if (f.snackTag !== undefined) b.writeUInt32BE(f.snackTag >>> 0, 20);
  putSeq(b, f);
  b.writeUInt32BE(f.expDataSN >>> 0, 36);
  b.writeUInt32BE(f.residualCount >>> 0, 44);
  return b;
}

export interface DataInFields {
  readonly itt: number;
  readonly lun: number;
  readonly final: boolean;
  readonly statusPresent: boolean;
  readonly status: number;
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly residualCount: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
  readonly dataSegmentLength: number;
  /** §11.7.2 A bit (ERL >= 1): ask for a DataACK SNACK; `ttt` then names the transfer. */
  readonly ack?: boolean;
  readonly ttt?: number | undefined;
}
/** §11.7 SCSI Data-In: F A . . . O U S; Status 3 (if S); LUN 8; TTT 20; DataSN 36; offset 40; residual 44. */
export function encodeDataIn(f: DataInFields): Buffer {
  let flags = f.final ? Flag.F : 0;
  if (f.ack === true) flags |= Flag.A;
  if (f.statusPresent) flags |= Flag.S | (f.overflow ? Flag.O : 0) | (f.underflow ? Flag.U : 0);
  const b = bhs(Opcode.DATA_IN, flags, f.dataSegmentLength);
  if (f.statusPresent) b[3] = f.status;
  encodeLun(f.lun, b, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt === undefined ? RESERVED_TAG : f.ttt >>> 0, 20);
  // StatSN is only meaningful with S=1 (§11.7.8); the sequence numbers ride along anyway.
  b.writeUInt32BE(f.statusPresent ? f.statSN >>> 0 : 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  if (f.statusPresent) b.writeUInt32BE(f.residualCount >>> 0, 44);
  return b;
}

export interface R2tFields extends SeqNumbers {
  readonly itt: number;
  readonly lun: number;
  readonly ttt: number;
  readonly r2tSN: number;
  readonly bufferOffset: number;
  readonly desiredLength: number;
}
/** §11.8 R2T: LUN 8, ITT 16, TTT 20, StatSN 24 (not advanced), R2TSN 36, offset 40, DDTL 44. */
export function encodeR2t(f: R2tFields): Buffer {
  const b = bhs(Opcode.R2T, Flag.F, 0);
  encodeLun(f.lun, b, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  b.writeUInt32BE(f.r2tSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.desiredLength >>> 0, 44);
  return b;
}

export interface NopInFields extends SeqNumbers {
  readonly itt: number;
  readonly ttt: number;
  readonly lun: number;
  readonly dataSegmentLength: number;
}
/** §11.19 NOP-In. */
export function encodeNopIn(f: NopInFields): Buffer {
  const b = bhs(Opcode.NOP_IN, Flag.F, f.dataSegmentLength);
  encodeLun(f.lun, b, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  return b;
}

export interface TmfResponseFields extends SeqNumbers {
  readonly itt: number;
  readonly response: number;
}
/** §11.6 Task Management Function Response: Response at byte 2. */
export function encodeTmfResponse(f: TmfResponseFields): Buffer {
  const b = bhs(Opcode.TASK_MGMT_RESPONSE, Flag.F, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  return b;
}

export interface LoginResponseFields extends SeqNumbers {
  readonly transit: boolean;
  readonly continue: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly versionMax: number;
  readonly versionActive: number;
  readonly isid: Buffer;
  readonly tsih: number;
  readonly itt: number;
  readonly status: number; // class << 8 | detail
  readonly dataSegmentLength: number;
}
/** §11.13 Login Response: T C . . CSG NSG; Version-max 2, Version-active 3; ISID 8; TSIH 14; status 36/37. */
export function encodeLoginResponse(f: LoginResponseFields): Buffer {
  const flags = (f.transit ? Flag.T : 0) | (f.continue ? Flag.C : 0) | ((f.csg & 3) << 2) | (f.nsg & 3);
  const b = bhs(Opcode.LOGIN_RESPONSE, flags, f.dataSegmentLength);
  b[2] = f.versionMax;
  b[3] = f.versionActive;
  f.isid.copy(b, 8, 0, 6);
  b.writeUInt16BE(f.tsih & 0xffff, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  b[36] = (f.status >> 8) & 0xff;
  b[37] = f.status & 0xff;
  return b;
}

export interface TextResponseFields extends SeqNumbers {
  readonly final: boolean;
  readonly continue: boolean;
  readonly itt: number;
  readonly ttt: number;
  readonly lun: number;
  readonly dataSegmentLength: number;
}
/** §11.11 Text Response: F C at byte 1; TTT 20 (0xffffffff on the final response). */
export function encodeTextResponse(f: TextResponseFields): Buffer {
  const b = bhs(Opcode.TEXT_RESPONSE, (f.final ? Flag.F : 0) | (f.continue ? Flag.C : 0), f.dataSegmentLength);
  encodeLun(f.lun, b, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  putSeq(b, f);
  return b;
}

export interface LogoutResponseFields extends SeqNumbers {
  readonly itt: number;
  readonly response: number;
  readonly time2Wait: number;
  readonly time2Retain: number;
}
/** §11.15 Logout Response: Response 2; Time2Wait 40; Time2Retain 42. */
export function encodeLogoutResponse(f: LogoutResponseFields): Buffer {
  const b = bhs(Opcode.LOGOUT_RESPONSE, Flag.F, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  putSeq(b, f);
  b.writeUInt16BE(f.time2Wait & 0xffff, 40);
  b.writeUInt16BE(f.time2Retain & 0xffff, 42);
  return b;
}

export interface AsyncMessageFields extends SeqNumbers {
  readonly lun: number;
  readonly asyncEvent: number;
  readonly asyncVCode: number;
  readonly parameter1: number;
  readonly parameter2: number;
  readonly parameter3: number;
  readonly dataSegmentLength: number;
}
/** §11.9 Asynchronous Message: ITT 0xffffffff; AsyncEvent 36, VCode 37, Parameter1-3 at 38/40/42. */
export function encodeAsyncMessage(f: AsyncMessageFields): Buffer {
  const b = bhs(Opcode.ASYNC_MESSAGE, Flag.F, f.dataSegmentLength);
  encodeLun(f.lun, b, 8);
  b.writeUInt32BE(RESERVED_TAG, 16);
  putSeq(b, f);
  b[36] = f.asyncEvent;
  b[37] = f.asyncVCode;
  b.writeUInt16BE(f.parameter1 & 0xffff, 38);
  b.writeUInt16BE(f.parameter2 & 0xffff, 40);
  b.writeUInt16BE(f.parameter3 & 0xffff, 42);
  return b;
}

export interface RejectFields extends SeqNumbers {
  readonly reason: number;
  readonly dataSN: number;
}
/** §11.17 Reject: Reason 2; ITT 0xffffffff; data segment = the rejected PDU's header (48 bytes). */
export function encodeReject(f: RejectFields): Buffer {
  const b = bhs(Opcode.REJECT, Flag.F, BHS_LENGTH);
  b[2] = f.reason;
  b.writeUInt32BE(RESERVED_TAG, 16);
  putSeq(b, f);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  return b;
}

/** Padding to the next 4-byte boundary (§11.2.3: data segment padded with zeros). */
export function padLength(n: number): number {
  return (4 - (n & 3)) & 3;
}
export const PAD = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)] as const;

/** RFC 1982 serial number arithmetic on 32-bit sequence numbers (§4.2.2.1). */
export function snLt(a: number, b: number): boolean {
  return a !== b && ((b - a) >>> 0) < 0x80000000;
}
export function snLe(a: number, b: number): boolean {
  return a === b || snLt(a, b);
}
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
