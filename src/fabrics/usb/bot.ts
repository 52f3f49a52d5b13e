// USB Mass Storage Class Bulk-Only Transport 1.0: CBW/CSW codec, CBW validity, the
// thirteen host/device cases and the device-side state machine over abstract endpoints.
//
// CBW (BOT 1.0 §5.1, 31 bytes, little-endian):
//   0  le32 dCBWSignature           43425355h 'USBC'
//   4  le32 dCBWTag                 echoed in dCSWTag
//   8  le32 dCBWDataTransferLength  bytes the host expects to move
//  12  u8   bmCBWFlags              bit 7 direction (1 = Data-In), bits 6..0 reserved (0)
//  13  u8   bCBWLUN                 bits 3..0 LUN, bits 7..4 reserved
//  14  u8   bCBWCBLength            bits 4..0 valid CB length 1..16, bits 7..5 reserved
//  15  u8[16] CBWCB                 the CDB, significant bytes first
// CSW (BOT 1.0 §5.2, 13 bytes):
//   0  le32 dCSWSignature           53425355h 'USBS'
//   4  le32 dCSWTag
//   8  le32 dCSWDataResidue         BOT §6.7: expected minus relevant bytes moved
//  12  u8   bCSWStatus              0 passed, 1 failed, 2 phase error
//
// BOT has no autosense: after bCSWStatus 1 the host sends REQUEST SENSE. The core returns
// sense with CHECK CONDITION and keeps none, so this fabric keeps the last sense per LUN and
// answers the next REQUEST SENSE (opcode 03h) for that LUN from it; otherwise REQUEST SENSE
// goes to the core like any command.

import type { Nexus, ScsiCommand, ScsiPort, ScsiResult } from '../../scsi/types';
import { Status } from '../../scsi/types';
import { answerSetup, MAX_LUNS } from './ep0-events';
import type { Ep0Handler, SetupAnswer, SetupPacket } from './ep0-events';

export const CBW_LENGTH = 31;
export const CSW_LENGTH = 13;
export const CBW_SIGNATURE = 0x43425355;
export const CSW_SIGNATURE = 0x53425355;
export const MAX_CB_LENGTH = 16;

/** §5.1 CBW offsets. */
export const CbwOff = {
  SIGNATURE: 0,
  TAG: 4,
  DATA_TRANSFER_LENGTH: 8,
  FLAGS: 12,
  LUN: 13,
  CB_LENGTH: 14,
  CB: 15,
} as const;

/** §5.2 CSW offsets. */
export const CswOff = { SIGNATURE: 0, TAG: 4, DATA_RESIDUE: 8, STATUS: 12 } as const;

export const CbwFlag = { DATA_IN: 0x80, RESERVED: 0x7f } as const;
export const CbwMask = { LUN: 0x0f, LUN_RESERVED: 0xf0, CB_LENGTH: 0x1f, CB_LENGTH_RESERVED: 0xe0 } as const;

/** §5.2 bCSWStatus. */
export const CswStatus = { PASSED: 0, FAILED: 1, PHASE_ERROR: 2 } as const;
export type CswStatusValue = (typeof CswStatus)[keyof typeof CswStatus];

/** SPC-4 §6.29 REQUEST SENSE: the one opcode BOT must know (no autosense). */
const REQUEST_SENSE = { OPCODE: 0x03, ALLOCATION_LENGTH: 4 } as const;

export interface Cbw {
  readonly dCBWSignature: number;
  readonly dCBWTag: number;
  readonly dCBWDataTransferLength: number;
  /** The whole flags byte (reserved bits included, so validity can be judged). */
  readonly bmCBWFlags: number;
  /** The whole LUN byte (reserved bits included). */
  readonly bCBWLUN: number;
  /** The whole CB length byte (reserved bits included). */
  readonly bCBWCBLength: number;
  /** All 16 CBWCB bytes (a copy). */
  readonly CBWCB: Buffer;
}

export interface Csw {
  readonly dCSWSignature: number;
  readonly dCSWTag: number;
  readonly dCSWDataResidue: number;
  readonly bCSWStatus: number;
}

/** A BOT codec or configuration error, with a stable code. */
export class BotError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'BotError';
    this.code = code;
  }
}

function view(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decode a CBW; throws BotError on wrong length or signature (§6.2.1 "valid"). */
export function decodeCbw(buf: Buffer): Cbw {
  if (buf.length !== CBW_LENGTH) throw new BotError('CBW_LENGTH', `CBW must be ${CBW_LENGTH} bytes, got ${buf.length}`);
  const dv = view(buf);
  const sig = dv.getUint32(CbwOff.SIGNATURE, true);
  if (sig !== CBW_SIGNATURE) {
    throw new BotError('CBW_SIGNATURE', `CBW signature 0x${sig.toString(16).padStart(8, '0')}, expected 0x43425355`);
  }
  return {
    dCBWSignature: sig,
    dCBWTag: dv.getUint32(CbwOff.TAG, true),
    dCBWDataTransferLength: dv.getUint32(CbwOff.DATA_TRANSFER_LENGTH, true),
    bmCBWFlags: dv.getUint8(CbwOff.FLAGS),
    bCBWLUN: dv.getUint8(CbwOff.LUN),
    bCBWCBLength: dv.getUint8(CbwOff.CB_LENGTH),
    CBWCB: Buffer.from(buf.subarray(CbwOff.CB, CbwOff.CB + MAX_CB_LENGTH)),
  };
}

export interface CbwInit {
  readonly tag: number;
  readonly dataTransferLength: number;
  readonly dataIn: boolean;
  readonly lun: number;
  readonly cdb: Buffer;
}

/** Encode a CBW (host side: fakes, tests, the host probe tool). */
export function encodeCbw(c: CbwInit): Buffer {
  if (c.cdb.length < 1 || c.cdb.length > MAX_CB_LENGTH) {
    throw new BotError('CB_LENGTH', `CDB must be 1..${MAX_CB_LENGTH} bytes, got ${c.cdb.length}`);
  }
  const b = Buffer.alloc(CBW_LENGTH);
  b.writeUInt32LE(CBW_SIGNATURE, CbwOff.SIGNATURE);
  b.writeUInt32LE(c.tag >>> 0, CbwOff.TAG);
  b.writeUInt32LE(c.dataTransferLength >>> 0, CbwOff.DATA_TRANSFER_LENGTH);
  b[CbwOff.FLAGS] = c.dataIn ? CbwFlag.DATA_IN : 0;
  b[CbwOff.LUN] = c.lun & CbwMask.LUN;
  b[CbwOff.CB_LENGTH] = c.cdb.length;
  c.cdb.copy(b, CbwOff.CB);
  return b;
}

export function encodeCsw(tag: number, residue: number, status: CswStatusValue): Buffer {
  const b = Buffer.alloc(CSW_LENGTH);
  b.writeUInt32LE(CSW_SIGNATURE, CswOff.SIGNATURE);
  b.writeUInt32LE(tag >>> 0, CswOff.TAG);
  b.writeUInt32LE(residue >>> 0, CswOff.DATA_RESIDUE);
  b[CswOff.STATUS] = status;
  return b;
}

/** Decode a CSW; throws BotError on wrong length or signature (host side, §6.3). */
export function decodeCsw(buf: Buffer): Csw {
  if (buf.length !== CSW_LENGTH) throw new BotError('CSW_LENGTH', `CSW must be ${CSW_LENGTH} bytes, got ${buf.length}`);
  const dv = view(buf);
  const sig = dv.getUint32(CswOff.SIGNATURE, true);
  if (sig !== CSW_SIGNATURE) {
    throw new BotError('CSW_SIGNATURE', `CSW signature 0x${sig.toString(16).padStart(8, '0')}, expected 0x53425355`);
  }
  return {
    dCSWSignature: sig,
    dCSWTag: dv.getUint32(CswOff.TAG, true),
    dCSWDataResidue: dv.getUint32(CswOff.DATA_RESIDUE, true),
    bCSWStatus: dv.getUint8(CswOff.STATUS),
  };
}

/** Why a CBW was refused: §6.2.1 (not valid) or §6.2.2 (not meaningful). */
export type CbwProblem = 'length' | 'signature' | 'reserved-bits' | 'lun' | 'cb-length';

export type CbwCheck =
  | { readonly kind: 'ok'; readonly cbw: Cbw }
  | { readonly kind: 'invalid'; readonly problem: 'length' | 'signature' }
  | { readonly kind: 'not-meaningful'; readonly problem: 'reserved-bits' | 'lun' | 'cb-length'; readonly cbw: Cbw };

/**
 * §6.2.1 valid: 31 bytes with the 'USBC' signature. §6.2.2 meaningful: no reserved bit set,
 * a LUN the device has (0..lunCount-1), bCBWCBLength 1..16. "Received after a CSW or reset"
 * is the state machine's business.
 */
export function checkCbw(buf: Buffer, lunCount: number): CbwCheck {
  if (buf.length !== CBW_LENGTH) return { kind: 'invalid', problem: 'length' };
  if (buf.readUInt32LE(CbwOff.SIGNATURE) !== CBW_SIGNATURE) return { kind: 'invalid', problem: 'signature' };
  const cbw = decodeCbw(buf);
  const reserved =
    (cbw.bmCBWFlags & CbwFlag.RESERVED) | (cbw.bCBWLUN & CbwMask.LUN_RESERVED) | (cbw.bCBWCBLength & CbwMask.CB_LENGTH_RESERVED);
  if (reserved !== 0) return { kind: 'not-meaningful', problem: 'reserved-bits', cbw };
  if (cbw.bCBWLUN >= lunCount) return { kind: 'not-meaningful', problem: 'lun', cbw };
  if (cbw.bCBWCBLength < 1 || cbw.bCBWCBLength > MAX_CB_LENGTH) return { kind: 'not-meaningful', problem: 'cb-length', cbw };
  return { kind: 'ok', cbw };
}

// ---------------------------------------------------------------------------------------
// BOT 1.0 §6.7: the thirteen cases. Hx = host expectation (CBW), Dx = device intent.

export type Direction = 'none' | 'in' | 'out';
export type BotCase =
  | 'Hn=Dn' | 'Hn<Di' | 'Hn<Do'
  | 'Hi>Dn' | 'Hi>Di' | 'Hi=Di' | 'Hi<Di' | 'Hi<>Do'
  | 'Ho>Dn' | 'Ho<>Di' | 'Ho>Do' | 'Ho=Do' | 'Ho<Do';

/** Case number (§6.7 figure 7 / table) for each case name. */
export const BOT_CASE_NUMBER: Readonly<Record<BotCase, number>> = {
  'Hn=Dn': 1, 'Hn<Di': 2, 'Hn<Do': 3, 'Hi>Dn': 4, 'Hi>Di': 5, 'Hi=Di': 6, 'Hi<Di': 7,
  'Hi<>Do': 8, 'Ho>Dn': 9, 'Ho<>Di': 10, 'Ho>Do': 11, 'Ho=Do': 12, 'Ho<Do': 13,
};

export interface CaseClass {
  readonly botCase: BotCase;
  /** §6.7: cases 2, 3, 7, 8, 10 and 13 end with bCSWStatus 2. */
  readonly phaseError: boolean;
}

/** Classify from host (direction, dCBWDataTransferLength) and device (direction, length). */
export function classifyCase(hostDir: Direction, hostLength: number, devDir: Direction, devLength: number): CaseClass {
  const h = hostLength === 0 ? 'none' : hostDir;
  const d = devLength === 0 ? 'none' : devDir;
  const mk = (botCase: BotCase, phaseError: boolean): CaseClass => ({ botCase, phaseError });
  if (h === 'none') return d === 'none' ? mk('Hn=Dn', false) : d === 'in' ? mk('Hn<Di', true) : mk('Hn<Do', true);
  if (h === 'in') {
    if (d === 'none') return mk('Hi>Dn', false);
    if (d === 'out') return mk('Hi<>Do', true);
    return hostLength > devLength ? mk('Hi>Di', false) : hostLength === devLength ? mk('Hi=Di', false) : mk('Hi<Di', true);
  }
  if (d === 'none') return mk('Ho>Dn', false);
  if (d === 'in') return mk('Ho<>Di', true);
  return hostLength > devLength ? mk('Ho>Do', false) : hostLength === devLength ? mk('Ho=Do', false) : mk('Ho<Do', true);
}

// ---------------------------------------------------------------------------------------
// The device state machine.

/**
 * The two bulk endpoints as the BOT machine needs them. FunctionFS: blocking fs.read/fs.write
 * on ep2/ep1 in a worker; halt = wrong-direction I/O on the ep file.
 */
export interface BotEndpoints {
  /**
   * One bulk-OUT read of at most `max` bytes. Completes when `max` bytes arrived or the host
   * sent a short packet (so a result shorter than `max` ends the host's transfer). The machine
   * asks for multiples of the max packet size, or for exactly what is left of the transfer.
   */
  readOut(max: number): Promise<Buffer>;
  /** Bulk-IN write; completes when the host took it. Length 0 sends a zero-length packet. */
  writeIn(data: Buffer): Promise<void>;
  /**
   * Optional: one bulk-IN write of several buffers back to back (writev). Lets the last
   * data-in chunk and the CSW go out in one transfer when the data fills the host's request
   * exactly (§6.7.2 case 6): the host's data request ends on its length, the CSW's 13-byte
   * short packet lands in its next request. Saves one endpoint round trip per READ.
   */
  writeInv?(parts: readonly Buffer[]): Promise<void>;
  haltIn(): Promise<void>;
  haltOut(): Promise<void>;
  /**
   * Resolves once either bulk endpoint is not halted (at once if one is not halted now), so a
   * clear that raced ahead is not missed. Used to re-stall after an invalid CBW.
   */
  waitClearHalt?(): Promise<void>;
  /** Abandon every transfer in flight: pending readOut/writeIn reject. Used by Bulk-Only Mass Storage Reset. */
  cancel?(): void;
  /**
   * Bulk-IN writes the kernel still holds (abandoned by cancel() or not): a blocking write ends
   * only when the host takes its data or the endpoint goes away.
   */
  inWritesPending?(): number;
}

export interface BotOptions {
  readonly port: ScsiPort;
  readonly nexus: Nexus;
  readonly endpoints: BotEndpoints;
  /** LUNs 0..lunCount-1 (BOT: at most 16). Default 1. */
  readonly lunCount?: number;
  /** Bulk max packet size of the current speed (64 FS, 512 HS, 1024 SS). Default 512. */
  readonly maxPacketSize?: number;
  /**
   * After a data-in shorter than dCBWDataTransferLength (which always ends with a short packet
   * or ZLP), also halt Bulk-In, as Linux f_mass_storage does with stall=1. Default true.
   */
  readonly stallDataIn?: boolean;
  /**
   * Halt Bulk-Out instead of reading and discarding data-out the device did not take
   * (§6.7.3 allows either; f_mass_storage discards to avoid a race). Default false.
   */
  readonly stallDataOut?: boolean;
  /**
   * Largest single bulk transfer (rounded down to the max packet size). Default and most 1 MiB:
   * a SuperSpeed host's 1 MiB READ goes out as one transfer with its CSW (FfsEndpoints splits
   * it when the kernel cannot allocate that much).
   */
  readonly chunkSize?: number;
  /**
   * Do not wait for the CSW to be taken before reading the next CBW: the host sends the next
   * CBW only after it has the CSW, so the read can be queued while the CSW is still in
   * flight (one round trip less per command). The write is awaited before the next bulk-IN
   * operation; its failure is reported then. Default false.
   */
  readonly pipelineStatus?: boolean;
  /** Called with every outcome (logging, tests). */
  readonly onOutcome?: (o: BotOutcome) => void;
  /**
   * Someone else reads the CBWs (the USB fast path's worker) and hands the ones it does not
   * serve to serveCbw(): enable() does not start the read loop. Default false.
   */
  readonly externalCbws?: boolean;
  /**
   * Called when a Bulk-Only Mass Storage Reset is performed, before its status stage; false
   * (or a promise of false): the reset could not be completed, and the request is stalled so
   * that the host goes on to reset the port.
   */
  readonly onReset?: () => Promise<boolean> | boolean | void;
}

/** How long a Bulk-Only reset waits for outstanding bulk-IN writes to end before refusing. */
const IN_SETTLE_MS = 200;

export type BotOutcome =
  | {
      readonly kind: 'csw';
      readonly tag: number;
      readonly lun: number;
      readonly botCase: BotCase;
      readonly status: CswStatusValue;
      readonly residue: number;
      /** SAM status from the core, absent for a REQUEST SENSE answered from held sense. */
      readonly scsiStatus?: number;
      readonly fromHeldSense?: boolean;
      /** The core threw (a bug): reported as a phase error so the host resets. */
      readonly coreError?: string;
    }
  | { readonly kind: 'invalid-cbw'; readonly problem: CbwProblem; readonly length: number }
  | { readonly kind: 'reset-recovered' }
  | { readonly kind: 'aborted'; readonly tag: number }
  | { readonly kind: 'io-error'; readonly code: string; readonly message: string }
  | { readonly kind: 'stopped' };

export type BotState = 'disabled' | 'ready' | 'command' | 'needs-reset';

const DEFAULT_CHUNK = 1024 * 1024;
const MAX_CHUNK = 1024 * 1024;

/** Thrown into pending work when a reset or disable abandons the command. */
class AbandonedError extends Error {
  readonly code = 'ABANDONED';
}

interface Waiter {
  promise: Promise<void>;
  resolve: () => void;
}
function waiter(): Waiter {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

interface InFlight {
  readonly tag: number;
  readonly lun: number;
  aborted: boolean;
}

/**
 * Pulls data-out off bulk-OUT for one command: never reads past dCBWDataTransferLength, keeps
 * reads aligned to the max packet size (a packet larger than a read overflows on dwc2), and
 * keeps the few bytes an aligned read brought beyond what the core asked for.
 */
class DataOutReader {
  /** Bytes taken off the pipe. */
  received = 0;
  /** The first endpoint failure, so it is not mistaken for a core error. */
  ioError: unknown;
  /** Bytes handed to the core (the "relevant data" of §6.7 residues). */
  consumed = 0;
  /** The host ended its transfer with a short packet. */
  ended = false;
  private leftover: Buffer | undefined;

  constructor(
    private readonly ep: BotEndpoints,
    private readonly total: number,
    private readonly mps: number,
    private readonly chunk: number,
    private readonly abandoned: () => boolean,
  ) {}

  get done(): boolean {
    return this.ended || this.received >= this.total;
  }

  private async readPiece(want: number): Promise<Buffer> {
    const remaining = this.total - this.received;
    const aligned = Math.ceil(want / this.mps) * this.mps;
    const ask = Math.min(remaining, aligned, this.chunk);
    let got: Buffer;
    try {
      got = await this.ep.readOut(ask);
    } catch (e) {
      this.ioError ??= e;
      throw e;
    }
    if (this.abandoned()) throw new AbandonedError('command abandoned');
    if (got.length > ask) got = got.subarray(0, ask);
    this.received += got.length;
    if (got.length < ask) this.ended = true;
    return got;
  }

  async read(length: number): Promise<Buffer> {
    if (this.abandoned()) throw new AbandonedError('command abandoned');
    const n = Math.max(0, Math.floor(length));
    const parts: Buffer[] = [];
    let have = 0;
    if (this.leftover) {
      parts.push(this.leftover);
      have = this.leftover.length;
      this.leftover = undefined;
    }
    while (have < n && !this.done) {
      const got = await this.readPiece(n - have);
      if (got.length === 0) break;
      parts.push(got);
      have += got.length;
    }
    const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
    if (all.length > n) {
      this.leftover = all.subarray(n);
      this.consumed += n;
      return all.subarray(0, n);
    }
    this.consumed += all.length;
    return all;
  }

  /** Read and drop the rest of the host's transfer, one chunk at a time. */
  async discard(): Promise<void> {
    this.leftover = undefined;
    while (!this.done) await this.readPiece(this.chunk);
  }
}

/**
 * The Bulk-Only Transport device: reads CBWs, runs them through the SCSI port, moves data
 * and sends CSWs, handling the thirteen cases, invalid CBWs (sticky stall until Reset
 * Recovery) and Bulk-Only Mass Storage Reset. One command at a time (BOT has no queuing).
 */
export class BotFunction {
  readonly lunCount: number;
  private mps: number;
  private readonly chunk: number;
  private readonly stallDataIn: boolean;
  private readonly stallDataOut: boolean;
  private readonly pipelineStatus: boolean;
  /** The CSW write still in flight (pipelineStatus). */
  private pendingIn: Promise<void> | undefined;
  private readonly ep: BotEndpoints;
  private readonly port: ScsiPort;
  private readonly nexus: Nexus;
  private readonly onOutcome: ((o: BotOutcome) => void) | undefined;
  private readonly onReset: (() => Promise<boolean> | boolean | void) | undefined;
  private externalCbws: boolean;
  /** Last sense per LUN, kept until REQUEST SENSE or the next command for that LUN. */
  private readonly heldSense = new Map<number, Buffer>();
  private state_: BotState = 'disabled';
  private running: Promise<void> | undefined;
  private current: InFlight | undefined;
  private resetWaiter: Waiter = waiter();
  /** Bumped by reset and disable, so stale waits know they are stale. */
  private generation = 0;

  constructor(opts: BotOptions) {
    const lunCount = opts.lunCount ?? 1;
    if (!Number.isInteger(lunCount) || lunCount < 1 || lunCount > MAX_LUNS) {
      throw new BotError('BAD_OPTION', `lunCount must be 1..${MAX_LUNS}, got ${lunCount}`);
    }
    this.lunCount = lunCount;
    this.mps = BotFunction.checkMps(opts.maxPacketSize ?? 512);
    const chunk = opts.chunkSize ?? DEFAULT_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_CHUNK) {
      throw new BotError('BAD_OPTION', `chunkSize must be 1..${MAX_CHUNK} bytes, got ${chunk}`);
    }
    this.chunk = chunk;
    this.stallDataIn = opts.stallDataIn ?? true;
    this.stallDataOut = opts.stallDataOut ?? false;
    this.pipelineStatus = opts.pipelineStatus ?? false;
    this.ep = opts.endpoints;
    this.port = opts.port;
    this.nexus = opts.nexus;
    this.onOutcome = opts.onOutcome;
    this.onReset = opts.onReset;
    this.externalCbws = opts.externalCbws ?? false;
  }

  private static checkMps(mps: number): number {
    if (![8, 16, 32, 64, 512, 1024].includes(mps)) {
      throw new BotError('BAD_OPTION', `maxPacketSize must be a bulk packet size (8..64, 512, 1024), got ${mps}`);
    }
    return mps;
  }

  /** Transfer size in bytes: the chunk size rounded down to whole packets (at least one). */
  private get chunkBytes(): number {
    return Math.max(this.mps, Math.floor(this.chunk / this.mps) * this.mps);
  }

  get state(): BotState {
    return this.state_;
  }

  /**
   * Hold `sense` for LUN `lun` as if the core had answered its last command with it: the
   * fast path's C loop answers a READ that failed midway itself, and its REQUEST SENSE (or
   * the next command for that LUN) comes here.
   */
  holdSense(lun: number, sense: Buffer): void {
    this.heldSense.set(lun, Buffer.from(sense));
  }

  /** The LUNs that currently hold sense for REQUEST SENSE (tests, console). */
  heldSenseLuns(): number[] {
    return [...this.heldSense.keys()];
  }

  /** Whether REQUEST SENSE for `lun` would be answered from held sense. */
  holdsSense(lun: number): boolean {
    return this.heldSense.has(lun);
  }

  /** Read CBWs again itself (the external reader is gone); starts the loop when enabled. */
  readCbws(): void {
    this.externalCbws = false;
    if (this.state_ !== 'disabled' && !this.running) this.startLoop();
  }

  private startLoop(): void {
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** FUNCTIONFS_ENABLE: start serving CBWs at the negotiated speed's packet size. */
  enable(maxPacketSize?: number): void {
    if (maxPacketSize !== undefined) this.mps = BotFunction.checkMps(maxPacketSize);
    if (this.state_ === 'disabled') this.state_ = 'ready';
    if (!this.running && !this.externalCbws) this.startLoop();
  }

  /**
   * FUNCTIONFS_DISABLE / UNBIND (configuration change, bus reset, disconnect): abandon the
   * command, forget sense and tell the core this I_T nexus is gone (the next one starts with
   * a power-on unit attention, as f_mass_storage reports after a reset).
   */
  async disable(): Promise<void> {
    this.state_ = 'disabled';
    this.generation++;
    this.pendingIn = undefined;
    this.abandonCurrent();
    // Also release a CBW read or a wait for Reset Recovery (FunctionFS: ESHUTDOWN does this).
    this.ep.cancel?.();
    this.wakeResetWaiters();
    this.heldSense.clear();
    this.port.nexusLost(this.nexus);
    if (this.ep.cancel) await this.running;
  }

  /**
   * Bulk-Only Mass Storage Reset (BOT §3.1): abandon the command, ready for the next CBW. False
   * when it cannot be completed: a bulk-IN write of this machine's (or onReset's) is still
   * outstanding, and FunctionFS cannot take back a blocking write, so the host would take its
   * data as the next command's. The request is then stalled, and the host resets the port,
   * which ends the write.
   */
  async reset(): Promise<boolean> {
    this.generation++;
    this.pendingIn = undefined;
    this.heldSense.clear();
    const cur = this.current;
    this.abandonCurrent();
    if (cur) {
      try {
        await this.port.taskManagement({ fn: 'abort-task', nexus: this.nexus, lun: cur.lun, referencedTag: cur.tag });
      } catch {
        // the command is abandoned either way; the core's answer changes nothing here
      }
    }
    if (this.state_ === 'needs-reset') this.state_ = 'ready';
    this.wakeResetWaiters();
    const fastOk = (await this.onReset?.()) !== false;
    return (await this.inSettled()) && fastOk;
  }

  /** Whether the endpoints' bulk-IN writes have ended, waiting up to IN_SETTLE_MS for them. */
  private async inSettled(): Promise<boolean> {
    const pending = (): number => this.ep.inWritesPending?.() ?? 0;
    for (let waited = 0; pending() > 0; waited += 5) {
      if (waited >= IN_SETTLE_MS) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  private wakeResetWaiters(): void {
    const w = this.resetWaiter;
    this.resetWaiter = waiter();
    w.resolve();
  }

  /** Answer a SETUP for this interface; performs the reset for a Bulk-Only Mass Storage Reset. */
  async setup(setup: SetupPacket): Promise<SetupAnswer> {
    const answer = answerSetup(setup, { lunCount: this.lunCount });
    if (answer.kind === 'reset') {
      if (await this.reset()) return { kind: 'ack' };
      return { kind: 'stall', io: 'write', reason: 'Bulk-Only reset: a bulk-IN write cannot be taken back (the host resets the port)' };
    }
    return answer;
  }

  /** Wait for a pipelined CSW write; rethrows its failure. */
  private async settleIn(): Promise<void> {
    const p = this.pendingIn;
    if (!p) return;
    this.pendingIn = undefined;
    await p;
  }

  private abandonCurrent(): void {
    if (!this.current) return;
    this.current.aborted = true;
    this.ep.cancel?.();
  }

  /**
   * Serve until disabled. An endpoint error ends the loop (the next ENABLE starts it again)
   * unless a disable/enable cycle happened meanwhile: then the error belongs to the old session.
   */
  private async loop(): Promise<void> {
    for (;;) {
      if (this.state_ === 'disabled') return;
      const gen = this.generation;
      const o = await this.serveOne();
      if (o.kind !== 'stopped') this.onOutcome?.(o);
      if (o.kind === 'io-error' && gen === this.generation) return;
    }
  }

  /** Serve one CBW (or, after an invalid one, wait for Reset Recovery). Never throws. */
  async serveOne(): Promise<BotOutcome> {
    if (this.state_ === 'disabled') return { kind: 'stopped' };
    if (this.state_ === 'needs-reset') return this.awaitResetRecovery();
    let buf: Buffer;
    try {
      // f_mass_storage reads the CBW into a max-packet-sized request: a longer CBW shows up.
      buf = await this.ep.readOut(this.mps);
    } catch (e) {
      return this.ioOutcome(e);
    }
    // State may have moved while the read was pending (narrowing cannot know).
    if ((this.state_ as BotState) === 'disabled') return { kind: 'stopped' };
    return this.serveCbw(buf);
  }

  /**
   * Serve one CBW read by someone else (externalCbws): check it, run it, move its data over
   * the endpoints and send its CSW. After an invalid CBW the state is 'needs-reset': call
   * serveOne() to wait for Reset Recovery. Never throws.
   */
  async serveCbw(buf: Buffer): Promise<BotOutcome> {
    if (this.state_ === 'disabled') return { kind: 'stopped' };
    if (this.state_ === 'needs-reset') return this.awaitResetRecovery();
    const check = checkCbw(buf, this.lunCount);
    if (check.kind !== 'ok') return this.refuseCbw(check.problem, buf.length);
    return this.runCommand(check.cbw);
  }

  /** §6.6.1: stall both pipes and keep them stalled until Reset Recovery. */
  private async refuseCbw(problem: CbwProblem, length: number): Promise<BotOutcome> {
    this.state_ = 'needs-reset';
    try {
      await this.settleIn();
      await this.ep.haltIn();
      await this.ep.haltOut();
    } catch (e) {
      return this.ioOutcome(e);
    }
    return { kind: 'invalid-cbw', problem, length };
  }

  private async awaitResetRecovery(): Promise<BotOutcome> {
    const gen = this.generation;
    const reset = this.resetWaiter.promise;
    // No wedge from userspace: when told of a clear-halt before the reset, stall again.
    const restall = async (): Promise<void> => {
      if (!this.ep.waitClearHalt) return new Promise<void>(() => undefined);
      for (;;) {
        await this.ep.waitClearHalt();
        if (gen !== this.generation || this.state_ !== 'needs-reset') return;
        await this.ep.haltIn();
        await this.ep.haltOut();
      }
    };
    const watcher = restall();
    watcher.catch(() => undefined); // may fail after the reset won the race: nothing to report then
    try {
      await Promise.race([reset, watcher]);
    } catch (e) {
      return this.ioOutcome(e);
    }
    if (this.state_ === 'disabled') return { kind: 'stopped' };
    return { kind: 'reset-recovered' };
  }

  private ioOutcome(e: unknown): BotOutcome {
    if (this.state_ === 'disabled') return { kind: 'stopped' };
    const err = e as { code?: unknown; message?: unknown };
    return {
      kind: 'io-error',
      code: typeof err.code === 'string' ? err.code : 'EIO',
      message: typeof err.message === 'string' ? err.message : String(e),
    };
  }

  private async runCommand(cbw: Cbw): Promise<BotOutcome> {
    const H = cbw.dCBWDataTransferLength;
    const hostDir: Direction = H === 0 ? 'none' : cbw.bmCBWFlags & CbwFlag.DATA_IN ? 'in' : 'out';
    const lun = cbw.bCBWLUN & CbwMask.LUN;
    const tag = cbw.dCBWTag;
    const cdb = cbw.CBWCB.subarray(0, cbw.bCBWCBLength);
    const flight: InFlight = { tag, lun, aborted: false };
    this.current = flight;
    this.state_ = 'command';
    try {
      return await this.execute(cbw, H, hostDir, lun, cdb, flight);
    } catch (e) {
      if (flight.aborted || e instanceof AbandonedError) return { kind: 'aborted', tag };
      return this.ioOutcome(e);
    } finally {
      if (this.current === flight) this.current = undefined;
      if (this.state_ === 'command') this.state_ = 'ready';
    }
  }

  private async execute(
    cbw: Cbw,
    H: number,
    hostDir: Direction,
    lun: number,
    cdb: Buffer,
    flight: InFlight,
  ): Promise<BotOutcome> {
    const out = new DataOutReader(this.ep, hostDir === 'out' ? H : 0, this.mps, this.chunkBytes, () => flight.aborted);
    let result: ScsiResult;
    let fromHeldSense = false;
    let coreError: string | undefined;
    const held = this.heldSense.get(lun);
    this.heldSense.delete(lun);
    if (cdb[0] === REQUEST_SENSE.OPCODE && held) {
      // SPC-4 §6.29: sense is returned up to the allocation length (byte 4 of the CDB;
      // read from the 16-byte CBWCB so a short bCBWCBLength still has one).
      const alloc = cbw.CBWCB[REQUEST_SENSE.ALLOCATION_LENGTH] ?? 0;
      result = { status: Status.GOOD, dataIn: held.subarray(0, Math.min(alloc, held.length)) };
      fromHeldSense = true;
    } else {
      const cmd: ScsiCommand = {
        lun,
        cdb,
        tag: cbw.dCBWTag,
        attribute: 'simple',
        nexus: this.nexus,
        dataInLength: hostDir === 'in' ? H : 0,
        dataOutLength: hostDir === 'out' ? H : 0,
        dataOut: (n) => out.read(n),
        get aborted() {
          return flight.aborted;
        },
      };
      try {
        result = await this.port.execute(cmd);
      } catch (e) {
        if (flight.aborted || e instanceof AbandonedError) throw e;
        if (out.ioError !== undefined) throw out.ioError;
        coreError = e instanceof Error ? e.message : String(e);
        result = { status: Status.CHECK_CONDITION };
      }
      if (flight.aborted) throw new AbandonedError('command abandoned');
      // The core may have turned a failed bulk-OUT read into sense: the pipe is gone all the same.
      if (out.ioError !== undefined) throw out.ioError;
      if (result.status === Status.CHECK_CONDITION && result.sense && result.sense.length > 0) {
        this.heldSense.set(lun, Buffer.from(result.sense));
      }
    }

    const di = result.dataIn?.length ?? 0;
    const doExpected = result.dataOutExpected ?? out.consumed;
    const devDir: Direction = coreError !== undefined ? hostDir : di > 0 ? 'in' : doExpected > 0 ? 'out' : 'none';
    const devLength = devDir === 'in' ? di : devDir === 'out' ? doExpected : 0;
    const cls = classifyCase(hostDir, H, devDir, devLength);
    const phase = cls.phaseError || coreError !== undefined;

    const ok = result.status === Status.GOOD || result.status === Status.CONDITION_MET;
    const status: CswStatusValue = phase ? CswStatus.PHASE_ERROR : ok ? CswStatus.PASSED : CswStatus.FAILED;
    await this.settleIn();
    let residue = 0;
    let cswSent = false;
    if (hostDir === 'in') {
      let sent = 0;
      if (cls.botCase === 'Hi<>Do' || coreError !== undefined) {
        // §6.7.2 case 8: no data; stall Bulk-In.
        await this.ep.haltIn();
      } else if (cls.botCase === 'Hi=Di' && H % this.mps === 0 && this.ep.writeInv && !phase) {
        // Case 6: residue 0, status known now; the CSW rides on the last data write. Only when
        // the data ends on a packet boundary: else data tail + CSW would share one packet,
        // longer than what the host's request has left (babble).
        sent = await this.sendDataIn(result.dataIn, H, flight, encodeCsw(cbw.dCBWTag, 0, status));
        cswSent = true;
      } else {
        sent = await this.sendDataIn(result.dataIn, H, flight);
      }
      residue = H - sent;
    } else if (hostDir === 'out') {
      if (cls.botCase === 'Ho<>Di' || coreError !== undefined) {
        // §6.7.3 case 10: stall Bulk-Out.
        await this.ep.haltOut();
      } else if (!out.done) {
        // §6.7.3 cases 9 and 11: stall, or accept and discard what the device did not take.
        if (this.stallDataOut) await this.ep.haltOut();
        else await out.discard();
      }
      residue = H - out.consumed;
    }
    if (flight.aborted) throw new AbandonedError('command abandoned');

    if (!cswSent) {
      const w = this.ep.writeIn(encodeCsw(cbw.dCBWTag, residue, status));
      if (this.pipelineStatus) {
        w.catch(() => undefined); // reported by settleIn, unless a reset/disable made it moot
        this.pendingIn = w;
      } else {
        await w;
      }
    }
    const outcome: BotOutcome = {
      kind: 'csw',
      tag: cbw.dCBWTag,
      lun,
      botCase: cls.botCase,
      status,
      residue,
      ...(fromHeldSense ? { fromHeldSense } : { scsiStatus: result.status }),
      ...(coreError !== undefined ? { coreError } : {}),
    };
    return outcome;
  }

  /**
   * Send min(Di, H) bytes in whole-packet chunks. When less than H went out, end the transfer
   * with a short packet (a ZLP if the data filled its last packet) and, with stallDataIn, halt
   * Bulk-In: §6.7.2 cases 4 and 5, as f_mass_storage does. Returns the bytes sent.
   */
  private async sendDataIn(data: Buffer | undefined, H: number, flight: InFlight, csw?: Buffer): Promise<number> {
    const len = Math.min(data?.length ?? 0, H);
    const step = this.chunkBytes;
    for (let off = 0; off < len; off += step) {
      if (flight.aborted) throw new AbandonedError('command abandoned');
      const piece = (data as Buffer).subarray(off, Math.min(off + step, len));
      if (csw && off + step >= len && this.ep.writeInv) {
        // The CSW must not wait for the host: with pipelining, like a separate CSW write.
        const w = this.ep.writeInv([piece, csw]);
        if (this.pipelineStatus) {
          w.catch(() => undefined);
          this.pendingIn = w;
        } else {
          await w;
        }
      } else {
        await this.ep.writeIn(piece);
      }
    }
    if (len < H) {
      if (len % this.mps === 0) await this.ep.writeIn(Buffer.alloc(0));
      if (this.stallDataIn) await this.ep.haltIn();
    }
    return len;
  }
}

/** SPC-4 §7.6.4 PROTOCOL IDENTIFIER: BOT has none of its own ("no specific protocol"). */
export const PROTOCOL_ID_NONE = 0x0f;

/**
 * The one I_T nexus of a USB function: the host on the other end of the cable.
 * `gadget`/`udc` name the target port; the host has no name a device can learn, so the
 * initiator is named after the port too. The TransportID is lunbox-local (protocol F has
 * no standard format): byte 0 = protocol id, then the initiator name, NUL-padded to 24 bytes.
 */
export function usbNexus(opts: { readonly gadget: string; readonly udc: string; readonly relativeTargetPortId?: number }): Nexus {
  const targetPort = `usb:${opts.gadget}@${opts.udc}`;
  const initiatorName = `usb-host@${opts.udc}`;
  const transportId = Buffer.alloc(24);
  transportId[0] = PROTOCOL_ID_NONE;
  transportId.write(initiatorName.slice(0, 20), 4, 'ascii');
  return {
    id: `${initiatorName}|${targetPort}`,
    initiatorName,
    initiatorPort: initiatorName,
    targetPort,
    relativeTargetPortId: opts.relativeTargetPortId ?? 1,
    protocolId: PROTOCOL_ID_NONE,
    transportId,
  };
}

/**
 * The ep0 side of a BOT function: ENABLE starts the machine at the current speed's packet
 * size (FunctionFS does not say which speed: read /sys/class/udc/<udc>/current_speed),
 * DISABLE/UNBIND stop it, SETUPs are answered by `BotFunction.setup`.
 */
export function botEp0Handler(bot: BotFunction, maxPacketSize: () => number): Ep0Handler {
  return {
    async event(kind) {
      if (kind === 'enable') bot.enable(maxPacketSize());
      else if (kind === 'disable' || kind === 'unbind') await bot.disable();
      // BIND, SUSPEND and RESUME need nothing from a mass-storage function.
    },
    setup: (s) => bot.setup(s),
  };
}
