// EXTENDED COPY(LID1) (SPC-4 §6.4) and RECEIVE COPY RESULTS (SPC-4 §6.18): the copy
// manager VMware's VAAI "XCOPY" uses. Block-to-block segments between units named by their
// NAA designator, found among the units the I_T nexus reaches.
//
// EXTENDED COPY CDB (16 bytes): 1 SERVICE ACTION 00h (LID1), 10..13 PARAMETER LIST LENGTH.
// Parameter list header (§6.4.3):
//   0 LIST IDENTIFIER   1 STR(5) LIST ID USAGE(4:3) PRIORITY(2:0)
//   2..3 CSCD DESCRIPTOR LIST LENGTH   8..11 SEGMENT DESCRIPTOR LIST LENGTH
//   12..15 INLINE DATA LENGTH   16.. CSCD descriptors, segment descriptors, inline data
// Identification CSCD descriptor E4h (§6.4.5.2), 32 bytes:
//   0 E4h   1 LU ID TYPE(7:6, ignored) NUL(5) PERIPHERAL DEVICE TYPE(4:0)
//   2..3 RELATIVE INITIATOR PORT IDENTIFIER   4..27 designation descriptor (VPD 83h format)
//   28 PAD(2)   29..31 DISK BLOCK LENGTH
// Block→block segment descriptor 02h (§6.4.6.5), 28 bytes:
//   0 02h   1 DC(1) CAT(0)   2..3 DESCRIPTOR LENGTH (0018h)   4..5 SOURCE CSCD INDEX
//   6..7 DESTINATION CSCD INDEX   10..11 BLOCK DEVICE NUMBER OF BLOCKS
//   12..19 SOURCE LBA   20..27 DESTINATION LBA
// RECEIVE COPY RESULTS CDB (16 bytes): 1 SERVICE ACTION, 2 LIST IDENTIFIER, 10..13 ALLOCATION LENGTH.

import { Status, type Nexus, type ScsiResult } from '../types';
import { Asc, SenseKey, illegal, invalidCdb, invalidParam, writeProtected, type SenseSpec } from '../sense';
import type { CommandContext, Handler } from '../command';
import type { LogicalUnit } from '../logical-unit';
import { unitsOf } from '../nexus-scope';
import { PULL_CHUNK } from '../limits';
import { MediumError, readMedium, writeMedium } from '../sbc/io';
import { MAX_XCOPY_PARAMETER_LIST, XcopyDescriptor, XcopyLimits, encodeOperatingParameters } from './third-party-copy';

export const CopyResultsAction = {
  COPY_STATUS: 0x00,
  OPERATING_PARAMETERS: 0x03,
  FAILED_SEGMENT_DETAILS: 0x04,
} as const;

const COPY_ABORTED = 0x0a;

/** SPC-4 Annex D codes of the copy manager. */
export const XcopyAsc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  UNREACHABLE_COPY_TARGET: 0x0804,
  COPY_TARGET_DEVICE_NOT_REACHABLE: 0x0d02,
  INCORRECT_COPY_TARGET_DEVICE_TYPE: 0x0d03,
  OPERATION_IN_PROGRESS: 0x0016,
  TOO_MANY_TARGET_DESCRIPTORS: 0x2606,
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: 0x2607,
  TOO_MANY_SEGMENT_DESCRIPTORS: 0x2608,
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: 0x2609,
} as const;

const HEADER = 16;
const CSCD_LENGTH = 32;
const B2B_LENGTH = 28;

// ------------------------------------------------------------------ held results

type CopyState = 'in-progress' | 'done' | 'failed';

interface HeldCopy {
  state: CopyState;
  segmentsProcessed: number;
  bytes: number;
  /** Sense data the command ended with (failed copies). */
  sense?: Buffer;
}

/** Held copy results per copy manager (unit) and I_T nexus id (SPC-4 §6.18.1). */
const HELD = new WeakMap<LogicalUnit, Map<string, Map<number, HeldCopy>>>();

function heldOf(lu: LogicalUnit, nexus: Nexus): Map<number, HeldCopy> {
  let perUnit = HELD.get(lu);
  if (!perUnit) HELD.set(lu, (perUnit = new Map()));
  let m = perUnit.get(nexus.id);
  if (!m) perUnit.set(nexus.id, (m = new Map()));
  return m;
}

/** I_T nexus loss discards the nexus's held copy results (TargetPort.nexusLost). */
export function discardCopyResults(lu: LogicalUnit, nexusId: string): void {
  HELD.get(lu)?.delete(nexusId);
}

// ------------------------------------------------------------------ sense

interface CopyFailure {
  readonly segment: number;
  readonly asc: number;
  /** Byte of the segment descriptor the error is about (segment pointer, SD=1). */
  readonly field?: number;
  /** Sense the copy target returned (forwarded), and which side it was. */
  readonly target?: { readonly side: 'source' | 'destination'; readonly sense: SenseSpec };
}

/**
 * COPY ABORTED sense for an error while processing segment descriptors (SPC-4 §6.4.4):
 * COMMAND-SPECIFIC INFORMATION bytes 0/1 = offset of the source/destination copy target's
 * status byte in this sense data, bytes 2..3 = the segment number; the sense-key specific
 * field is a segment pointer; the copy target's status and sense follow byte 17.
 */
export function encodeCopyAborted(f: CopyFailure, descriptor: boolean): Buffer {
  const sksv = f.field !== undefined ? [0x80 | 0x20, (f.field >> 8) & 0xff, f.field & 0xff] : undefined;
  const fwd = f.target ? encodeTargetSense(f.target.sense) : undefined;
  if (!descriptor) {
    const b = Buffer.alloc(18 + (fwd ? 1 + fwd.length : 0));
    b[0] = 0x70;
    b[2] = COPY_ABORTED;
    b[7] = b.length - 8;
    if (f.target?.side === 'source') b[8] = 18;
    if (f.target?.side === 'destination') b[9] = 18;
    b.writeUInt16BE(f.segment & 0xffff, 10);
    b[12] = f.asc >> 8;
    b[13] = f.asc & 0xff;
    if (sksv) b.set(sksv, 15);
    if (fwd) {
      b[18] = Status.CHECK_CONDITION;
      fwd.copy(b, 19);
    }
    return b;
  }
  // Descriptor format: command-specific information (01h), sense key specific (02h) and
  // forwarded sense data (0Ch: SENSE DATA SOURCE 1 source, 2 destination).
  const parts: Buffer[] = [];
  const csi = Buffer.alloc(12);
  csi[0] = 0x01;
  csi[1] = 0x0a;
  csi.writeUInt16BE(f.segment & 0xffff, 10);
  parts.push(csi);
  if (sksv) parts.push(Buffer.from([0x02, 0x06, 0, 0, ...sksv, 0]));
  if (fwd && f.target) {
    const d = Buffer.alloc(4 + fwd.length);
    d[0] = 0x0c;
    d[1] = 2 + fwd.length;
    d[2] = f.target.side === 'source' ? 1 : 2;
    d[3] = Status.CHECK_CONDITION;
    fwd.copy(d, 4);
    parts.push(d);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head[0] = 0x72;
  head[1] = COPY_ABORTED;
  head[2] = f.asc >> 8;
  head[3] = f.asc & 0xff;
  head[7] = body.length;
  return Buffer.concat([head, body]);
}

function encodeTargetSense(s: SenseSpec): Buffer {
  const b = Buffer.alloc(18);
  b[0] = 0x70;
  b[2] = s.key;
  b[7] = 10;
  b[12] = (s.asc >> 8) & 0xff;
  b[13] = s.asc & 0xff;
  return b;
}

// ------------------------------------------------------------------ parameter list

interface Cscd {
  readonly offset: number;
  /** NUL bit: a null device (not supported: COPY ABORTED). */
  readonly nul: boolean;
  readonly deviceType: number;
  /** The designation descriptor (bytes 4..27). */
  readonly designator: Buffer;
  readonly blockLength: number;
}

interface Segment {
  readonly offset: number;
  readonly dc: boolean;
  readonly source: number;
  readonly destination: number;
  readonly blocks: number;
  readonly sourceLba: bigint;
  readonly destinationLba: bigint;
}

export interface XcopyParameters {
  readonly listId: number;
  /** LIST ID USAGE 00b: hold results for RECEIVE COPY RESULTS. */
  readonly hold: boolean;
  /** 00b or 10b: the list identifier names the copy (OPERATION IN PROGRESS on reuse). */
  readonly identified: boolean;
  readonly cscds: readonly Cscd[];
  readonly segments: readonly Segment[];
}

/** CSCD descriptor length by type code (§6.4.5.1: E0h..E9h are 32 bytes, EAh/EBh 64). */
function cscdLength(code: number): number {
  return code === 0xea || code === 0xeb ? 64 : CSCD_LENGTH;
}

/** Parse and check an EXTENDED COPY(LID1) parameter list; sense for the first error. */
export function decodeXcopyParameters(p: Buffer): XcopyParameters | SenseSpec {
  const lengthError = illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  if (p.length < HEADER) return lengthError;
  const listId = p[0] ?? 0;
  const usage = ((p[1] ?? 0) >> 3) & 0x03;
  const cscdLen = p.readUInt16BE(2);
  const segLen = p.readUInt32BE(8);
  const inlineLen = p.readUInt32BE(12);
  // §6.4.3.2: 01b is reserved; 11b means "no list identifier", which must then be zero.
  if (usage === 0x01) return invalidParam(1, 4);
  if (usage === 0x03 && listId !== 0) return invalidParam(0);
  if (cscdLen + segLen > XcopyLimits.maxDescriptorListLength) return lengthError;
  if (HEADER + cscdLen + segLen + inlineLen > p.length) return lengthError;
  if (inlineLen > XcopyLimits.maxInlineData) return invalidParam(12);

  const cscds: Cscd[] = [];
  const cscdEnd = HEADER + cscdLen;
  for (let o = HEADER; o < cscdEnd; ) {
    const code = p[o] ?? 0;
    const len = cscdLength(code);
    if (o + len > cscdEnd) return lengthError;
    if (cscds.length + 1 > XcopyLimits.maxCscdDescriptors) return illegal(XcopyAsc.TOO_MANY_TARGET_DESCRIPTORS);
    if (code !== XcopyDescriptor.IDENTIFICATION) {
      return { ...illegal(XcopyAsc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE), field: { cdb: false, byte: o } };
    }
    // SPC-4 §6.4.5.2: the identification descriptor names the unit by its designator, so
    // LU ID TYPE (byte 1 bits 7:6) is ignored (libiscsi expects GOOD when it is reserved).
    const b1 = p[o + 1] ?? 0;
    cscds.push({
      offset: o,
      nul: (b1 & 0x20) !== 0,
      deviceType: b1 & 0x1f,
      designator: p.subarray(o + 4, o + 28),
      blockLength: p.readUIntBE(o + 29, 3),
    });
    o += len;
  }

  const segments: Segment[] = [];
  const segEnd = cscdEnd + segLen;
  for (let o = cscdEnd; o < segEnd; ) {
    if (o + 4 > segEnd) return lengthError;
    const code = p[o] ?? 0;
    const len = 4 + p.readUInt16BE(o + 2);
    if (o + len > segEnd) return lengthError;
    if (segments.length + 1 > XcopyLimits.maxSegmentDescriptors) return illegal(XcopyAsc.TOO_MANY_SEGMENT_DESCRIPTORS);
    if (code !== XcopyDescriptor.BLOCK_TO_BLOCK) {
      return { ...illegal(XcopyAsc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE), field: { cdb: false, byte: o } };
    }
    if (len !== B2B_LENGTH) return invalidParam(o + 2);
    segments.push({
      offset: o,
      dc: ((p[o + 1] ?? 0) & 0x02) !== 0,
      source: p.readUInt16BE(o + 4),
      destination: p.readUInt16BE(o + 6),
      blocks: p.readUInt16BE(o + 10),
      sourceLba: p.readBigUInt64BE(o + 12),
      destinationLba: p.readBigUInt64BE(o + 20),
    });
    o += len;
  }
  return { listId, hold: usage === 0x00, identified: usage !== 0x03, cscds, segments };
}

// ------------------------------------------------------------------ copy targets

/** The 16-byte NAA IEEE Registered Extended designator of a unit, as VPD 83h reports it. */
export function naaDesignatorOf(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(16);
  const v = (6n << 124n) | lu.options.naa;
  b.writeBigUInt64BE(v >> 64n, 0);
  b.writeBigUInt64BE(v & 0xffffffffffffffffn, 8);
  return b;
}

interface CopyTarget {
  readonly unit: LogicalUnit;
  readonly readOnly: boolean;
}

/** §6.4.5.2: match the designation descriptor against the units this nexus reaches. */
function resolve(ctx: CommandContext, d: Cscd): CopyTarget | undefined {
  const codeSet = (d.designator[0] ?? 0) & 0x0f;
  const assocType = (d.designator[1] ?? 0) & 0x3f;
  const len = d.designator[3] ?? 0;
  // Binary NAA designator (type 3) with logical unit association (0).
  if (codeSet !== 0x1 || assocType !== 0x03 || len !== 16) return undefined;
  const want = d.designator.subarray(4, 20);
  const entries = unitsOf(ctx.cmd.nexus);
  for (const e of entries) if (naaDesignatorOf(e.unit).equals(want)) return { unit: e.unit, readOnly: e.readOnly === true };
  // A unit driven directly (no TargetPort recorded the nexus) can still copy onto itself.
  if (entries.length === 0 && naaDesignatorOf(ctx.lu).equals(want)) return { unit: ctx.lu, readOnly: ctx.writeProtected };
  return undefined;
}

/** The same command context, addressed to another unit (io.ts helpers take `ctx.lu`). */
function onUnit(ctx: CommandContext, lu: LogicalUnit): CommandContext {
  return lu === ctx.lu ? ctx : (Object.create(ctx, { lu: { value: lu } }) as CommandContext);
}

// ------------------------------------------------------------------ EXTENDED COPY

class CopyAbort {
  constructor(readonly failure: CopyFailure) {}
}

function abortResult(ctx: CommandContext, f: CopyFailure): ScsiResult {
  return { status: Status.CHECK_CONDITION, sense: encodeCopyAborted(f, ctx.lu.descriptorSense) };
}

export const extendedCopy: Handler = async (ctx) => {
  const len = ctx.cmd.cdb.readUInt32BE(10);
  // §6.4.1: a PARAMETER LIST LENGTH of zero is not an error; nothing is copied.
  if (len === 0) return ctx.good();
  if (len > MAX_XCOPY_PARAMETER_LIST) return ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
  const p = await ctx.pull(len);
  if (p.length < len) return ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
  const params = decodeXcopyParameters(p);
  if (!('segments' in params)) return ctx.fail(params);

  const held = heldOf(ctx.lu, ctx.cmd.nexus);
  if (params.identified && held.get(params.listId)?.state === 'in-progress') {
    return ctx.fail(illegal(XcopyAsc.OPERATION_IN_PROGRESS));
  }
  const status: HeldCopy = { state: 'in-progress', segmentsProcessed: 0, bytes: 0 };
  if (params.identified) {
    held.delete(params.listId);
    held.set(params.listId, status);
    // Keep the newest results only (limits before allocation).
    for (const k of held.keys()) {
      if (held.size <= XcopyLimits.maxHeldResults) break;
      if (held.get(k)?.state !== 'in-progress') held.delete(k);
    }
  }
  let result: ScsiResult;
  try {
    for (let i = 0; i < params.segments.length; i++) {
      const seg = params.segments[i];
      if (!seg) break;
      status.bytes += await copySegment(ctx, params, seg, i);
      status.segmentsProcessed = i + 1;
    }
    status.state = 'done';
    result = ctx.good();
  } catch (e) {
    status.state = 'failed';
    if (e instanceof CopyAbort) result = abortResult(ctx, e.failure);
    else if (e instanceof PlainFailure) result = ctx.fail(e.spec);
    else throw e;
    if (result.sense) status.sense = result.sense;
  } finally {
    if (status.state === 'in-progress') status.state = 'failed';
    if (!params.hold && params.identified) held.delete(params.listId);
  }
  return result;
};

/** An error reported with its own sense rather than COPY ABORTED (write-protected target). */
class PlainFailure {
  constructor(readonly spec: SenseSpec) {}
}

async function copySegment(ctx: CommandContext, params: XcopyParameters, seg: Segment, index: number): Promise<number> {
  const fail = (asc: number, field?: number, target?: CopyFailure['target']): never => {
    throw new CopyAbort({ segment: index, asc, ...(field !== undefined ? { field } : {}), ...(target ? { target } : {}) });
  };
  const srcDesc = params.cscds[seg.source];
  const dstDesc = params.cscds[seg.destination];
  if (!srcDesc) return fail(XcopyAsc.UNREACHABLE_COPY_TARGET, 4);
  if (!dstDesc) return fail(XcopyAsc.UNREACHABLE_COPY_TARGET, 6);
  const target = (d: Cscd, field: number): CopyTarget => {
    // A null CSCD (NUL=1) names no device; there is nothing to reach.
    if (d.nul) return fail(XcopyAsc.COPY_TARGET_DEVICE_NOT_REACHABLE, field);
    const t = resolve(ctx, d);
    if (!t || !t.unit.mediumLoaded) return fail(XcopyAsc.COPY_TARGET_DEVICE_NOT_REACHABLE, field);
    // §6.4.6.5 needs block devices whose DISK BLOCK LENGTH is the unit's.
    if (d.deviceType !== 0x00 || d.blockLength !== t.unit.blockSize) return fail(XcopyAsc.INCORRECT_COPY_TARGET_DEVICE_TYPE, field);
    return t;
  };
  const src = target(srcDesc, 4);
  const dst = target(dstDesc, 6);
  if (dst.readOnly || dst.unit.options.readOnly || dst.unit.softwareWriteProtect) throw new PlainFailure(writeProtected);

  // DC=1: NUMBER OF BLOCKS counts destination blocks; DC=0: source blocks.
  const bytes = seg.blocks * (seg.dc ? dst.unit.blockSize : src.unit.blockSize);
  if (bytes === 0) return 0;
  if (bytes % src.unit.blockSize !== 0 || bytes % dst.unit.blockSize !== 0) return fail(XcopyAsc.INCORRECT_COPY_TARGET_DEVICE_TYPE, 10);
  if (bytes > XcopyLimits.maxSegmentLength) return fail(XcopyAsc.NO_ADDITIONAL_SENSE, 10);
  const outOfRange: SenseSpec = { key: SenseKey.ILLEGAL_REQUEST, asc: Asc.LBA_OUT_OF_RANGE };
  if (seg.sourceLba + BigInt(bytes / src.unit.blockSize) > BigInt(src.unit.blockCount)) {
    return fail(XcopyAsc.NO_ADDITIONAL_SENSE, 12, { side: 'source', sense: outOfRange });
  }
  if (seg.destinationLba + BigInt(bytes / dst.unit.blockSize) > BigInt(dst.unit.blockCount)) {
    return fail(XcopyAsc.NO_ADDITIONAL_SENSE, 20, { side: 'destination', sense: outOfRange });
  }

  const srcCtx = onUnit(ctx, src.unit);
  const dstCtx = onUnit(ctx, dst.unit);
  const srcPos = Number(seg.sourceLba) * src.unit.blockSize;
  const dstPos = Number(seg.destinationLba) * dst.unit.blockSize;
  const chunk = Buffer.allocUnsafe(Math.min(bytes, PULL_CHUNK));
  for (let done = 0; done < bytes; ) {
    if (ctx.aborted) throw new CopyAbort({ segment: index, asc: XcopyAsc.NO_ADDITIONAL_SENSE });
    const n = Math.min(chunk.length, bytes - done);
    const view = n === chunk.length ? chunk : chunk.subarray(0, n);
    try {
      await readMedium(srcCtx, view, 0, n, srcPos + done);
    } catch (e) {
      if (e instanceof MediumError) return fail(XcopyAsc.NO_ADDITIONAL_SENSE, undefined, { side: 'source', sense: e.spec });
      throw e;
    }
    try {
      // Through the destination's range lock, one chunk at a time (sbc/range-lock.ts).
      await writeMedium(dstCtx, view, dstPos + done, false);
    } catch (e) {
      if (e instanceof MediumError) return fail(XcopyAsc.NO_ADDITIONAL_SENSE, undefined, { side: 'destination', sense: e.spec });
      throw e;
    }
    done += n;
  }
  return bytes;
}

// ------------------------------------------------------------------ RECEIVE COPY RESULTS

/** §6.18.2 COPY STATUS: 0..3 AVAILABLE DATA (8), 4 HDD(7) COPY MANAGER STATUS(6:0),
 *  5..6 SEGMENTS PROCESSED, 7 TRANSFER COUNT UNITS, 8..11 TRANSFER COUNT. */
function copyStatus(h: HeldCopy): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32BE(8, 0);
  b[4] = h.state === 'in-progress' ? 0x00 : h.state === 'done' ? 0x01 : 0x02;
  b.writeUInt16BE(Math.min(0xffff, h.segmentsProcessed), 5);
  // TRANSFER COUNT UNITS: 00h bytes, 01h KiB, 02h MiB ... (SPC-4 table 412).
  let units = 0;
  let count = h.bytes;
  while (count > 0xffffffff) {
    count = Math.floor(count / 1024);
    units++;
  }
  b[7] = units;
  b.writeUInt32BE(count, 8);
  return b;
}

/** §6.18.5 FAILED SEGMENT DETAILS: 0..3 AVAILABLE DATA, 56 COPY COMMAND STATUS,
 *  58..59 SENSE DATA LENGTH, 60.. SENSE DATA. */
function failedSegmentDetails(h: HeldCopy): Buffer {
  const sense = h.sense ?? Buffer.alloc(0);
  const b = Buffer.alloc(60 + sense.length);
  b.writeUInt32BE(b.length - 4, 0);
  b[56] = h.state === 'failed' ? Status.CHECK_CONDITION : Status.GOOD;
  b.writeUInt16BE(sense.length, 58);
  sense.copy(b, 60);
  return b;
}

export function receiveCopyResults(sa: number): Handler {
  return (ctx) => {
    const cdb = ctx.cmd.cdb;
    const listId = cdb[2] ?? 0;
    const alloc = cdb.readUInt32BE(10);
    if (sa === CopyResultsAction.OPERATING_PARAMETERS) return ctx.good(encodeOperatingParameters(), alloc);
    const held = heldOf(ctx.lu, ctx.cmd.nexus);
    const h = held.get(listId);
    // §6.18.1: a list identifier with no copy (or no held results) is an invalid field.
    if (!h) return ctx.fail(invalidCdb(2));
    if (sa === CopyResultsAction.COPY_STATUS) return ctx.good(copyStatus(h), alloc);
    if (h.state === 'in-progress') return ctx.fail(invalidCdb(2));
    // Failed segment details are handed over once, then discarded.
    held.delete(listId);
    return ctx.good(failedSegmentDetails(h), alloc);
  };
}
