// Sense data: fixed and descriptor formats (SPC-4 §4.5), built from named ASC/ASCQ codes.
//
// Fixed format (SPC-4 §4.5.3), 18 bytes:
//   0  VALID(7) | RESPONSE CODE 70h (current) / 71h (deferred)
//   2  FILEMARK | EOM | ILI | SENSE KEY(3:0)
//   3..6  INFORMATION            7  ADDITIONAL SENSE LENGTH (10)
//   8..11 COMMAND-SPECIFIC INFO  12 ASC   13 ASCQ   14 FRU
//   15..17 SENSE-KEY SPECIFIC (SKSV(7) ...)
// Descriptor format (SPC-4 §4.5.2): 0 RESPONSE CODE 72h/73h, 1 SENSE KEY, 2 ASC, 3 ASCQ,
//   7 ADDITIONAL SENSE LENGTH, then descriptors: 00h information (12 bytes), 02h sense-key specific (8).

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;
export type SenseKeyCode = (typeof SenseKey)[keyof typeof SenseKey];

/** ASC (high byte) and ASCQ (low byte) pairs, SPC-4 Annex D. */
export const Asc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  LUN_NOT_READY_CAUSE_NOT_REPORTABLE: 0x0400,
  LUN_NOT_READY_INITIALIZING_CMD_REQUIRED: 0x0402,
  WRITE_ERROR: 0x0c00,
  MISCOMPARE_DURING_VERIFY: 0x1d00,
  UNRECOVERED_READ_ERROR: 0x1100,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  INVALID_COMMAND_OPERATION_CODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LOGICAL_UNIT_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  WRITE_PROTECTED: 0x2700,
  SOFTWARE_WRITE_PROTECTED: 0x2702,
  NOT_READY_TO_READY_CHANGE: 0x2800,
  POWER_ON_RESET: 0x2900,
  POWER_ON_OCCURRED: 0x2901,
  SCSI_BUS_RESET_OCCURRED: 0x2902,
  BUS_DEVICE_RESET_FUNCTION_OCCURRED: 0x2903,
  I_T_NEXUS_LOSS_OCCURRED: 0x2907,
  PARAMETERS_CHANGED: 0x2a00,
  MODE_PARAMETERS_CHANGED: 0x2a01,
  RESERVATIONS_PRELEASED: 0x2a04,
  CAPACITY_DATA_HAS_CHANGED: 0x2a09,
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: 0x2f00,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  MEDIUM_NOT_PRESENT: 0x3a00,
  MEDIUM_NOT_PRESENT_TRAY_CLOSED: 0x3a01,
  MEDIUM_NOT_PRESENT_TRAY_OPEN: 0x3a02,
  CANNOT_READ_MEDIUM_INCOMPATIBLE_FORMAT: 0x3002,
  REPORTED_LUNS_DATA_HAS_CHANGED: 0x3f0e,
  INTERNAL_TARGET_FAILURE: 0x4400,
  DATA_PHASE_ERROR: 0x4b00,
  LOGICAL_BLOCK_GUARD_CHECK_FAILED: 0x1001,
  LOGICAL_BLOCK_APPLICATION_TAG_CHECK_FAILED: 0x1002,
  LOGICAL_BLOCK_REFERENCE_TAG_CHECK_FAILED: 0x1003,
  LUN_NOT_READY_SANITIZE_IN_PROGRESS: 0x041b,
  PREVIOUS_RESERVATION_CONFLICT_STATUS: 0x2c0b,
  SANITIZE_COMMAND_FAILED: 0x3103,
  MEDIUM_REMOVAL_PREVENTED: 0x5302,
} as const;
export type AscCode = (typeof Asc)[keyof typeof Asc] | number;

/** SPC-4 §4.5.2.4.2 field pointer: which byte (and bit) of the CDB or parameter list is bad. */
export interface FieldPointer {
  /** true: the CDB; false: the parameter list (C/D bit). */
  readonly cdb: boolean;
  readonly byte: number;
  /** Bit 0..7 of the first bad bit; omitted when the whole byte/field is bad. */
  readonly bit?: number;
}

export interface SenseSpec {
  readonly key: SenseKeyCode;
  readonly asc: AscCode;
  /** INFORMATION field (e.g. first miscompare offset, bad LBA). */
  readonly information?: bigint | number;
  readonly field?: FieldPointer;
  /** SPC-4 §4.5.2.4.4 progress indication (0..65535 of 65536), for NOT READY in progress. */
  readonly progress?: number;
}

export const FIXED_SENSE_LENGTH = 18;

const SKSV = 0x80;
const CD = 0x40;
const BPV = 0x08;

function sksOf(s: SenseSpec): [number, number, number] | undefined {
  if (s.field) return senseKeySpecific(s.field);
  if (s.progress === undefined) return undefined;
  const p = Math.max(0, Math.min(0xffff, Math.floor(s.progress)));
  return [SKSV, p >> 8, p & 0xff];
}

function senseKeySpecific(field: FieldPointer): [number, number, number] {
  let b0 = SKSV | (field.cdb ? CD : 0);
  if (field.bit !== undefined) b0 |= BPV | (field.bit & 0x07);
  return [b0, (field.byte >> 8) & 0xff, field.byte & 0xff];
}

/** SPC-4 §4.5.3 fixed format sense data (response code 70h). */
export function encodeFixedSense(s: SenseSpec): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_LENGTH);
  b[0] = 0x70;
  b[2] = s.key & 0x0f;
  if (s.information !== undefined) {
    const info = BigInt(s.information);
    // The fixed INFORMATION field holds 4 bytes; VALID only when the value fits.
    if (info <= 0xffffffffn) {
      b[0] = 0xf0;
      b.writeUInt32BE(Number(info), 3);
    }
  }
  b[7] = FIXED_SENSE_LENGTH - 8;
  b[12] = (s.asc >> 8) & 0xff;
  b[13] = s.asc & 0xff;
  const sks = sksOf(s);
  if (sks) {
    const [x, y, z] = sks;
    b[15] = x;
    b[16] = y;
    b[17] = z;
  }
  return b;
}

/** SPC-4 §4.5.2 descriptor format sense data (response code 72h). */
export function encodeDescriptorSense(s: SenseSpec): Buffer {
  const sks = sksOf(s);
  const len = 8 + (s.information !== undefined ? 12 : 0) + (sks ? 8 : 0);
  const b = Buffer.alloc(len);
  b[0] = 0x72;
  b[1] = s.key & 0x0f;
  b[2] = (s.asc >> 8) & 0xff;
  b[3] = s.asc & 0xff;
  b[7] = len - 8;
  let o = 8;
  if (s.information !== undefined) {
    // SPC-4 §4.5.2.2 information descriptor: type 00h, length 0Ah, VALID, 8-byte INFORMATION.
    b[o] = 0x00;
    b[o + 1] = 0x0a;
    b[o + 2] = 0x80;
    b.writeBigUInt64BE(BigInt(s.information) & 0xffffffffffffffffn, o + 4);
    o += 12;
  }
  if (sks) {
    // SPC-4 §4.5.2.3 sense key specific descriptor: type 02h, length 06h.
    const [x, y, z] = sks;
    b[o] = 0x02;
    b[o + 1] = 0x06;
    b[o + 4] = x;
    b[o + 5] = y;
    b[o + 6] = z;
  }
  return b;
}

export function encodeSense(s: SenseSpec, descriptor: boolean): Buffer {
  return descriptor ? encodeDescriptorSense(s) : encodeFixedSense(s);
}

export interface DecodedSense {
  readonly descriptor: boolean;
  readonly key: number;
  readonly asc: number;
  readonly information?: bigint;
  readonly field?: FieldPointer;
}

/** Decode sense data of either format (used by tests and REQUEST SENSE conversions). */
export function decodeSense(b: Buffer): DecodedSense {
  const code = (b[0] ?? 0) & 0x7f;
  if (code === 0x72 || code === 0x73) {
    const key = (b[1] ?? 0) & 0x0f;
    const asc = ((b[2] ?? 0) << 8) | (b[3] ?? 0);
    let information: bigint | undefined;
    let field: FieldPointer | undefined;
    const end = Math.min(b.length, 8 + (b[7] ?? 0));
    for (let o = 8; o + 2 <= end; o += 2 + (b[o + 1] ?? 0)) {
      if (b[o] === 0x00 && o + 12 <= end) information = b.readBigUInt64BE(o + 4);
      if (b[o] === 0x02 && o + 8 <= end) field = decodeSks(b[o + 4] ?? 0, b[o + 5] ?? 0, b[o + 6] ?? 0);
    }
    return { descriptor: true, key, asc, ...(information !== undefined ? { information } : {}), ...(field ? { field } : {}) };
  }
  const key = (b[2] ?? 0) & 0x0f;
  const asc = ((b[12] ?? 0) << 8) | (b[13] ?? 0);
  const valid = ((b[0] ?? 0) & 0x80) !== 0 && b.length >= 7;
  const field = b.length >= 18 ? decodeSks(b[15] ?? 0, b[16] ?? 0, b[17] ?? 0) : undefined;
  return {
    descriptor: false,
    key,
    asc,
    ...(valid ? { information: BigInt(b.readUInt32BE(3)) } : {}),
    ...(field ? { field } : {}),
  };
}

function decodeSks(x: number, y: number, z: number): FieldPointer | undefined {
  if ((x & SKSV) === 0) return undefined;
  const byte = (y << 8) | z;
  return (x & BPV) !== 0 ? { cdb: (x & CD) !== 0, byte, bit: x & 7 } : { cdb: (x & CD) !== 0, byte };
}

// Convenience constructors for the errors handlers raise most.
export const invalidCdb = (byte: number, bit?: number): SenseSpec => ({
  key: SenseKey.ILLEGAL_REQUEST,
  asc: Asc.INVALID_FIELD_IN_CDB,
  field: bit === undefined ? { cdb: true, byte } : { cdb: true, byte, bit },
});
export const invalidParam = (byte: number, bit?: number): SenseSpec => ({
  key: SenseKey.ILLEGAL_REQUEST,
  asc: Asc.INVALID_FIELD_IN_PARAMETER_LIST,
  field: bit === undefined ? { cdb: false, byte } : { cdb: false, byte, bit },
});
export const illegal = (asc: AscCode): SenseSpec => ({ key: SenseKey.ILLEGAL_REQUEST, asc });
export const lbaOutOfRange: SenseSpec = { key: SenseKey.ILLEGAL_REQUEST, asc: Asc.LBA_OUT_OF_RANGE };
export const writeProtected: SenseSpec = { key: SenseKey.DATA_PROTECT, asc: Asc.WRITE_PROTECTED };
export const internalFailure: SenseSpec = { key: SenseKey.HARDWARE_ERROR, asc: Asc.INTERNAL_TARGET_FAILURE };
