// INQUIRY (SPC-4 §6.6): standard data and the VPD pages 00, 80, 83, B0, B1, B2.
//
// Standard INQUIRY data (SPC-4 §6.6.2), 96 bytes here:
//   0 PERIPHERAL QUALIFIER(7:5) DEVICE TYPE(4:0)   1 RMB(7)   2 VERSION (06h = SPC-4)
//   3 NORMACA(5) HISUP(4) RESPONSE DATA FORMAT(3:0)=2   4 ADDITIONAL LENGTH (n-4)
//   5 SCCS ACC TPGS(5:4) 3PC PROTECT   6 ENCSERV MULTIP   7 CMDQUE(1)
//   8..15 T10 VENDOR   16..31 PRODUCT   32..35 REVISION   58..73 VERSION DESCRIPTORS (8 × 2)

import type { Nexus } from '../types';
import { invalidCdb } from '../sense';
import type { CommandContext, Handler } from '../command';
import type { LogicalUnit } from '../logical-unit';
import { MAX_COMPARE_AND_WRITE_BLOCKS, MAX_UNMAP_DESCRIPTORS } from '../limits';
import { thirdPartyCopyVpd } from './third-party-copy';
import { extendedInquiry } from './extended-inquiry';

const STANDARD_LENGTH = 96;

/** SPC-4 Table 15 version descriptors. */
const Version = {
  SAM5: 0x00a0,
  SPC4: 0x0460,
  SBC3: 0x04c0,
  MMC6: 0x04e0,
  ISCSI: 0x0960,
  SBP3: 0x08e0,
  UAS: 0x1740,
} as const;

const TRANSPORT_VERSION: Record<number, number> = { 5: Version.ISCSI, 3: Version.SBP3, 9: Version.UAS };

function ascii(out: Buffer, at: number, len: number, s: string): void {
  out.fill(0x20, at, at + len);
  out.write(s.slice(0, len), at, 'latin1');
}

export function standardInquiry(lu: LogicalUnit, nexus: Nexus): Buffer {
  const o = lu.options;
  const b = Buffer.alloc(STANDARD_LENGTH);
  const cdrom = o.deviceType === 'cdrom';
  // PERIPHERAL DEVICE TYPE: 00h direct access block device, 05h CD/DVD device (MMC-6).
  b[0] = cdrom ? 0x05 : 0x00;
  b[1] = o.removable ? 0x80 : 0x00;
  b[2] = 0x06;
  b[3] = 0x10 | 0x02; // HISUP, response data format 2
  b[4] = STANDARD_LENGTH - 5;
  b[7] = 0x02; // CMDQUE: SIMPLE / ORDERED / HEAD OF QUEUE
  // TPGS(5:4) from the target port groups (spc/alua.ts); 3PC(3): EXTENDED COPY.
  b[5] = (b[5] ?? 0) | ((lu.alua?.tpgs ?? 0) << 4) | (cdrom ? 0 : 0x08);
  if (lu.options.protectionCapable) b[5] = (b[5] ?? 0) | 0x01; // PROTECT (SBC-3 §4.22)
  ascii(b, 8, 8, o.vendor);
  ascii(b, 16, 16, o.product);
  ascii(b, 32, 4, o.revision);
  const versions: number[] = [Version.SAM5, Version.SPC4, cdrom ? Version.MMC6 : Version.SBC3];
  const t = TRANSPORT_VERSION[nexus.protocolId];
  if (t !== undefined) versions.push(t);
  versions.forEach((v, i) => b.writeUInt16BE(v, 58 + i * 2));
  return b;
}

/** INQUIRY data for a LUN that is not mapped (SPC-4 §6.6.2: qualifier 011b, type 1Fh). */
export function unmappedInquiry(): Buffer {
  const b = Buffer.alloc(STANDARD_LENGTH);
  b[0] = 0x7f;
  b[2] = 0x06;
  b[3] = 0x12;
  b[4] = STANDARD_LENGTH - 5;
  return b;
}

export const VPD = {
  SUPPORTED: 0x00,
  UNIT_SERIAL: 0x80,
  DEVICE_ID: 0x83,
  EXTENDED_INQUIRY: 0x86,
  THIRD_PARTY_COPY: 0x8f,
  BLOCK_LIMITS: 0xb0,
  BLOCK_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const;

/** A CD-ROM has no SBC pages (B0h..B2h) and no EXTENDED COPY. */
const MMC_PAGES = [VPD.SUPPORTED, VPD.UNIT_SERIAL, VPD.DEVICE_ID, VPD.EXTENDED_INQUIRY];
const SUPPORTED_PAGES = [VPD.SUPPORTED, VPD.UNIT_SERIAL, VPD.DEVICE_ID, VPD.EXTENDED_INQUIRY, VPD.THIRD_PARTY_COPY, VPD.BLOCK_LIMITS, VPD.BLOCK_CHARACTERISTICS, VPD.LOGICAL_BLOCK_PROVISIONING];

function page(code: number, body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b[1] = code;
  b.writeUInt16BE(body.length, 2);
  body.copy(b, 4);
  return b;
}

/** SPC-4 §7.8.6.1 designation descriptor header + designator. */
function designator(codeSet: number, assoc: number, type: number, value: Buffer, protocolId?: number): Buffer {
  const b = Buffer.alloc(4 + value.length);
  b[0] = ((protocolId ?? 0) << 4) | codeSet;
  b[1] = (protocolId !== undefined ? 0x80 : 0) | (assoc << 4) | type;
  b[3] = value.length;
  value.copy(b, 4);
  return b;
}

function deviceIdentification(lu: LogicalUnit, nexus: Nexus): Buffer {
  const o = lu.options;
  // NAA 6h (IEEE Registered Extended): NAA nibble + 124 bits (company id + vendor specific).
  const naa = Buffer.alloc(16);
  const v = (6n << 124n) | o.naa;
  naa.writeBigUInt64BE(v >> 64n, 0);
  naa.writeBigUInt64BE(v & 0xffffffffffffffffn, 8);
  // T10 vendor ID based: 8-byte vendor, then the unit serial number.
  const t10 = Buffer.alloc(8 + o.serial.length);
  ascii(t10, 0, 8, o.vendor);
  t10.write(o.serial, 8, 'latin1');
  // Relative target port identifier (type 4, association 1 = target port).
  const rel = Buffer.alloc(4);
  rel.writeUInt16BE(nexus.relativeTargetPortId & 0xffff, 2);
  // SCSI name string of the target port (type 8, UTF-8, null-terminated, padded to 4).
  const name = Buffer.from(nexus.targetPort, 'utf8');
  const nameLen = Math.min(252, (name.length + 4) & ~3);
  const nameBuf = Buffer.alloc(nameLen);
  name.copy(nameBuf, 0, 0, Math.min(name.length, nameLen - 1));
  // Target port group (type 5, association 1): the ALUA group, or group 0 without ALUA.
  const tpg = Buffer.alloc(4);
  tpg.writeUInt16BE(lu.alua?.groupOf(nexus.relativeTargetPortId) ?? 0, 2);
  const parts = [
    designator(0x1, 0, 0x3, naa),
    designator(0x2, 0, 0x1, t10),
    designator(0x1, 1, 0x4, rel, nexus.protocolId),
    designator(0x1, 1, 0x5, tpg, nexus.protocolId),
  ];
  if (nexus.targetPort.length > 0) parts.push(designator(0x3, 1, 0x8, nameBuf, nexus.protocolId));
  return Buffer.concat(parts);
}

/**
 * SBC-3 §6.6.4 Block Limits VPD page (length 3Ch):
 *   4 WSNZ(0)  5 MAXIMUM COMPARE AND WRITE LENGTH  6..7 OPTIMAL TRANSFER LENGTH GRANULARITY
 *   8..11 MAXIMUM TRANSFER LENGTH  12..15 OPTIMAL TRANSFER LENGTH  16..19 MAXIMUM PREFETCH
 *   20..23 MAXIMUM UNMAP LBA COUNT  24..27 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
 *   28..31 OPTIMAL UNMAP GRANULARITY  32..35 UGAVALID(31) UNMAP GRANULARITY ALIGNMENT
 *   36..43 MAXIMUM WRITE SAME LENGTH  44..47 MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4)
 *   48..51 ATOMIC ALIGNMENT  52..55 ATOMIC TRANSFER LENGTH GRANULARITY
 *   56..59 MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY  60..63 MAXIMUM ATOMIC BOUNDARY SIZE
 */
function blockLimits(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(0x3c);
  b[0] = 0x00; // WSNZ=0: WRITE SAME with zero blocks writes to the end of the medium
  b[1] = MAX_COMPARE_AND_WRITE_BLOCKS;
  // OPTIMAL TRANSFER LENGTH GRANULARITY: one physical block (SBC-3 §6.6.4).
  const perPhysical = lu.options.physicalBlockSize / lu.blockSize;
  b.writeUInt16BE(perPhysical, 2);
  b.writeUInt32BE(lu.maxTransferBlocks, 4);
  b.writeUInt32BE(Math.min(lu.maxTransferBlocks, (128 * 1024) / lu.blockSize), 8);
  if (lu.thin) {
    b.writeUInt32BE(lu.maxUnmapBlocks, 16);
    b.writeUInt32BE(MAX_UNMAP_DESCRIPTORS, 20);
    b.writeUInt32BE(perPhysical, 24); // OPTIMAL UNMAP GRANULARITY
  }
  b.writeBigUInt64BE(BigInt(lu.maxWriteSameBlocks), 32);
  // WRITE ATOMIC(16) takes anything a WRITE takes; no alignment, granularity or boundaries.
  b.writeUInt32BE(lu.maxTransferBlocks, 40);
  return b;
}

/**
 * SBC-3 §6.6.2 Block Device Characteristics: 4..5 MEDIUM ROTATION RATE (1 = non-rotating),
 * 7 WABEREQ(7:6) WACEREQ(5:4) NOMINAL FORM FACTOR(3:0).
 */
function blockCharacteristics(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(0x3c);
  b.writeUInt16BE(1, 0);
  // WABEREQ 01b: after SANITIZE BLOCK ERASE (thin units only) reads succeed (zeros).
  // WACEREQ 00b: CRYPTOGRAPHIC ERASE is not supported.
  if (lu.thin) b[3] = 0x40;
  return b;
}

/**
 * SBC-3 §6.6.5 Logical Block Provisioning (length 4): 4 THRESHOLD EXPONENT,
 * 5 LBPU(7) LBPWS(6) LBPWS10(5) LBPRZ(2) ANC_SUP(1) DP(0), 6 PROVISIONING TYPE(2:0).
 */
function provisioning(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(4);
  if (lu.thin) {
    b[1] = 0x80 | 0x40 | 0x20 | (lu.unmapReadsZero ? 0x04 : 0);
    b[2] = 0x02; // thin provisioned
  }
  return b;
}

export function vpdPage(lu: LogicalUnit, nexus: Nexus, code: number): Buffer | undefined {
  const pages: readonly number[] = lu.isCdrom ? MMC_PAGES : SUPPORTED_PAGES;
  if (!pages.includes(code)) return undefined;
  switch (code) {
    case VPD.SUPPORTED:
      return page(code, Buffer.from(pages));
    case VPD.UNIT_SERIAL:
      return page(code, Buffer.from(lu.options.serial, 'latin1'));
    case VPD.DEVICE_ID:
      return page(code, deviceIdentification(lu, nexus));
    case VPD.EXTENDED_INQUIRY:
      return page(code, extendedInquiry(lu));
    case VPD.THIRD_PARTY_COPY:
      return page(code, thirdPartyCopyVpd());
    case VPD.BLOCK_LIMITS:
      return page(code, blockLimits(lu));
    case VPD.BLOCK_CHARACTERISTICS:
      return page(code, blockCharacteristics(lu));
    case VPD.LOGICAL_BLOCK_PROVISIONING:
      return page(code, provisioning(lu));
    default:
      return undefined;
  }
}

/** INQUIRY: 1 EVPD(0), 2 PAGE CODE, 3..4 ALLOCATION LENGTH. */
export const inquiry: Handler = (ctx: CommandContext) => {
  const cdb = ctx.cmd.cdb;
  const evpd = ((cdb[1] ?? 0) & 0x01) !== 0;
  const pageCode = cdb[2] ?? 0;
  const alloc = cdb.readUInt16BE(3);
  if (!evpd) {
    // SPC-4 §6.6.1: PAGE CODE must be zero when EVPD is zero.
    if (pageCode !== 0) return ctx.fail(invalidCdb(2));
    return ctx.good(standardInquiry(ctx.lu, ctx.cmd.nexus), alloc);
  }
  const data = vpdPage(ctx.lu, ctx.cmd.nexus, pageCode);
  if (!data) return ctx.fail(invalidCdb(2));
  return ctx.good(data, alloc);
};
