// The command table: one entry per supported opcode / service action, with the CDB usage
// mask that both the reserved-bit check and REPORT SUPPORTED OPERATION CODES use.

import type { CommandDef } from './command';
import { Op, ServiceAction } from './cdb';
import { inquiry } from './spc/inquiry';
import { modeSelect10, modeSelect6, modeSense10, modeSense6 } from './spc/mode';
import { requestSense } from './spc/request-sense';
import { release, reserve } from './spc/reserve';
import { makeReportSupportedOpcodes, reportSupportedTmfs } from './spc/opcodes';
import { reportLuns } from './spc/report-luns';
import { read, verify, write, writeAndVerify } from './sbc/read-write';
import { unmap, writeSame } from './sbc/provisioning';
import { preFetch } from './sbc/prefetch';
import { readDefectData10, readDefectData12 } from './sbc/defect-data';
import { orWrite16 } from './sbc/orwrite';
import { getLbaStatus } from './sbc/lba-status';
import { compareAndWrite } from './sbc/compare-and-write';
import { writeAtomic16 } from './sbc/write-atomic';
import { reportTargetPortGroups, setTargetPortGroups } from './spc/alua';
import { CopyResultsAction, extendedCopy, receiveCopyResults } from './spc/extended-copy';
import { formatUnit } from './sbc/protection';
import { SANITIZE_ACTIONS } from './sbc/sanitize';
import { PrInAction, PrOutAction, persistentReserveIn, persistentReserveOut } from './spc/persistent-reservations';
import {
  preventAllow,
  readCapacity10,
  readCapacity16,
  startStopUnit,
  synchronizeCache,
  testUnitReady,
} from './sbc/unit';
import { MmcOp } from './mmc/mmc';
import { readToc } from './mmc/toc';
import { getConfiguration } from './mmc/configuration';
import { getEventStatusNotification, mechanismStatus } from './mmc/events';
import { getPerformance, readDiscInformation, readDvdStructure, readTrackInformation, setCdSpeed } from './mmc/disc';
import { mmcStartStopUnit } from './mmc/tray';

const C = 0x07; // CONTROL byte: NACA and LINK are evaluated (and rejected)
const LBA4 = [0xff, 0xff, 0xff, 0xff];
const LBA8 = [...LBA4, ...LBA4];
const IO_T = { nominal: 1, recommended: 30 };

const ALWAYS_THIN = (lu: { thin: boolean }) => lu.thin;
const LEN4 = [0xff, 0xff, 0xff, 0xff];

const COPY_RESULTS = [
  ['COPY STATUS', CopyResultsAction.COPY_STATUS],
  ['OPERATING PARAMETERS', CopyResultsAction.OPERATING_PARAMETERS],
  ['FAILED SEGMENT DETAILS', CopyResultsAction.FAILED_SEGMENT_DETAILS],
] as const;

const PR_IN = [
  ['READ KEYS', PrInAction.READ_KEYS],
  ['READ RESERVATION', PrInAction.READ_RESERVATION],
  ['REPORT CAPABILITIES', PrInAction.REPORT_CAPABILITIES],
  ['READ FULL STATUS', PrInAction.READ_FULL_STATUS],
] as const;
const PR_OUT = [
  ['REGISTER', PrOutAction.REGISTER],
  ['RESERVE', PrOutAction.RESERVE],
  ['RELEASE', PrOutAction.RELEASE],
  ['CLEAR', PrOutAction.CLEAR],
  ['PREEMPT', PrOutAction.PREEMPT],
  ['PREEMPT AND ABORT', PrOutAction.PREEMPT_AND_ABORT],
  ['REGISTER AND IGNORE EXISTING KEY', PrOutAction.REGISTER_AND_IGNORE],
  ['REGISTER AND MOVE', PrOutAction.REGISTER_AND_MOVE],
] as const;

export const COMMANDS: readonly CommandDef[] = [
  { name: 'TEST UNIT READY', opcode: Op.TEST_UNIT_READY, usage: [0x00, 0, 0, 0, 0, C], medium: true, run: testUnitReady },
  {
    name: 'REQUEST SENSE', opcode: Op.REQUEST_SENSE, usage: [0x03, 0x01, 0, 0, 0xff, C],
    uaExempt: true, reservationExempt: true, headOfQueue: true, run: requestSense,
  },
  {
    // SBC-3 §5.3: FMTPINFO, LONGLIST, FMTDATA, CMPLST, DEFECT LIST FORMAT; no vendor byte.
    name: 'FORMAT UNIT', opcode: Op.FORMAT_UNIT, usage: [0x04, 0xff, 0, 0, 0, C],
    medium: true, write: true, timeouts: { nominal: 5, recommended: 300 }, run: formatUnit,
  },
  { name: 'READ(6)', opcode: Op.READ_6, usage: [0x08, 0x1f, 0xff, 0xff, 0xff, C], medium: true, timeouts: IO_T, run: read(6) },
  { name: 'WRITE(6)', opcode: Op.WRITE_6, usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, C], medium: true, write: true, timeouts: IO_T, run: write(6) },
  {
    name: 'INQUIRY', opcode: Op.INQUIRY, usage: [0x12, 0x01, 0xff, 0xff, 0xff, C],
    uaExempt: true, reservationExempt: true, headOfQueue: true, run: inquiry,
  },
  { name: 'MODE SELECT(6)', opcode: Op.MODE_SELECT_6, usage: [0x15, 0x11, 0, 0, 0xff, C], run: modeSelect6 },
  { name: 'RESERVE(6)', opcode: Op.RESERVE_6, usage: [0x16, 0, 0, 0, 0, C], run: reserve },
  { name: 'RELEASE(6)', opcode: Op.RELEASE_6, usage: [0x17, 0, 0, 0, 0, C], reservationExempt: true, run: release },
  { name: 'MODE SENSE(6)', opcode: Op.MODE_SENSE_6, usage: [0x1a, 0x08, 0xff, 0xff, 0xff, C], run: modeSense6 },
  {
    name: 'START STOP UNIT', opcode: Op.START_STOP_UNIT, usage: [0x1b, 0x01, 0, 0x0f, 0xf7, C],
    timeouts: { nominal: 1, recommended: 60 }, run: startStopUnit,
  },
  {
    name: 'PREVENT ALLOW MEDIUM REMOVAL', opcode: Op.PREVENT_ALLOW_MEDIUM_REMOVAL, usage: [0x1e, 0, 0, 0, 0x03, C],
    run: preventAllow,
  },
  {
    name: 'READ CAPACITY(10)', opcode: Op.READ_CAPACITY_10, usage: [0x25, 0, ...LBA4, 0, 0, 0x01, C],
    medium: true, run: readCapacity10,
  },
  { name: 'READ(10)', opcode: Op.READ_10, usage: [0x28, 0xf8, ...LBA4, 0x1f, 0xff, 0xff, C], medium: true, timeouts: IO_T, run: read(10) },
  {
    name: 'WRITE(10)', opcode: Op.WRITE_10, usage: [0x2a, 0xf8, ...LBA4, 0x1f, 0xff, 0xff, C],
    medium: true, write: true, timeouts: IO_T, run: write(10),
  },
  {
    name: 'WRITE AND VERIFY(10)', opcode: Op.WRITE_AND_VERIFY_10, usage: [0x2e, 0xf2, ...LBA4, 0x1f, 0xff, 0xff, C],
    medium: true, write: true, timeouts: IO_T, run: writeAndVerify(10),
  },
  { name: 'VERIFY(10)', opcode: Op.VERIFY_10, usage: [0x2f, 0xf6, ...LBA4, 0x1f, 0xff, 0xff, C], medium: true, timeouts: IO_T, run: verify(10) },
  {
    name: 'SYNCHRONIZE CACHE(10)', opcode: Op.SYNCHRONIZE_CACHE_10, usage: [0x35, 0x06, ...LBA4, 0x1f, 0xff, 0xff, C],
    medium: true, timeouts: { nominal: 5, recommended: 120 }, run: synchronizeCache(10),
  },
  { name: 'PRE-FETCH(10)', opcode: Op.PRE_FETCH_10, usage: [0x34, 0x02, ...LBA4, 0x1f, 0xff, 0xff, C], medium: true, run: preFetch(10) },
  { name: 'READ DEFECT DATA(10)', opcode: Op.READ_DEFECT_DATA_10, usage: [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, C], run: readDefectData10 },
  {
    name: 'WRITE SAME(10)', opcode: Op.WRITE_SAME_10, usage: [0x41, 0x08, ...LBA4, 0x1f, 0xff, 0xff, C],
    medium: true, write: true, timeouts: { nominal: 5, recommended: 120 }, run: writeSame(10),
  },
  {
    name: 'UNMAP', opcode: Op.UNMAP, usage: [0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, C],
    medium: true, write: true, supported: ALWAYS_THIN, timeouts: { nominal: 5, recommended: 120 }, run: unmap,
  },
  ...SANITIZE_ACTIONS.map(([name, sa, run, supported]): CommandDef => ({
    // SBC-3 §5.30: 1 IMMED(7) AUSE(5) SERVICE ACTION(4:0), 7..8 PARAMETER LIST LENGTH.
    name: `SANITIZE/${name}`, opcode: Op.SANITIZE, serviceAction: sa, usage: [0x48, 0xa0 | sa, 0, 0, 0, 0, 0, 0xff, 0xff, C],
    medium: true, write: true, timeouts: { nominal: 60, recommended: 3600 }, run, ...(supported ? { supported } : {}),
  })),
  { name: 'MODE SELECT(10)', opcode: Op.MODE_SELECT_10, usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, C], run: modeSelect10 },
  { name: 'RESERVE(10)', opcode: Op.RESERVE_10, usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, C], run: reserve },
  { name: 'RELEASE(10)', opcode: Op.RELEASE_10, usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, C], reservationExempt: true, run: release },
  { name: 'MODE SENSE(10)', opcode: Op.MODE_SENSE_10, usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, C], run: modeSense10 },
  ...PR_IN.map(([name, sa]): CommandDef => ({
    name: `PERSISTENT RESERVE IN/${name}`, opcode: Op.PERSISTENT_RESERVE_IN, serviceAction: sa,
    usage: [0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, C], run: persistentReserveIn(sa),
  })),
  ...PR_OUT.map(([name, sa]): CommandDef => ({
    name: `PERSISTENT RESERVE OUT/${name}`, opcode: Op.PERSISTENT_RESERVE_OUT, serviceAction: sa,
    usage: [0x5f, sa, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C], run: persistentReserveOut(sa),
  })),
  {
    // SPC-4 §6.4: LID1 only (service action 00h); the copy targets are checked per segment.
    name: 'EXTENDED COPY(LID1)', opcode: Op.EXTENDED_COPY, serviceAction: 0x00,
    usage: [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...LEN4, 0, C], timeouts: { nominal: 5, recommended: 120 }, run: extendedCopy,
  },
  ...COPY_RESULTS.map(([name, sa]): CommandDef => ({
    name: `RECEIVE COPY RESULTS/${name}`, opcode: Op.RECEIVE_COPY_RESULTS, serviceAction: sa,
    usage: [0x84, sa, 0xff, 0, 0, 0, 0, 0, 0, 0, ...LEN4, 0, C], run: receiveCopyResults(sa),
  })),
  {
    name: 'READ(16)', opcode: Op.READ_16, usage: [0x88, 0xf8, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, timeouts: IO_T, run: read(16),
  },
  {
    name: 'COMPARE AND WRITE', opcode: Op.COMPARE_AND_WRITE, usage: [0x89, 0x18, ...LBA8, 0, 0, 0, 0xff, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: compareAndWrite,
  },
  {
    name: 'WRITE(16)', opcode: Op.WRITE_16, usage: [0x8a, 0xf8, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: write(16),
  },
  {
    name: 'ORWRITE(16)', opcode: Op.ORWRITE_16, usage: [0x8b, 0x18, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: orWrite16,
  },
  {
    name: 'WRITE AND VERIFY(16)', opcode: Op.WRITE_AND_VERIFY_16, usage: [0x8e, 0xf2, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: writeAndVerify(16),
  },
  {
    name: 'VERIFY(16)', opcode: Op.VERIFY_16, usage: [0x8f, 0xf6, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, timeouts: IO_T, run: verify(16),
  },
  { name: 'PRE-FETCH(16)', opcode: Op.PRE_FETCH_16, usage: [0x90, 0x02, ...LBA8, ...LBA4, 0x1f, C], medium: true, run: preFetch(16) },
  {
    name: 'SYNCHRONIZE CACHE(16)', opcode: Op.SYNCHRONIZE_CACHE_16, usage: [0x91, 0x06, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, timeouts: { nominal: 5, recommended: 120 }, run: synchronizeCache(16),
  },
  {
    name: 'WRITE SAME(16)', opcode: Op.WRITE_SAME_16, usage: [0x93, 0x09, ...LBA8, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: { nominal: 5, recommended: 120 }, run: writeSame(16),
  },
  {
    // ATOMIC BOUNDARY (10..11) is masked out: MAXIMUM ATOMIC BOUNDARY SIZE is 0.
    name: 'WRITE ATOMIC(16)', opcode: Op.WRITE_ATOMIC_16, usage: [0x9c, 0x18, ...LBA8, 0, 0, 0xff, 0xff, 0x3f, C],
    medium: true, write: true, timeouts: IO_T, run: writeAtomic16,
  },
  {
    name: 'READ CAPACITY(16)', opcode: Op.SERVICE_ACTION_IN_16, serviceAction: ServiceAction.READ_CAPACITY_16,
    usage: [0x9e, 0x10, ...LBA8, ...LBA4, 0x01, C], medium: true, run: readCapacity16,
  },
  {
    name: 'GET LBA STATUS', opcode: Op.SERVICE_ACTION_IN_16, serviceAction: ServiceAction.GET_LBA_STATUS,
    usage: [0x9e, 0x12, ...LBA8, ...LBA4, 0, C], medium: true, supported: ALWAYS_THIN, run: getLbaStatus,
  },
  {
    name: 'REPORT LUNS', opcode: Op.REPORT_LUNS, usage: [0xa0, 0, 0xff, 0, 0, 0, ...LBA4, 0, C],
    uaExempt: true, reservationExempt: true, headOfQueue: true,
    // The target port answers REPORT LUNS from its LUN map; a unit on its own knows only LUN 0.
    run: (ctx) => {
      const r = reportLuns(ctx.cmd.cdb, [0]);
      return 'data' in r ? ctx.good(r.data, r.alloc) : ctx.fail(r);
    },
  },
  {
    // SPC-4 §6.27: PARAMETER DATA FORMAT in byte 1 bits 7:5.
    name: 'REPORT TARGET PORT GROUPS', opcode: Op.MAINTENANCE_IN, serviceAction: ServiceAction.REPORT_TARGET_PORT_GROUPS,
    usage: [0xa3, 0xe0 | 0x0a, 0, 0, 0, 0, ...LEN4, 0, C], reservationExempt: true,
    supported: (lu) => lu.alua !== undefined, run: reportTargetPortGroups,
  },
  {
    name: 'SET TARGET PORT GROUPS', opcode: Op.MAINTENANCE_OUT, serviceAction: ServiceAction.SET_TARGET_PORT_GROUPS,
    usage: [0xa4, 0x0a, 0, 0, 0, 0, ...LEN4, 0, C], supported: (lu) => lu.alua?.explicit === true, run: setTargetPortGroups,
  },
  {
    name: 'REPORT SUPPORTED OPERATION CODES', opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_SUPPORTED_OPERATION_CODES,
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...LBA4, 0, C], reservationExempt: true,
    run: makeReportSupportedOpcodes(() => COMMANDS),
  },
  {
    name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_SUPPORTED_TMFS,
    usage: [0xa3, 0x0d, 0x80, 0, 0, 0, ...LBA4, 0, C], reservationExempt: true, run: reportSupportedTmfs,
  },
  {
    name: 'READ(12)', opcode: Op.READ_12, usage: [0xa8, 0xf8, ...LBA4, ...LBA4, 0x1f, C],
    medium: true, timeouts: IO_T, run: read(12),
  },
  {
    name: 'WRITE(12)', opcode: Op.WRITE_12, usage: [0xaa, 0xf8, ...LBA4, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: write(12),
  },
  {
    name: 'WRITE AND VERIFY(12)', opcode: Op.WRITE_AND_VERIFY_12, usage: [0xae, 0xf2, ...LBA4, ...LBA4, 0x1f, C],
    medium: true, write: true, timeouts: IO_T, run: writeAndVerify(12),
  },
  {
    name: 'VERIFY(12)', opcode: Op.VERIFY_12, usage: [0xaf, 0xf6, ...LBA4, ...LBA4, 0x1f, C],
    medium: true, timeouts: IO_T, run: verify(12),
  },
  { name: 'READ DEFECT DATA(12)', opcode: Op.READ_DEFECT_DATA_12, usage: [0xb7, 0x1f, ...LBA4, ...LBA4, 0, C], run: readDefectData12 },
];

/** The disk commands a CD/DVD-ROM drive shares (SPC-4 and the MMC-6 §4 read-only subset). */
const MMC_SHARED = [
  'TEST UNIT READY', 'REQUEST SENSE', 'INQUIRY', 'MODE SELECT(6)', 'MODE SENSE(6)', 'PREVENT ALLOW MEDIUM REMOVAL',
  'READ CAPACITY(10)', 'READ(10)', 'MODE SELECT(10)', 'MODE SENSE(10)', 'REPORT LUNS',
  'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', 'READ(12)',
];

function shared(name: string): CommandDef {
  const d = COMMANDS.find((c) => c.name === name);
  if (!d) throw new Error(`command table: no ${name}`);
  return d;
}

/**
 * The CD/DVD-ROM (peripheral device type 05h) table: read-only, no SBC write, provisioning or
 * protection commands, MMC-6 §6 for the rest. GESN and GET CONFIGURATION neither report nor
 * clear a unit attention (MMC-6 §4.1.6.1), so a host can poll the tray while one is pending.
 */
export const MMC_COMMANDS: readonly CommandDef[] = [
  ...MMC_SHARED.map(shared),
  {
    name: 'START STOP UNIT', opcode: Op.START_STOP_UNIT, usage: [0x1b, 0x01, 0, 0x0f, 0xf3, C],
    timeouts: { nominal: 1, recommended: 60 }, run: mmcStartStopUnit,
  },
  {
    name: 'READ TOC/PMA/ATIP', opcode: MmcOp.READ_TOC_PMA_ATIP, usage: [0x43, 0x02, 0x0f, 0, 0, 0, 0xff, 0xff, 0xff, 0xc0 | C],
    medium: true, run: readToc,
  },
  {
    name: 'GET CONFIGURATION', opcode: MmcOp.GET_CONFIGURATION, usage: [0x46, 0x03, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, C],
    uaExempt: true, run: getConfiguration,
  },
  {
    name: 'GET EVENT STATUS NOTIFICATION', opcode: MmcOp.GET_EVENT_STATUS_NOTIFICATION,
    usage: [0x4a, 0x01, 0, 0, 0xff, 0, 0, 0xff, 0xff, C], uaExempt: true, run: getEventStatusNotification,
  },
  {
    name: 'READ DISC INFORMATION', opcode: MmcOp.READ_DISC_INFORMATION, usage: [0x51, 0x07, 0, 0, 0, 0, 0, 0xff, 0xff, C],
    medium: true, run: readDiscInformation,
  },
  {
    name: 'READ TRACK INFORMATION', opcode: MmcOp.READ_TRACK_INFORMATION, usage: [0x52, 0x07, ...LBA4, 0, 0xff, 0xff, C],
    medium: true, run: readTrackInformation,
  },
  {
    name: 'GET PERFORMANCE', opcode: MmcOp.GET_PERFORMANCE, usage: [0xac, 0x1f, ...LBA4, 0, 0, 0xff, 0xff, 0xff, C],
    run: getPerformance,
  },
  {
    name: 'READ DVD STRUCTURE', opcode: MmcOp.READ_DVD_STRUCTURE, usage: [0xad, 0x0f, ...LBA4, 0xff, 0xff, 0xff, 0xff, 0xc0, C],
    medium: true, run: readDvdStructure,
  },
  {
    name: 'SET CD SPEED', opcode: MmcOp.SET_CD_SPEED, usage: [0xbb, 0x03, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, C],
    run: setCdSpeed,
  },
  {
    name: 'MECHANISM STATUS', opcode: MmcOp.MECHANISM_STATUS, usage: [0xbd, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, C],
    run: mechanismStatus,
  },
  {
    name: 'REPORT SUPPORTED OPERATION CODES', opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_SUPPORTED_OPERATION_CODES,
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...LBA4, 0, C], reservationExempt: true,
    run: makeReportSupportedOpcodes(() => MMC_COMMANDS),
  },
].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));

export type CommandTable = ReadonlyMap<number, readonly CommandDef[]>;

function index(defs: readonly CommandDef[]): CommandTable {
  const m = new Map<number, CommandDef[]>();
  for (const d of defs) {
    const list = m.get(d.opcode) ?? [];
    list.push(d);
    m.set(d.opcode, list);
  }
  return m;
}

const BY_OPCODE = index(COMMANDS);
const MMC_BY_OPCODE = index(MMC_COMMANDS);

/** The command table of a peripheral device type. */
export function commandTable(deviceType: 'disk' | 'cdrom'): CommandTable {
  return deviceType === 'cdrom' ? MMC_BY_OPCODE : BY_OPCODE;
}

/**
 * The table entry for a CDB: undefined for an unknown opcode (INVALID COMMAND OPERATION
 * CODE), 'bad-sa' for a known opcode with an unknown service action (INVALID FIELD IN CDB).
 */
export function lookupCommand(opcode: number, cdb: Buffer, table: CommandTable = BY_OPCODE): CommandDef | 'bad-sa' | undefined {
  const list = table.get(opcode);
  if (!list) return undefined;
  const first = list[0];
  if (first && first.serviceAction === undefined) return first;
  const sa = (cdb[1] ?? 0) & 0x1f;
  return list.find((d) => d.serviceAction === sa) ?? 'bad-sa';
}
