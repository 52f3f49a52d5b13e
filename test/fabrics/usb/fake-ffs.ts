// An in-memory FunctionFS: two bulk pipes and ep0 with the kernel's semantics as far as a
// BOT function sees them, plus a host modelled on Linux usb-storage (usb_stor_Bulk_transport).
//
// What is modelled (from f_fs.c / the UDC, see shared/reference/usb-and-sbp2.md §2.4-2.7):
// - Bulk IN: a device write is split into max-packet packets (a 0-byte write is one ZLP) and
//   completes only when the host has taken every packet. A host IN transfer of L bytes ends on
//   L bytes, a short packet (ZLP included) or STALL; a packet bigger than the room left is
//   babble (-EOVERFLOW). Writes queued while halted wait until the host clears the halt.
// - Bulk OUT: a host transfer is split into packets; a device read of `max` completes on `max`
//   bytes or a short packet; a packet bigger than the room left fails the read with EOVERFLOW
//   (dwc2 has no read buffering), so the device must read whole packets.
// - Halt: the device halts a pipe; the host sees STALL and clears it (CLEAR_FEATURE, handled
//   in the UDC: the device is told only through the optional waitClearHalt hook).
// - ep0: events are queued and read 12 bytes each; once a SETUP has been read, I/O on ep0 is
//   its data/status stage and wrong-direction I/O stalls (rejects with EL2HLT).
// Not modelled: data toggles, NAK timing, AIO, the kernel's 4-event queue limit and event
// coalescing, descriptor parsing (writes before activation are only recorded).

import type { BotEndpoints, Csw } from '../../../src/fabrics/usb/bot';
import { CSW_LENGTH, decodeCsw, encodeCbw, BotError } from '../../../src/fabrics/usb/bot';
import type { Ep0Event, Ep0Io, SetupPacket } from '../../../src/fabrics/usb/ep0-events';
import { BotRequest, encodeEp0Event, EVENT_LENGTH, isInRequest } from '../../../src/fabrics/usb/ep0-events';

function ioError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** Wake-up for waiters; `wait(ms)` resolves false on timeout. */
class Signal {
  private waiters = new Set<() => void>();
  notify(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }
  wait(timeoutMs?: number): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const w = (): void => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      this.waiters.add(w);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters.delete(w);
          resolve(false);
        }, timeoutMs);
      }
    });
  }
}

/** FIFO with O(1) shift (a multi-MiB transfer is thousands of packets). */
class Queue<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  push(v: T): void {
    this.items.push(v);
  }
  shift(): T | undefined {
    const v = this.items[this.head];
    if (v === undefined) return undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  toArray(): T[] {
    return this.items.slice(this.head);
  }
  /** Keep only the items matching `keep`. */
  retain(keep: (v: T) => boolean): void {
    this.items = this.toArray().filter(keep);
    this.head = 0;
  }
}

function packetize(data: Buffer, mps: number): Buffer[] {
  if (data.length === 0) return [data];
  const out: Buffer[] = [];
  for (let o = 0; o < data.length; o += mps) out.push(data.subarray(o, Math.min(o + mps, data.length)));
  return out;
}

interface PendingWrite {
  left: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface InResult {
  readonly data: Buffer;
  readonly stalled: boolean;
  readonly babble: boolean;
  readonly timedOut: boolean;
}

class InPipe {
  private packets = new Queue<{ data: Buffer; w: PendingWrite }>();
  halted = false;
  readonly changed = new Signal();
  constructor(private readonly bus: FakeFfs) {}

  deviceWrite(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const pk = packetize(data, this.bus.mps);
      const w: PendingWrite = { left: pk.length, resolve, reject };
      for (const p of pk) this.packets.push({ data: p, w });
      this.changed.notify();
    });
  }

  async hostRead(len: number, timeoutMs: number): Promise<InResult> {
    const parts: Buffer[] = [];
    let got = 0;
    const res = (extra: Partial<InResult>): InResult => ({
      data: Buffer.concat(parts, got),
      stalled: false,
      babble: false,
      timedOut: false,
      ...extra,
    });
    for (;;) {
      if (this.halted) {
        this.bus.trace.push('IN STALL');
        return res({ stalled: true });
      }
      const p = this.packets.peek();
      if (!p) {
        if (!(await this.changed.wait(timeoutMs))) return res({ timedOut: true });
        continue;
      }
      this.packets.shift();
      if (--p.w.left === 0) p.w.resolve();
      if (p.data.length > len - got) {
        this.bus.trace.push(`IN BABBLE ${p.data.length}`);
        return res({ babble: true });
      }
      parts.push(p.data);
      got += p.data.length;
      if (p.data.length === 0) this.bus.trace.push('IN ZLP');
      if (p.data.length < this.bus.mps || got === len) {
        if (got > 0) this.bus.trace.push(`IN ${got}`);
        return res({});
      }
    }
  }

  /** Bytes queued by the device and not yet taken by the host. */
  get queued(): number {
    return this.packets.toArray().reduce((n, p) => n + p.data.length, 0);
  }

  cancel(): void {
    const ws = new Set(this.packets.toArray().map((p) => p.w));
    this.packets = new Queue();
    for (const w of ws) w.reject(ioError('ECANCELED', 'bulk-IN transfer cancelled'));
  }
}

interface OutXfer {
  remaining: number;
  sent: number;
}

export interface OutResult {
  readonly sent: number;
  readonly stalled: boolean;
  readonly timedOut: boolean;
}

class OutPipe {
  private packets = new Queue<{ data: Buffer; x: OutXfer }>();
  halted = false;
  private cancelGen = 0;
  readonly changed = new Signal();
  constructor(private readonly bus: FakeFfs) {}

  async hostWrite(data: Buffer, timeoutMs: number): Promise<OutResult> {
    if (this.halted) {
      this.bus.trace.push('OUT STALL');
      return { sent: 0, stalled: true, timedOut: false };
    }
    const pk = packetize(data, this.bus.mps);
    const x: OutXfer = { remaining: pk.length, sent: 0 };
    for (const p of pk) this.packets.push({ data: p, x });
    this.changed.notify();
    const drop = (): void => {
      this.packets.retain((p) => p.x !== x);
    };
    for (;;) {
      if (x.remaining === 0) {
        this.bus.trace.push(`OUT ${x.sent}`);
        return { sent: x.sent, stalled: false, timedOut: false };
      }
      if (this.halted) {
        drop();
        this.bus.trace.push(`OUT STALL after ${x.sent}`);
        return { sent: x.sent, stalled: true, timedOut: false };
      }
      if (!(await this.changed.wait(timeoutMs))) {
        drop();
        return { sent: x.sent, stalled: false, timedOut: true };
      }
    }
  }

  async deviceRead(max: number): Promise<Buffer> {
    const gen = this.cancelGen;
    const parts: Buffer[] = [];
    let got = 0;
    for (;;) {
      if (gen !== this.cancelGen) throw ioError('ECANCELED', 'bulk-OUT transfer cancelled');
      const p = this.halted ? undefined : this.packets.peek();
      if (!p) {
        await this.changed.wait();
        continue;
      }
      this.packets.shift();
      p.x.remaining--;
      this.changed.notify();
      if (p.data.length > max - got) {
        p.x.sent += p.data.length;
        this.bus.overflows++;
        throw ioError('EOVERFLOW', `packet of ${p.data.length} bytes into ${max - got} bytes of read buffer`);
      }
      p.x.sent += p.data.length;
      parts.push(p.data);
      got += p.data.length;
      if (p.data.length < this.bus.mps || got === max) return Buffer.concat(parts, got);
    }
  }

  cancel(): void {
    this.cancelGen++;
    this.changed.notify();
  }
}

/** ep0 as the function daemon sees it (Ep0Io), with the host's control transfers. */
export class FakeEp0 implements Ep0Io {
  private events: Ep0Event[] = [];
  private pending: { setup: SetupPacket; data: Buffer; done: (r: ControlResult) => void } | undefined;
  private queuedSetups: { setup: SetupPacket; data: Buffer; done: (r: ControlResult) => void }[] = [];
  private readonly changed = new Signal();
  private closed = false;
  /** Writes made before the function was active (descriptors, strings). */
  readonly blobs: Buffer[] = [];

  constructor(private readonly bus: FakeFfs) {}

  async read(length: number): Promise<Buffer> {
    const p = this.pending;
    if (p) {
      this.pending = undefined;
      if (isInRequest(p.setup)) {
        this.bus.trace.push('EP0 STALL');
        p.done({ stalled: true, data: Buffer.alloc(0) });
        throw ioError('EL2HLT', 'ep0 stalled');
      }
      this.bus.trace.push('EP0 ACK');
      p.done({ stalled: false, data: Buffer.alloc(0) });
      return p.data.subarray(0, Math.min(length, p.setup.wLength));
    }
    for (;;) {
      if (this.closed) throw ioError('ESHUTDOWN', 'ep0 closed');
      if (this.events.length > 0) break;
      await this.changed.wait();
    }
    const n = Math.max(1, Math.floor(length / EVENT_LENGTH));
    const evs = this.events.splice(0, n);
    // Reading a SETUP makes it the pending one; later events wait for its answer.
    const i = evs.findIndex((e) => e.kind === 'setup');
    if (i >= 0) {
      this.events.unshift(...evs.splice(i + 1));
      const q = this.queuedSetups.shift();
      if (q) this.pending = q;
    }
    return Buffer.concat(evs.map(encodeEp0Event));
  }

  async write(data: Buffer): Promise<void> {
    const p = this.pending;
    if (!p) {
      this.blobs.push(Buffer.from(data));
      return;
    }
    this.pending = undefined;
    if (!isInRequest(p.setup)) {
      this.bus.trace.push('EP0 STALL');
      p.done({ stalled: true, data: Buffer.alloc(0) });
      throw ioError('EL2HLT', 'ep0 stalled');
    }
    p.done({ stalled: false, data: Buffer.from(data.subarray(0, p.setup.wLength)) });
  }

  /** Host side: queue a lifecycle event. */
  event(kind: Exclude<Ep0Event['kind'], 'setup'>): void {
    this.events.push({ kind } as Ep0Event);
    this.changed.notify();
  }

  /** Host side: a control transfer to the function; resolves with its data or STALL. */
  control(setup: SetupPacket, data: Buffer = Buffer.alloc(0), timeoutMs = 1000): Promise<ControlResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ stalled: false, data: Buffer.alloc(0), timedOut: true }), timeoutMs);
      this.queuedSetups.push({
        setup,
        data,
        done: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      this.events.push({ kind: 'setup', setup });
      this.changed.notify();
    });
  }

  close(): void {
    this.closed = true;
    this.changed.notify();
  }
}

export interface ControlResult {
  readonly stalled: boolean;
  readonly data: Buffer;
  readonly timedOut?: boolean;
}

export interface FakeFfsOptions {
  readonly maxPacketSize?: number;
  /** Offer waitClearHalt to the device (real FunctionFS cannot). Default true. */
  readonly reportClearHalt?: boolean;
  /** Host-side wait limit per pipe operation, so a protocol bug fails a test instead of hanging it. */
  readonly timeoutMs?: number;
}

/** The whole fake: device endpoints, ep0, host driver, a trace of bus events and I/O stats. */
export class FakeFfs {
  readonly mps: number;
  readonly timeoutMs: number;
  readonly trace: string[] = [];
  overflows = 0;
  /** Largest readOut request and writeIn length the device made, and how many. */
  readonly stats = { maxReadAsk: 0, maxWrite: 0, reads: 0, writes: 0 };
  readonly in: InPipe;
  readonly out: OutPipe;
  readonly ep0: FakeEp0;
  readonly endpoints: BotEndpoints;
  readonly host: FakeUsbHost;
  private readonly clearHalt = new Signal();

  constructor(opts: FakeFfsOptions = {}) {
    this.mps = opts.maxPacketSize ?? 512;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.in = new InPipe(this);
    this.out = new OutPipe(this);
    this.ep0 = new FakeEp0(this);
    const ep: BotEndpoints = {
      readOut: (max) => {
        this.stats.reads++;
        this.stats.maxReadAsk = Math.max(this.stats.maxReadAsk, max);
        return this.out.deviceRead(max);
      },
      writeIn: (data) => {
        this.stats.writes++;
        this.stats.maxWrite = Math.max(this.stats.maxWrite, data.length);
        return this.in.deviceWrite(data);
      },
      haltIn: async () => {
        this.in.halted = true;
        this.trace.push('HALT IN');
        this.in.changed.notify();
      },
      haltOut: async () => {
        this.out.halted = true;
        this.trace.push('HALT OUT');
        this.out.changed.notify();
      },
      cancel: () => {
        this.in.cancel();
        this.out.cancel();
      },
    };
    if (opts.reportClearHalt ?? true) {
      ep.waitClearHalt = async () => {
        while (this.in.halted && this.out.halted) await this.clearHalt.wait();
      };
    }
    this.endpoints = ep;
    this.host = new FakeUsbHost(this);
  }

  /** CLEAR_FEATURE(ENDPOINT_HALT) from the host. */
  clearHaltOn(pipe: 'in' | 'out'): void {
    const p = pipe === 'in' ? this.in : this.out;
    p.halted = false;
    this.trace.push(`CLEAR ${pipe.toUpperCase()}`);
    p.changed.notify();
    this.clearHalt.notify();
  }
}

export interface TransportRequest {
  readonly cdb: Buffer;
  readonly dir: 'in' | 'out' | 'none';
  /** dCBWDataTransferLength. */
  readonly length: number;
  readonly lun?: number;
  readonly tag?: number;
  /** Data-out (zero-filled to `length` if shorter). */
  readonly data?: Buffer;
  /** Send these bytes instead of a well-formed CBW. */
  readonly rawCbw?: Buffer;
}

export type CswProblem = 'stall' | 'babble' | 'timeout' | 'length' | 'signature' | 'tag';

export interface TransportResult {
  readonly cbwStalled: boolean;
  readonly data: Buffer;
  readonly dataSent: number;
  readonly dataStalled: boolean;
  readonly dataBabble: boolean;
  readonly csw?: Csw;
  readonly cswProblem?: CswProblem;
  /** A ZLP arrived where the CSW was expected (Linux tolerates it once; we count it as a bug). */
  readonly zlpBeforeCsw: boolean;
  readonly timedOut: boolean;
}

/** A host driver following Linux drivers/usb/storage/transport.c usb_stor_Bulk_transport. */
export class FakeUsbHost {
  private nextTag = 1;
  constructor(private readonly bus: FakeFfs) {}

  async transport(req: TransportRequest): Promise<TransportResult> {
    const tag = req.tag ?? this.nextTag++;
    const cbw =
      req.rawCbw ??
      encodeCbw({ tag, dataTransferLength: req.length, dataIn: req.dir === 'in', lun: req.lun ?? 0, cdb: req.cdb });
    const t = this.bus.timeoutMs;
    let r: {
      cbwStalled: boolean; data: Buffer; dataSent: number; dataStalled: boolean; dataBabble: boolean;
      csw?: Csw; cswProblem?: CswProblem; zlpBeforeCsw: boolean; timedOut: boolean;
    } = { cbwStalled: false, data: Buffer.alloc(0), dataSent: 0, dataStalled: false, dataBabble: false, zlpBeforeCsw: false, timedOut: false };
    const c = await this.bus.out.hostWrite(cbw, t);
    if (c.timedOut) return { ...r, timedOut: true };
    if (c.stalled || c.sent !== cbw.length) {
      // transport.c: a failed CBW transfer is a transport error (the caller resets).
      return { ...r, cbwStalled: c.stalled };
    }
    if (req.length > 0 && req.dir === 'in') {
      const d = await this.bus.in.hostRead(req.length, t);
      if (d.timedOut) return { ...r, data: d.data, timedOut: true };
      r = { ...r, data: d.data, dataStalled: d.stalled, dataBabble: d.babble };
      if (d.stalled) this.bus.clearHaltOn('in'); // usb_stor_clear_halt after -EPIPE
    } else if (req.length > 0 && req.dir === 'out') {
      const buf = Buffer.alloc(req.length);
      req.data?.copy(buf, 0, 0, Math.min(req.data.length, req.length));
      const d = await this.bus.out.hostWrite(buf, t);
      if (d.timedOut) return { ...r, dataSent: d.sent, timedOut: true };
      r = { ...r, dataSent: d.sent, dataStalled: d.stalled };
      if (d.stalled) this.bus.clearHaltOn('out');
    }
    let s = await this.bus.in.hostRead(CSW_LENGTH, t);
    if (!s.stalled && !s.timedOut && !s.babble && s.data.length === 0) {
      // "Some broken devices add unnecessary zero-length packets": read the CSW again.
      r = { ...r, zlpBeforeCsw: true };
      s = await this.bus.in.hostRead(CSW_LENGTH, t);
    }
    if (s.stalled) {
      this.bus.clearHaltOn('in');
      s = await this.bus.in.hostRead(CSW_LENGTH, t);
    }
    if (s.timedOut) return { ...r, timedOut: true, cswProblem: 'timeout' };
    if (s.stalled) return { ...r, cswProblem: 'stall' };
    if (s.babble) return { ...r, cswProblem: 'babble' };
    try {
      const csw = decodeCsw(s.data);
      if (csw.dCSWTag !== (req.rawCbw ? csw.dCSWTag : tag)) return { ...r, csw, cswProblem: 'tag' };
      return { ...r, csw };
    } catch (e) {
      return { ...r, cswProblem: e instanceof BotError && e.code === 'CSW_LENGTH' ? 'length' : 'signature' };
    }
  }

  /** BOT §5.3.4 Reset Recovery: Bulk-Only Mass Storage Reset, then clear both halts. */
  async resetRecovery(interfaceNumber = 0): Promise<ControlResult> {
    const r = await this.bus.ep0.control({
      bmRequestType: BotRequest.RESET.bmRequestType,
      bRequest: BotRequest.RESET.bRequest,
      wValue: 0,
      wIndex: interfaceNumber,
      wLength: 0,
    });
    this.bus.clearHaltOn('in');
    this.bus.clearHaltOn('out');
    return r;
  }

  async getMaxLun(setup: Partial<SetupPacket> = {}): Promise<ControlResult> {
    return this.bus.ep0.control({
      bmRequestType: BotRequest.GET_MAX_LUN.bmRequestType,
      bRequest: BotRequest.GET_MAX_LUN.bRequest,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
      ...setup,
    });
  }
}
