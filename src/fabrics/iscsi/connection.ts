// One TCP connection of an iSCSI target: framing, the login phase, and the full feature
// phase (RFC 7143 §4, §7, §11). Per-connection state lives in state.ts; CmdSN ordering in
// session.ts; data-out gathering in task.ts. Everything on the data path is synchronous
// from PDU arrival to socket write. Outgoing PDUs are gathered per event-loop turn and
// leave in one corked batch (one writev), so QD32 costs one syscall per batch, not per PDU.
//
// Error recovery (§7): at ERL 0 nothing sent is kept (`retention` is null). At ERL >= 1 sent
// status and Data-In are kept until acknowledged (retention.ts) for SNACK, and digest errors
// are recovered within the connection. At ERL 2 a failed connection's tasks wait in the
// session (server.connectionFailed) for TASK REASSIGN on another connection.

import type { Socket } from 'node:net';
import type { ScsiResult, TaskManagementFunction, TmfResponse } from '../../scsi/types';
import { Status } from '../../scsi/types';
import { crc32cFinal, crc32cInit, crc32cUpdate, digestBytes } from './crc32c';
import { FramingError, PduFramer, type FramerEvent } from './framer';
import { LoginMachine, ISCSI_VERSION, type LoginContext } from './login';
import { rfcDefaults, type Negotiated } from './negotiation';
import { Retention, type SentTask, type TaskOutcome } from './retention';
import {
  AsyncEvent,
  BHS_LENGTH,
  LoginStatus,
  LogoutReason,
  LogoutResponseCode,
  Opcode,
  PAD,
  PduError,
  RESERVED_TAG,
  RejectReason,
  Stage,
  TmfFunction,
  TmfResponseCode,
  decodeBhs,
  encodeAsyncMessage,
  encodeDataIn,
  encodeLoginResponse,
  encodeLogoutResponse,
  encodeNopIn,
  encodeR2t,
  encodeReject,
  encodeScsiResponse,
  encodeTextResponse,
  encodeTmfResponse,
  Flag,
  padLength,
  SnackType,
  type DataOut,
  type InitiatorPdu,
  type LoginRequest,
  type LogoutRequest,
  type NopOut,
  type ScsiCommandPdu,
  type SeqNumbers,
  type SnackRequest,
  type TaskMgmtRequest,
  type TextRequest,
} from './pdu';
import type { Session, SessionConnection } from './session';
import { accepts, transition, type ConnState } from './state';
import { Task, TaskError, type TaskHost } from './task';
import { TextError, decodeText, encodeText, type TextPair } from './text';
import type { IscsiTargetDef, Logger } from './types';

/** What a connection needs from the server. */
export interface ConnectionOwner extends LoginContext {
  readonly log: Logger;
  /** Targets this initiator may see in SendTargets. */
  discoverable(initiatorName: string): readonly IscsiTargetDef[];
  /** Bind a finished login to a session (new, reinstated or joined); a number is a login status. */
  completeLogin(conn: Connection, login: LoginMachine): Session | { status: number; reason: string };
  /** The connection is gone; end the session if it was the last one and nothing waits for recovery. */
  connectionClosed(conn: Connection): void;
  /** ERL 2 (§7.2.2): keep the connection's tasks for TASK REASSIGN until Time2Retain runs out. */
  connectionFailed(conn: Connection): void;
  /** Drop what a failed connection left for recovery (its tasks end now). */
  discardFailed(session: Session, cid: number): void;
  /** End a session (logout): abort tasks, tell the core the nexus is gone. */
  endSession(session: Session, reason: string): void;
  /** TARGET COLD RESET (§11.5.1): drop every connection to this target. */
  coldReset(target: IscsiTargetDef): void;
}

const EMPTY = Buffer.alloc(0);

/** Write high-water mark: stop reading new PDUs until the socket drains. */
const WRITE_HIGH_WATER = 16 * 1024 * 1024;
/** Seconds given to the initiator to log out after an Async logout request (§11.9.1, Parameter3). */
const LOGOUT_GRACE = 2;
const TMF_WAIT_MS = 30_000;

/** ScsiResult residuals vs. the iSCSI expected lengths (§11.4.5). */
export function computeResiduals(
  t: { read: boolean; write: boolean; edtl: number },
  readLength: number,
  r: ScsiResult,
): { send: number; overflow: boolean; underflow: boolean; residual: number } {
  const dataIn = r.dataIn?.length ?? 0;
  if (t.write && r.dataOutExpected !== undefined) {
    const exp = r.dataOutExpected;
    const send = t.read ? Math.min(dataIn, readLength) : 0;
    if (exp > t.edtl) return { send, overflow: true, underflow: false, residual: exp - t.edtl };
    if (exp < t.edtl) return { send, overflow: false, underflow: true, residual: t.edtl - exp };
    return { send, overflow: false, underflow: false, residual: 0 };
  }
  if (t.read || dataIn > 0) {
    const avail = t.read ? readLength : 0;
    const send = Math.min(dataIn, avail);
    if (dataIn > avail) return { send, overflow: true, underflow: false, residual: dataIn - avail };
    if (dataIn < avail) return { send, overflow: false, underflow: true, residual: avail - dataIn };
    return { send, overflow: false, underflow: false, residual: 0 };
  }
  if (!t.write && (r.dataOutExpected ?? 0) > 0) return { send: 0, overflow: true, underflow: false, residual: r.dataOutExpected! };
  return { send: 0, overflow: false, underflow: false, residual: 0 };
}

const TMF_NAMES: Readonly<Record<number, TaskManagementFunction>> = {
  [TmfFunction.ABORT_TASK]: 'abort-task',
  [TmfFunction.ABORT_TASK_SET]: 'abort-task-set',
  [TmfFunction.CLEAR_ACA]: 'clear-aca',
  [TmfFunction.CLEAR_TASK_SET]: 'clear-task-set',
  [TmfFunction.LOGICAL_UNIT_RESET]: 'lun-reset',
  [TmfFunction.TARGET_WARM_RESET]: 'target-warm-reset',
  [TmfFunction.TARGET_COLD_RESET]: 'target-cold-reset',
};

/** SAM service response → §11.6.1 response code. */
export function tmfResponseCode(r: TmfResponse): number {
  switch (r) {
    case 'function-complete':
    case 'function-succeeded':
      return TmfResponseCode.FUNCTION_COMPLETE;
    case 'task-does-not-exist':
      return TmfResponseCode.TASK_DOES_NOT_EXIST;
    case 'incorrect-lun':
      return TmfResponseCode.LUN_DOES_NOT_EXIST;
    case 'not-supported':
      return TmfResponseCode.NOT_SUPPORTED;
    case 'function-rejected':
      return TmfResponseCode.FUNCTION_REJECTED;
  }
}

let connectionIds = 0;

function flushConnection(c: Connection): void {
  c.flush();
}

export class Connection implements TaskHost, SessionConnection {
  readonly id = ++connectionIds;
  state: ConnState = 'free';
  session: Session | null = null;
  negotiated: Negotiated = rfcDefaults();
  cid = 0;
  readonly framer = new PduFramer();
  readonly login: LoginMachine;
  private statSN = 0;
  private loginText: Buffer[] = [];
  private loginTextLength = 0;
  private nextTtt = 1;
  private textIn: Buffer[] = [];
  private textOut: { ttt: number; itt: number; rest: Buffer } | null = null;
  private headerDigest = false;
  private dataDigest = false;
  private lastRx = Date.now();
  private pingTtt: number | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private pingDeadline: NodeJS.Timeout | null = null;
  private logoutTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** ERL >= 1: sent PDUs kept for SNACK and reassignment; null at ERL 0 (nothing kept). */
  retention: Retention | null = null;
  /** ERL 2: on failure, keep this connection's tasks for reassignment (§7.2.2). */
  private recoverable = true;
  /** The target dropped this connection (protocol error), not the initiator. */
  droppedByTarget = false;
  /** PDUs (header, data, pad, digest buffers) waiting for the end-of-turn flush. */
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  readonly remote: string;

  constructor(
    readonly socket: Socket,
    private readonly owner: ConnectionOwner,
  ) {
    // §4.4.3: which target portal group a login reaches depends on the portal it came in on
    // (one target may have several TPGs, e.g. one per ALUA path).
    const local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    this.login = new LoginMachine({
      lookupTarget: (name) => owner.lookupTarget(name, local),
      get discoveryAuth() {
        return owner.discoveryAuth;
      },
      ...(owner.discoveryParams ? { discoveryParams: owner.discoveryParams } : {}),
      ...(owner.random ? { random: owner.random } : {}),
    });
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.log('debug', `socket error: ${e.message}`));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => socket.resume());
  }

  private log(level: 'error' | 'warn' | 'info' | 'debug', msg: string): void {
    this.owner.log(level, `iscsi ${this.remote}: ${msg}`);
  }

  // ------------------------------------------------------------------ input

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastRx = Date.now();
    this.framer.push(chunk);
    try {
      for (let ev = this.framer.next(); ev !== null && !this.closed; ev = this.framer.next()) this.onEvent(ev);
    } catch (e) {
      if (e instanceof FramingError || e instanceof TaskError || e instanceof PduError || e instanceof TextError) {
        this.fail(`${e.code}: ${e.message}`);
      } else {
        this.log('error', `internal error: ${(e as Error).stack ?? String(e)}`);
        this.fail('internal error');
      }
    }
    if (this.socket.writableLength + this.outBytes > WRITE_HIGH_WATER) this.socket.pause();
  }

  private onEvent(ev: FramerEvent): void {
    if (ev.type === 'header-digest-error') {
      // §7.8 (ERL >= 1): discard silently; the initiator recovers with SNACK or a retry.
      this.log('debug', 'header digest error: PDU discarded');
      return;
    }
    if (ev.type === 'oversized') {
      // §7.? limits: a data segment over our MaxRecvDataSegmentLength is a protocol error.
      const op = ev.bhs[0]! & 0x3f;
      this.reject(RejectReason.PROTOCOL_ERROR, ev.bhs);
      if (this.state !== 'full-feature' || op === Opcode.SCSI_COMMAND || op === Opcode.DATA_OUT) this.fail(`data segment of ${ev.dataLength} bytes over the limit`);
      return;
    }
    if (ev.type === 'data-digest-error') {
      const op = ev.bhs[0]! & 0x3f;
      this.reject(RejectReason.DATA_DIGEST_ERROR, ev.bhs);
      if (this.retention !== null && this.state === 'full-feature') return this.onDataDigestError(ev.bhs);
      // §7.8: at ERL 0 a bad Data-Out or immediate data fails the task; we drop the connection.
      if (op === Opcode.SCSI_COMMAND || op === Opcode.DATA_OUT || this.state !== 'full-feature') this.fail('data digest error');
      return;
    }
    let pdu: InitiatorPdu;
    try {
      pdu = decodeBhs(ev.bhs);
    } catch (e) {
      if (!(e instanceof PduError)) throw e;
      if (this.state !== 'full-feature') return this.destroy(e.message);
      this.reject(e.reason, ev.bhs);
      return;
    }
    const ret = this.retention;
    // §4.2.2.2: ExpStatSN acknowledges every status below it.
    if (ret !== null && pdu.kind !== 'login') ret.acknowledge(pdu.expStatSN);
    const discovery = this.session?.discovery ?? false;
    if (!accepts(this.state, pdu.kind, discovery)) {
      if (this.state === 'free' || this.state === 'login') return this.destroy(`${pdu.kind} PDU before login completed`);
      if (this.state === 'full-feature') this.reject(pdu.kind === 'scsi-command' || pdu.kind === 'task-mgmt' ? RejectReason.COMMAND_NOT_SUPPORTED : RejectReason.PROTOCOL_ERROR, ev.bhs);
      return;
    }
    switch (pdu.kind) {
      case 'login':
        return this.onLogin(pdu, ev.data);
      case 'nop-out':
        return this.onNopOut(pdu, ev.data);
      case 'scsi-command':
        return this.onScsiCommand(pdu, ev.ahs, ev.data, ev.bhs);
      case 'data-out':
        return this.onDataOut(pdu, ev.data, ev.bhs);
      case 'task-mgmt':
        return this.ordered(pdu.cmdSN, pdu.immediate, () => void this.onTmf(pdu));
      case 'text':
        return this.ordered(pdu.cmdSN, pdu.immediate, () => this.onText(pdu, ev.data));
      case 'logout':
        return this.ordered(pdu.cmdSN, pdu.immediate, () => void this.onLogout(pdu));
      case 'snack':
        // §11.16: SNACK needs ERL >= 1.
        if (ret === null) return this.reject(RejectReason.SNACK_REJECT, ev.bhs);
        return this.onSnack(pdu, ev.bhs);
    }
  }

  /**
   * §7.8 at ERL >= 1, after the Reject: a damaged Data-Out becomes a hole that a recovery R2T
   * asks for again; a damaged command (immediate data) is discarded without consuming its
   * CmdSN, so the initiator's retry fills the slot; other PDUs need nothing more.
   */
  private onDataDigestError(bhs: Buffer): void {
    let pdu: InitiatorPdu;
    try {
      pdu = decodeBhs(bhs);
    } catch (e) {
      if (e instanceof PduError) return;
      throw e;
    }
    if (pdu.kind !== 'data-out') return;
    const task = this.session!.tasks.get(pdu.itt);
    if (task === undefined || task.finished || task.host !== this) return;
    try {
      task.dataLost(pdu);
    } catch (e) {
      if (!(e instanceof TaskError)) throw e;
      this.fail(`${e.code}: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------ SNACK (ERL >= 1)

  private onSnack(pdu: SnackRequest, bhs: Buffer): void {
    const ret = this.retention!;
    switch (pdu.type) {
      case SnackType.STATUS: {
        // §11.16.1: resend responses with StatSN in [BegRun, BegRun+RunLength), 0 = all.
        const run = ret.statusRun(pdu.begRun, pdu.runLength);
        if (run === null || run.length === 0) return this.reject(RejectReason.PROTOCOL_ERROR, bhs);
        for (const st of run) this.resendStatus(st.bhs, st.data);
        return;
      }
      case SnackType.DATA_ACK:
        if (!ret.dataAck(pdu.ttt, pdu.begRun)) this.reject(RejectReason.INVALID_DATA_ACK, bhs);
        return;
      case SnackType.DATA_R2T: {
        const t = this.session!.tasks.get(pdu.itt);
        if (t !== undefined && !t.finished && t.host === this) {
          // A write in progress: the initiator missed R2Ts (R2TSN run).
          if (!t.resendR2ts(pdu.begRun, pdu.runLength)) this.reject(RejectReason.PROTOCOL_ERROR, bhs);
          return;
        }
        const e = ret.byItt.get(pdu.itt);
        const end = e === undefined ? 0 : pdu.runLength === 0 ? e.offsets.length : pdu.begRun + pdu.runLength;
        if (e === undefined || pdu.begRun < e.ackedDataSN || pdu.begRun >= end || end > e.offsets.length) return this.reject(RejectReason.PROTOCOL_ERROR, bhs);
        for (let n = pdu.begRun; n < end; n++) this.resendDataIn(e, n);
        return;
      }
      case SnackType.R_DATA: {
        // §11.16.3: resend everything unacknowledged, resegmented for the current
        // MaxRecvDataSegmentLength; the status follows in a SCSI Response with the SNACK Tag.
        const e = ret.byItt.get(pdu.itt);
        if (e === undefined) return this.reject(RejectReason.PROTOCOL_ERROR, bhs);
        const from = Math.max(e.ackedDataSN, Math.min(pdu.begRun, e.offsets.length));
        const off = e.offsets[from] ?? e.data.length;
        e.offsets.length = from;
        e.flags.length = from;
        this.transmit(e, off, from, false, e.statSN, pdu.ttt, e);
        return;
      }
      default:
        return this.reject(RejectReason.PROTOCOL_ERROR, bhs);
    }
  }

  /** A kept response again, same StatSN, current ExpCmdSN/MaxCmdSN (§11.16.1 Status SNACK). */
  private resendStatus(bhs: Buffer, data: Buffer | undefined): void {
    const b = Buffer.from(bhs);
    const s = this.session!;
    b.writeUInt32BE(s.cmdsn.expCmdSN, 28);
    b.writeUInt32BE(s.cmdsn.maxCmdSN, 32);
    this.writePdu(b, data);
  }

  /** Data-In PDU `n` of a completed task, as first sent (§11.16.1 Data SNACK). */
  private resendDataIn(e: SentTask, n: number): void {
    const off = e.offsets[n]!;
    const end = e.offsets[n + 1] ?? e.data.length;
    const fl = e.flags[n]!;
    const sn = this.seq(false);
    const ack = (fl & Flag.A) !== 0;
    const hdr = encodeDataIn({
      itt: e.itt,
      lun: e.lun,
      final: (fl & Flag.F) !== 0,
      statusPresent: (fl & Flag.S) !== 0,
      status: e.status,
      overflow: e.overflow,
      underflow: e.underflow,
      residualCount: e.residual,
      statSN: e.statSN,
      expCmdSN: sn.expCmdSN,
      maxCmdSN: sn.maxCmdSN,
      dataSN: n,
      bufferOffset: off,
      dataSegmentLength: end - off,
      ack,
      ttt: ack ? e.ttt : RESERVED_TAG,
    });
    this.writePdu(hdr, e.data.subarray(off, end));
  }

  private ordered(cmdSN: number, immediate: boolean, run: () => void): void {
    const s = this.session!;
    const v = s.cmdsn.offer(cmdSN, immediate, run);
    if (v === 'drop') this.log('debug', `CmdSN ${cmdSN} outside [${s.cmdsn.expCmdSN}, ${s.cmdsn.maxCmdSN}]: dropped`);
  }

  // ------------------------------------------------------------------ output

  private seq(advance: boolean): SeqNumbers {
    const s = this.session;
    const statSN = this.statSN;
    if (advance) this.statSN = (this.statSN + 1) >>> 0;
    if (s === null) {
      const c = this.login.cmdSN;
      return { statSN, expCmdSN: c, maxCmdSN: c };
    }
    return { statSN, expCmdSN: s.cmdsn.expCmdSN, maxCmdSN: s.cmdsn.maxCmdSN };
  }

  /** Queue one PDU (header + optional data) with digests; it leaves with this turn's batch. */
  private writePdu(bhs: Buffer, data?: Buffer): void {
    if (this.closed) return;
    const out = this.out;
    out.push(bhs);
    let n = bhs.length;
    if (this.headerDigest) {
      out.push(digestBytes(crc32cFinal(crc32cUpdate(crc32cInit, bhs))));
      n += 4;
    }
    if (data !== undefined && data.length > 0) {
      out.push(data);
      n += data.length;
      const pad = padLength(data.length);
      if (pad > 0) {
        out.push(PAD[pad]!);
        n += pad;
      }
      if (this.dataDigest) {
        let c = crc32cUpdate(crc32cInit, data);
        if (pad > 0) c = crc32cUpdate(c, PAD[pad]!);
        out.push(digestBytes(crc32cFinal(c)));
        n += 4;
      }
    }
    this.outBytes += n;
    if (!this.flushScheduled) {
      // nextTick runs after the microtasks of this turn: every response the core completes
      // in the same turn joins the batch.
      this.flushScheduled = true;
      process.nextTick(flushConnection, this);
    }
  }

  private send(bhs: Buffer, data?: Buffer): void {
    this.writePdu(bhs, data);
    const ret = this.retention;
    if (ret !== null) {
      // Keep what advanced StatSN (not R2Ts, not our NOP-In pings) for Status SNACK.
      const op = bhs[0]! & 0x3f;
      if (op !== Opcode.R2T && op !== Opcode.DATA_IN && !(op === Opcode.NOP_IN && bhs.readUInt32BE(16) === RESERVED_TAG)) {
        ret.keepStatus({ statSN: bhs.readUInt32BE(24), bhs, data });
      }
    }
  }

  /** Write the queued PDUs: one write, or one corked writev for several buffers. */
  flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    this.outBytes = 0;
    if (this.closed) return;
    const sock = this.socket;
    if (out.length === 1) {
      sock.write(out[0]!);
    } else {
      sock.cork();
      for (let i = 0; i < out.length; i++) sock.write(out[i]!);
      sock.uncork();
    }
    if (sock.writableLength > WRITE_HIGH_WATER) sock.pause();
  }

  private reject(reason: number, rejected: Buffer): void {
    if (this.closed) return;
    this.log('debug', `Reject reason 0x${reason.toString(16)} for opcode 0x${(rejected[0]! & 0x3f).toString(16)}`);
    // §11.17: the data segment carries the rejected PDU's header.
    this.send(encodeReject({ ...this.seq(true), reason, dataSN: 0 }), Buffer.from(rejected.subarray(0, BHS_LENGTH)));
  }

  // ------------------------------------------------------------------ login

  private onLogin(pdu: LoginRequest, data: readonly Buffer[]): void {
    this.state = transition(this.state, 'login-pdu');
    if (this.loginText.length === 0 && this.loginTextLength === 0 && this.login.itt === 0 && this.statSN === 0) {
      // §11.13.9: the first Login Response carries the starting StatSN; continue the initiator's count.
      this.statSN = pdu.expStatSN >>> 0;
    }
    for (const d of data) {
      this.loginText.push(Buffer.from(d));
      this.loginTextLength += d.length;
    }
    if (this.loginTextLength > 65536) return this.loginFail(pdu, LoginStatus.OUT_OF_RESOURCES, 'login text too long');
    if (pdu.continue) {
      // §11.12.2: C=1, more text follows; answer with an empty response in the same stage.
      this.send(encodeLoginResponse({ ...this.seq(true), transit: false, continue: false, csg: pdu.csg, nsg: pdu.nsg, versionMax: ISCSI_VERSION, versionActive: ISCSI_VERSION, isid: pdu.isid, tsih: pdu.tsih, itt: pdu.itt, status: 0, dataSegmentLength: 0 }));
      return;
    }
    const text = Buffer.concat(this.loginText);
    this.loginText = [];
    this.loginTextLength = 0;
    let pairs: TextPair[];
    try {
      pairs = decodeText(text);
    } catch (e) {
      if (e instanceof TextError) return this.loginFail(pdu, LoginStatus.INITIATOR_ERROR, e.message);
      throw e;
    }
    const step = this.login.process(pdu, pairs);
    if (step.kind === 'fail') return this.loginFail(pdu, step.status, step.reason);
    if (step.kind === 'respond') {
      const body = encodeText(step.pairs);
      this.send(encodeLoginResponse({ ...this.seq(true), transit: step.transit, continue: false, csg: step.csg, nsg: step.nsg, versionMax: ISCSI_VERSION, versionActive: ISCSI_VERSION, isid: pdu.isid, tsih: pdu.tsih, itt: pdu.itt, status: 0, dataSegmentLength: body.length }), body);
      return;
    }
    // Final response: bind to a session, then switch digests and limits for what follows.
    const bound = this.owner.completeLogin(this, this.login);
    if (!('tsih' in bound)) return this.loginFail(pdu, bound.status, bound.reason);
    this.session = bound;
    this.cid = this.login.cid;
    const neg = this.login.negotiated;
    this.negotiated = { ...bound.negotiated, headerDigest: neg.headerDigest, dataDigest: neg.dataDigest, initiatorMaxRecvDataSegmentLength: neg.initiatorMaxRecvDataSegmentLength };
    const body = encodeText(step.pairs);
    this.send(encodeLoginResponse({ ...this.seq(true), transit: true, continue: false, csg: step.csg, nsg: Stage.FULL_FEATURE, versionMax: ISCSI_VERSION, versionActive: ISCSI_VERSION, isid: pdu.isid, tsih: bound.tsih, itt: pdu.itt, status: 0, dataSegmentLength: body.length }), body);
    this.state = transition(this.state, 'login-complete');
    // §13.1: digests start with the first PDU after the final Login Response.
    this.headerDigest = this.framer.headerDigest = neg.headerDigest;
    this.dataDigest = this.framer.dataDigest = neg.dataDigest;
    this.framer.maxDataSegmentLength = this.login.declaredMrdsl ? this.login.params.maxRecvDataSegmentLength : 8192;
    if (!bound.discovery && bound.negotiated.errorRecoveryLevel >= 1) {
      // §7.1.4: ERL >= 1 keeps sent PDUs until acknowledged and survives digest errors.
      this.retention = new Retention();
      this.framer.headerDigestRecovery = true;
    }
    const n = this.negotiated;
    const digests = `HeaderDigest=${n.headerDigest ? 'CRC32C' : 'None'} DataDigest=${n.dataDigest ? 'CRC32C' : 'None'}`;
    this.log('info', `login ${this.login.sessionType} ${this.login.initiatorName} isid 0x${bound.isidHex} tsih ${bound.tsih} cid ${this.cid}${bound.target ? ' → ' + bound.target.iqn : ''} (${digests} ERL=${n.errorRecoveryLevel})`);
    this.startPings();
  }

  private loginFail(pdu: LoginRequest, status: number, reason: string): void {
    this.log('info', `login rejected 0x${status.toString(16).padStart(4, '0')}: ${reason}`);
    this.send(encodeLoginResponse({ ...this.seq(true), transit: false, continue: false, csg: pdu.csg, nsg: pdu.nsg, versionMax: ISCSI_VERSION, versionActive: ISCSI_VERSION, isid: pdu.isid, tsih: 0, itt: pdu.itt, status, dataSegmentLength: 0 }));
    this.state = transition(this.state, 'login-failed');
    this.endSoon();
  }

  // ------------------------------------------------------------------ NOP

  private onNopOut(pdu: NopOut, data: readonly Buffer[]): void {
    if (pdu.itt === RESERVED_TAG) {
      // §11.18: an answer to our NOP-In ping (TTT echoed), never a new request.
      if (this.pingTtt !== null && pdu.ttt === this.pingTtt) this.pingAnswered();
      return;
    }
    const echo = data.length === 0 ? undefined : data.length === 1 ? Buffer.from(data[0]!) : Buffer.concat(data as Buffer[]);
    this.ordered(pdu.cmdSN, pdu.immediate, () => {
      // §11.19: the reply echoes the ping data, trimmed to the initiator's limit.
      const d = echo?.subarray(0, this.negotiated.initiatorMaxRecvDataSegmentLength);
      const sn = this.seq(true);
      this.send(encodeNopIn({ statSN: sn.statSN, expCmdSN: sn.expCmdSN, maxCmdSN: sn.maxCmdSN, itt: pdu.itt, ttt: RESERVED_TAG, lun: pdu.lun, dataSegmentLength: d?.length ?? 0 }), d);
    });
  }

  private startPings(): void {
    const interval = this.login.params.nopInInterval;
    if (interval <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.closed || this.state !== 'full-feature' || this.pingTtt !== null) return;
      if (Date.now() - this.lastRx < interval * 1000) return;
      this.pingTtt = this.allocTtt();
      // §11.19: ITT 0xffffffff, StatSN not advanced; the initiator answers with our TTT.
      this.send(encodeNopIn({ ...this.seq(false), itt: RESERVED_TAG, ttt: this.pingTtt, lun: 0, dataSegmentLength: 0 }));
      this.pingDeadline = setTimeout(() => this.fail('NOP-In ping not answered'), this.login.params.nopInTimeout * 1000);
      this.pingDeadline.unref();
    }, Math.min(interval, 5) * 1000);
    this.pingTimer.unref();
  }

  private pingAnswered(): void {
    this.pingTtt = null;
    if (this.pingDeadline !== null) clearTimeout(this.pingDeadline);
    this.pingDeadline = null;
  }

  // ------------------------------------------------------------------ SCSI

  allocTtt(): number {
    const t = this.nextTtt;
    this.nextTtt = (this.nextTtt + 1) >>> 0;
    if (this.nextTtt === RESERVED_TAG) this.nextTtt = 1;
    return t;
  }

  sendR2t(task: Task, ttt: number, r2tSN: number, offset: number, length: number): void {
    // Fields spelled out: `{ ...this.seq(), more }` is V8's slow object-spread path.
    const sn = this.seq(false);
    this.send(encodeR2t({ statSN: sn.statSN, expCmdSN: sn.expCmdSN, maxCmdSN: sn.maxCmdSN, itt: task.itt, lun: task.lun, ttt, r2tSN, bufferOffset: offset, desiredLength: length }));
  }

  private onScsiCommand(pdu: ScsiCommandPdu, ahs: Buffer, data: readonly Buffer[], bhs: Buffer): void {
    const s = this.session!;
    if (!s.cmdsn.acceptable(pdu.cmdSN, pdu.immediate)) {
      // §7.2.1 (ERL >= 1): a retried command whose status we kept gets that status again.
      const e = this.retention?.byItt.get(pdu.itt);
      const st = e === undefined ? undefined : this.retention!.byStatSN.get(e.statSN);
      if (st !== undefined) return this.resendStatus(st.bhs, st.data);
      this.log('debug', `SCSI command CmdSN ${pdu.cmdSN} outside [${s.cmdsn.expCmdSN}, ${s.cmdsn.maxCmdSN}]: dropped`);
      return;
    }
    const neg = this.negotiated;
    const immLen = pdu.dataSegmentLength;
    // §11.3.4 / §13.11: immediate data only if negotiated, only for writes, within FirstBurstLength.
    if (immLen > 0 && (!neg.immediateData || !pdu.write || immLen > neg.firstBurstLength || immLen > pdu.expectedDataTransferLength)) {
      this.reject(RejectReason.PROTOCOL_ERROR, bhs);
      return this.fail(`bad immediate data (${immLen} bytes)`);
    }
    if (s.tasks.has(pdu.itt)) {
      this.reject(RejectReason.TASK_IN_PROGRESS, bhs);
      return;
    }
    let cdb = pdu.cdb;
    let bidiReadLength = 0;
    // §11.2.1.2 AHS: [AHSLength(2) AHSType(1) specific...] padded to 4; type 1 = extended CDB, 2 = bidi read length.
    for (let o = 0; o + 4 <= ahs.length; ) {
      const alen = ahs.readUInt16BE(o);
      const type = ahs[o + 2]!;
      if (o + 3 + alen > ahs.length) {
        this.reject(RejectReason.INVALID_PDU_FIELD, bhs);
        return;
      }
      if (type === 1 && alen > 1) cdb = Buffer.concat([pdu.cdb, ahs.subarray(o + 4, o + 3 + alen)]);
      else if (type === 2 && alen >= 5) bidiReadLength = ahs.readUInt32BE(o + 4);
      o += 3 + alen + padLength(3 + alen);
    }
    const task = new Task(
      {
        itt: pdu.itt,
        lun: pdu.lun,
        cdb,
        attr: pdu.attr,
        read: pdu.read,
        write: pdu.write,
        edtl: pdu.expectedDataTransferLength,
        bidiReadLength,
        final: pdu.final,
        immediateLength: immLen,
        cmdSN: pdu.cmdSN,
        immediate: pdu.immediate,
      },
      s.nexus!,
      this,
    );
    s.tasks.set(pdu.itt, task);
    if (immLen > 0) task.receiveImmediate(data);
    s.cmdsn.offer(pdu.cmdSN, pdu.immediate, () => this.startTask(task));
  }

  private startTask(task: Task): void {
    const s = this.session!;
    // An orphan (ERL 2, host null) still runs: its result waits for TASK REASSIGN.
    if (task.aborted || (this.closed && task.host !== null)) {
      task.markSettled();
      this.finishSilently(task);
      return;
    }
    task.started = true;
    let p: Promise<ScsiResult>;
    try {
      p = s.target!.port.execute(task.cmd);
    } catch (e) {
      p = Promise.reject(e);
    }
    // The result goes to the connection the task is allegiant to now (§7.2.2 reassignment).
    p.then(
      (r) => {
        task.markSettled();
        ((task.host as Connection | null) ?? this).onResult(task, r);
      },
      (e: unknown) => {
        task.markSettled();
        if (!task.aborted && !this.closed) this.log('warn', `execute failed for ITT 0x${task.itt.toString(16)}: ${(e as Error)?.message ?? String(e)}`);
        ((task.host as Connection | null) ?? this).onResult(task, null);
      },
    );
  }

  /** null = the core failed: §11.4.3 Response 0x01 "target failure". */
  onResult(task: Task, r: ScsiResult | null): void {
    if (task.aborted) return this.finishSilently(task);
    if (task.host === null) {
      task.held = { r }; // ERL 2 orphan: answered after TASK REASSIGN
      return;
    }
    if (this.closed) return this.finishSilently(task);
    if (!task.unsolicitedComplete) {
      // §4.2.5.2: do not answer before the unsolicited data the initiator announced is in.
      task.onUnsolicitedDone = () => {
        task.onUnsolicitedDone = null;
        ((task.host as Connection | null) ?? this).onResult(task, r);
      };
      return;
    }
    this.sendResult(task, r);
  }

  private finishSilently(task: Task): void {
    task.finished = true;
    task.release();
    const s = this.session;
    if (s !== null && s.tasks.get(task.itt) === task) s.tasks.delete(task.itt);
  }

  private sendResult(task: Task, r: ScsiResult | null): void {
    this.finishSilently(task);
    let o: TaskOutcome;
    if (r === null) {
      // §11.4.3 Response 0x01: target failure.
      o = { itt: task.itt, lun: task.lun, data: EMPTY, status: 0, response: 0x01, overflow: false, underflow: false, residual: 0, senseBody: undefined, collapsed: false, r2ts: task.r2tSN };
    } else {
      const res = computeResiduals(task, task.cmd.dataInLength, r);
      const sense = r.status === Status.CHECK_CONDITION || (r.sense !== undefined && r.sense.length > 0) ? r.sense : undefined;
      let senseBody: Buffer | undefined;
      if (sense !== undefined && sense.length > 0) {
        // §11.4.7.2: SenseLength (2 bytes) + sense data.
        senseBody = Buffer.allocUnsafe(2 + sense.length);
        senseBody.writeUInt16BE(sense.length, 0);
        sense.copy(senseBody, 2);
      }
      let data = res.send === 0 ? EMPTY : res.send === r.dataIn!.length ? r.dataIn! : r.dataIn!.subarray(0, res.send);
      // ERL >= 1 keeps the Data-In until acknowledged: a copy, the core may reuse its buffer.
      if (this.retention !== null && res.send > 0) data = Buffer.from(data);
      o = {
        itt: task.itt,
        lun: task.lun,
        data,
        status: r.status,
        response: 0,
        overflow: res.overflow,
        underflow: res.underflow,
        residual: res.residual,
        senseBody,
        // §11.7.4: status rides in the last Data-In (S bit) only for GOOD / CONDITION MET without sense.
        collapsed: res.send > 0 && sense === undefined && (r.status === Status.GOOD || r.status === Status.CONDITION_MET),
        r2ts: task.r2tSN,
      };
    }
    const rec: SentTask | null = this.retention === null ? null : { ...o, offsets: [], flags: [], statSN: 0, ttt: RESERVED_TAG, ackedDataSN: 0 };
    this.transmit(o, 0, 0, o.collapsed, -1, undefined, rec);
    if (rec !== null) this.retention!.keepTask(rec);
  }

  /**
   * Data-In PDUs for o.data[offset..] from DataSN `dataSN`, then the status: in the last
   * Data-In when `collapsed`, else a SCSI Response. `statSN` -1 takes the next StatSN, else
   * the status is a retransmission with that StatSN. `rec` (ERL >= 1) records the layout.
   */
  private transmit(o: TaskOutcome, offset: number, dataSN: number, collapsed: boolean, statSN: number, snackTag: number | undefined, rec: SentTask | null): void {
    const len = o.data.length;
    const st = collapsed && offset < len;
    if (offset < len) {
      const data = o.data;
      const mrdsl = this.negotiated.initiatorMaxRecvDataSegmentLength;
      const burst = this.session!.negotiated.maxBurstLength;
      let off = offset;
      let inBurst = 0;
      while (off < len) {
        const n = Math.min(mrdsl, len - off, burst - inBurst);
        const last = off + n === len;
        inBurst += n;
        // §11.7.1: F ends a Data-In sequence (every MaxBurstLength bytes and at the end).
        const final = last || inBurst === burst;
        if (inBurst === burst) inBurst = 0;
        const withStatus = last && st;
        let sn: SeqNumbers;
        if (withStatus && statSN !== -1) {
          const cur = this.seq(false);
          sn = { statSN, expCmdSN: cur.expCmdSN, maxCmdSN: cur.maxCmdSN };
        } else sn = this.seq(withStatus);
        // §11.7.2 A bit (ERL >= 1): ask for a DataACK at the end of each burst but the last.
        const ack = rec !== null && final && !last;
        if (ack && rec.ttt === RESERVED_TAG) rec.ttt = this.allocTtt();
        const hdr = encodeDataIn({
          itt: o.itt,
          lun: o.lun,
          final,
          statusPresent: withStatus,
          status: o.status,
          overflow: o.overflow,
          underflow: o.underflow,
          residualCount: o.residual,
          statSN: sn.statSN,
          expCmdSN: sn.expCmdSN,
          maxCmdSN: sn.maxCmdSN,
          dataSN: dataSN++,
          bufferOffset: off,
          dataSegmentLength: n,
          ack,
          ttt: ack ? rec.ttt : RESERVED_TAG,
        });
        const view = off === 0 && n === len ? data : data.subarray(off, off + n);
        this.writePdu(hdr, view);
        if (rec !== null) {
          rec.offsets.push(off);
          rec.flags.push((final ? Flag.F : 0) | (ack ? Flag.A : 0) | (withStatus ? Flag.S : 0));
          if (withStatus) {
            rec.statSN = sn.statSN;
            this.retention!.keepStatus({ statSN: sn.statSN, bhs: hdr, data: view });
          }
        }
        off += n;
      }
    }
    if (!st) {
      const cur = this.seq(statSN === -1);
      const sn = statSN === -1 ? cur.statSN : statSN;
      if (rec !== null) rec.statSN = sn;
      this.send(
        encodeScsiResponse({ statSN: sn, expCmdSN: cur.expCmdSN, maxCmdSN: cur.maxCmdSN, itt: o.itt, response: o.response, status: o.status, overflow: o.overflow, underflow: o.underflow, residualCount: o.residual, expDataSN: dataSN + o.r2ts, dataSegmentLength: o.senseBody?.length ?? 0, snackTag }),
        o.senseBody,
      );
    }
  }

  private onDataOut(pdu: DataOut, data: readonly Buffer[], bhs: Buffer): void {
    const task = this.session!.tasks.get(pdu.itt);
    if (task === undefined || task.finished || task.host !== this) {
      // Data for a task that is gone (aborted, or completed with an error), or that is
      // allegiant to another connection (§7.2.2, MC/S): discard.
      this.log('debug', `Data-Out for unknown ITT 0x${pdu.itt.toString(16)}: discarded`);
      return;
    }
    try {
      task.receiveDataOut(pdu, data);
    } catch (e) {
      if (!(e instanceof TaskError)) throw e;
      // §7.? ERL 0 DataSN/offset errors: Reject the Data-Out (the initiator fails the command
      // named by the ITT in the rejected header) and drop the task without a response.
      this.log('info', `${e.code}: ${e.message}; rejecting ITT 0x${pdu.itt.toString(16)}`);
      this.reject(RejectReason.PROTOCOL_ERROR, bhs);
      task.abort(e.message);
      if (!task.started) this.finishSilently(task);
    }
  }

  // ------------------------------------------------------------------ TMF

  private async onTmf(pdu: TaskMgmtRequest): Promise<void> {
    const s = this.session!;
    const port = s.target!.port;
    const nexus = s.nexus!;
    const respond = (code: number) => {
      if (!this.closed) this.send(encodeTmfResponse({ ...this.seq(true), itt: pdu.itt, response: code }));
    };
    const waitFor = async (tasks: readonly Task[]) => {
      const started = tasks.filter((t) => t.started);
      if (started.length === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(started.map((t) => t.settled)), new Promise<void>((r) => (timer = setTimeout(r, TMF_WAIT_MS)))]);
      if (timer !== undefined) clearTimeout(timer);
    };
    const fnCode = pdu.function;
    const fn = TMF_NAMES[fnCode];
    try {
      if (fnCode === TmfFunction.TASK_REASSIGN) return this.reassignTask(pdu, respond);
      if (fn === undefined) return respond(TmfResponseCode.NOT_SUPPORTED);
      if (fn === 'abort-task') {
        const t = s.tasks.get(pdu.referencedTaskTag);
        if (t === undefined || t.finished) {
          const r = await port.taskManagement({ fn, nexus, lun: pdu.lun, referencedTag: pdu.referencedTaskTag });
          return respond(r === 'function-complete' || r === 'function-succeeded' ? TmfResponseCode.TASK_DOES_NOT_EXIST : tmfResponseCode(r));
        }
        t.abort('ABORT TASK');
        const r = await port.taskManagement({ fn, nexus, lun: t.lun, referencedTag: t.itt });
        await waitFor([t]);
        if (!t.started) this.finishSilently(t);
        return respond(r === 'incorrect-lun' ? TmfResponseCode.LUN_DOES_NOT_EXIST : r === 'function-rejected' ? TmfResponseCode.FUNCTION_REJECTED : TmfResponseCode.FUNCTION_COMPLETE);
      }
      const whole = fn === 'target-warm-reset' || fn === 'target-cold-reset';
      const affected = fn === 'clear-aca' ? [] : [...s.tasks.values()].filter((t) => !t.finished && (whole || t.lun === pdu.lun));
      for (const t of affected) t.abort(fn);
      const r = await port.taskManagement({ fn, nexus, lun: pdu.lun });
      await waitFor(affected);
      for (const t of affected) if (!t.started) this.finishSilently(t);
      respond(tmfResponseCode(r));
      if (fn === 'target-cold-reset') this.owner.coldReset(s.target!);
    } catch (e) {
      this.log('warn', `TMF ${fn ?? fnCode} failed: ${(e as Error).message}`);
      respond(TmfResponseCode.FUNCTION_REJECTED);
    }
  }

  /**
   * §11.5.1 TASK REASSIGN (ERL 2, §7.2.2): move a task from a failed connection to this one.
   * The response goes first; then the task resumes here: Data-In from the TMF's ExpDataSN
   * and the status (with a StatSN of this connection), or fresh R2Ts for missing write data.
   */
  private reassignTask(pdu: TaskMgmtRequest, respond: (code: number) => void): void {
    const s = this.session!;
    if (s.negotiated.errorRecoveryLevel < 2) return respond(TmfResponseCode.REASSIGNMENT_NOT_SUPPORTED);
    const t = s.tasks.get(pdu.referencedTaskTag);
    if (t !== undefined && !t.finished) {
      if (t.host !== null) return respond(TmfResponseCode.TASK_STILL_ALLEGIANT); // its connection is still up
      respond(TmfResponseCode.FUNCTION_COMPLETE);
      const held = t.held;
      t.held = null;
      t.reassign(this);
      if (held !== null) this.onResult(t, held.r);
      return;
    }
    const e = s.takeCompleted(pdu.referencedTaskTag);
    if (e === undefined) return respond(TmfResponseCode.TASK_DOES_NOT_EXIST);
    respond(TmfResponseCode.FUNCTION_COMPLETE);
    // Status went out on the failed connection: Data-In again from ExpDataSN, status anew.
    const from = Math.min(Math.max(pdu.expDataSN, e.ackedDataSN), e.offsets.length);
    const off = e.offsets[from] ?? e.data.length;
    const rec: SentTask | null = this.retention === null ? null : { ...e, offsets: e.offsets.slice(0, from), flags: e.flags.slice(0, from), statSN: 0, ttt: RESERVED_TAG, ackedDataSN: from };
    this.transmit(e, off, from, e.collapsed, -1, undefined, rec);
    if (rec !== null) this.retention!.keepTask(rec);
  }

  /** §11.9.1 AsyncEvent 2: the target dropped connection `cid` of this session. */
  notifyDropped(cid: number): void {
    if (this.closed || this.state !== 'full-feature') return;
    const n = this.session!.negotiated;
    this.send(encodeAsyncMessage({ ...this.seq(true), lun: 0, asyncEvent: AsyncEvent.DROP_CONNECTION, asyncVCode: 0, parameter1: cid, parameter2: n.defaultTime2Wait, parameter3: n.defaultTime2Retain, dataSegmentLength: 0 }));
  }

  // ------------------------------------------------------------------ text

  private onText(pdu: TextRequest, data: readonly Buffer[]): void {
    const mrdsl = this.negotiated.initiatorMaxRecvDataSegmentLength;
    if (pdu.ttt !== RESERVED_TAG) {
      // §11.10.4: an empty request with our TTT asks for the next part of a long response.
      const cont = this.textOut;
      if (cont === null || cont.ttt !== pdu.ttt || cont.itt !== pdu.itt) {
        this.send(encodeTextResponse({ ...this.seq(true), final: true, continue: false, itt: pdu.itt, ttt: RESERVED_TAG, lun: 0, dataSegmentLength: 0 }));
        return;
      }
      return this.sendTextPart(pdu.itt, cont.rest, mrdsl);
    }
    this.textOut = null;
    for (const d of data) this.textIn.push(Buffer.from(d));
    if (pdu.continue) {
      const ttt = this.allocTtt();
      this.send(encodeTextResponse({ ...this.seq(true), final: false, continue: false, itt: pdu.itt, ttt, lun: 0, dataSegmentLength: 0 }));
      return;
    }
    const text = Buffer.concat(this.textIn);
    this.textIn = [];
    let pairs: TextPair[];
    try {
      pairs = decodeText(text);
    } catch (e) {
      if (!(e instanceof TextError)) throw e;
      this.log('debug', `bad text request: ${e.message}`);
      this.send(encodeTextResponse({ ...this.seq(true), final: true, continue: false, itt: pdu.itt, ttt: RESERVED_TAG, lun: 0, dataSegmentLength: 0 }));
      return;
    }
    const out: TextPair[] = [];
    for (const [k, v] of pairs) {
      if (k === 'SendTargets') out.push(...this.sendTargets(v));
      else if (k === 'MaxRecvDataSegmentLength') {
        const n = /^[0-9]{1,8}$/.test(v) ? Number(v) : -1;
        if (n >= 512 && n <= 16777215) this.negotiated = { ...this.negotiated, initiatorMaxRecvDataSegmentLength: n };
        else out.push([k, 'Reject']);
      } else out.push([k, 'NotUnderstood']);
    }
    this.sendTextPart(pdu.itt, encodeText(out), mrdsl);
  }

  private sendTextPart(itt: number, body: Buffer, mrdsl: number): void {
    if (body.length <= mrdsl) {
      this.textOut = null;
      this.send(encodeTextResponse({ ...this.seq(true), final: true, continue: false, itt, ttt: RESERVED_TAG, lun: 0, dataSegmentLength: body.length }), body);
      return;
    }
    const ttt = this.allocTtt();
    this.textOut = { ttt, itt, rest: body.subarray(mrdsl) };
    this.send(encodeTextResponse({ ...this.seq(true), final: false, continue: true, itt, ttt, lun: 0, dataSegmentLength: mrdsl }), body.subarray(0, mrdsl));
  }

  /** §13.3 / Appendix C: SendTargets=All | <iqn> | "" (the session's target). */
  private sendTargets(v: string): TextPair[] {
    const s = this.session!;
    let list: readonly IscsiTargetDef[];
    const mine = this.owner.discoverable(s.initiatorName);
    if (s.discovery) {
      if (v === 'All') list = mine;
      else list = mine.filter((t) => t.iqn.toLowerCase() === v.toLowerCase());
    } else {
      const t = s.target!;
      list = v === '' || v === 'All' || v.toLowerCase() === t.iqn.toLowerCase() ? [t] : [];
    }
    const out: TextPair[] = [];
    for (const t of list) {
      out.push(['TargetName', t.iqn]);
      for (const p of t.portals) out.push(['TargetAddress', `${this.portalAddress(p.address)}:${p.port},${t.tpgt}`]);
    }
    return out;
  }

  private portalAddress(a: string): string {
    let addr = a;
    if (addr === '' || addr === '0.0.0.0' || addr === '::' || addr === '[::]') addr = this.socket.localAddress ?? '127.0.0.1';
    if (addr.startsWith('::ffff:') && addr.includes('.')) addr = addr.slice(7);
    if (addr.includes(':') && !addr.startsWith('[')) addr = `[${addr}]`;
    return addr;
  }

  // ------------------------------------------------------------------ logout

  private async onLogout(pdu: LogoutRequest): Promise<void> {
    const s = this.session!;
    const neg = s.negotiated;
    const respond = (code: number) => {
      if (this.closed) return;
      this.send(encodeLogoutResponse({ ...this.seq(true), itt: pdu.itt, response: code, time2Wait: neg.defaultTime2Wait, time2Retain: neg.defaultTime2Retain }));
    };
    if (pdu.reason === LogoutReason.REMOVE_FOR_RECOVERY) {
      // §11.14.1 reason 2 (ERL 2): the CID's tasks stay for TASK REASSIGN; Time2Retain says how long.
      if (neg.errorRecoveryLevel < 2) return respond(LogoutResponseCode.RECOVERY_NOT_SUPPORTED);
      if (pdu.cid === this.cid) {
        respond(LogoutResponseCode.SUCCESS);
        if (this.state === 'full-feature') this.state = transition(this.state, 'logout');
        this.owner.connectionFailed(this);
        return this.endSoon();
      }
      const other = [...s.connections].find((c) => c.cid === pdu.cid);
      if (other !== undefined) other.destroy('removed for recovery by logout on another connection');
      else if (!s.failed.has(pdu.cid)) return respond(LogoutResponseCode.CID_NOT_FOUND);
      return respond(LogoutResponseCode.SUCCESS);
    }
    if (pdu.reason === LogoutReason.CLOSE_CONNECTION && pdu.cid !== this.cid) {
      const other = [...s.connections].find((c) => c.cid === pdu.cid);
      if (other !== undefined) {
        other.destroy('closed by logout on another connection', false);
        return respond(LogoutResponseCode.SUCCESS);
      }
      // §11.14.1: closing a failed connection ends its retained tasks.
      if (s.failed.has(pdu.cid)) {
        this.owner.discardFailed(s, pdu.cid);
        return respond(LogoutResponseCode.SUCCESS);
      }
      return respond(LogoutResponseCode.CID_NOT_FOUND);
    }
    this.recoverable = false;
    const endsSession = pdu.reason === LogoutReason.CLOSE_SESSION || s.connections.size <= 1;
    // §11.14: outstanding tasks are terminated; answer once they are gone.
    const mine = [...s.tasks.values()].filter((t) => endsSession || t.host === this);
    for (const t of mine) t.abort('logout');
    const started = mine.filter((t) => t.started);
    if (started.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(started.map((t) => t.settled)), new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
      if (timer !== undefined) clearTimeout(timer);
    }
    if (endsSession) this.owner.endSession(s, 'logout');
    respond(LogoutResponseCode.SUCCESS);
    if (this.state === 'full-feature') this.state = transition(this.state, 'logout');
    this.endSoon();
  }

  /** §11.9.1 AsyncEvent 1: ask the initiator to log out within `seconds`. */
  requestLogout(seconds: number = LOGOUT_GRACE): void {
    if (this.closed || this.state !== 'full-feature') {
      this.destroy('server closing');
      return;
    }
    this.send(encodeAsyncMessage({ ...this.seq(true), lun: 0, asyncEvent: AsyncEvent.LOGOUT_REQUEST, asyncVCode: 0, parameter1: 0, parameter2: 0, parameter3: seconds, dataSegmentLength: 0 }));
  }

  // ------------------------------------------------------------------ teardown

  /** Half-close after the last response, and make sure the socket goes away. */
  private endSoon(): void {
    this.flush();
    this.socket.end();
    this.logoutTimer = setTimeout(() => this.destroy('closing'), 2000);
    this.logoutTimer.unref();
  }

  /** The target drops the connection for a protocol error (§11.9.1: others hear AsyncEvent 2). */
  private fail(reason: string): void {
    if (!this.closed) this.droppedByTarget = true;
    this.destroy(reason);
  }

  /** `recoverable` false: the tasks end with the connection even at ERL 2 (§11.14.1 reason 1). */
  destroy(reason: string, recoverable = true): void {
    if (!this.closed) {
      this.log(this.state === 'full-feature' ? 'info' : 'debug', `closing connection: ${reason}`);
      if (!recoverable) this.recoverable = false;
    }
    // A Reject or response queued just before the drop still goes out, as it did unbatched.
    this.flush();
    this.socket.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    if (this.pingDeadline !== null) clearTimeout(this.pingDeadline);
    if (this.logoutTimer !== null) clearTimeout(this.logoutTimer);
    const s = this.session;
    const recover = s !== null && !s.ended && this.state === 'full-feature' && this.recoverable && s.negotiated.errorRecoveryLevel >= 2 && s.negotiated.defaultTime2Retain > 0;
    this.state = transition(this.state, recover ? 'connection-failed' : 'transport-closed');
    if (s !== null && !s.ended) {
      if (recover) {
        // §7.2.2 ERL 2: the tasks wait (Time2Wait + Time2Retain) for a reassignment.
        this.owner.connectionFailed(this);
      } else {
        // ERL 0/1: tasks on a failed connection are gone; the core hears it through abort.
        for (const t of s.tasks.values()) {
          if (t.host === this || (s.connections.size <= 1 && s.failed.size === 0)) t.abort('connection closed');
        }
      }
    }
    this.retention?.clear();
    this.owner.connectionClosed(this);
  }

  /** ERL 2: what this connection left for recovery is gone (§8.2 CLEANUP_WAIT → FREE). */
  cleanupDone(): void {
    if (this.state === 'cleanup-wait') this.state = transition(this.state, 'cleanup-done');
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
