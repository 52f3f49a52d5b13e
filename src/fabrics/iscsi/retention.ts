// What a connection keeps of what it sent, for recovery at ErrorRecoveryLevel >= 1
// (RFC 7143 §7.1.4, §7.2, §11.16). At ERL 0 no Retention exists: nothing is kept.
//
//   byStatSN  every PDU that advanced StatSN, until the initiator's ExpStatSN passes it
//             (§4.2.2.2: ExpStatSN acknowledges status), for Status SNACK (§11.16.1 type 1)
//   byItt     per SCSI task whose status went out: its Data-In layout and a copy of the
//             data (§7.1.4.1: keep Data-In until acknowledged), for Data SNACK (type 0),
//             R-Data SNACK (type 3) and TASK REASSIGN after a connection loss (§7.2.2)
//   byTtt     the TTT of Data-In PDUs sent with the A bit → ITT, for DataACK (type 2)
//
// Bounded: at most `maxBytes` of Data-In copies and `maxStatus` status PDUs. Past that the
// oldest entries go; a SNACK for them is then answered with a Reject (§11.16.1).

import { snLt } from './pdu';

export interface SentStatus {
  readonly statSN: number;
  readonly bhs: Buffer;
  readonly data: Buffer | undefined;
}

/** How a SCSI task ended, as the fabric sends it (Data-In payload and status). */
export interface TaskOutcome {
  readonly itt: number;
  readonly lun: number;
  /** Data-In payload to send (at ERL >= 1 a copy: the core may reuse its buffer). */
  readonly data: Buffer;
  readonly status: number;
  /** §11.4.3 Response: 0 completed at target, 1 target failure. */
  readonly response: number;
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly residual: number;
  /** SenseLength-prefixed sense (§11.4.7.2) for a SCSI Response. */
  readonly senseBody: Buffer | undefined;
  /** Status rides in the last Data-In (S bit, §11.7.4) rather than a SCSI Response. */
  readonly collapsed: boolean;
  /** R2Ts sent for the task: part of ExpDataSN in the SCSI Response (§11.4.8). */
  readonly r2ts: number;
}

/** A task whose status has been sent: enough to resend or resegment all of it. */
export interface SentTask extends TaskOutcome {
  /** Offset of the Data-In PDU with DataSN n; PDU n spans offsets[n]..offsets[n+1]. */
  readonly offsets: number[];
  /** F/A/S flags of Data-In PDU n (§11.7.1). */
  readonly flags: number[];
  statSN: number;
  /** TTT carried by Data-In PDUs with the A bit; 0xffffffff when none had it. */
  ttt: number;
  /** DataSNs below this were acknowledged by a DataACK SNACK. */
  ackedDataSN: number;
}

export const RETAIN_MAX_BYTES = 32 * 1024 * 1024;
export const RETAIN_MAX_STATUS = 4096;

export class Retention {
  readonly byStatSN = new Map<number, SentStatus>();
  readonly byItt = new Map<number, SentTask>();
  readonly byTtt = new Map<number, number>();
  private bytes = 0;

  constructor(
    readonly maxBytes = RETAIN_MAX_BYTES,
    readonly maxStatus = RETAIN_MAX_STATUS,
  ) {}

  get retainedBytes(): number {
    return this.bytes;
  }

  keepStatus(s: SentStatus): void {
    this.byStatSN.set(s.statSN, s);
    if (this.byStatSN.size > this.maxStatus) {
      const first = this.byStatSN.keys().next();
      if (!first.done) this.byStatSN.delete(first.value);
    }
  }

  keepTask(t: SentTask): void {
    const old = this.byItt.get(t.itt);
    if (old !== undefined) this.dropTask(old);
    this.byItt.set(t.itt, t);
    this.bytes += t.data.length;
    if (t.ttt !== 0xffffffff) this.byTtt.set(t.ttt, t.itt);
    // Oldest first (Map keeps insertion order, which is StatSN order).
    for (const e of this.byItt.values()) {
      if (this.bytes <= this.maxBytes || e === t) break;
      this.dropTask(e);
    }
  }

  private dropTask(t: SentTask): void {
    this.byItt.delete(t.itt);
    this.bytes -= t.data.length;
    if (t.ttt !== 0xffffffff) this.byTtt.delete(t.ttt);
  }

  /** §4.2.2.2: ExpStatSN acknowledges every status below it; release what it covers. */
  acknowledge(expStatSN: number): void {
    for (const [sn] of this.byStatSN) {
      if (!snLt(sn, expStatSN)) break;
      this.byStatSN.delete(sn);
    }
    for (const t of this.byItt.values()) {
      if (!snLt(t.statSN, expStatSN)) break;
      this.dropTask(t);
    }
  }

  /** §11.16.1 DataACK: DataSNs below `begRun` of the transfer `ttt` are acknowledged. */
  dataAck(ttt: number, begRun: number): boolean {
    const itt = this.byTtt.get(ttt);
    const t = itt === undefined ? undefined : this.byItt.get(itt);
    if (t === undefined || begRun > t.offsets.length) return false;
    if (begRun > t.ackedDataSN) t.ackedDataSN = begRun;
    return true;
  }

  /** Status PDUs with StatSN in [begRun, begRun + runLength) (runLength 0 = all from begRun). */
  statusRun(begRun: number, runLength: number): SentStatus[] | null {
    const out: SentStatus[] = [];
    if (runLength === 0) {
      for (const s of this.byStatSN.values()) if (!snLt(s.statSN, begRun)) out.push(s);
      return out;
    }
    for (let i = 0; i < runLength; i++) {
      const s = this.byStatSN.get((begRun + i) >>> 0);
      if (s === undefined) return null;
      out.push(s);
    }
    return out;
  }

  /** Hand every task entry over (the connection failed at ERL 2) and forget them here. */
  takeTasks(): SentTask[] {
    const all = [...this.byItt.values()];
    this.byItt.clear();
    this.byTtt.clear();
    this.bytes = 0;
    return all;
  }

  clear(): void {
    this.byStatSN.clear();
    this.takeTasks();
  }
}
