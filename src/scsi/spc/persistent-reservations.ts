// Persistent reservations (SPC-4 §5.9): PERSISTENT RESERVE IN (§6.15) and OUT (§6.16),
// the command conflict rules of §5.9.1, APTPL through an injectable PrStore.
//
// PR IN CDB:  1 SERVICE ACTION(4:0), 7..8 ALLOCATION LENGTH.
// PR OUT CDB: 1 SERVICE ACTION(4:0), 2 SCOPE(7:4) TYPE(3:0), 5..8 PARAMETER LIST LENGTH.
// PR OUT basic parameter list (§6.16.3), 24 bytes: 0..7 RESERVATION KEY, 8..15 SERVICE
//   ACTION RESERVATION KEY, 20 SPEC_I_PT(3) ALL_TG_PT(2) APTPL(0), then with SPEC_I_PT:
//   24..27 TRANSPORTID PARAMETER DATA LENGTH, TransportIDs.
// REGISTER AND MOVE list (§6.16.4): 0..7 RK, 8..15 SARK, 17 UNREG(1) APTPL(0),
//   18..19 RELATIVE TARGET PORT IDENTIFIER, 20..23 TRANSPORTID LENGTH, 24.. TransportID.
// iSCSI TransportID (§7.6.4.6): 0 FORMAT CODE(7:6) PROTOCOL ID(3:0)=5, 2..3 ADDITIONAL
//   LENGTH, 4.. ISCSI NAME (format 00b) or "name,i,0x<ISID>" (format 01b), NUL-terminated.
//
// A registration belongs to an I_T nexus: (initiator port, target port), or to every
// target port with ALL_TG_PT. Registrations made with a format 00b TransportID name an
// initiator device and match any of its ports.

import { Status, type Nexus, type ScsiCommand, type ScsiResult } from '../types';
import { Asc, SenseKey, illegal, invalidCdb, invalidParam } from '../sense';
import type { CommandContext, CommandDef, Handler } from '../command';
import type { LogicalUnit } from '../logical-unit';
import { Op } from '../cdb';

export const PrInAction = { READ_KEYS: 0, READ_RESERVATION: 1, REPORT_CAPABILITIES: 2, READ_FULL_STATUS: 3 } as const;
export const PrOutAction = {
  REGISTER: 0,
  RESERVE: 1,
  RELEASE: 2,
  CLEAR: 3,
  PREEMPT: 4,
  PREEMPT_AND_ABORT: 5,
  REGISTER_AND_IGNORE: 6,
  REGISTER_AND_MOVE: 7,
} as const;

/** SPC-4 §6.16.2 table: persistent reservation TYPE codes. */
export const PrType = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;
const VALID_TYPES: readonly number[] = Object.values(PrType);

/** SPC-4 Annex D unit attentions raised here. */
const PrAsc = {
  RESERVATIONS_PREEMPTED: 0x2a03,
  RESERVATIONS_RELEASED: 0x2a04,
  REGISTRATIONS_PREEMPTED: 0x2a05,
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: 0x2604,
  INSUFFICIENT_REGISTRATION_RESOURCES: 0x5504,
} as const;

const MAX_REGISTRATIONS = 128;
const BASIC_LIST = 24;

const isAllRegistrants = (t: number) => t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
const isRegistrantsType = (t: number) => t >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
const isExclusiveAccess = (t: number) =>
  t === PrType.EXCLUSIVE_ACCESS || t === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;

// ------------------------------------------------------------------ persisted state

/** One registration as plain data (what PrStore persists for APTPL). */
export interface PrRegistration {
  /** Reservation key, 16 hex digits. */
  readonly key: string;
  /** Initiator port name (`iqn...,i,0x<isid>`), lower case; undefined: any port of `initiatorName`. */
  readonly initiatorPort?: string;
  readonly initiatorName: string;
  /** Target port name, lower case; undefined with ALL_TG_PT. */
  readonly targetPort?: string;
  readonly relativeTargetPortId: number;
  /** TransportID, hex, as READ FULL STATUS reports it. */
  readonly transportId: string;
}

export interface PrState {
  readonly generation: number;
  readonly aptpl: boolean;
  readonly registrations: readonly PrRegistration[];
  /** Index into `registrations` of the holder (any registrant for all-registrants types). */
  readonly reservation?: { readonly holder: number; readonly type: number };
}

/** Where APTPL state lives across restarts (the lead wires a file next to the config). */
export interface PrStore {
  load(luId: string): Promise<PrState | undefined>;
  save(luId: string, state: PrState): Promise<void>;
}

/** An in-memory PrStore for tests. */
export class MemoryPrStore implements PrStore {
  readonly states = new Map<string, PrState>();
  async load(luId: string): Promise<PrState | undefined> {
    return this.states.get(luId);
  }
  async save(luId: string, state: PrState): Promise<void> {
    this.states.set(luId, JSON.parse(JSON.stringify(state)) as PrState);
  }
}

// ------------------------------------------------------------------ live state

interface Registration {
  key: bigint;
  initiatorPort: string | undefined;
  initiatorName: string;
  targetPort: string | undefined;
  relativeTargetPortId: number;
  transportId: Buffer;
}

interface Reservation {
  /** The holder's registration; for all-registrants types any registration holds it. */
  holder: Registration;
  type: number;
}

const lc = (s: string) => s.toLowerCase();

function matches(r: Registration, n: Nexus): boolean {
  if (r.initiatorPort !== undefined ? r.initiatorPort !== lc(n.initiatorPort) : r.initiatorName !== lc(n.initiatorName)) return false;
  return r.targetPort === undefined || r.targetPort === lc(n.targetPort);
}

/** The TransportID of a nexus: the fabric's, or an iSCSI format 01b one built from the port name. */
function transportIdOf(n: Nexus): Buffer {
  if (n.transportId.length > 0) return n.transportId;
  const name = Buffer.from(`${n.initiatorPort}\0`, 'utf8');
  const len = Math.max(20, (name.length + 3) & ~3);
  const b = Buffer.alloc(4 + len);
  b[0] = 0x40 | (n.protocolId & 0x0f);
  b.writeUInt16BE(len, 2);
  name.copy(b, 4);
  return b;
}

export interface ParsedTransportId {
  readonly initiatorName: string;
  /** Set for format 01b (name plus ISID). */
  readonly initiatorPort?: string;
  readonly length: number;
}

/** Decode an iSCSI TransportID (§7.6.4.6); undefined when malformed or not iSCSI. */
export function decodeTransportId(b: Buffer, at = 0): ParsedTransportId | undefined {
  if (b.length < at + 4) return undefined;
  const format = b[at]! >> 6;
  const proto = b[at]! & 0x0f;
  if (proto !== 5 || format > 1) return undefined;
  const len = b.readUInt16BE(at + 2);
  if (len < 4 || (len & 3) !== 0 || b.length < at + 4 + len) return undefined;
  const raw = b.subarray(at + 4, at + 4 + len);
  const nul = raw.indexOf(0);
  const text = lc(raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8'));
  if (format === 0) return text.length > 0 ? { initiatorName: text, length: 4 + len } : undefined;
  const sep = text.indexOf(',i,0x');
  if (sep <= 0) return undefined;
  return { initiatorName: text.slice(0, sep), initiatorPort: text, length: 4 + len };
}

class PersistentReservations {
  generation = 0;
  aptpl = false;
  registrations: Registration[] = [];
  reservation: Reservation | undefined;
  store: PrStore | undefined;
  /** Nexuses that have sent commands to the unit, for unit attentions by registration. */
  readonly nexuses = new Map<string, Nexus>();

  constructor(readonly lu: LogicalUnit) {}

  find(n: Nexus): Registration | undefined {
    return this.registrations.find((r) => matches(r, n));
  }

  isHolder(n: Nexus, reg: Registration | undefined): boolean {
    const res = this.reservation;
    if (!res || !reg) return false;
    return isAllRegistrants(res.type) ? true : res.holder === reg;
  }

  /** Nexus ids a registration stands for (for unit attentions and aborts). */
  idsOf(regs: readonly Registration[]): Set<string> {
    const ids = new Set<string>();
    for (const n of this.nexuses.values()) if (regs.some((r) => matches(r, n))) ids.add(n.id);
    return ids;
  }

  ua(regs: readonly Registration[], asc: number, except?: string): void {
    for (const id of this.idsOf(regs)) if (id !== except) this.lu.raiseUa(id, asc);
  }

  snapshot(): PrState {
    const regs = this.registrations;
    const res = this.reservation;
    const out: PrRegistration[] = regs.map((r) => ({
      key: r.key.toString(16).padStart(16, '0'),
      ...(r.initiatorPort !== undefined ? { initiatorPort: r.initiatorPort } : {}),
      initiatorName: r.initiatorName,
      ...(r.targetPort !== undefined ? { targetPort: r.targetPort } : {}),
      relativeTargetPortId: r.relativeTargetPortId,
      transportId: r.transportId.toString('hex'),
    }));
    return {
      generation: this.generation,
      aptpl: this.aptpl,
      registrations: out,
      ...(res ? { reservation: { holder: regs.indexOf(res.holder), type: res.type } } : {}),
    };
  }

  restore(s: PrState): void {
    this.generation = s.generation >>> 0;
    this.aptpl = s.aptpl;
    this.registrations = s.registrations.map((r) => ({
      key: BigInt(`0x${r.key}`),
      initiatorPort: r.initiatorPort,
      initiatorName: r.initiatorName,
      targetPort: r.targetPort,
      relativeTargetPortId: r.relativeTargetPortId,
      transportId: Buffer.from(r.transportId, 'hex'),
    }));
    const res = s.reservation;
    const holder = res ? this.registrations[res.holder] : undefined;
    this.reservation = res && holder && VALID_TYPES.includes(res.type) ? { holder, type: res.type } : undefined;
  }

  /** SPC-4 §5.9.4: with APTPL the state survives power loss; without it nothing is kept. */
  async persist(): Promise<void> {
    if (!this.store) return;
    const s = this.aptpl ? this.snapshot() : { generation: this.generation, aptpl: false, registrations: [] };
    await this.store.save(this.lu.options.serial, s);
  }
}

const STATES = new WeakMap<LogicalUnit, PersistentReservations>();

function prOf(lu: LogicalUnit): PersistentReservations {
  let s = STATES.get(lu);
  if (!s) {
    s = new PersistentReservations(lu);
    STATES.set(lu, s);
  }
  return s;
}

/**
 * Attach a PrStore to a unit and load its APTPL state (keyed by the unit serial number).
 * Call before the unit takes commands.
 */
export async function usePrStore(lu: LogicalUnit, store: PrStore): Promise<void> {
  const pr = prOf(lu);
  pr.store = store;
  const s = await store.load(lu.options.serial);
  if (s && s.aptpl) pr.restore(s);
}

/** The unit's persistent reservation state as plain data (console, tests). */
export function prState(lu: LogicalUnit): PrState {
  return prOf(lu).snapshot();
}

/** SPC-4 §5.9.1 / SPC-3 §5.6.3: registrations exist, so RESERVE/RELEASE(6/10) conflict (CRH=0). */
export function hasPersistentRegistrations(lu: LogicalUnit): boolean {
  const s = STATES.get(lu);
  return s !== undefined && s.registrations.length > 0;
}

// ------------------------------------------------------------------ conflicts

/** Commands never blocked by a persistent reservation (SPC-4 §5.9.1 tables, SBC-3 §4.17). */
const ALWAYS_ALLOWED: ReadonlySet<number> = new Set([
  Op.TEST_UNIT_READY,
  Op.REQUEST_SENSE,
  Op.INQUIRY,
  Op.READ_CAPACITY_10,
  Op.SERVICE_ACTION_IN_16,
  Op.REPORT_LUNS,
  Op.MAINTENANCE_IN,
  Op.PERSISTENT_RESERVE_IN,
  // PR OUT decides its own conflicts per service action (§5.9.7).
  Op.PERSISTENT_RESERVE_OUT,
  // SPC-2 RESERVE/RELEASE answer RESERVATION CONFLICT themselves while registrations exist.
  Op.RESERVE_6,
  Op.RESERVE_10,
  Op.RELEASE_6,
  Op.RELEASE_10,
]);

/** Not medium writes, yet blocked by write-exclusive reservations (SPC-4 table 63, SBC-3 table 13). */
const WRITE_EXCLUSIVE_BLOCKED: ReadonlySet<number> = new Set([
  Op.MODE_SELECT_6,
  Op.MODE_SELECT_10,
  Op.START_STOP_UNIT,
  Op.PREVENT_ALLOW_MEDIUM_REMOVAL,
  Op.SYNCHRONIZE_CACHE_10,
  Op.SYNCHRONIZE_CACHE_16,
]);

const CONFLICT: ScsiResult = Object.freeze({ status: Status.RESERVATION_CONFLICT });

/**
 * SPC-4 §5.9.1: RESERVATION CONFLICT for a command the reservation does not let this nexus
 * run. Write-type reservations block medium writes (and state changes: MODE SELECT, START
 * STOP, SYNCHRONIZE CACHE, ...); exclusive-access ones block everything else too.
 */
export function persistentReservationConflict(lu: LogicalUnit, cmd: ScsiCommand, def: CommandDef): ScsiResult | undefined {
  const pr = STATES.get(lu);
  if (!pr) return undefined;
  const n = cmd.nexus;
  if (!pr.nexuses.has(n.id)) pr.nexuses.set(n.id, n);
  const res = pr.reservation;
  if (!res || ALWAYS_ALLOWED.has(def.opcode)) return undefined;
  const reg = pr.find(n);
  if (pr.isHolder(n, reg)) return undefined;
  // Registrants-only and all-registrants types admit every registrant.
  if (isRegistrantsType(res.type) && reg) return undefined;
  if (isExclusiveAccess(res.type)) return CONFLICT;
  // Write exclusive: medium writes and state changes conflict; reads, VERIFY, MODE SENSE... do not.
  if (def.write || WRITE_EXCLUSIVE_BLOCKED.has(def.opcode)) return CONFLICT;
  return undefined;
}

/** Track a nexus even when the unit has no PR state yet (registrations by SPEC_I_PT). */
function seen(pr: PersistentReservations, n: Nexus): void {
  if (!pr.nexuses.has(n.id)) pr.nexuses.set(n.id, n);
}

// ------------------------------------------------------------------ PERSISTENT RESERVE IN

function header(generation: number, additional: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(generation >>> 0, 0);
  b.writeUInt32BE(additional, 4);
  return b;
}

export function persistentReserveIn(sa: number): Handler {
  return (ctx: CommandContext) => {
    const pr = prOf(ctx.lu);
    seen(pr, ctx.cmd.nexus);
    const alloc = ctx.cmd.cdb.readUInt16BE(7);
    switch (sa) {
      case PrInAction.READ_KEYS: {
        // §6.15.2: every registered key, one per registration.
        const keys = Buffer.alloc(8 * pr.registrations.length);
        pr.registrations.forEach((r, i) => keys.writeBigUInt64BE(r.key, 8 * i));
        return ctx.good(Buffer.concat([header(pr.generation, keys.length), keys]), alloc);
      }
      case PrInAction.READ_RESERVATION: {
        const res = pr.reservation;
        if (!res) return ctx.good(header(pr.generation, 0), alloc);
        const d = Buffer.alloc(16);
        // §6.15.3.2: all-registrants reservations report key zero.
        d.writeBigUInt64BE(isAllRegistrants(res.type) ? 0n : res.holder.key, 0);
        d[13] = res.type & 0x0f; // SCOPE 0h (logical unit)
        return ctx.good(Buffer.concat([header(pr.generation, 16), d]), alloc);
      }
      case PrInAction.REPORT_CAPABILITIES: {
        // §6.15.4: CRH 0, SIP_C, ATP_C, PTPL_C; TMV with every type; ALLOW COMMANDS 001b.
        const b = Buffer.alloc(8);
        b.writeUInt16BE(8, 0);
        // PTPL_C only when a store makes APTPL state survive a restart.
        b[2] = 0x08 | 0x04 | (pr.store ? 0x01 : 0);
        b[3] = 0x80 | 0x10 | (pr.aptpl ? 0x01 : 0);
        b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
        b[5] = 0x01; // EX_AC_AR
        return ctx.good(b, alloc);
      }
      default: {
        // READ FULL STATUS (§6.15.5): one descriptor per registration.
        const res = pr.reservation;
        const parts = pr.registrations.map((r) => {
          const d = Buffer.alloc(24);
          d.writeBigUInt64BE(r.key, 0);
          const holder = res !== undefined && (isAllRegistrants(res.type) || res.holder === r);
          d[12] = (r.targetPort === undefined ? 0x02 : 0) | (holder ? 0x01 : 0);
          if (holder) d[13] = res.type & 0x0f;
          d.writeUInt16BE(r.relativeTargetPortId & 0xffff, 18);
          d.writeUInt32BE(r.transportId.length, 20);
          return Buffer.concat([d, r.transportId]);
        });
        const body = Buffer.concat(parts);
        return ctx.good(Buffer.concat([header(pr.generation, body.length), body]), alloc);
      }
    }
  };
}

// ------------------------------------------------------------------ PERSISTENT RESERVE OUT

const listLengthError = (ctx: CommandContext) => ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));

export function persistentReserveOut(sa: number): Handler {
  return async (ctx: CommandContext) => {
    const cdb = ctx.cmd.cdb;
    const scope = cdb[2]! >> 4;
    const type = cdb[2]! & 0x0f;
    const paramLen = cdb.readUInt32BE(5);
    const pr = prOf(ctx.lu);
    const n = ctx.cmd.nexus;
    seen(pr, n);
    const needsType = sa === PrOutAction.RESERVE || sa === PrOutAction.RELEASE || sa === PrOutAction.PREEMPT || sa === PrOutAction.PREEMPT_AND_ABORT || sa === PrOutAction.REGISTER_AND_MOVE;
    if (needsType) {
      // §6.16.2: only LU_SCOPE (0h) and the six types exist.
      if (scope !== 0) return ctx.fail(invalidCdb(2, 7));
      if (!VALID_TYPES.includes(type)) return ctx.fail(invalidCdb(2, 3));
    }
    // §6.16.3: the basic list is exactly 24 bytes unless REGISTER carries SPEC_I_PT ports.
    if (sa !== PrOutAction.REGISTER_AND_MOVE && sa !== PrOutAction.REGISTER && paramLen !== BASIC_LIST) return listLengthError(ctx);
    if (paramLen < BASIC_LIST) return listLengthError(ctx);
    // Bound what we buffer: 24 bytes plus TransportIDs for at most MAX_REGISTRATIONS ports.
    if (paramLen > BASIC_LIST + 4 + MAX_REGISTRATIONS * 264) return ctx.fail(invalidCdb(5));
    const data = await ctx.pull(Math.min(paramLen, ctx.cmd.dataOutLength));
    if (data.length < paramLen) return listLengthError(ctx);
    const rk = data.readBigUInt64BE(0);
    const sark = data.readBigUInt64BE(8);
    const reg = pr.find(n);

    let result: ScsiResult;
    switch (sa) {
      case PrOutAction.REGISTER:
      case PrOutAction.REGISTER_AND_IGNORE:
        result = register(ctx, pr, reg, data, rk, sark, sa === PrOutAction.REGISTER_AND_IGNORE);
        break;
      case PrOutAction.REGISTER_AND_MOVE:
        result = registerAndMove(ctx, pr, reg, data, rk, sark, type);
        break;
      default: {
        // §5.9.7: every other service action needs a registration with a matching key.
        if (!reg || reg.key !== rk) return CONFLICT;
        const flags = data[20]!;
        // SPEC_I_PT and ALL_TG_PT mean something only for REGISTER (§6.16.3).
        if (flags & 0x08) return ctx.fail(invalidParam(20, 3));
        if (flags & 0x04) return ctx.fail(invalidParam(20, 2));
        if (sa === PrOutAction.RESERVE) result = reserve(ctx, pr, reg, type);
        else if (sa === PrOutAction.RELEASE) result = release(ctx, pr, reg, type);
        else if (sa === PrOutAction.CLEAR) result = clear(ctx, pr, reg);
        else result = await preempt(ctx, pr, reg, sark, type, sa === PrOutAction.PREEMPT_AND_ABORT);
      }
    }
    if (result.status === Status.GOOD) await pr.persist();
    return result;
  };
}

function newRegistration(n: Nexus, key: bigint, allTgPt: boolean): Registration {
  return {
    key,
    initiatorPort: lc(n.initiatorPort),
    initiatorName: lc(n.initiatorName),
    targetPort: allTgPt ? undefined : lc(n.targetPort),
    relativeTargetPortId: n.relativeTargetPortId,
    transportId: transportIdOf(n),
  };
}

/** Drop a registration; releases a reservation it held (§5.9.11 / §6.16.?). */
function unregister(pr: PersistentReservations, reg: Registration, issuer?: string): void {
  pr.registrations = pr.registrations.filter((r) => r !== reg);
  const res = pr.reservation;
  if (!res) return;
  if (isAllRegistrants(res.type)) {
    // §5.9.11.2: an all-registrants reservation lasts while any registrant remains.
    if (pr.registrations.length === 0) pr.reservation = undefined;
    else if (res.holder === reg) res.holder = pr.registrations[0]!;
    return;
  }
  if (res.holder !== reg) return;
  pr.reservation = undefined;
  // §5.9.11.2: releasing a registrants-only reservation tells the other registrants.
  if (isRegistrantsType(res.type)) pr.ua(pr.registrations, PrAsc.RESERVATIONS_RELEASED, issuer);
}

function register(
  ctx: CommandContext,
  pr: PersistentReservations,
  reg: Registration | undefined,
  data: Buffer,
  rk: bigint,
  sark: bigint,
  ignore: boolean,
): ScsiResult {
  const n = ctx.cmd.nexus;
  const flags = data[20]!;
  const specIPt = (flags & 0x08) !== 0;
  const allTgPt = (flags & 0x04) !== 0;
  const aptpl = (flags & 0x01) !== 0;
  if (specIPt && (ignore || reg)) return ctx.fail(invalidParam(20, 3));
  // §5.9.4: APTPL is only accepted where the state really survives (a store is attached).
  if (aptpl && !pr.store) return ctx.fail(invalidParam(20, 0));
  if (!specIPt && data.length !== BASIC_LIST) return listLengthError(ctx);
  if (reg) {
    // §5.9.7.3: a registered nexus must present its key (unless IGNORE EXISTING KEY).
    if (!ignore && reg.key !== rk) return CONFLICT;
    if (sark === 0n) unregister(pr, reg, n.id);
    else reg.key = sark;
    pr.aptpl = aptpl;
    pr.generation = (pr.generation + 1) >>> 0;
    return ctx.good();
  }
  if (!ignore && rk !== 0n) return CONFLICT;
  // §5.9.7.2: registering key zero while unregistered does nothing, successfully.
  if (sark === 0n) return ctx.good();
  const adds: Registration[] = [newRegistration(n, sark, allTgPt)];
  if (specIPt) {
    if (data.length < BASIC_LIST + 4) return listLengthError(ctx);
    const tidLen = data.readUInt32BE(BASIC_LIST);
    if (BASIC_LIST + 4 + tidLen !== data.length) return listLengthError(ctx);
    for (let o = BASIC_LIST + 4; o < data.length; ) {
      const t = decodeTransportId(data, o);
      if (!t) return ctx.fail(invalidParam(o));
      const r: Registration = {
        key: sark,
        initiatorPort: t.initiatorPort,
        initiatorName: t.initiatorName,
        targetPort: allTgPt ? undefined : lc(n.targetPort),
        relativeTargetPortId: n.relativeTargetPortId,
        transportId: Buffer.from(data.subarray(o, o + t.length)),
      };
      // §6.16.3: a TransportID that is already registered fails the whole command.
      if (pr.registrations.some((x) => sameIdentity(x, r)) || adds.some((x) => sameIdentity(x, r))) return ctx.fail(invalidParam(o));
      adds.push(r);
      o += t.length;
    }
  }
  if (pr.registrations.length + adds.length > MAX_REGISTRATIONS) {
    return ctx.fail({ key: SenseKey.ILLEGAL_REQUEST, asc: PrAsc.INSUFFICIENT_REGISTRATION_RESOURCES });
  }
  pr.registrations.push(...adds);
  pr.aptpl = aptpl;
  pr.generation = (pr.generation + 1) >>> 0;
  return ctx.good();
}

function sameIdentity(a: Registration, b: Registration): boolean {
  const ia = a.initiatorPort ?? a.initiatorName;
  const ib = b.initiatorPort ?? b.initiatorName;
  return ia === ib && (a.targetPort === undefined || b.targetPort === undefined || a.targetPort === b.targetPort);
}

function reserve(ctx: CommandContext, pr: PersistentReservations, reg: Registration, type: number): ScsiResult {
  const res = pr.reservation;
  if (res) {
    // §5.9.9: the holder may repeat its own reservation; anything else conflicts.
    if (pr.isHolder(ctx.cmd.nexus, reg) && res.type === type) return ctx.good();
    return CONFLICT;
  }
  pr.reservation = { holder: reg, type };
  return ctx.good();
}

function release(ctx: CommandContext, pr: PersistentReservations, reg: Registration, type: number): ScsiResult {
  const res = pr.reservation;
  // §5.9.10: no reservation, or a registrant that is not the holder: nothing happens.
  if (!res || !pr.isHolder(ctx.cmd.nexus, reg)) return ctx.good();
  if (res.type !== type) return ctx.fail({ key: SenseKey.ILLEGAL_REQUEST, asc: PrAsc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION });
  pr.reservation = undefined;
  if (isRegistrantsType(type)) pr.ua(pr.registrations, PrAsc.RESERVATIONS_RELEASED, ctx.cmd.nexus.id);
  return ctx.good();
}

function clear(ctx: CommandContext, pr: PersistentReservations, reg: Registration): ScsiResult {
  // §5.9.11.6: every registration and the reservation go; the others learn by UA.
  const others = pr.registrations.filter((r) => r !== reg);
  pr.ua(others, PrAsc.RESERVATIONS_PREEMPTED, ctx.cmd.nexus.id);
  pr.registrations = [];
  pr.reservation = undefined;
  pr.generation = (pr.generation + 1) >>> 0;
  return ctx.good();
}

async function preempt(
  ctx: CommandContext,
  pr: PersistentReservations,
  reg: Registration,
  sark: bigint,
  type: number,
  abort: boolean,
): Promise<ScsiResult> {
  const me = ctx.cmd.nexus.id;
  const res = pr.reservation;
  let removed: Registration[];
  if (res && isAllRegistrants(res.type) && sark === 0n) {
    // §5.9.11.4.3: zero preempts every other registrant of an all-registrants reservation.
    removed = pr.registrations.filter((r) => r !== reg);
    pr.reservation = { holder: reg, type };
  } else {
    if (sark === 0n) return ctx.fail(invalidParam(8));
    removed = pr.registrations.filter((r) => r.key === sark && r !== reg);
    const preemptsHolder = res !== undefined && !isAllRegistrants(res.type) && res.holder.key === sark;
    // §5.9.11.4: nothing registered under SARK → RESERVATION CONFLICT.
    if (removed.length === 0 && !preemptsHolder) return CONFLICT;
    if (preemptsHolder) {
      const changed = res.type !== type;
      pr.reservation = { holder: reg, type };
      // Registrants that stay learn that the reservation changed under them.
      if (changed) pr.ua(pr.registrations.filter((r) => r !== reg && !removed.includes(r)), PrAsc.RESERVATIONS_RELEASED, me);
    }
  }
  const ids = pr.idsOf(removed);
  ids.delete(me);
  pr.registrations = pr.registrations.filter((r) => !removed.includes(r));
  for (const id of ids) ctx.lu.raiseUa(id, PrAsc.REGISTRATIONS_PREEMPTED);
  pr.generation = (pr.generation + 1) >>> 0;
  if (abort && ids.size > 0) {
    // §5.9.11.5: PREEMPT AND ABORT also ends the preempted nexuses' tasks.
    await ctx.lu.settle(ctx.lu.abortWhere((t) => ids.has(t.nexusId)));
  }
  return ctx.good();
}

function registerAndMove(
  ctx: CommandContext,
  pr: PersistentReservations,
  reg: Registration | undefined,
  data: Buffer,
  rk: bigint,
  sark: bigint,
  type: number,
): ScsiResult {
  if (!reg || reg.key !== rk) return CONFLICT;
  const res = pr.reservation;
  // §6.16.4: only the holder of a reservation that is not all-registrants can move it.
  if (!res || isAllRegistrants(res.type) || res.holder !== reg) return CONFLICT;
  if (sark === 0n) return ctx.fail(invalidParam(8));
  const unreg = (data[17]! & 0x02) !== 0;
  const aptpl = (data[17]! & 0x01) !== 0;
  if (aptpl && !pr.store) return ctx.fail(invalidParam(17, 0));
  const rtpi = data.readUInt16BE(18);
  const tidLen = data.readUInt32BE(20);
  if (BASIC_LIST + tidLen > data.length) return listLengthError(ctx);
  const t = decodeTransportId(data, BASIC_LIST);
  if (!t || t.length > tidLen) return ctx.fail(invalidParam(BASIC_LIST));
  // The destination target port: one this unit has seen with that relative identifier.
  const port = [...pr.nexuses.values()].find((x) => x.relativeTargetPortId === rtpi)?.targetPort;
  if (port === undefined) return ctx.fail(invalidParam(18));
  const dest: Registration = {
    key: sark,
    initiatorPort: t.initiatorPort,
    initiatorName: t.initiatorName,
    targetPort: lc(port),
    relativeTargetPortId: rtpi,
    transportId: Buffer.from(data.subarray(BASIC_LIST, BASIC_LIST + t.length)),
  };
  // Moving to ourselves is an error (§6.16.4).
  if (sameIdentity(dest, reg)) return ctx.fail(invalidParam(BASIC_LIST));
  let target = pr.registrations.find((r) => sameIdentity(r, dest));
  if (target) target.key = sark;
  else {
    target = dest;
    pr.registrations.push(dest);
  }
  pr.reservation = { holder: target, type };
  if (unreg) pr.registrations = pr.registrations.filter((r) => r !== reg);
  pr.aptpl = aptpl;
  pr.generation = (pr.generation + 1) >>> 0;
  return ctx.good();
}
