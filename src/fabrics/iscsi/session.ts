// An iSCSI session (RFC 7143 §4.2.2): the I_T nexus, the CmdSN window shared by its
// connections, and its tasks. Commands are handed to the core in CmdSN order (§4.2.2.1);
// a CmdSN outside [ExpCmdSN, MaxCmdSN] is dropped silently (§4.2.2.1, "out of window").

import type { Nexus } from '../../scsi/types';
import type { Negotiated } from './negotiation';
import { snAdd, snLe, snLt } from './pdu';
import type { SentTask } from './retention';
import type { Task } from './task';
import type { IscsiTargetDef } from './types';

/** Commands the initiator may have queued beyond ExpCmdSN (the CmdSN window). */
export const CMDSN_WINDOW = 128;

export type OrderVerdict = 'now' | 'queued' | 'drop';

/** The CmdSN ordering machine on its own (pure; unit-tested without sockets). */
export class CmdSnWindow {
  expCmdSN: number;
  private advertised: number;
  private readonly queue = new Map<number, () => void>();

  constructor(
    initial: number,
    private readonly window = CMDSN_WINDOW,
    /** Tasks in flight shrink the window, so a busy target back-pressures the initiator. */
    private readonly busy: () => number = () => 0,
  ) {
    this.expCmdSN = initial >>> 0;
    this.advertised = snAdd(this.expCmdSN, window - 1);
  }

  /** MaxCmdSN to put in the next PDU; never moves backwards (§4.2.2.1). */
  get maxCmdSN(): number {
    const room = Math.max(0, this.window - this.busy());
    const m = snAdd(this.expCmdSN, room - 1);
    if (snLt(this.advertised, m)) this.advertised = m;
    return this.advertised;
  }

  get queued(): number {
    return this.queue.size;
  }

  /**
   * Offer a PDU carrying `cmdSN`. Immediate PDUs run at once and do not advance ExpCmdSN.
   * Others run when their turn comes; `run` is called synchronously for every PDU that
   * becomes runnable, in CmdSN order.
   */
  offer(cmdSN: number, immediate: boolean, run: () => void): OrderVerdict {
    if (immediate) {
      run();
      return 'now';
    }
    cmdSN >>>= 0;
    const max = this.maxCmdSN;
    if (snLt(cmdSN, this.expCmdSN) || snLt(max, cmdSN)) return 'drop';
    if (cmdSN !== this.expCmdSN) {
      if (this.queue.has(cmdSN)) return 'drop'; // duplicate CmdSN
      this.queue.set(cmdSN, run);
      return 'queued';
    }
    this.expCmdSN = snAdd(this.expCmdSN, 1);
    run();
    for (let next = this.queue.get(this.expCmdSN); next !== undefined; next = this.queue.get(this.expCmdSN)) {
      this.queue.delete(this.expCmdSN);
      this.expCmdSN = snAdd(this.expCmdSN, 1);
      next();
    }
    return 'now';
  }

  /** Would `offer()` take this PDU (not out of window, not a duplicate)? */
  acceptable(cmdSN: number, immediate: boolean): boolean {
    if (immediate) return true;
    cmdSN >>>= 0;
    if (snLt(cmdSN, this.expCmdSN) || snLt(this.maxCmdSN, cmdSN)) return false;
    return !this.queue.has(cmdSN);
  }

  /** Is `cmdSN` inside the window (already accepted or acceptable)? */
  inWindow(cmdSN: number): boolean {
    return snLe(this.expCmdSN, cmdSN) && snLe(cmdSN, this.advertised);
  }

  clear(): void {
    this.queue.clear();
  }
}

export interface SessionConnection {
  readonly cid: number;
  destroy(reason: string, recoverable?: boolean): void;
  requestLogout(seconds: number): void;
  notifyDropped(cid: number): void;
  cleanupDone(): void;
}

/**
 * ERL 2 (§7.2.2): what a failed connection left behind. Its unfinished tasks stay in
 * Session.tasks with host null; `done` holds tasks whose status went out on it but was not
 * acknowledged. All of it goes when `timer` (Time2Wait + Time2Retain) fires.
 */
export interface FailedConnection {
  readonly cid: number;
  /** The connection object, in state cleanup-wait (or logged-out after Logout reason 2). */
  readonly conn: SessionConnection;
  readonly done: Map<number, SentTask>;
  readonly timer: NodeJS.Timeout;
}

export class Session {
  readonly tasks = new Map<number, Task>();
  readonly connections = new Set<SessionConnection>();
  /** ERL 2: failed connections by CID, waiting for reassignment of their tasks. */
  readonly failed = new Map<number, FailedConnection>();
  readonly cmdsn: CmdSnWindow;
  ended = false;

  constructor(
    readonly tsih: number,
    readonly isid: Buffer,
    readonly initiatorName: string,
    readonly discovery: boolean,
    readonly target: IscsiTargetDef | undefined,
    readonly nexus: Nexus | undefined,
    readonly negotiated: Negotiated,
    initialCmdSN: number,
  ) {
    this.cmdsn = new CmdSnWindow(initialCmdSN, CMDSN_WINDOW, () => this.tasks.size);
  }

  /** A task completed on a failed connection (TASK REASSIGN after a lost status). */
  takeCompleted(itt: number): SentTask | undefined {
    for (const f of this.failed.values()) {
      const e = f.done.get(itt);
      if (e !== undefined) {
        f.done.delete(itt);
        return e;
      }
    }
    return undefined;
  }

  get isidHex(): string {
    return this.isid.toString('hex');
  }

  /**
   * Same initiator port and target portal group (§6.3.5 session reinstatement key). §4.4.3:
   * a session is named by the initiator and target names and the SSID (ISID + TPGT), so a
   * second TPG of the same target (another path, another ALUA group) is another session.
   */
  matches(initiatorName: string, isid: Buffer, targetName: string | undefined, tpgt: number | undefined): boolean {
    return (
      this.initiatorName.toLowerCase() === initiatorName.toLowerCase() &&
      this.isid.equals(isid) &&
      (this.target?.iqn.toLowerCase() ?? '') === (targetName?.toLowerCase() ?? '') &&
      this.target?.tpgt === tpgt
    );
  }
}

/** SPC-4 §7.6.4.6 iSCSI TransportID, format 01b: "<name>,i,0x<ISID>" NUL-terminated, padded to 4. */
export function iscsiTransportId(initiatorName: string, isidHex: string): Buffer {
  const name = Buffer.from(`${initiatorName},i,0x${isidHex}\0`, 'utf8');
  let len = name.length + ((4 - (name.length & 3)) & 3);
  if (len < 20) len = 20; // ADDITIONAL LENGTH at least 20
  const b = Buffer.alloc(4 + len);
  b[0] = 0x40 | 0x05; // FORMAT CODE 01b, PROTOCOL IDENTIFIER 5 (iSCSI)
  b.writeUInt16BE(len, 2);
  name.copy(b, 4);
  return b;
}

export function buildNexus(initiatorName: string, isid: Buffer, target: IscsiTargetDef): Nexus {
  const isidHex = isid.toString('hex').padStart(12, '0');
  const tpgtHex = target.tpgt.toString(16).padStart(4, '0');
  const initiatorPort = `${initiatorName},i,0x${isidHex}`;
  const targetPort = `${target.iqn},t,0x${tpgtHex}`;
  return {
    id: `${initiatorPort}|${targetPort}`,
    initiatorName,
    initiatorPort,
    targetPort,
    relativeTargetPortId: target.relativePortId,
    protocolId: 5,
    transportId: iscsiTransportId(initiatorName, isidHex),
  };
}
