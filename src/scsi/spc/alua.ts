// Asymmetric logical unit access (SPC-4 §5.15): target port groups, their access states,
// REPORT TARGET PORT GROUPS (§6.27) and SET TARGET PORT GROUPS (§6.42).
//
// REPORT TARGET PORT GROUPS CDB (MAINTENANCE IN A3h): 1 PARAMETER DATA FORMAT(7:5) SA=0Ah,
//   6..9 ALLOCATION LENGTH.
// Parameter data: length format (000b) 0..3 RETURN DATA LENGTH (n-3); extended format (001b)
//   0..3 RETURN DATA LENGTH, 4 FORMAT TYPE(6:4)=001b, 5 IMPLICIT TRANSITION TIME, 6..7 reserved.
// Target port group descriptor (§6.27 table 292):
//   0 PREF(7) ASYMMETRIC ACCESS STATE(3:0)   1 T_SUP(7) O_SUP(6) LBD_SUP(4) U_SUP(3) S_SUP(2)
//   AN_SUP(1) AO_SUP(0)   2..3 TARGET PORT GROUP   5 STATUS CODE   7 TARGET PORT COUNT,
//   then 4 bytes per port: 2..3 RELATIVE TARGET PORT IDENTIFIER.
// SET TARGET PORT GROUPS CDB (MAINTENANCE OUT A4h): 1 SA=0Ah, 6..9 PARAMETER LIST LENGTH.
// Parameter list: 0..3 reserved, then 4-byte descriptors: 0 ASYMMETRIC ACCESS STATE(3:0),
//   2..3 TARGET PORT GROUP.

import { Asc, SenseKey, illegal, invalidCdb, invalidParam, type SenseSpec } from '../sense';
import type { CommandDef, Handler } from '../command';
import type { LogicalUnit } from '../logical-unit';

export type AluaState = 'active/optimized' | 'active/non-optimized' | 'standby' | 'unavailable' | 'transitioning';
export type AluaMode = 'implicit' | 'explicit' | 'both';

export interface PortGroupConfig {
  readonly id: number;
  readonly state: AluaState;
  /** Relative target port identifiers (Nexus.relativeTargetPortId) in this group. */
  readonly ports: readonly number[];
  readonly preferred?: boolean;
}

export interface AluaOptions {
  readonly portGroups: readonly PortGroupConfig[];
  /** TPGS in standard INQUIRY; default 'implicit'. 'explicit'/'both' enable SET TARGET PORT GROUPS. */
  readonly alua?: AluaMode;
}

/** SPC-4 §6.27 table 293 ASYMMETRIC ACCESS STATE codes. */
export const AccessState = {
  'active/optimized': 0x0,
  'active/non-optimized': 0x1,
  standby: 0x2,
  unavailable: 0x3,
  transitioning: 0xf,
} as const satisfies Record<AluaState, number>;

const STATE_BY_CODE = new Map<number, AluaState>(
  (Object.entries(AccessState) as [AluaState, number][]).map(([s, c]) => [c, s]),
);

/** SPC-4 §6.27 table 294 STATUS CODE. */
const StatusCode = { NONE: 0x00, STPG: 0x01, IMPLICIT: 0x02 } as const;

const TPGS: Record<AluaMode, number> = { implicit: 0x1, explicit: 0x2, both: 0x3 };

/** Support bits: T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no offline, no LBA dependent). */
const SUPPORT_BITS = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

export const AluaAsc = {
  /** SPC-4 Annex D: 04h/0Ah..0Ch, LOGICAL UNIT NOT ACCESSIBLE, ... */
  TRANSITIONING: 0x040a,
  STANDBY: 0x040b,
  UNAVAILABLE: 0x040c,
  ASYMMETRIC_ACCESS_STATE_CHANGED: 0x2a06,
  SET_TARGET_PORT_GROUPS_FAILED: 0x670a,
} as const;

export class AluaConfigError extends Error {
  readonly code = 'ALUA_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'AluaConfigError';
  }
}

interface Group {
  readonly id: number;
  readonly ports: readonly number[];
  readonly preferred: boolean;
  state: AluaState;
  status: number;
}

/**
 * The target port groups of one SCSI target device, shared by every TargetPort that exports
 * its logical units (SPC-4 §5.15.2.1: a target port group's state applies to all the units it
 * reaches). The units bind themselves on their first command through a port that carries it.
 */
export class AluaGroups {
  readonly mode: AluaMode;
  private readonly groups: Group[];
  private readonly byPort = new Map<number, Group>();
  private readonly units = new Set<LogicalUnit>();

  constructor(opts: AluaOptions) {
    this.mode = opts.alua ?? 'implicit';
    if (!(this.mode in TPGS)) throw new AluaConfigError(`alua must be implicit, explicit or both, got '${String(opts.alua)}'`);
    if (opts.portGroups.length === 0) throw new AluaConfigError('portGroups: at least one target port group is needed');
    const ids = new Set<number>();
    this.groups = opts.portGroups.map((g, i) => {
      if (!Number.isInteger(g.id) || g.id < 0 || g.id > 0xffff) {
        throw new AluaConfigError(`portGroups[${i}].id must be an integer 0..65535, got ${String(g.id)}`);
      }
      if (ids.has(g.id)) throw new AluaConfigError(`portGroups[${i}].id ${g.id} is used twice`);
      ids.add(g.id);
      if (!(g.state in AccessState)) {
        throw new AluaConfigError(`portGroups[${i}].state must be one of ${Object.keys(AccessState).join(', ')}, got '${String(g.state)}'`);
      }
      const group: Group = { id: g.id, ports: [...g.ports], preferred: g.preferred === true, state: g.state, status: StatusCode.NONE };
      for (const p of g.ports) {
        if (!Number.isInteger(p) || p < 1 || p > 0xffff) {
          throw new AluaConfigError(`portGroups[${i}].ports: relative target port ids are 1..65535, got ${String(p)}`);
        }
        if (this.byPort.has(p)) throw new AluaConfigError(`portGroups[${i}].ports: port ${p} is already in group ${this.byPort.get(p)?.id}`);
        this.byPort.set(p, group);
      }
      return group;
    });
  }

  /** TPGS field of standard INQUIRY (SPC-4 §6.6.2 table 142). */
  get tpgs(): number {
    return TPGS[this.mode];
  }
  get explicit(): boolean {
    return this.mode !== 'implicit';
  }

  /** Target port group of a relative target port (undefined: the port is in no group). */
  groupOf(relativePortId: number): number | undefined {
    return this.byPort.get(relativePortId)?.id;
  }

  /** Access state seen through a port; a port outside every group is active/optimized. */
  stateOf(relativePortId: number): AluaState {
    return this.byPort.get(relativePortId)?.state ?? 'active/optimized';
  }

  groupState(id: number): AluaState | undefined {
    return this.groups.find((g) => g.id === id)?.state;
  }

  /** A unit reached through a port that carries these groups. */
  bind(lu: LogicalUnit): void {
    if (lu.alua !== undefined && lu.alua !== this) {
      throw new AluaConfigError(`logical unit ${lu.name} is exported by ports with different target port groups`);
    }
    lu.alua = this;
    this.units.add(lu);
  }

  /**
   * Implicit transition (management, failover): SPC-4 §5.15.2.3. Every I_T nexus gets
   * ASYMMETRIC ACCESS STATE CHANGED.
   */
  setGroupState(id: number, state: AluaState): void {
    const g = this.groups.find((x) => x.id === id);
    if (!g) throw new AluaConfigError(`no target port group ${id} (have ${this.groups.map((x) => x.id).join(', ')})`);
    if (!(state in AccessState)) throw new AluaConfigError(`unknown access state '${String(state)}'`);
    if (g.state === state) return;
    g.state = state;
    g.status = StatusCode.IMPLICIT;
    for (const lu of this.units) lu.raiseUaAll(AluaAsc.ASYMMETRIC_ACCESS_STATE_CHANGED);
  }

  /** Explicit transitions from SET TARGET PORT GROUPS; the caller checked the descriptors. */
  applyExplicit(changes: readonly { id: number; state: AluaState }[], nexusId: string): void {
    let changed = false;
    for (const c of changes) {
      const g = this.groups.find((x) => x.id === c.id);
      if (!g) continue;
      if (g.state !== c.state) changed = true;
      g.state = c.state;
      g.status = StatusCode.STPG;
    }
    // SPC-4 §6.42: the UA goes to every I_T nexus but the one that sent the command.
    if (changed) for (const lu of this.units) lu.raiseUaAll(AluaAsc.ASYMMETRIC_ACCESS_STATE_CHANGED, nexusId);
  }

  /** REPORT TARGET PORT GROUPS parameter data (both formats). */
  encode(extended: boolean): Buffer {
    const head = extended ? 8 : 4;
    const size = this.groups.reduce((n, g) => n + 8 + 4 * g.ports.length, head);
    const b = Buffer.alloc(size);
    b.writeUInt32BE(size - 4, 0);
    if (extended) {
      b[4] = 0x10; // FORMAT TYPE 001b
      b[5] = 0; // IMPLICIT TRANSITION TIME: transitions are immediate
    }
    let o = head;
    for (const g of this.groups) {
      b[o] = (g.preferred ? 0x80 : 0) | AccessState[g.state];
      b[o + 1] = SUPPORT_BITS;
      b.writeUInt16BE(g.id, o + 2);
      b[o + 5] = g.status;
      b[o + 7] = g.ports.length;
      o += 8;
      for (const p of g.ports) {
        b.writeUInt16BE(p, o + 2);
        o += 4;
      }
    }
    return b;
  }
}

// ------------------------------------------------------------------ access state gate

const MAINTENANCE_IN = 0xa3;
const MAINTENANCE_OUT = 0xa4;
const SA_TARGET_PORT_GROUPS = 0x0a;

/** SPC-4 §5.15.2.4.5 (standby), plus SPC-5's REPORT SUPPORTED OPERATION CODES / TMFs. */
const STANDBY_OPCODES: ReadonlySet<number> = new Set([
  0x12, // INQUIRY
  0x4c, // LOG SELECT
  0x4d, // LOG SENSE
  0x15, // MODE SELECT(6)
  0x55, // MODE SELECT(10)
  0x1a, // MODE SENSE(6)
  0x5a, // MODE SENSE(10)
  0xa0, // REPORT LUNS
  0x1c, // RECEIVE DIAGNOSTIC RESULTS
  0x1d, // SEND DIAGNOSTIC
  0x03, // REQUEST SENSE
  0x5e, // PERSISTENT RESERVE IN
  0x5f, // PERSISTENT RESERVE OUT
]);
const STANDBY_MAINTENANCE_IN: ReadonlySet<number> = new Set([SA_TARGET_PORT_GROUPS, 0x0c, 0x0d]);
/** SPC-4 §5.15.2.4.6 (unavailable) and §5.15.2.4.7 (transitioning, without STPG). */
const UNAVAILABLE_OPCODES: ReadonlySet<number> = new Set([0x12, 0xa0, 0x03]);

function allowedIn(state: AluaState, def: CommandDef): boolean {
  const sa = def.serviceAction;
  const tpg = (def.opcode === MAINTENANCE_IN || def.opcode === MAINTENANCE_OUT) && sa === SA_TARGET_PORT_GROUPS;
  switch (state) {
    case 'active/optimized':
    case 'active/non-optimized':
      return true;
    case 'standby':
      return STANDBY_OPCODES.has(def.opcode) || tpg || (def.opcode === MAINTENANCE_IN && sa !== undefined && STANDBY_MAINTENANCE_IN.has(sa));
    case 'unavailable':
      return UNAVAILABLE_OPCODES.has(def.opcode) || tpg;
    case 'transitioning':
      return UNAVAILABLE_OPCODES.has(def.opcode) || (tpg && def.opcode === MAINTENANCE_IN);
  }
}

const NOT_READY_ASC: Record<AluaState, number> = {
  'active/optimized': 0,
  'active/non-optimized': 0,
  standby: AluaAsc.STANDBY,
  unavailable: AluaAsc.UNAVAILABLE,
  transitioning: AluaAsc.TRANSITIONING,
};

/** NOT READY sense when the port group's access state does not allow the command. */
export function aluaCheck(alua: AluaGroups, relativePortId: number, def: CommandDef): SenseSpec | undefined {
  const state = alua.stateOf(relativePortId);
  if (allowedIn(state, def)) return undefined;
  return { key: SenseKey.NOT_READY, asc: NOT_READY_ASC[state] };
}

// ------------------------------------------------------------------ RTPG / STPG

export const reportTargetPortGroups: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const alua = ctx.lu.alua;
  if (!alua) return ctx.fail(illegal(Asc.INVALID_COMMAND_OPERATION_CODE));
  const format = (cdb[1] ?? 0) >> 5;
  if (format > 1) return ctx.fail(invalidCdb(1, 7));
  return ctx.good(alua.encode(format === 1), cdb.readUInt32BE(6));
};

export const setTargetPortGroups: Handler = async (ctx) => {
  const alua = ctx.lu.alua;
  // SPC-4 §6.42: with TPGS 00b or 01b the command is not supported.
  if (!alua || !alua.explicit) return ctx.fail(illegal(Asc.INVALID_COMMAND_OPERATION_CODE));
  const len = ctx.cmd.cdb.readUInt32BE(6);
  if (len === 0) return ctx.good();
  if (len < 4 || len % 4 !== 0 || len > 4 + 4 * 256) return ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
  const data = await ctx.pull(len);
  if (data.length < len) return ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR));
  const changes: { id: number; state: AluaState }[] = [];
  for (let o = 4; o + 4 <= len; o += 4) {
    const code = (data[o] ?? 0) & 0x0f;
    const state = STATE_BY_CODE.get(code);
    // §6.42 table 383: only active/optimized, active/non-optimized, standby and unavailable
    // may be requested; transitioning, offline and LBA dependent are invalid here.
    if (state === undefined || state === 'transitioning') return ctx.fail(invalidParam(o, 3));
    const id = data.readUInt16BE(o + 2);
    if (alua.groupState(id) === undefined) return ctx.fail(invalidParam(o + 2));
    changes.push({ id, state });
  }
  alua.applyExplicit(changes, ctx.cmd.nexus.id);
  return ctx.good();
};
