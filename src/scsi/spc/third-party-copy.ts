// The copy manager's limits and the data that reports them: RECEIVE COPY RESULTS
// OPERATING PARAMETERS (SPC-4 §6.18.4) and the Third-party Copy VPD page (SPC-4 §7.8.17).
//
// OPERATING PARAMETERS (LID1), 44 + n bytes:
//   0..3 AVAILABLE DATA (n-3)   4 SNLID(0)   8..9 MAXIMUM CSCD DESCRIPTOR COUNT
//   10..11 MAXIMUM SEGMENT DESCRIPTOR COUNT   12..15 MAXIMUM DESCRIPTOR LIST LENGTH
//   16..19 MAXIMUM SEGMENT LENGTH   20..23 MAXIMUM INLINE DATA LENGTH   24..27 HELD DATA LIMIT
//   28..31 MAXIMUM STREAM DEVICE TRANSFER SIZE   34..35 TOTAL CONCURRENT COPIES
//   36 MAXIMUM CONCURRENT COPIES   37 DATA SEGMENT GRANULARITY (log2)
//   38 INLINE DATA GRANULARITY (log2)   39 HELD DATA GRANULARITY (log2)
//   43 IMPLEMENTED DESCRIPTOR LIST LENGTH   44.. descriptor type codes
// Third-party Copy VPD page (8Fh): 4-byte page header, then descriptors
//   0..1 THIRD-PARTY COPY DESCRIPTOR TYPE, 2..3 DESCRIPTOR LENGTH (n-3, padded so that the
//   whole descriptor is a multiple of 4 bytes), 4.. body.

/** SPC-4 §6.4.5 descriptor type codes the copy manager implements. */
export const XcopyDescriptor = {
  /** Segment descriptor: block device to block device (§6.4.6.5). */
  BLOCK_TO_BLOCK: 0x02,
  /** CSCD descriptor: identification descriptor (§6.4.5.2). */
  IDENTIFICATION: 0xe4,
} as const;

export const XcopyLimits = {
  /** VMware uses two CSCD descriptors and one segment per command. */
  maxCscdDescriptors: 8,
  maxSegmentDescriptors: 8,
  /** Bytes of CSCD plus segment descriptor lists (the 16-byte header not counted). */
  maxDescriptorListLength: 1024,
  /** Bytes one segment may move; 65535 blocks of 4 KiB stay below it. */
  maxSegmentLength: 256 * 1024 * 1024,
  maxInlineData: 0,
  totalConcurrentCopies: 16,
  maxIdentifiedConcurrentCopies: 16,
  /** Held copy results kept per I_T nexus (oldest dropped first). */
  maxHeldResults: 32,
} as const;

/** Parameter list length the EXTENDED COPY CDB may announce (header + descriptor lists). */
export const MAX_XCOPY_PARAMETER_LIST = 16 + XcopyLimits.maxDescriptorListLength + XcopyLimits.maxInlineData;

const IMPLEMENTED = [XcopyDescriptor.BLOCK_TO_BLOCK, XcopyDescriptor.IDENTIFICATION];

export function encodeOperatingParameters(): Buffer {
  const b = Buffer.alloc(44 + IMPLEMENTED.length);
  b.writeUInt32BE(b.length - 4, 0);
  b.writeUInt16BE(XcopyLimits.maxCscdDescriptors, 8);
  b.writeUInt16BE(XcopyLimits.maxSegmentDescriptors, 10);
  b.writeUInt32BE(XcopyLimits.maxDescriptorListLength, 12);
  b.writeUInt32BE(XcopyLimits.maxSegmentLength, 16);
  b.writeUInt32BE(XcopyLimits.maxInlineData, 20);
  b.writeUInt16BE(XcopyLimits.totalConcurrentCopies, 34);
  b[36] = XcopyLimits.maxIdentifiedConcurrentCopies;
  b[43] = IMPLEMENTED.length;
  IMPLEMENTED.forEach((c, i) => (b[44 + i] = c));
  return b;
}

/** SPC-4 table 589 third-party copy descriptor types used here. */
const TpcDescriptor = {
  SUPPORTED_COMMANDS: 0x0001,
  PARAMETER_DATA: 0x0004,
  SUPPORTED_DESCRIPTORS: 0x0008,
  SUPPORTED_CSCD_IDS: 0x000c,
  GENERAL_COPY_OPERATIONS: 0x8001,
} as const;

function tpcDescriptor(type: number, body: Buffer): Buffer {
  const padded = (body.length + 3) & ~3;
  const b = Buffer.alloc(4 + padded);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(padded, 2);
  body.copy(b, 4);
  return b;
}

/** Service actions per copy command (SPC-4 §7.8.17.3), LID1 only. */
const SUPPORTED_COMMANDS: readonly (readonly [number, readonly number[]])[] = [
  [0x83, [0x00]], // EXTENDED COPY(LID1)
  [0x84, [0x00, 0x03, 0x04]], // RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT DETAILS
];

/** Body of the Third-party Copy VPD page (the caller adds the 4-byte page header). */
export function thirdPartyCopyVpd(): Buffer {
  const cmds = Buffer.concat(SUPPORTED_COMMANDS.map(([op, sas]) => Buffer.from([op, sas.length, ...sas])));
  const supportedCommands = Buffer.concat([Buffer.from([cmds.length]), cmds]);

  // §7.8.17.5 Parameter Data: 8..9 MAXIMUM CSCD DESCRIPTOR COUNT, 10..11 MAXIMUM SEGMENT
  // DESCRIPTOR COUNT, 12..15 MAXIMUM DESCRIPTOR LIST LENGTH, 16..19 MAXIMUM INLINE DATA LENGTH.
  const params = Buffer.alloc(0x1c);
  params.writeUInt16BE(XcopyLimits.maxCscdDescriptors, 4);
  params.writeUInt16BE(XcopyLimits.maxSegmentDescriptors, 6);
  params.writeUInt32BE(XcopyLimits.maxDescriptorListLength, 8);
  params.writeUInt32BE(XcopyLimits.maxInlineData, 12);

  const descriptors = Buffer.from([IMPLEMENTED.length, ...IMPLEMENTED]);
  // §7.8.17.7: no special CSCD descriptor IDs (the list only names IDs like FFFFh).
  const cscdIds = Buffer.alloc(2);

  // §7.8.17.8 General Copy Operations: TOTAL CONCURRENT COPIES, MAXIMUM IDENTIFIED
  // CONCURRENT COPIES, MAXIMUM SEGMENT LENGTH, DATA SEGMENT GRANULARITY, INLINE DATA GRANULARITY.
  const general = Buffer.alloc(0x20);
  general.writeUInt32BE(XcopyLimits.totalConcurrentCopies, 0);
  general.writeUInt32BE(XcopyLimits.maxIdentifiedConcurrentCopies, 4);
  general.writeUInt32BE(XcopyLimits.maxSegmentLength, 8);

  return Buffer.concat([
    tpcDescriptor(TpcDescriptor.SUPPORTED_COMMANDS, supportedCommands),
    tpcDescriptor(TpcDescriptor.PARAMETER_DATA, params),
    tpcDescriptor(TpcDescriptor.SUPPORTED_DESCRIPTORS, descriptors),
    tpcDescriptor(TpcDescriptor.SUPPORTED_CSCD_IDS, cscdIds),
    tpcDescriptor(TpcDescriptor.GENERAL_COPY_OPERATIONS, general),
  ]);
}
