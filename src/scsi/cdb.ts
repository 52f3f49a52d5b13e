// CDB decoding (SPC-4 §4.2): operation codes, service actions, LBA / length fields.
//
// Read/write family byte maps (SBC-3 §5):
//   6-byte : 0 opcode, 1 LBA(20:16) in bits 4:0, 2..3 LBA, 4 TRANSFER LENGTH (0 = 256), 5 control
//   10-byte: 0 opcode, 1 flags, 2..5 LBA, 6 GROUP, 7..8 LENGTH, 9 control
//   12-byte: 0 opcode, 1 flags, 2..5 LBA, 6..9 LENGTH, 10 GROUP, 11 control
//   16-byte: 0 opcode, 1 flags, 2..9 LBA, 10..13 LENGTH, 14 GROUP, 15 control
// Group code (opcode bits 7:5) gives the CDB length: 0 → 6, 1/2 → 10, 4 → 16, 5 → 12.

export const Op = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  FORMAT_UNIT: 0x04,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  RESERVE_6: 0x16,
  RELEASE_6: 0x17,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  WRITE_AND_VERIFY_10: 0x2e,
  VERIFY_10: 0x2f,
  PRE_FETCH_10: 0x34,
  SYNCHRONIZE_CACHE_10: 0x35,
  READ_DEFECT_DATA_10: 0x37,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  SANITIZE: 0x48,
  MODE_SELECT_10: 0x55,
  RESERVE_10: 0x56,
  RELEASE_10: 0x57,
  MODE_SENSE_10: 0x5a,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  EXTENDED_COPY: 0x83,
  RECEIVE_COPY_RESULTS: 0x84,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  ORWRITE_16: 0x8b,
  WRITE_AND_VERIFY_16: 0x8e,
  VERIFY_16: 0x8f,
  PRE_FETCH_16: 0x90,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  WRITE_ATOMIC_16: 0x9c,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
  MAINTENANCE_OUT: 0xa4,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  WRITE_AND_VERIFY_12: 0xae,
  VERIFY_12: 0xaf,
  READ_DEFECT_DATA_12: 0xb7,
} as const;

/** Service actions of the opcodes that have them. */
export const ServiceAction = {
  READ_CAPACITY_16: 0x10,
  GET_LBA_STATUS: 0x12,
  REPORT_TARGET_PORT_GROUPS: 0x0a,
  SET_TARGET_PORT_GROUPS: 0x0a,
  REPORT_SUPPORTED_OPERATION_CODES: 0x0c,
  REPORT_SUPPORTED_TMFS: 0x0d,
} as const;

/** SPC-4 §4.2.5.1: CDB length from the group code; undefined for reserved / vendor groups. */
export function cdbLengthOf(opcode: number): number | undefined {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return undefined;
  }
}

export interface LbaRange {
  readonly lba: bigint;
  /** Number of logical blocks (transfer length / number of blocks / verification length). */
  readonly blocks: number;
}

/** Decode LBA and length of a read/write-family CDB of the given length (6/10/12/16). */
export function decodeLbaRange(cdb: Buffer, len: number): LbaRange {
  switch (len) {
    case 6: {
      const lba = BigInt((((cdb[1] ?? 0) & 0x1f) << 16) | ((cdb[2] ?? 0) << 8) | (cdb[3] ?? 0));
      // SBC-3 §5.16: a TRANSFER LENGTH of 0 in READ(6)/WRITE(6) means 256 blocks.
      const n = cdb[4] ?? 0;
      return { lba, blocks: n === 0 ? 256 : n };
    }
    case 10:
      return { lba: BigInt(cdb.readUInt32BE(2)), blocks: cdb.readUInt16BE(7) };
    case 12:
      return { lba: BigInt(cdb.readUInt32BE(2)), blocks: cdb.readUInt32BE(6) };
    case 16:
      return { lba: cdb.readBigUInt64BE(2), blocks: cdb.readUInt32BE(10) };
    default:
      throw new RangeError(`no LBA range in a ${len}-byte CDB`);
  }
}

/** Allocation / parameter list length from a 4-byte big-endian field. */
export function u32(cdb: Buffer, at: number): number {
  return cdb.readUInt32BE(at);
}
export function u16(cdb: Buffer, at: number): number {
  return cdb.readUInt16BE(at);
}
