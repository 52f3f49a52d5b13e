// Incremental PDU framer (RFC 7143 §11.2): turns socket chunks into whole PDUs without
// concatenating payloads. It keeps the received chunks and hands out zero-copy views:
// the BHS is a view when it lies in one chunk (else a 48-byte copy), the data segment is
// a list of views (usually one). Limits are checked on the BHS, before anything is kept.

import { crc32cFinal, crc32cInit, crc32cUpdate } from './crc32c';
import { BHS_LENGTH, padLength } from './pdu';

export interface FramedPdu {
  readonly type: 'pdu';
  readonly bhs: Buffer;
  readonly ahs: Buffer;
  /** Data segment without padding, as views into received chunks. */
  readonly data: readonly Buffer[];
  readonly dataLength: number;
}
/** The data segment exceeded MaxRecvDataSegmentLength: it was skipped, the BHS is kept. */
export interface OversizedPdu {
  readonly type: 'oversized';
  readonly bhs: Buffer;
  readonly dataLength: number;
}
/** Data digest mismatch (§11.2.4): the PDU is whole but its payload cannot be trusted. */
export interface DataDigestErrorPdu {
  readonly type: 'data-digest-error';
  readonly bhs: Buffer;
}
/**
 * Header digest mismatch at ERL >= 1 (§7.8): the PDU was skipped by the length its header
 * claims. The header is untrusted, so it is not handed out.
 */
export interface HeaderDigestErrorPdu {
  readonly type: 'header-digest-error';
}
export type FramerEvent = FramedPdu | OversizedPdu | DataDigestErrorPdu | HeaderDigestErrorPdu;

/** Header digest errors in a row after which the stream is taken to be out of sync. */
export const MAX_HEADER_DIGEST_ERRORS = 3;

/** A framing failure after which the byte stream cannot be trusted (connection must drop). */
export class FramingError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'FramingError';
    this.code = code;
  }
}

const EMPTY = Buffer.alloc(0);

export class PduFramer {
  /** Negotiated at login; apply from the first PDU after the final Login Response (§13.1). */
  headerDigest = false;
  dataDigest = false;
  /** Our declared MaxRecvDataSegmentLength (§13.12); 8192 during login. */
  maxDataSegmentLength = 8192;
  /**
   * ERL >= 1: a header digest error discards the PDU instead of failing the stream. With
   * no sync layer (markers are gone in RFC 7143) the claimed length is all we have, so a
   * few errors in a row, or a claimed length over the limit, still throw.
   */
  headerDigestRecovery = false;
  private headerErrors = 0;

  private chunks: Buffer[] = [];
  private head = 0; // offset into chunks[0]
  private avail = 0;
  private skip = 0; // bytes of an oversized PDU still to discard
  private bhs: Buffer | null = null; // parsed BHS waiting for the rest of its PDU
  private need = 0;
  private dataLen = 0;
  private ahsLen = 0;

  get buffered(): number {
    return this.avail;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    this.chunks.push(chunk);
    this.avail += chunk.length;
  }

  /** The next complete PDU, or null when more bytes are needed. Throws FramingError. */
  next(): FramerEvent | null {
    if (this.skip > 0) this.discard();
    if (this.skip > 0) return null;
    if (this.bhs === null) {
      if (this.avail < BHS_LENGTH) return null;
      const bhs = this.take(BHS_LENGTH);
      // §11.2.1.2 TotalAHSLength in 4-byte words; §11.2.1.3 DataSegmentLength in bytes.
      this.ahsLen = bhs[4]! * 4;
      this.dataLen = (bhs[5]! << 16) | (bhs[6]! << 8) | bhs[7]!;
      if (this.dataLen > this.maxDataSegmentLength) {
        // Limit before buffering: skip the payload (we know its length) and report.
        const rest = this.ahsLen + (this.headerDigest ? 4 : 0) + this.dataLen + padLength(this.dataLen) + (this.dataDigest && this.dataLen > 0 ? 4 : 0);
        this.skip = rest;
        this.discard();
        return { type: 'oversized', bhs, dataLength: this.dataLen };
      }
      this.bhs = bhs;
      this.need = this.ahsLen + (this.headerDigest ? 4 : 0) + this.dataLen + padLength(this.dataLen) + (this.dataDigest && this.dataLen > 0 ? 4 : 0);
    }
    if (this.avail < this.need) return null;
    const bhs = this.bhs;
    this.bhs = null;
    const ahs = this.ahsLen > 0 ? this.take(this.ahsLen) : EMPTY;
    if (this.headerDigest) {
      const got = this.take(4).readUInt32LE(0);
      let c = crc32cUpdate(crc32cInit, bhs);
      if (ahs.length > 0) c = crc32cUpdate(c, ahs);
      if (crc32cFinal(c) !== got) {
        if (!this.headerDigestRecovery || ++this.headerErrors >= MAX_HEADER_DIGEST_ERRORS) throw new FramingError('ISCSI_HEADER_DIGEST', 'header digest mismatch');
        // The length was checked against the limit above; skip what the header claims follows.
        this.skip = this.dataLen + padLength(this.dataLen) + (this.dataDigest && this.dataLen > 0 ? 4 : 0);
        this.discard();
        return { type: 'header-digest-error' };
      }
      this.headerErrors = 0;
    }
    const data = this.dataLen > 0 ? this.takeViews(this.dataLen) : [];
    const pad = padLength(this.dataLen);
    let padBuf: Buffer = EMPTY;
    if (pad > 0) padBuf = this.take(pad);
    if (this.dataDigest && this.dataLen > 0) {
      const got = this.take(4).readUInt32LE(0);
      let c = crc32cInit;
      for (const v of data) c = crc32cUpdate(c, v);
      if (pad > 0) c = crc32cUpdate(c, padBuf);
      if (crc32cFinal(c) !== got) return { type: 'data-digest-error', bhs };
    }
    return { type: 'pdu', bhs, ahs, data, dataLength: this.dataLen };
  }

  private discard(): void {
    while (this.skip > 0 && this.avail > 0) {
      const first = this.chunks[0]!;
      const n = Math.min(this.skip, first.length - this.head);
      this.skip -= n;
      this.avail -= n;
      this.head += n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
  }

  /** n bytes as one Buffer: a view when they lie in one chunk, else a copy (headers only). */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const v = first.subarray(this.head, this.head + n);
      this.advance(n);
      return v;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const k = Math.min(n - o, c.length - this.head);
      c.copy(out, o, this.head, this.head + k);
      o += k;
      this.advance(k);
    }
    return out;
  }

  /** n bytes as views, never copied. */
  private takeViews(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const c = this.chunks[0]!;
      const k = Math.min(n, c.length - this.head);
      out.push(c.subarray(this.head, this.head + k));
      n -= k;
      this.advance(k);
    }
    return out;
  }

  private advance(n: number): void {
    this.head += n;
    this.avail -= n;
    const first = this.chunks[0];
    if (first !== undefined && this.head === first.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
