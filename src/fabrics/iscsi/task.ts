// One SCSI task on a connection: its ScsiCommand for the core, and the data-out machinery
// (RFC 7143 §4.2.5.2 unsolicited data, §11.8 R2T, §11.7 Data-Out checks).
//
// Data-out is pulled: the core calls `dataOut(n)`, we allocate one Buffer of the length it
// asked for and fill it from immediate data, unsolicited Data-Out (kept as views until
// asked for) and R2T-solicited data. R2Ts are only sent once the core has asked.
//
// Recovery (ERL >= 1, §7.1.4.1 / §7.2.2): a Data-Out lost to a data digest error, or data
// left outstanding on a failed connection, becomes a hole; holes are solicited again with
// recovery R2Ts (§11.8) once the core's request covers them. Without errors `holes` stays
// null and none of this runs.

import type { ScsiCommand, ScsiResult, Nexus, TaskAttribute } from '../../scsi/types';
import type { Negotiated } from './negotiation';
import { RESERVED_TAG, type DataOut } from './pdu';

export class TaskError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'TaskError';
    this.code = code;
  }
}

/** What a task needs from its connection. */
export interface TaskHost {
  readonly negotiated: Negotiated;
  allocTtt(): number;
  sendR2t(task: Task, ttt: number, r2tSN: number, offset: number, length: number): void;
}

interface R2tState {
  readonly ttt: number;
  readonly r2tSN: number;
  readonly offset: number;
  readonly length: number;
  received: number;
  nextDataSN: number;
}

interface DataRequest {
  readonly buf: Buffer;
  readonly start: number;
  filled: number;
  readonly resolve: (b: Buffer) => void;
  readonly reject: (e: Error) => void;
}

interface Hole {
  offset: number;
  length: number;
}

/** Data digest errors one task may recover from before the connection is given up. */
export const MAX_TASK_RECOVERIES = 16;

/** §11.3.1.2 ATTR → SAM task attribute (untagged is treated as simple). */
const ATTRS: readonly TaskAttribute[] = ['simple', 'simple', 'ordered', 'head-of-queue', 'aca'];

export interface TaskInit {
  readonly itt: number;
  readonly lun: number;
  readonly cdb: Buffer;
  readonly attr: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly edtl: number;
  readonly bidiReadLength: number;
  /** F bit of the command PDU: no unsolicited Data-Out follows (§11.3.1.1). */
  readonly final: boolean;
  readonly immediateLength: number;
  readonly cmdSN: number;
  readonly immediate: boolean;
}

export class Task {
  readonly itt: number;
  readonly lun: number;
  readonly cmdSN: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly edtl: number;
  readonly cmd: ScsiCommand & { aborted: boolean };

  started = false;
  /** Response sent or suppressed; the ITT is free again. */
  finished = false;
  /** Result waiting for the rest of the unsolicited data (§4.2.5.2). */
  pendingResult: ScsiResult | null = null;
  dataInPdus = 0;
  r2tSN = 0;
  /** ERL 2: the result of a task whose connection failed, waiting for TASK REASSIGN. */
  held: { readonly r: ScsiResult | null } | null = null;
  /** ERL 2: CID of the failed connection this task was allegiant to (host is null). */
  orphanCid = -1;
  /** The connection the task is allegiant to (§7.2.2); null while orphaned at ERL 2. */
  host: TaskHost | null;

  // Most tasks are never waited for: the settled promise is only made when a TMF or a
  // logout asks for it, not once per command.
  private isSettled = false;
  private settledPromise: Promise<void> | null = null;
  private settledResolve: (() => void) | null = null;

  private readonly unsolicitedExpected: number;
  private unsolicitedReceived = 0;
  private unsolicitedDataSN = 0;
  private stash: { offset: number; data: Buffer }[] = [];
  private req: DataRequest | null = null;
  private consumed = 0;
  /** Open R2Ts by TTT; made on the first R2T (small writes ride in immediate data). */
  private r2ts: Map<number, R2tState> | null = null;
  private r2tNext = 0;
  private r2tLimit = 0;
  private holes: Hole[] | null = null;
  private recoveries = 0;
  onUnsolicitedDone: (() => void) | null = null;

  constructor(
    init: TaskInit,
    nexus: Nexus,
    host: TaskHost,
  ) {
    this.host = host;
    this.itt = init.itt;
    this.lun = init.lun;
    this.cmdSN = init.cmdSN;
    this.read = init.read;
    this.write = init.write;
    this.edtl = init.write ? init.edtl : 0;
    const neg = host.negotiated;
    // §13.10/§13.14: with InitialR2T=No the initiator sends unsolicited data up to
    // FirstBurstLength (immediate data included) unless F=1 on the command says it will not.
    this.unsolicitedExpected = !init.write
      ? 0
      : init.final || neg.initialR2T
        ? init.immediateLength
        : Math.min(neg.firstBurstLength, init.edtl);
    this.r2tNext = this.unsolicitedExpected;
    const self = this;
    this.cmd = {
      lun: init.lun,
      cdb: init.cdb,
      tag: init.itt,
      attribute: ATTRS[init.attr] ?? 'simple',
      nexus,
      dataInLength: init.read ? (init.write ? init.bidiReadLength : init.edtl) : 0,
      dataOutLength: this.edtl,
      dataOut: (n: number) => self.dataOut(n),
      aborted: false,
    };
  }

  /** Resolves once the core's execute() has settled (TMF responses wait for it). */
  get settled(): Promise<void> {
    if (this.isSettled) return Promise.resolve();
    if (this.settledPromise === null) this.settledPromise = new Promise<void>((r) => (this.settledResolve = r));
    return this.settledPromise;
  }

  markSettled(): void {
    this.isSettled = true;
    const r = this.settledResolve;
    this.settledResolve = null;
    if (r !== null) r();
  }

  get aborted(): boolean {
    return this.cmd.aborted;
  }

  /** All unsolicited data the command announced has arrived. */
  get unsolicitedComplete(): boolean {
    return this.unsolicitedReceived >= this.unsolicitedExpected;
  }

  /** Immediate data from the command PDU (§11.3.1: up to FirstBurstLength). */
  receiveImmediate(views: readonly Buffer[]): void {
    let off = 0;
    for (const v of views) {
      this.accept(off, v);
      off += v.length;
    }
    this.unsolicitedReceived = off;
    this.unsolicitedDataSN = 0;
  }

  /**
   * A Data-Out PDU for this task. Throws TaskError on DataSN / BufferOffset / TTT errors,
   * which at ERL 0 fail the connection (§7.1.4.2).
   */
  receiveDataOut(pdu: DataOut, views: readonly Buffer[]): void {
    if (this.cmd.aborted) return; // the rest of an aborted task's data is discarded
    const len = pdu.dataSegmentLength;
    if (pdu.ttt === RESERVED_TAG) {
      // Unsolicited data: DataSN from 0, offsets in order, within the first burst.
      if (pdu.dataSN !== this.unsolicitedDataSN) throw new TaskError('ISCSI_DATASN', `unsolicited DataSN ${pdu.dataSN}, expected ${this.unsolicitedDataSN}`);
      if (pdu.bufferOffset !== this.unsolicitedReceived) throw new TaskError('ISCSI_BUFFER_OFFSET', `unsolicited BufferOffset ${pdu.bufferOffset}, expected ${this.unsolicitedReceived}`);
      if (pdu.bufferOffset + len > this.unsolicitedExpected) throw new TaskError('ISCSI_FIRST_BURST', `unsolicited data beyond ${this.unsolicitedExpected} bytes`);
      this.unsolicitedDataSN++;
      this.unsolicitedReceived += len;
      if (!this.cmd.aborted) this.acceptViews(pdu.bufferOffset, views);
      if (this.unsolicitedComplete) this.onUnsolicitedDone?.();
      return;
    }
    const r2t = this.r2ts?.get(pdu.ttt);
    if (r2t === undefined) {
      if (this.cmd.aborted || this.finished) return; // R2T withdrawn by an abort: discard
      throw new TaskError('ISCSI_BAD_TTT', `Data-Out with unknown TTT 0x${pdu.ttt.toString(16)}`);
    }
    if (pdu.dataSN !== r2t.nextDataSN && this.host !== null && this.host.negotiated.errorRecoveryLevel >= 1) this.skipLost(r2t, pdu);
    if (pdu.dataSN !== r2t.nextDataSN) throw new TaskError('ISCSI_DATASN', `DataSN ${pdu.dataSN}, expected ${r2t.nextDataSN}`);
    if (pdu.bufferOffset !== r2t.offset + r2t.received) throw new TaskError('ISCSI_BUFFER_OFFSET', `BufferOffset ${pdu.bufferOffset}, expected ${r2t.offset + r2t.received}`);
    if (r2t.received + len > r2t.length) throw new TaskError('ISCSI_BURST', `Data-Out beyond the R2T's ${r2t.length} bytes`);
    r2t.nextDataSN++;
    r2t.received += len;
    this.acceptViews(pdu.bufferOffset, views);
    if (r2t.received === r2t.length) {
      this.r2ts!.delete(r2t.ttt);
      this.pumpR2ts();
    }
  }

  /** ScsiCommand.dataOut: the next `length` bytes, gathered into one Buffer. */
  dataOut(length: number): Promise<Buffer> {
    if (this.cmd.aborted) return Promise.reject(new TaskError('ISCSI_TASK_ABORTED', 'task aborted'));
    if (this.req !== null) return Promise.reject(new TaskError('ISCSI_DATAOUT_BUSY', 'dataOut() called before the previous call settled'));
    const len = Math.max(0, Math.min(length, this.edtl - this.consumed));
    if (len === 0) return Promise.resolve(Buffer.alloc(0));
    // Zero copy: the request is exactly one piece of data already here (a small write in
    // immediate data). The view keeps its received chunk alive, nothing else.
    if (this.stash.length === 1) {
      const only = this.stash[0]!;
      if (only.offset === this.consumed && only.data.length === len) {
        this.stash = [];
        this.consumed += len;
        return Promise.resolve(only.data);
      }
    }
    return new Promise<Buffer>((resolve, reject) => {
      const req: DataRequest = { buf: Buffer.allocUnsafe(len), start: this.consumed, filled: 0, resolve, reject };
      this.req = req;
      const end = req.start + len;
      // Unsolicited data that arrived before the core asked.
      const keep: { offset: number; data: Buffer }[] = [];
      for (const s of this.stash) {
        const sEnd = s.offset + s.data.length;
        if (sEnd <= req.start) continue;
        if (s.offset >= end) {
          keep.push(s);
          continue;
        }
        const from = Math.max(s.offset, req.start);
        const to = Math.min(sEnd, end);
        s.data.copy(req.buf, from - req.start, from - s.offset, to - s.offset);
        req.filled += to - from;
        if (sEnd > end) keep.push({ offset: end, data: s.data.subarray(end - s.offset) });
      }
      this.stash = keep;
      if (this.completeRequest()) return;
      // Solicit what unsolicited data will not bring.
      this.r2tNext = Math.max(this.r2tNext, req.start, this.unsolicitedExpected);
      this.r2tLimit = end;
      this.pumpR2ts();
    });
  }

  /** §11.8: send R2Ts while fewer than MaxOutstandingR2T are open, MaxBurstLength each. */
  private pumpR2ts(): void {
    const host = this.host;
    if (host === null) return;
    if (this.holes !== null && this.holes.length > 0) this.pumpHoles(host, (this.r2ts ??= new Map()));
    if (this.r2tNext >= this.r2tLimit) return;
    const neg = host.negotiated;
    const r2ts = (this.r2ts ??= new Map());
    while (!this.cmd.aborted && r2ts.size < neg.maxOutstandingR2T && this.r2tNext < this.r2tLimit) {
      const length = Math.min(neg.maxBurstLength, this.r2tLimit - this.r2tNext);
      const ttt = host.allocTtt();
      const st: R2tState = { ttt, r2tSN: this.r2tSN++, offset: this.r2tNext, length, received: 0, nextDataSN: 0 };
      r2ts.set(ttt, st);
      this.r2tNext += length;
      host.sendR2t(this, ttt, st.r2tSN, st.offset, length);
    }
  }

  /** Recovery R2Ts (§7.1.4.1) for holes below the end of the core's current request. */
  private pumpHoles(host: TaskHost, r2ts: Map<number, R2tState>): void {
    const holes = this.holes!;
    const neg = host.negotiated;
    while (!this.cmd.aborted && holes.length > 0 && r2ts.size < neg.maxOutstandingR2T) {
      const h = holes[0]!;
      if (h.offset >= this.r2tLimit) break;
      const length = Math.min(neg.maxBurstLength, h.length, this.r2tLimit - h.offset);
      const ttt = host.allocTtt();
      const st: R2tState = { ttt, r2tSN: this.r2tSN++, offset: h.offset, length, received: 0, nextDataSN: 0 };
      r2ts.set(ttt, st);
      h.offset += length;
      h.length -= length;
      if (h.length === 0) holes.shift();
      host.sendR2t(this, ttt, st.r2tSN, st.offset, length);
    }
  }

  private addHole(offset: number, length: number): void {
    if (length <= 0) return;
    const holes = (this.holes ??= []);
    let i = 0;
    while (i < holes.length && holes[i]!.offset < offset) i++;
    holes.splice(i, 0, { offset, length });
  }

  /**
   * ERL >= 1: a Data-Out for this task failed its data digest (§7.8). Its header is sound:
   * account for it in the sequence (so later PDUs are accepted) and remember the range as a
   * hole to solicit again with a recovery R2T.
   */
  dataLost(pdu: DataOut): void {
    if (this.cmd.aborted || this.finished) return;
    if (++this.recoveries > MAX_TASK_RECOVERIES) throw new TaskError('ISCSI_TOO_MANY_RECOVERIES', `more than ${MAX_TASK_RECOVERIES} data digest errors on one task`);
    const len = pdu.dataSegmentLength;
    if (pdu.ttt === RESERVED_TAG) {
      if (pdu.dataSN !== this.unsolicitedDataSN || pdu.bufferOffset !== this.unsolicitedReceived || pdu.bufferOffset + len > this.unsolicitedExpected) {
        throw new TaskError('ISCSI_DATASN', `damaged unsolicited Data-Out does not fit the sequence (DataSN ${pdu.dataSN}, offset ${pdu.bufferOffset})`);
      }
      this.unsolicitedDataSN++;
      this.unsolicitedReceived += len;
      this.addHole(pdu.bufferOffset, len);
      this.pumpR2ts();
      if (this.unsolicitedComplete) this.onUnsolicitedDone?.();
      return;
    }
    const r2t = this.r2ts?.get(pdu.ttt);
    if (r2t === undefined) throw new TaskError('ISCSI_BAD_TTT', `damaged Data-Out with unknown TTT 0x${pdu.ttt.toString(16)}`);
    if (pdu.dataSN !== r2t.nextDataSN || pdu.bufferOffset !== r2t.offset + r2t.received || r2t.received + len > r2t.length) {
      throw new TaskError('ISCSI_DATASN', `damaged Data-Out does not fit R2T 0x${r2t.ttt.toString(16)} (DataSN ${pdu.dataSN}, offset ${pdu.bufferOffset})`);
    }
    r2t.nextDataSN++;
    r2t.received += len;
    this.addHole(pdu.bufferOffset, len);
    if (r2t.received === r2t.length) {
      this.r2ts!.delete(r2t.ttt);
      this.pumpR2ts();
    }
  }

  /**
   * ERL >= 1: Data-Out PDUs before this one were lost (discarded for a header digest error,
   * §7.8): a DataSN gap with a matching BufferOffset gap. The gap becomes a hole (recovery
   * R2T later); anything that does not line up is still a sequence error.
   */
  private skipLost(r2t: R2tState, pdu: DataOut): void {
    const expected = r2t.offset + r2t.received;
    if (pdu.dataSN < r2t.nextDataSN || pdu.bufferOffset <= expected || pdu.bufferOffset + pdu.dataSegmentLength > r2t.offset + r2t.length) return;
    if (++this.recoveries > MAX_TASK_RECOVERIES) throw new TaskError('ISCSI_TOO_MANY_RECOVERIES', `more than ${MAX_TASK_RECOVERIES} lost Data-Out sequences on one task`);
    this.addHole(expected, pdu.bufferOffset - expected);
    r2t.received = pdu.bufferOffset - r2t.offset;
    r2t.nextDataSN = pdu.dataSN;
  }

  /** Data Outstanding on open R2Ts and unsent unsolicited data become holes (§7.2.2). */
  private withdrawOutstanding(): void {
    if (this.r2ts !== null) {
      for (const r of this.r2ts.values()) this.addHole(r.offset + r.received, r.length - r.received);
      this.r2ts.clear();
    }
    if (!this.unsolicitedComplete) {
      // §7.2.2: unsolicited data is not resent after reassignment; the target asks for it.
      this.addHole(this.unsolicitedReceived, this.unsolicitedExpected - this.unsolicitedReceived);
      this.unsolicitedReceived = this.unsolicitedExpected;
    }
  }

  /** ERL 2: the connection failed; keep the task, stop soliciting until it is reassigned. */
  orphan(cid: number): void {
    this.host = null;
    this.orphanCid = cid;
    this.withdrawOutstanding();
  }

  /**
   * TASK REASSIGN (§11.5.1, §7.2.2): a new connection takes the task over. Data not yet
   * received is solicited again with fresh R2Ts on it.
   */
  reassign(host: TaskHost): void {
    this.withdrawOutstanding();
    this.host = host;
    this.orphanCid = -1;
    this.pumpR2ts();
    if (this.unsolicitedComplete) this.onUnsolicitedDone?.();
  }

  /** §11.16.1 R2T SNACK: resend open R2Ts with R2TSN in the run; false if one is unknown. */
  resendR2ts(begRun: number, runLength: number): boolean {
    const host = this.host;
    if (host === null || this.r2ts === null) return false;
    const open = [...this.r2ts.values()].filter((r) => r.r2tSN >= begRun && (runLength === 0 || r.r2tSN < begRun + runLength));
    if (open.length === 0 || (runLength !== 0 && open.length !== runLength)) return false;
    for (const r of open) host.sendR2t(this, r.ttt, r.r2tSN, r.offset, r.length);
    return true;
  }

  private acceptViews(offset: number, views: readonly Buffer[]): void {
    for (const v of views) {
      this.accept(offset, v);
      offset += v.length;
    }
  }

  /** Place bytes at buffer offset `offset`: into the open request, else keep as a view. */
  private accept(offset: number, data: Buffer): void {
    const req = this.req;
    if (req !== null) {
      const end = req.start + req.buf.length;
      const dEnd = offset + data.length;
      const from = Math.max(offset, req.start);
      const to = Math.min(dEnd, end);
      if (to > from) {
        data.copy(req.buf, from - req.start, from - offset, to - offset);
        req.filled += to - from;
      }
      if (dEnd > end) this.stash.push({ offset: Math.max(offset, end), data: data.subarray(Math.max(offset, end) - offset) });
      this.completeRequest();
      return;
    }
    if (offset + data.length > this.consumed) this.stash.push({ offset, data });
  }

  private completeRequest(): boolean {
    const req = this.req;
    if (req === null || req.filled < req.buf.length) return false;
    this.req = null;
    this.consumed = req.start + req.buf.length;
    req.resolve(req.buf);
    return true;
  }

  /** TMF / connection loss: no more data for the core, no response (§11.5.1). */
  abort(reason = 'task aborted'): void {
    if (this.cmd.aborted) return;
    this.cmd.aborted = true;
    this.r2ts?.clear();
    this.holes = null;
    this.stash = [];
    this.r2tLimit = this.r2tNext;
    const req = this.req;
    this.req = null;
    req?.reject(new TaskError('ISCSI_TASK_ABORTED', reason));
  }

  /** Release buffered data once the response is out. */
  release(): void {
    this.stash = [];
    this.r2ts?.clear();
  }
}
