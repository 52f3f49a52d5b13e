// A small iSCSI initiator for end-to-end tests (not a test file). Byte layouts follow
// RFC 7143 §11; digests (§11.2.4, CRC32C) can be turned on and deliberately corrupted.
// It speaks one connection; sessions with several connections use several instances.

import { connect, type Socket } from 'node:net';
import { crc32cFinal, crc32cInit, crc32cUpdate, digestBytes } from '../../../src/fabrics/iscsi/crc32c';
import { PduFramer } from '../../../src/fabrics/iscsi/framer';
import { decodeText, encodeText, type TextPair } from '../../../src/fabrics/iscsi/text';

export interface Pdu {
  bhs: Buffer;
  data: Buffer;
}

export const op = (p: Pdu): number => p.bhs[0]! & 0x3f;
export const u32 = (p: Pdu, off: number): number => p.bhs.readUInt32BE(off);

export interface SendOptions {
  /** Flip a bit in the data digest (§7.8 data digest error). */
  corruptDataDigest?: boolean;
  /** Flip a bit in the header digest. */
  corruptHeaderDigest?: boolean;
}

export class Ini {
  private f = new PduFramer();
  private q: Pdu[] = [];
  private waiters: ((p: Pdu | null) => void)[] = [];
  closed = false;
  cmdSN = 1;
  /** ExpStatSN we send: last StatSN seen + 1 (only advanced by `ack`). */
  expStatSN = 0;
  headerDigest = false;
  dataDigest = false;
  tsih = 0;
  constructor(readonly sock: Socket) {
    this.f.maxDataSegmentLength = 1 << 24;
    sock.on('data', (c: Buffer) => {
      this.f.push(c);
      for (let e = this.f.next(); e !== null; e = this.f.next()) {
        if (e.type !== 'pdu') continue;
        const p = { bhs: Buffer.from(e.bhs), data: Buffer.concat(e.data as Buffer[]) };
        const w = this.waiters.shift();
        if (w) w(p);
        else this.q.push(p);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }
  static open(port: number): Promise<Ini> {
    return new Promise((res) => {
      const s = connect(port, '127.0.0.1', () => res(new Ini(s)));
    });
  }

  send(bhs: Buffer, data: Buffer = Buffer.alloc(0), o: SendOptions = {}): void {
    bhs.writeUIntBE(data.length, 5, 3);
    const parts: Buffer[] = [bhs];
    if (this.headerDigest) {
      const d = digestBytes(crc32cFinal(crc32cUpdate(crc32cInit, bhs)));
      if (o.corruptHeaderDigest) d[0] = d[0]! ^ 1;
      parts.push(d);
    }
    if (data.length > 0) {
      const pad = Buffer.alloc((4 - (data.length & 3)) & 3);
      parts.push(data, pad);
      if (this.dataDigest) {
        const d = digestBytes(crc32cFinal(crc32cUpdate(crc32cUpdate(crc32cInit, data), pad)));
        if (o.corruptDataDigest) d[0] = d[0]! ^ 1;
        parts.push(d);
      }
    }
    this.sock.write(Buffer.concat(parts));
  }

  recv(ms = 2000): Promise<Pdu | null> {
    const p = this.q.shift();
    if (p) return Promise.resolve(this.seen(p));
    return new Promise((res) => {
      const w = (x: Pdu | null) => {
        clearTimeout(t);
        res(x === null ? null : this.seen(x));
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        res(null);
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Receive, skipping NOP-In pings and Async Messages unless asked for. */
  async next(ms = 2000): Promise<Pdu> {
    const p = await this.recv(ms);
    if (p === null) throw new Error('no PDU');
    return p;
  }

  /** Last StatSN seen in a PDU that carries one (for ExpStatSN, §4.2.2.2). */
  lastStatSN = -1;
  private seen(p: Pdu): Pdu {
    const o = op(p);
    // §11.7.8: Data-In carries a StatSN only with S; R2T and NOP-In pings do not advance it.
    const carries = o === 0x21 || o === 0x22 || o === 0x24 || o === 0x26 || o === 0x32 || o === 0x3f || (o === 0x25 && (p.bhs[1]! & 1) === 1) || (o === 0x20 && u32(p, 16) !== 0xffffffff);
    if (carries) this.lastStatSN = u32(p, 24);
    return p;
  }
  /** Acknowledge everything seen so far in the next PDU we send. */
  ack(): void {
    if (this.lastStatSN >= 0) this.expStatSN = (this.lastStatSN + 1) >>> 0;
  }

  private header(opcode: number, flags: number, itt: number): Buffer {
    const b = Buffer.alloc(48);
    b[0] = opcode;
    b[1] = flags;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(this.expStatSN, 28);
    return b;
  }

  /** Login straight to full feature phase (§11.12), CSG=1 NSG=3. Turns on negotiated digests. */
  async login(pairs: TextPair[], o: { isid?: string; tsih?: number; cid?: number } = {}): Promise<{ pdu: Pdu; keys: Map<string, string> }> {
    const b = Buffer.alloc(48);
    b[0] = 0x43;
    b[1] = 0x80 | (1 << 2) | 3;
    Buffer.from(o.isid ?? '400000000001', 'hex').copy(b, 8);
    b.writeUInt16BE(o.tsih ?? 0, 14);
    b.writeUInt32BE(1, 16);
    b.writeUInt16BE(o.cid ?? 0, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    this.send(b, encodeText(pairs));
    const pdu = await this.next();
    const keys = new Map(decodeText(pdu.data));
    if (pdu.bhs.readUInt16BE(36) === 0) {
      this.tsih = pdu.bhs.readUInt16BE(14);
      this.expStatSN = (u32(pdu, 24) + 1) >>> 0;
      // §11.13: ExpCmdSN of the final response is where this connection's numbering goes on.
      this.cmdSN = u32(pdu, 28);
      this.headerDigest = keys.get('HeaderDigest') === 'CRC32C';
      this.dataDigest = keys.get('DataDigest') === 'CRC32C';
      this.f.headerDigest = this.headerDigest;
      this.f.dataDigest = this.dataDigest;
    }
    return { pdu, keys };
  }

  /** §11.3 SCSI Command: F R W ATTR=simple; EDTL 20; CmdSN 24; CDB 32. */
  scsi(itt: number, cdb: number[], flags: number, edtl: number, o: { imm?: Buffer; cmdSN?: number; final?: boolean } = {}): number {
    const b = this.header(0x01, (o.final === false ? 0 : 0x80) | flags | 1, itt);
    b.writeUInt32BE(edtl, 20);
    const sn = o.cmdSN ?? this.cmdSN++;
    b.writeUInt32BE(sn, 24);
    Buffer.from(cdb).copy(b, 32);
    this.send(b, o.imm);
    return sn;
  }

  /** §11.7 SCSI Data-Out: F; TTT 20; DataSN 36; BufferOffset 40. */
  dataOut(itt: number, ttt: number, dataSN: number, offset: number, data: Buffer, final = true, o: SendOptions = {}): void {
    const b = this.header(0x05, final ? 0x80 : 0, itt);
    b.writeUInt32BE(ttt, 20);
    b.writeUInt32BE(dataSN, 36);
    b.writeUInt32BE(offset, 40);
    this.send(b, data, o);
  }

  /** Answer one R2T (§11.8) with `pdu`-sized Data-Out PDUs taken from `src`. */
  answerR2t(r2t: Pdu, src: Buffer, pduSize: number, corrupt: (dataSN: number) => boolean = () => false): void {
    const itt = u32(r2t, 16);
    const ttt = u32(r2t, 20);
    const off = u32(r2t, 40);
    const len = u32(r2t, 44);
    let sn = 0;
    for (let o = 0; o < len; o += pduSize) {
      const n = Math.min(pduSize, len - o);
      this.dataOut(itt, ttt, sn, off + o, src.subarray(off + o, off + o + n), o + n === len, { corruptDataDigest: corrupt(sn) });
      sn++;
    }
  }

  /** §11.5 Task Management Function Request (immediate): Function 1; RefTaskTag 20; RefCmdSN 32; ExpDataSN 36. */
  tmf(itt: number, fn: number, ref: number, o: { expDataSN?: number; refCmdSN?: number; lun?: number } = {}): void {
    const b = this.header(0x42, 0x80 | fn, itt);
    b[9] = o.lun ?? 0;
    b.writeUInt32BE(ref, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(o.refCmdSN ?? 0, 32);
    b.writeUInt32BE(o.expDataSN ?? 0, 36);
    this.send(b);
  }

  /** §11.14 Logout Request: reason in byte 1, CID 20. */
  logout(itt: number, reason: number, cid: number): void {
    const b = this.header(0x46, 0x80 | reason, itt);
    b.writeUInt16BE(cid, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    this.send(b);
  }

  /** §11.16 SNACK Request: Type in byte 1; ITT 16; TTT/SNACK Tag 20; BegRun 40; RunLength 44. */
  snack(type: number, itt: number, o: { ttt?: number; begRun?: number; runLength?: number; lun?: number } = {}): void {
    const b = this.header(0x10, 0x80 | type, itt);
    b[9] = o.lun ?? 0;
    b.writeUInt32BE(o.ttt ?? 0xffffffff, 20);
    b.writeUInt32BE(o.begRun ?? 0, 40);
    b.writeUInt32BE(o.runLength ?? 0, 44);
    this.send(b);
  }

  /** §11.18 NOP-Out (immediate ping, ITT given). */
  nop(itt: number): void {
    const b = this.header(0x40, 0x80, itt);
    b.writeUInt32BE(0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    this.send(b);
  }

  /** §11.10 Text Request (F=1) with the given keys, CmdSN consumed. */
  text(itt: number, pairs: TextPair[]): void {
    const b = this.header(0x04, 0x80, itt);
    b.writeUInt32BE(0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN++, 24);
    this.send(b, encodeText(pairs));
  }

  /** Read a whole Data-In sequence for `itt` (until S=1 or a SCSI Response). */
  async readAll(itt: number): Promise<{ data: Buffer; pdus: Pdu[]; status: Pdu }> {
    const pdus: Pdu[] = [];
    const parts: Buffer[] = [];
    for (;;) {
      const p = await this.next();
      if (u32(p, 16) !== itt) throw new Error(`unexpected PDU opcode 0x${op(p).toString(16)} itt ${u32(p, 16)}`);
      if (op(p) === 0x21) return { data: Buffer.concat(parts), pdus, status: p };
      pdus.push(p);
      parts.push(p.data);
      if (p.bhs[1]! & 1) return { data: Buffer.concat(parts), pdus, status: p };
    }
  }

  kill(): void {
    this.sock.destroy();
  }
}
