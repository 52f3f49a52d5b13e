// Test helpers: a tiny in-memory Backstore, nexus and command builders.

import type { Backstore, BackstoreKind, WriteOptions } from '../../src/backstores/backstore';
import type { Nexus, ScsiCommand, ScsiResult, TaskAttribute } from '../../src/scsi/types';
import { decodeSense } from '../../src/scsi/sense';

export class MemStore implements Backstore {
  readonly kind: BackstoreKind = 'ram';
  readonly readOnly = false;
  readonly unmapReadsZero = true;
  readonly volatileCache: boolean;
  readonly canUnmap: boolean;
  data: Buffer;
  writes: { position: number; length: number; fua: boolean }[] = [];
  unmaps: { position: number; length: number }[] = [];
  flushes = 0;
  /** Delay (ms) each read/write, to test queueing. */
  delay = 0;
  failNext: 'read' | 'write' | undefined;
  /** Bytes [from, to) that no read can get (a medium error), unlike failNext's one-off failure. */
  unreadable: { from: number; to: number } | undefined;

  constructor(
    readonly name: string,
    size: number,
    opts: { canUnmap?: boolean; volatileCache?: boolean } = {},
  ) {
    this.data = Buffer.alloc(size);
    this.canUnmap = opts.canUnmap ?? true;
    this.volatileCache = opts.volatileCache ?? true;
  }
  get size(): number {
    return this.data.length;
  }
  private async wait(): Promise<void> {
    if (this.delay > 0) await new Promise((r) => setTimeout(r, this.delay));
  }
  async read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    await this.wait();
    if (this.failNext === 'read') {
      this.failNext = undefined;
      throw new Error('EIO');
    }
    if (position + length > this.data.length) throw new RangeError('read beyond end');
    const bad = this.unreadable;
    if (bad && position < bad.to && position + length > bad.from) throw new Error('EIO: unreadable');
    this.data.copy(into, intoOffset, position, position + length);
  }
  async write(data: Buffer, position: number, opts?: WriteOptions): Promise<void> {
    await this.wait();
    if (this.failNext === 'write') {
      this.failNext = undefined;
      throw new Error('EIO');
    }
    if (position + data.length > this.data.length) throw new RangeError('write beyond end');
    data.copy(this.data, position);
    this.writes.push({ position, length: data.length, fua: opts?.fua === true });
  }
  async flush(): Promise<void> {
    this.flushes++;
  }
  async unmap(position: number, length: number): Promise<void> {
    this.data.fill(0, position, position + length);
    this.unmaps.push({ position, length });
  }
  async mapping(_position: number, length: number): Promise<{ mapped: boolean; length: number }> {
    return { mapped: true, length };
  }
  async resize(size: number): Promise<void> {
    const d = Buffer.alloc(size);
    this.data.copy(d, 0, 0, Math.min(size, this.data.length));
    this.data = d;
  }
  async close(): Promise<void> {}
}

export function nexus(n = 1): Nexus {
  return {
    id: `iqn.test:init${n},i,0x00023d00000${n}|iqn.test:tgt,t,0x1`,
    initiatorName: `iqn.test:init${n}`,
    initiatorPort: `iqn.test:init${n},i,0x00023d00000${n}`,
    targetPort: 'iqn.test:tgt,t,0x0001',
    relativeTargetPortId: 1,
    protocolId: 5,
    transportId: Buffer.alloc(0),
  };
}

let tagSeq = 1;

export interface CmdOpts {
  lun?: number;
  nexus?: Nexus;
  data?: Buffer;
  dataIn?: number;
  attribute?: TaskAttribute;
  tag?: number;
}

export interface TestCommand extends ScsiCommand {
  pulls: number[];
}

export function cmd(cdb: number[] | Buffer, o: CmdOpts = {}): TestCommand {
  const data = o.data ?? Buffer.alloc(0);
  let off = 0;
  const pulls: number[] = [];
  const c: TestCommand = {
    lun: o.lun ?? 0,
    cdb: Buffer.isBuffer(cdb) ? cdb : Buffer.from(cdb),
    tag: o.tag ?? tagSeq++,
    attribute: o.attribute ?? 'simple',
    nexus: o.nexus ?? nexus(1),
    dataInLength: o.dataIn ?? 0,
    dataOutLength: data.length,
    pulls,
    async dataOut(length: number): Promise<Buffer> {
      pulls.push(length);
      const b = data.subarray(off, Math.min(data.length, off + length));
      off += b.length;
      return b;
    },
  };
  return c;
}

export function sense(r: ScsiResult): { key: number; asc: number; field?: { cdb: boolean; byte: number; bit?: number }; information?: bigint; descriptor: boolean } {
  if (!r.sense) throw new Error(`no sense (status ${r.status})`);
  return decodeSense(r.sense);
}

/** CDB builders. */
export function rw10(op: number, lba: number, blocks: number, flags = 0): number[] {
  return [op, flags, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, (blocks >> 8) & 0xff, blocks & 0xff, 0];
}
export function rw16(op: number, lba: bigint, blocks: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = op;
  b[1] = flags;
  b.writeBigUInt64BE(lba, 2);
  b.writeUInt32BE(blocks, 10);
  return b;
}
export function rw12(op: number, lba: number, blocks: number, flags = 0): Buffer {
  const b = Buffer.alloc(12);
  b[0] = op;
  b[1] = flags;
  b.writeUInt32BE(lba, 2);
  b.writeUInt32BE(blocks, 6);
  return b;
}
