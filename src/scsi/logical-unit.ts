// A logical unit: the task set, unit attentions per I_T nexus, mode page state, SPC-2
// reservations, medium state, and the pipeline every command goes through
// (SAM-5 §5.14 unit attention → opcode → CDB fields → reservation → medium → protect → handler).

import { createHash } from 'node:crypto';
import type { Backstore } from '../backstores/backstore';
import { Status, type Nexus, type ScsiCommand, type ScsiResult, type TaskAttribute } from './types';
import {
  Asc,
  SenseKey,
  encodeSense,
  illegal,
  internalFailure,
  invalidCdb,
  writeProtected,
  type AscCode,
  type SenseSpec,
} from './sense';
import type { CommandContext, CommandDef } from './command';
import { commandTable, lookupCommand, type CommandTable } from './commands';
import { MediaEvent, emptyMedium, isEmptyMedium, type MediaEventCode } from './mmc/mmc';
import { queueUa } from './unit-attention';
import { hasPersistentRegistrations, persistentReservationConflict } from './spc/persistent-reservations';
import { aluaCheck, type AluaGroups } from './spc/alua';
import { MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_WRITE_SAME_BLOCKS } from './limits';

/** Peripheral device type: 00h direct access block device, 05h CD/DVD device (MMC-6). */
export type DeviceType = 'disk' | 'cdrom';

export interface LogicalUnitOptions {
  /** For a CD-ROM, the disc; `emptyMedium(name)` (mmc/mmc.ts) for an empty drive. */
  backstore: Backstore;
  /** 'cdrom': removable, read-only, 2048-byte blocks, the MMC command set. Default 'disk'. */
  deviceType?: DeviceType;
  /** 512 (default) | 1024 | 2048 | 4096 */
  blockSize?: number;
  vendor?: string;
  product?: string;
  revision?: string;
  serial?: string;
  naa?: bigint;
  readOnly?: boolean;
  writeCache?: boolean;
  removable?: boolean;
  thinProvisioning?: boolean;
  /** Physical block size in bytes, a power-of-two multiple of blockSize (READ CAPACITY(16) LBPPBE). */
  physicalBlockSize?: number;
  /**
   * T10 protection information (SBC-3 §4.22). Present: the unit supports PI (INQUIRY
   * PROTECT, FORMAT UNIT FMTPINFO) and starts formatted with `type`; needs `backstore.pi`.
   */
  protection?: { type: 0 | 1 | 3 };
  /** SANITIZE pace in bytes per second (sbc/sanitize.ts). Default 32 MiB/s. */
  sanitizeRate?: number;
}

export interface ResolvedLogicalUnitOptions {
  readonly backstore: Backstore;
  readonly deviceType: DeviceType;
  readonly blockSize: number;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly serial: string;
  readonly naa: bigint;
  readonly readOnly: boolean;
  readonly writeCache: boolean;
  readonly removable: boolean;
  readonly thinProvisioning: boolean;
  readonly physicalBlockSize: number;
  /** The unit supports protection information (FORMAT UNIT may switch its type). */
  readonly protectionCapable: boolean;
  readonly sanitizeRate: number;
}

const BLOCK_SIZES = [512, 1024, 2048, 4096];
const PRODUCT_BY_KIND: Record<string, string> = { ram: 'RAMDISK', file: 'FILEIO', block: 'BLOCKIO' };

/** See LogicalUnit.condition. */
export interface UnitCondition {
  gate(def: CommandDef | undefined): SenseSpec | undefined;
  requestSense(): SenseSpec | undefined;
}

/** The medium of a CD-ROM cannot be removed: a PREVENT is in effect (use `force`). */
export class MediumRemovalPreventedError extends Error {
  readonly code = 'EPREVENTED';
  constructor(name: string) {
    super(`${name}: the host prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL); an eject request was sent to it`);
    this.name = 'MediumRemovalPreventedError';
  }
}

/** What a management-side medium change did. */
export interface MediumChange {
  /** The backstore that was in the drive (the caller closes it once `idle()` resolves). */
  readonly previous: Backstore | undefined;
  /** A PREVENT was overridden. */
  readonly forced: boolean;
}

/** Unit attention queued for one I_T nexus. */
interface NexusState {
  /** ASC/ASCQ of pending unit attentions, oldest first (reset family first). */
  readonly uas: AscCode[];
  prevent: boolean;
}

const SETTLED: Promise<void> = Promise.resolve();

/**
 * One entry of the task set. Its promises are made only when someone waits for them (a
 * TMF settling, an ORDERED task behind it): a plain READ or WRITE makes none of them.
 */
class Task {
  aborted = false;
  /** The handler has returned (no more side effects). */
  finished = false;
  /** Ends execute() with TASK ABORTED at once; set while the command runs. */
  onAbort: (() => void) | null = null;
  /** Fails a data-out pull in progress (the fabric may never deliver). */
  onPullAbort: (() => void) | null = null;
  private donePromise: Promise<void> | null = null;
  private doneResolve: (() => void) | null = null;
  private abortPromise: Promise<void> | null = null;
  private abortResolve: (() => void) | null = null;

  constructor(
    readonly tag: number,
    readonly nexusId: string,
    readonly attribute: TaskAttribute,
  ) {}

  /** Settles when the handler has returned. */
  get done(): Promise<void> {
    if (this.finished) return SETTLED;
    return (this.donePromise ??= new Promise<void>((r) => (this.doneResolve = r)));
  }

  /** Resolves when the task is aborted. */
  get abortSignal(): Promise<void> {
    if (this.aborted) return SETTLED;
    return (this.abortPromise ??= new Promise<void>((r) => (this.abortResolve = r)));
  }

  finish(): void {
    this.finished = true;
    this.doneResolve?.();
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortResolve?.();
    this.onPullAbort?.();
    this.onAbort?.();
  }
}

export const ABORTED: ScsiResult = Object.freeze({ status: Status.TASK_ABORTED });

class AbortedError extends Error {
  constructor() {
    super('task aborted');
  }
}

/** The fabric could not deliver data-out (protocol error, connection trouble). */
class DataOutError extends Error {}

/** SBC-3 §5.16.2: LOGICAL BLOCKS PER PHYSICAL BLOCK is 2^LBPPBE, at most 2^15. */
function physicalBlockSizeOf(physical: number | undefined, logical: number): number {
  if (physical === undefined) return logical;
  const ratio = physical / logical;
  if (!Number.isInteger(ratio) || ratio < 1 || ratio > 0x8000 || (ratio & (ratio - 1)) !== 0) {
    throw new RangeError(`physicalBlockSize must be blockSize (${logical}) times a power of two, got ${physical}`);
  }
  return physical;
}

function deriveSerial(name: string): string {
  return createHash('sha256').update(`lunbox:${name}`).digest('hex').slice(0, 16);
}

function deriveNaa(serial: string): bigint {
  // 124 bits after the NAA nibble: IEEE company id (24) + vendor specific (36 + 64).
  const h = createHash('sha256').update(`lunbox-naa:${serial}`).digest();
  return ((h.readBigUInt64BE(0) << 64n) | h.readBigUInt64BE(8)) & ((1n << 124n) - 1n);
}

function fit(s: string, n: number): string {
  return s.slice(0, n);
}

/** What a handler sees: one object per command, methods on the prototype (no closures). */
class Context implements CommandContext {
  constructor(
    readonly cmd: ScsiCommand,
    readonly lu: LogicalUnit,
    readonly writeProtected: boolean,
    private readonly task: Task,
  ) {}

  fail(s: SenseSpec): ScsiResult {
    return this.lu.senseResult(s);
  }

  good(dataIn?: Buffer, allocation?: number): ScsiResult {
    if (!dataIn) return { status: Status.GOOD };
    const n = allocation === undefined ? dataIn.length : Math.min(allocation, dataIn.length);
    return { status: Status.GOOD, dataIn: n === dataIn.length ? dataIn : dataIn.subarray(0, n) };
  }

  pull(length: number): Promise<Buffer> {
    const task = this.task;
    const cmd = this.cmd;
    if (task.aborted || cmd.aborted) return Promise.reject(new AbortedError());
    return new Promise<Buffer>((resolve, reject) => {
      // An abort fails the pull at once: the fabric may never deliver the data.
      task.onPullAbort = () => reject(new AbortedError());
      cmd.dataOut(length).then(
        (got) => {
          task.onPullAbort = null;
          if (task.aborted || cmd.aborted) reject(new AbortedError());
          else resolve(got);
        },
        (e: unknown) => {
          task.onPullAbort = null;
          reject(task.aborted || cmd.aborted ? new AbortedError() : new DataOutError(e instanceof Error ? e.message : String(e)));
        },
      );
    });
  }

  get aborted(): boolean {
    return this.task.aborted || this.cmd.aborted === true;
  }
}

/**
 * A fast path's hold on a unit: a USB worker thread serving plain READ and WRITE for one
 * nexus straight from the backstore's file descriptor, without the core (usb/bot-fast.ts).
 * The unit gives it up (revoke) the moment anything that could change those commands'
 * outcome happens: a command from another nexus, a unit attention for the holder, a medium
 * change, nexus loss, close. revoke() stops new fast commands at once and resolves when the
 * one in flight (if any) has finished its backstore I/O.
 */
export interface FastPathLease {
  readonly holder: string;
  revoke(): Promise<void>;
}

/** What a fast path may serve for a nexus (fastPathGrant). */
export interface FastPathGrant {
  readonly read: true;
  readonly write: boolean;
  /** WCE=0: every write must be durable before its status (SBC-3 §5.40, as FUA). */
  readonly writeThrough: boolean;
}

export class LogicalUnit {
  readonly options: ResolvedLogicalUnitOptions;
  /** The medium; a CD-ROM swaps it on a medium change (insertMedium / ejectMedium). */
  backstore: Backstore;
  readonly blockSize: number;

  // Mode page state (current values; saved values are not supported).
  writeCacheEnabled: boolean;
  descriptorSense = false;
  softwareWriteProtect = false;

  /** Medium state for removable units (SBC-3 §5.25 START STOP UNIT, LOEJ): ready for media access. */
  mediumLoaded = true;
  /** CD-ROM: a disc is in the drive (possibly on the open tray). */
  mediumPresent = true;
  /** CD-ROM: the tray is open (MMC-6 §6.7.2.5 DOOR OR TRAY OPEN). */
  trayOpen = false;
  /** CD-ROM: the media event GESN reports next (MMC-6 §6.7.2.5), consumed by reporting it. */
  private mediaEvent: MediaEventCode = MediaEvent.NO_CHANGE;
  private readonly table: CommandTable;
  /** SPC-2 RESERVE(6)/(10) holder (nexus id). */
  reservationHolder: string | undefined;
  /** SPC-4 §5.15 target port groups, bound by the first TargetPort that carries them (spc/alua.ts). */
  alua: AluaGroups | undefined;
  // Control mode page task set fields (SPC-4 §7.5.8), changeable by MODE SELECT.
  /** TAS: tasks aborted by another nexus's action end with TASK ABORTED (default 1, like LIO). */
  taskAbortedStatus = true;
  /** QERR: 0 tasks unaffected by a CHECK CONDITION; 1 all others aborted; 3 the nexus's others aborted. */
  qerr: 0 | 1 | 3 = 0;
  /** UA_INTLCK_CTRL: 0 a reported UA is cleared; 2 kept until REQUEST SENSE; 3 as 2 plus PREVIOUS ... STATUS UAs. */
  uaInterlock: 0 | 2 | 3 = 0;
  /** SBC-3 §4.22 protection type the medium is formatted with (0: none); FORMAT UNIT changes it. */
  protectionType: 0 | 1 | 3 = 0;
  /**
   * A unit-wide condition that gates commands (SANITIZE in progress or failed, SBC-3
   * §4.11): `gate` gives the sense a command ends with, `requestSense` what REQUEST SENSE reports.
   */
  condition: UnitCondition | undefined;

  private readonly nexuses = new Map<string, NexusState>();
  private readonly tasks: Task[] = [];
  private closed = false;
  /** The fast path serving plain READ/WRITE for one nexus, if any (FastPathLease). */
  private lease: FastPathLease | undefined;

  constructor(opts: LogicalUnitOptions) {
    const bs = opts.backstore;
    const deviceType = opts.deviceType ?? 'disk';
    const cdrom = deviceType === 'cdrom';
    const blockSize = opts.blockSize ?? (cdrom ? 2048 : 512);
    if (cdrom) {
      // MMC-6 §4.2: 2048-byte user data blocks; the medium is read-only and removable.
      if (blockSize !== 2048) throw new RangeError(`a cdrom unit has 2048-byte blocks, got blockSize ${blockSize}`);
      if (opts.readOnly === false) throw new RangeError('a cdrom unit is read-only');
      if (opts.removable === false) throw new RangeError('a cdrom unit is removable');
      if (opts.protection !== undefined || opts.thinProvisioning === true) {
        throw new RangeError('a cdrom unit has no protection information or thin provisioning');
      }
    }
    if (!BLOCK_SIZES.includes(blockSize)) {
      throw new RangeError(`blockSize must be one of ${BLOCK_SIZES.join(', ')}, got ${blockSize}`);
    }
    const serial = fit(opts.serial ?? deriveSerial(bs.name), 64);
    this.options = {
      backstore: bs,
      deviceType,
      blockSize,
      vendor: fit(opts.vendor ?? 'LUNBOX', 8),
      product: fit(opts.product ?? (cdrom ? 'CDROM' : PRODUCT_BY_KIND[bs.kind] ?? 'DISK'), 16),
      revision: fit(opts.revision ?? '0001', 4),
      serial,
      naa: (opts.naa ?? deriveNaa(serial)) & ((1n << 124n) - 1n),
      readOnly: cdrom || (opts.readOnly ?? bs.readOnly),
      writeCache: !cdrom && (opts.writeCache ?? bs.volatileCache),
      removable: cdrom || (opts.removable ?? false),
      thinProvisioning: !cdrom && (opts.thinProvisioning ?? bs.canUnmap),
      physicalBlockSize: physicalBlockSizeOf(opts.physicalBlockSize, blockSize),
      protectionCapable: opts.protection !== undefined,
      sanitizeRate: opts.sanitizeRate ?? 32 * 1024 * 1024,
    };
    if (opts.protection !== undefined) {
      if (![0, 1, 3].includes(opts.protection.type)) {
        throw new RangeError(`protection type must be 0, 1 or 3, got ${String(opts.protection.type)}`);
      }
      if (!bs.pi) throw new RangeError(`protection information needs a backstore opened with a PI store (${bs.name})`);
      this.protectionType = opts.protection.type;
    }
    this.backstore = bs;
    this.blockSize = blockSize;
    this.writeCacheEnabled = this.options.writeCache;
    this.table = commandTable(deviceType);
    if (cdrom && isEmptyMedium(bs)) {
      this.mediumPresent = false;
      this.mediumLoaded = false;
    }
  }

  get isCdrom(): boolean {
    return this.options.deviceType === 'cdrom';
  }

  get name(): string {
    return this.backstore.name;
  }
  /** Size in bytes as the backstore reports it now. */
  get size(): number {
    return this.backstore.size;
  }
  /** Number of logical blocks (whole blocks only). */
  get blockCount(): number {
    return Math.floor(this.backstore.size / this.blockSize);
  }
  get thin(): boolean {
    return this.options.thinProvisioning;
  }
  /** SBC-3 LBPRZ: unmapped blocks read as zeros (true when unmap is emulated by writing zeros). */
  get unmapReadsZero(): boolean {
    return this.backstore.canUnmap ? this.backstore.unmapReadsZero : true;
  }
  /** Blocks per command we accept (SBC-3 §6.6.4 MAXIMUM TRANSFER LENGTH). */
  get maxTransferBlocks(): number {
    return MAX_TRANSFER_BYTES / this.blockSize;
  }
  get maxWriteSameBlocks(): number {
    return MAX_WRITE_SAME_BLOCKS;
  }
  get maxUnmapBlocks(): number {
    return MAX_UNMAP_BLOCKS;
  }

  // ---------------------------------------------------------------- unit attentions

  private nexusState(id: string): NexusState {
    let s = this.nexuses.get(id);
    if (!s) {
      // SAM-5 §6.3.1: a new I_T nexus first sees POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
      s = { uas: [Asc.POWER_ON_RESET], prevent: false };
      this.nexuses.set(id, s);
    }
    return s;
  }

  /** Queue a unit attention for one nexus, by precedence (unit-attention.ts). */
  raiseUa(nexusId: string, asc: AscCode): void {
    if (this.lease?.holder === nexusId) this.dropLease();
    queueUa(this.nexusState(nexusId).uas, asc);
  }

  // ---------------------------------------------------------------- fast path lease

  /**
   * Whether a fast path may serve plain READ (and WRITE) for `nexus` now, with the same
   * outcome the core would give: the nexus is known and has no unit attention, no other
   * nexus has a command in the task set, no reservation of either kind, no protection
   * information, no sanitize condition, the medium is loaded, the port's ALUA state is active,
   * and a disk (a CD-ROM changes its disc under management). Undefined when not.
   */
  fastPathGrant(nexus: Nexus, mapReadOnly: boolean): FastPathGrant | undefined {
    if (this.closed || this.isCdrom || this.condition !== undefined || this.protectionType !== 0 || !this.mediumLoaded) return undefined;
    const state = this.nexuses.get(nexus.id);
    if (state === undefined || state.uas.length > 0) return undefined;
    if (this.reservationHolder !== undefined || hasPersistentRegistrations(this)) return undefined;
    if (this.alua !== undefined) {
      const a = this.alua.stateOf(nexus.relativeTargetPortId);
      if (a !== 'active/optimized' && a !== 'active/non-optimized') return undefined;
    }
    if (this.tasks.some((t) => t.nexusId !== nexus.id)) return undefined;
    const write = !(mapReadOnly || this.options.readOnly || this.softwareWriteProtect || this.backstore.readOnly);
    return { read: true, write, writeThrough: !this.writeCacheEnabled };
  }

  /** Hand the unit to a fast path (after fastPathGrant said yes); replaces any earlier lease. */
  grantLease(lease: FastPathLease): void {
    if (this.lease !== undefined && this.lease !== lease) this.dropLease();
    this.lease = lease;
  }

  /** The current lease, if any (tests, console). */
  get fastLease(): FastPathLease | undefined {
    return this.lease;
  }

  /** Take the lease back: no new fast command starts; resolves when the one in flight is done. */
  dropLease(): Promise<void> {
    const l = this.lease;
    if (l === undefined) return Promise.resolve();
    this.lease = undefined;
    return l.revoke();
  }

  /** Queue a unit attention for every nexus that has talked to this unit (except `except`). */
  raiseUaAll(asc: AscCode, except?: string): void {
    for (const id of this.nexuses.keys()) if (id !== except) this.raiseUa(id, asc);
  }

  /** Take (and clear) the unit attention to report next for a nexus. */
  takeUa(nexusId: string): AscCode | undefined {
    return this.nexusState(nexusId).uas.shift();
  }

  /**
   * The unit attention a CHECK CONDITION reports: cleared by the report when UA_INTLCK_CTRL
   * is 00b, left queued for REQUEST SENSE when 10b/11b (SPC-4 §7.5.8).
   */
  reportUa(nexusId: string): AscCode | undefined {
    const q = this.nexusState(nexusId).uas;
    return this.uaInterlock === 0 ? q.shift() : q[0];
  }

  /** Drop a specific pending unit attention (REPORT LUNS clears 3Fh/0Eh). */
  clearUa(nexusId: string, asc: AscCode): void {
    const s = this.nexuses.get(nexusId);
    if (!s) return;
    const i = s.uas.indexOf(asc);
    if (i >= 0) s.uas.splice(i, 1);
  }

  /** Pending unit attentions, for tests and the console. */
  pendingUas(nexusId: string): readonly AscCode[] {
    return this.nexuses.get(nexusId)?.uas ?? [];
  }

  capacityChanged(): void {
    this.raiseUaAll(Asc.CAPACITY_DATA_HAS_CHANGED);
  }

  // ---------------------------------------------------------------- medium / prevent

  isPrevented(): boolean {
    for (const s of this.nexuses.values()) if (s.prevent) return true;
    return false;
  }
  setPrevent(nexusId: string, on: boolean): void {
    this.nexusState(nexusId).prevent = on;
  }

  /** SPC-4 §4.5.6 / MMC-6 §4.1.6: why a media access is NOT READY (tray open or closed). */
  notReadySense(): SenseSpec {
    if (this.isCdrom && !this.trayOpen) return { key: SenseKey.NOT_READY, asc: Asc.MEDIUM_NOT_PRESENT_TRAY_CLOSED };
    return { key: SenseKey.NOT_READY, asc: Asc.MEDIUM_NOT_PRESENT_TRAY_OPEN };
  }

  /** GESN: the pending media event, cleared by reporting it. */
  takeMediaEvent(): MediaEventCode {
    const e = this.mediaEvent;
    this.mediaEvent = MediaEvent.NO_CHANGE;
    return e;
  }

  /** CD-ROM tray opened by START STOP UNIT (LOEJ, START 0): the disc stays on the tray. */
  openTray(): void {
    if (this.trayOpen) return;
    this.trayOpen = true;
    this.mediumLoaded = false;
    if (this.mediumPresent) this.mediaEvent = MediaEvent.MEDIA_REMOVAL;
  }

  /** CD-ROM tray closed (LOEJ, START 1): a disc on it becomes ready, NOT READY TO READY CHANGE. */
  closeTray(): void {
    if (!this.trayOpen) return;
    this.trayOpen = false;
    if (this.mediumPresent) this.mediumReady();
  }

  private mediumReady(): void {
    this.mediumLoaded = true;
    this.mediaEvent = MediaEvent.NEW_MEDIA;
    // SPC-4 §6.4 / MMC-6 §4.1.6.1: every initiator learns the medium may have changed.
    this.raiseUaAll(Asc.NOT_READY_TO_READY_CHANGE);
  }

  private checkRemoval(force: boolean): boolean {
    if (!this.mediumPresent || !this.isPrevented()) return false;
    if (!force) {
      // MMC-6 §6.7.2.5: the host is told a user asked for the disc (EjectRequest).
      this.mediaEvent = MediaEvent.EJECT_REQUEST;
      throw new MediumRemovalPreventedError(this.name);
    }
    for (const s of this.nexuses.values()) s.prevent = false;
    return true;
  }

  /**
   * Management side: put `medium` in the drive (replacing a disc, as eject + insert) and close
   * the tray. Refused while the host prevents removal of a disc unless `force`.
   */
  insertMedium(medium: Backstore, opts: { force?: boolean } = {}): MediumChange {
    if (!this.isCdrom) throw new RangeError(`${this.name}: only a cdrom unit changes its medium`);
    const forced = this.checkRemoval(opts.force === true);
    void this.dropLease();
    const previous = this.mediumPresent ? this.backstore : undefined;
    this.backstore = medium;
    this.mediumPresent = !isEmptyMedium(medium);
    this.trayOpen = false;
    this.mediumLoaded = false;
    if (this.mediumPresent) this.mediumReady();
    return { previous, forced };
  }

  /** Management side: take the disc out and leave the tray open. Refused under PREVENT unless `force`. */
  ejectMedium(opts: { force?: boolean } = {}): MediumChange {
    if (!this.isCdrom) throw new RangeError(`${this.name}: only a cdrom unit ejects its medium`);
    const forced = this.checkRemoval(opts.force === true);
    void this.dropLease();
    const previous = this.mediumPresent ? this.backstore : undefined;
    if (previous) this.mediaEvent = MediaEvent.MEDIA_REMOVAL;
    this.backstore = emptyMedium(this.name);
    this.mediumPresent = false;
    this.mediumLoaded = false;
    this.trayOpen = true;
    return { previous, forced };
  }

  /** Resolves when the commands in the task set now have finished (before closing an old medium). */
  idle(): Promise<void> {
    return this.settle(this.tasks.slice());
  }

  // ---------------------------------------------------------------- resets

  /** SAM-5 §7.7 LOGICAL UNIT RESET (and the LU's share of a target reset). */
  async reset(asc: AscCode): Promise<void> {
    const aborted = this.abortWhere(() => true);
    this.reservationHolder = undefined;
    for (const s of this.nexuses.values()) s.prevent = false;
    this.raiseUaAll(asc);
    await this.settle(aborted);
  }

  /** SAM-5 §7.6 I_T NEXUS RESET for this unit, or nexus loss (`lost`: forget the nexus). */
  async nexusReset(nexusId: string, lost: boolean): Promise<void> {
    const aborted = this.abortWhere((t) => t.nexusId === nexusId);
    if (this.reservationHolder === nexusId) this.reservationHolder = undefined;
    if (lost && this.lease?.holder === nexusId) void this.dropLease();
    if (lost) this.nexuses.delete(nexusId);
    else {
      const s = this.nexusState(nexusId);
      s.prevent = false;
      this.raiseUa(nexusId, Asc.I_T_NEXUS_LOSS_OCCURRED);
    }
    await this.settle(aborted);
  }

  // ---------------------------------------------------------------- task set

  /** Abort tasks matching `pred`; returns them so the caller can wait for them to settle. */
  abortWhere(pred: (t: Task) => boolean): Task[] {
    const hit = this.tasks.filter((t) => !t.aborted && pred(t));
    for (const t of hit) t.abort();
    return hit;
  }

  abortTask(nexusId: string, tag: number): Task[] {
    return this.abortWhere((t) => t.nexusId === nexusId && t.tag === tag);
  }

  hasTask(nexusId: string, tag: number): boolean {
    return this.tasks.some((t) => !t.aborted && t.nexusId === nexusId && t.tag === tag);
  }

  /** Abort every task of a nexus (ABORT TASK SET) or of all nexuses (CLEAR TASK SET). */
  abortTaskSet(nexusId: string, all: boolean): Task[] {
    const hit = this.abortWhere((t) => all || t.nexusId === nexusId);
    if (all) {
      // SPC-4 §7.5.8 (TAS=0): other initiators learn of their lost tasks by unit attention.
      const others = new Set(hit.filter((t) => t.nexusId !== nexusId).map((t) => t.nexusId));
      // TAS=1: they get TASK ABORTED status instead, and no unit attention.
      if (!this.taskAbortedStatus) for (const id of others) this.raiseUa(id, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
    }
    return hit;
  }

  async settle(tasks: readonly Task[]): Promise<void> {
    await Promise.all(tasks.map((t) => t.done));
  }

  get tasksInFlight(): number {
    return this.tasks.length;
  }

  /** Tasks the new one must wait for, or null (the common case: nothing to wait for). */
  private dependencies(attribute: TaskAttribute): Promise<void>[] | null {
    // SAM-5 §8.6: ORDERED waits for every older task; SIMPLE waits for older ORDERED tasks;
    // HEAD OF QUEUE starts at once.
    let deps: Promise<void>[] | null = null;
    if (attribute === 'ordered') for (const t of this.tasks) (deps ??= []).push(t.done);
    else if (attribute === 'simple' || attribute === 'aca')
      for (const t of this.tasks) if (t.attribute === 'ordered') (deps ??= []).push(t.done);
    return deps;
  }

  private leave(task: Task): void {
    task.finish();
    const i = this.tasks.indexOf(task);
    if (i >= 0) this.tasks.splice(i, 1);
  }

  // ---------------------------------------------------------------- execution

  /** Sense in the format the control mode page selects (D_SENSE). */
  senseResult(s: SenseSpec): ScsiResult {
    return { status: Status.CHECK_CONDITION, sense: encodeSense(s, this.descriptorSense) };
  }

  /**
   * Run one command addressed to this unit. `mapReadOnly`: the LUN map entry is read-only.
   * Never throws: unexpected exceptions become HARDWARE ERROR / INTERNAL TARGET FAILURE.
   */
  execute(cmd: ScsiCommand, mapReadOnly = false): Promise<ScsiResult> {
    // Another nexus: the fast path stops first, so this command sees every write it did.
    if (this.lease !== undefined && this.lease.holder !== cmd.nexus.id) {
      return this.dropLease().then(() => this.execute(cmd, mapReadOnly));
    }
    if (this.closed) return Promise.resolve(this.senseResult({ key: SenseKey.NOT_READY, asc: Asc.LUN_NOT_READY_CAUSE_NOT_REPORTABLE }));
    const cdb = cmd.cdb;
    const opcode = cdb[0] ?? 0;
    const def = lookupCommand(opcode, cdb, this.table);

    // SBC-3 §4.11.2: during a sanitize operation commands end NOT READY, SANITIZE IN
    // PROGRESS. Checked before unit attentions, which stay queued until it ends.
    if (this.condition !== undefined) {
      const s = this.condition.gate(def === 'bad-sa' ? undefined : def);
      if (s) return Promise.resolve(this.senseResult(s));
    }

    // SAM-5 §5.14: a pending unit attention terminates any command but the exempt ones.
    const exempt = def !== undefined && def !== 'bad-sa' && def.uaExempt === true;
    if (!exempt) {
      const ua = this.reportUa(cmd.nexus.id);
      if (ua !== undefined) return Promise.resolve(this.senseResult({ key: SenseKey.UNIT_ATTENTION, asc: ua }));
    } else {
      this.nexusState(cmd.nexus.id);
    }
    if (def === undefined) return Promise.resolve(this.senseResult(illegal(Asc.INVALID_COMMAND_OPERATION_CODE)));
    if (def === 'bad-sa') return Promise.resolve(this.senseResult(invalidCdb(1, 4)));
    if (def.supported && !def.supported(this)) {
      return Promise.resolve(this.senseResult(illegal(Asc.INVALID_COMMAND_OPERATION_CODE)));
    }

    const attribute: TaskAttribute = def.headOfQueue ? 'head-of-queue' : cmd.attribute;
    const deps = this.dependencies(attribute);
    const task = new Task(cmd.tag, cmd.nexus.id, attribute);
    this.tasks.push(task);
    // One promise per command: resolved by the handler's result, or at once with TASK
    // ABORTED when the task is aborted while the handler still runs (it leaves the task set
    // only when it returns). Plain callbacks, not an async function per stage: this runs
    // for every READ and WRITE.
    return new Promise<ScsiResult>((resolve) => {
      let answered = false;
      const answer = (r: ScsiResult): void => {
        if (answered) return;
        answered = true;
        task.onAbort = null;
        const out = task.aborted || cmd.aborted ? ABORTED : r;
        if (out.status === Status.CHECK_CONDITION || out.status === Status.RESERVATION_CONFLICT) this.afterFailure(task, out);
        resolve(out);
      };
      task.onAbort = () => answer(ABORTED);
      const run = (): void => {
        if (task.aborted || cmd.aborted) {
          this.leave(task);
          answer(ABORTED);
          return;
        }
        let out: ScsiResult | Promise<ScsiResult>;
        try {
          out = this.dispatch(cmd, def, task, mapReadOnly);
        } catch (e) {
          out = Promise.reject(e);
        }
        if (!(out instanceof Promise)) {
          this.leave(task);
          answer(out);
          return;
        }
        out.then(
          (r) => {
            this.leave(task);
            answer(r);
          },
          (e: unknown) => {
            this.leave(task);
            answer(this.failure(e, def, task));
          },
        );
      };
      if (deps === null) run();
      else Promise.race([Promise.all(deps), task.abortSignal]).then(run);
    });
  }

  /**
   * SPC-4 §7.5.8: QERR 01b aborts every other task of the task set when a task ends in
   * CHECK CONDITION, 11b those of the same I_T nexus; UA_INTLCK_CTRL 11b leaves PREVIOUS
   * RESERVATION CONFLICT STATUS behind a RESERVATION CONFLICT.
   */
  private afterFailure(task: Task, r: ScsiResult): void {
    if (r.status === Status.RESERVATION_CONFLICT) {
      if (this.uaInterlock === 3) this.raiseUa(task.nexusId, Asc.PREVIOUS_RESERVATION_CONFLICT_STATUS);
      return;
    }
    if (this.qerr === 0) return;
    const hit = this.abortWhere((t) => t !== task && (this.qerr === 1 || t.nexusId === task.nexusId));
    if (!this.taskAbortedStatus) {
      for (const id of new Set(hit.map((t) => t.nexusId))) {
        if (id !== task.nexusId) this.raiseUa(id, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
      }
    }
  }

  /** A handler threw or rejected: TASK ABORTED, DATA PHASE ERROR or INTERNAL TARGET FAILURE. */
  private failure(e: unknown, def: CommandDef, task: Task): ScsiResult {
    if (e instanceof AbortedError || task.aborted) return ABORTED;
    if (e instanceof DataOutError) {
      // SAM-5 / SPC-4: a failed data transfer is ABORTED COMMAND, DATA PHASE ERROR.
      process.stderr.write(`lunbox scsi: ${def.name} on ${this.name}: data-out failed: ${e.message}\n`);
      return this.senseResult({ key: SenseKey.ABORTED_COMMAND, asc: Asc.DATA_PHASE_ERROR });
    }
    process.stderr.write(
      `lunbox scsi: ${def.name} on ${this.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    return this.senseResult(internalFailure);
  }

  private dispatch(cmd: ScsiCommand, def: CommandDef, task: Task, mapReadOnly: boolean): ScsiResult | Promise<ScsiResult> {
    const cdb = cmd.cdb;
    // SPC-4 §4.2.5.2: reserved bits set → INVALID FIELD IN CDB, pointing at the first bad bit.
    const bad = checkReservedBits(cdb, def.usage);
    if (bad) return this.senseResult(bad);
    // SPC-4 §5.15.2.4: the access state of the nexus's target port group gates the command.
    if (this.alua !== undefined) {
      const notReady = aluaCheck(this.alua, cmd.nexus.relativeTargetPortId, def);
      if (notReady) return this.senseResult(notReady);
    }

    // SPC-2 §5.5.1: another nexus holds the reservation.
    if (this.reservationHolder !== undefined && this.reservationHolder !== cmd.nexus.id && !def.reservationExempt) {
      return { status: Status.RESERVATION_CONFLICT };
    }
    // SPC-4 §5.9.1: what the persistent reservation (if any) lets this nexus run.
    const prConflict = persistentReservationConflict(this, cmd, def);
    if (prConflict) return prConflict;
    if (def.medium && !this.mediumLoaded) return this.senseResult(this.notReadySense());
    const writeProtect = mapReadOnly || this.options.readOnly || this.softwareWriteProtect;
    if (def.write && writeProtect) {
      return this.senseResult(this.softwareWriteProtect && !mapReadOnly && !this.options.readOnly
        ? { key: SenseKey.DATA_PROTECT, asc: Asc.SOFTWARE_WRITE_PROTECTED }
        : writeProtected);
    }
    return def.run(new Context(cmd, this, writeProtect, task));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dropLease();
    await this.settle(this.abortWhere(() => true));
    await this.backstore.close();
  }
}

/** First CDB bit set outside the command's usage mask, as INVALID FIELD IN CDB sense. */
export function checkReservedBits(cdb: Buffer, usage: readonly number[]): SenseSpec | undefined {
  const len = usage.length;
  if (cdb.length < len) return invalidCdb(cdb.length);
  for (let i = 1; i < len - 1; i++) {
    const extra = (cdb[i] ?? 0) & ~(usage[i] ?? 0) & 0xff;
    if (extra !== 0) return invalidCdb(i, 31 - Math.clz32(extra));
  }
  // SAM-5 §5.2: NACA (bit 2) needs ACA support and LINK (bit 0) is obsolete: both rejected.
  const control = cdb[len - 1] ?? 0;
  if (control & 0x04) return invalidCdb(len - 1, 2);
  if (control & 0x01) return invalidCdb(len - 1, 0);
  return undefined;
}

export { writeProtected };
