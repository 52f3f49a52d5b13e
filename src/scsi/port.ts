// A SCSI target port (SAM-5 §4.6.5): routes commands from I_T nexuses to the logical units
// its LUN map gives them, answers REPORT LUNS and commands to unmapped LUNs, and carries
// out task management functions.

import {
  Status,
  type Nexus,
  type ScsiCommand,
  type ScsiPort,
  type ScsiResult,
  type TmfRequest,
  type TmfResponse,
} from './types';
import { Asc, SenseKey, encodeFixedSense, internalFailure, illegal, invalidCdb } from './sense';
import { Op } from './cdb';
import { unmappedInquiry } from './spc/inquiry';
import { reportLuns } from './spc/report-luns';
import { checkReservedBits, type LogicalUnit } from './logical-unit';
import type { AluaGroups } from './spc/alua';
import { setNexusScope } from './nexus-scope';
import { discardCopyResults } from './spc/extended-copy';

export interface LunMapEntry {
  readonly lun: number;
  readonly unit: LogicalUnit;
  readonly readOnly?: boolean;
}

export interface TargetPortOptions {
  /** The LUNs a nexus may reach; consulted per command (the caller caches). */
  lunMap: (nexus: Nexus) => readonly LunMapEntry[];
  /**
   * SPC-4 §5.15 target port groups of the target device. One object shared by every
   * TargetPort exporting the same units (spc/alua.ts); absent: TPGS 00b, no ALUA.
   */
  alua?: AluaGroups;
}

const REPORT_LUNS_USAGE = [0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07];

function check(spec: Parameters<typeof encodeFixedSense>[0]): ScsiResult {
  return { status: Status.CHECK_CONDITION, sense: encodeFixedSense(spec) };
}

export class TargetPort implements ScsiPort {
  private readonly lunMap: (nexus: Nexus) => readonly LunMapEntry[];
  /** Nexuses that have sent anything, for LUN-map-changed and target reset UAs. */
  private readonly nexuses = new Map<string, Nexus>();
  private readonly alua: AluaGroups | undefined;

  constructor(opts: TargetPortOptions) {
    this.lunMap = opts.lunMap;
    this.alua = opts.alua;
  }

  private find(nexus: Nexus, lun: number): LunMapEntry | undefined {
    return this.lunMap(nexus).find((e) => e.lun === lun);
  }

  // Not async: the unit's execute() already returns a promise that never rejects, and an
  // async wrapper here cost one more promise and microtask hop per command.
  execute(cmd: ScsiCommand): Promise<ScsiResult> {
    try {
      const id = cmd.nexus.id;
      if (this.nexuses.get(id) !== cmd.nexus) {
        this.nexuses.set(id, cmd.nexus);
        // EXTENDED COPY finds its copy targets among the units this nexus reaches.
        setNexusScope(cmd.nexus, this.lunMap);
      }
      const opcode = cmd.cdb[0] ?? 0;
      const entry = this.find(cmd.nexus, cmd.lun);
      if (opcode === Op.REPORT_LUNS) return Promise.resolve(this.reportLuns(cmd, entry));
      if (entry) {
        if (this.alua !== undefined && entry.unit.alua !== this.alua) this.alua.bind(entry.unit);
        return entry.unit.execute(cmd, entry.readOnly === true);
      }
      return Promise.resolve(this.unmapped(cmd));
    } catch (e) {
      process.stderr.write(`lunbox scsi: command failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      return Promise.resolve(check(internalFailure));
    }
  }

  /** SPC-4 §6.33: REPORT LUNS is answered for any LUN, mapped or not. */
  private reportLuns(cmd: ScsiCommand, entry: LunMapEntry | undefined): ScsiResult {
    const bad = checkReservedBits(cmd.cdb, REPORT_LUNS_USAGE);
    const fail = (s: Parameters<typeof encodeFixedSense>[0]) => (entry ? entry.unit.senseResult(s) : check(s));
    if (bad) return fail(bad);
    const r = reportLuns(
      cmd.cdb,
      this.lunMap(cmd.nexus).map((e) => e.lun),
    );
    if (!('data' in r)) return fail(r);
    // SPC-4 §6.33: REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED.
    for (const e of this.lunMap(cmd.nexus)) e.unit.clearUa(cmd.nexus.id, Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
    const n = Math.min(r.alloc, r.data.length);
    return { status: Status.GOOD, dataIn: r.data.subarray(0, n) };
  }

  /** SPC-4 §6.6.2, §6.29: what a LUN without a logical unit answers. */
  private unmapped(cmd: ScsiCommand): ScsiResult {
    const cdb = cmd.cdb;
    switch (cdb[0]) {
      case Op.INQUIRY: {
        // Peripheral qualifier 011b / type 1Fh: no logical unit here (standard data only).
        if (((cdb[1] ?? 0) & 0x01) !== 0) return check(invalidCdb(1, 0));
        const data = unmappedInquiry();
        return { status: Status.GOOD, dataIn: data.subarray(0, Math.min(data.length, cdb.readUInt16BE(3))) };
      }
      case Op.REQUEST_SENSE: {
        // SPC-4 §6.29: sense data LOGICAL UNIT NOT SUPPORTED, with GOOD status.
        const sense = encodeFixedSense(illegal(Asc.LOGICAL_UNIT_NOT_SUPPORTED));
        return { status: Status.GOOD, dataIn: sense.subarray(0, Math.min(sense.length, cdb[4] ?? 0)) };
      }
      default:
        return check({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.LOGICAL_UNIT_NOT_SUPPORTED });
    }
  }

  async taskManagement(req: TmfRequest): Promise<TmfResponse> {
    try {
      this.nexuses.set(req.nexus.id, req.nexus);
      const id = req.nexus.id;
      switch (req.fn) {
        case 'target-warm-reset':
        case 'target-cold-reset': {
          // SAM-5 §6.3.3: every logical unit of the target is reset.
          const units = this.allUnits();
          await Promise.all([...units].map((u) => u.reset(Asc.POWER_ON_RESET)));
          return 'function-complete';
        }
        case 'i-t-nexus-reset': {
          const units = new Set(this.lunMap(req.nexus).map((e) => e.unit));
          await Promise.all([...units].map((u) => u.nexusReset(id, false)));
          return 'function-complete';
        }
        default:
          break;
      }
      const entry = this.find(req.nexus, req.lun);
      if (!entry) return 'incorrect-lun';
      const lu = entry.unit;
      switch (req.fn) {
        case 'abort-task': {
          if (req.referencedTag === undefined) return 'function-rejected';
          // SAM-5 §7.2: completes whether or not the task still exists.
          await lu.settle(lu.abortTask(id, req.referencedTag));
          return 'function-complete';
        }
        case 'abort-task-set':
          await lu.settle(lu.abortTaskSet(id, false));
          return 'function-complete';
        case 'clear-task-set':
          await lu.settle(lu.abortTaskSet(id, true));
          return 'function-complete';
        case 'lun-reset':
          // SAM-5 §7.7: abort all tasks, clear reservations, UA 29h/03h to every nexus.
          await lu.reset(Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
          return 'function-complete';
        case 'query-task':
          if (req.referencedTag === undefined) return 'function-rejected';
          return lu.hasTask(id, req.referencedTag) ? 'function-succeeded' : 'function-complete';
        case 'clear-aca':
          return 'not-supported';
        default:
          return 'not-supported';
      }
    } catch (e) {
      process.stderr.write(`lunbox scsi: TMF ${req.fn} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      return 'function-rejected';
    }
  }

  private allUnits(): Set<LogicalUnit> {
    const units = new Set<LogicalUnit>();
    for (const n of this.nexuses.values()) for (const e of this.lunMap(n)) units.add(e.unit);
    return units;
  }

  nexusLost(nexus: Nexus): void {
    this.nexuses.delete(nexus.id);
    for (const e of this.lunMap(nexus)) {
      discardCopyResults(e.unit, nexus.id);
      e.unit.nexusReset(nexus.id, true).catch((err: unknown) => {
        process.stderr.write(`lunbox scsi: nexus loss cleanup failed: ${String(err)}\n`);
      });
    }
  }

  /** The LUN map changed: REPORTED LUNS DATA HAS CHANGED to every nexus (SPC-4 §7.6). */
  lunsChanged(): void {
    for (const n of this.nexuses.values()) {
      for (const e of this.lunMap(n)) e.unit.raiseUa(n.id, Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
    }
  }
}
