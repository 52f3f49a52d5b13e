// The contract between fabrics (iSCSI, USB, SBP-2) and the SCSI core.
// A fabric decodes its transport into a ScsiCommand, hands it to a ScsiPort,
// and encodes the ScsiResult back. The core never sees transport framing and
// a fabric never looks at opcodes beyond what its transport requires.

/** SAM-5 §8.6 task attributes. */
export type TaskAttribute = 'simple' | 'ordered' | 'head-of-queue' | 'aca';

/** SAM-5 §5.3 status codes. */
export const Status = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

/**
 * One I_T nexus: an initiator port talking to a target port.
 * Unit attentions, reservations and ACL decisions are keyed by `id`.
 */
export interface Nexus {
  /** Unique and stable for the life of the nexus, e.g. `iqn.x,i,0x23d000000001|iqn.t,t,0x1`. */
  readonly id: string;
  /** Initiator device name (iSCSI name, USB host, SBP-2 GUID). */
  readonly initiatorName: string;
  /** Initiator port name (SPC-4 §7.6.4.6: `<name>,i,0x<ISID>` for iSCSI). */
  readonly initiatorPort: string;
  /** Target port name (e.g. `<target iqn>,t,0x<TPGT>`). */
  readonly targetPort: string;
  /** Relative target port identifier (VPD 0x83, REPORT TARGET PORT GROUPS); 1-based. */
  readonly relativeTargetPortId: number;
  /** SPC-4 §7.6.4 PROTOCOL IDENTIFIER of the transport (iSCSI 5, SBP 3, UAS 9, 0xF none: USB BOT). */
  readonly protocolId: number;
  /** SPC-4 §7.6.4 TransportID of the initiator port, for persistent reservations. */
  readonly transportId: Buffer;
}

/**
 * A command as the core receives it. Data-out is *pulled*: the core calls
 * `dataOut()` only once it has accepted the command, so a fabric never buffers
 * (or solicits, for iSCSI R2T) data for a command the core rejects.
 */
export interface ScsiCommand {
  /** LUN as a plain number (flat or peripheral addressing decoded by the fabric). */
  readonly lun: number;
  /** The CDB, exactly as long as the transport says (6..16 bytes, up to 260 for variable length). */
  readonly cdb: Buffer;
  /** Transport task tag (iSCSI ITT, CBW tag, ORB address); unique per nexus while in flight. */
  readonly tag: number;
  readonly attribute: TaskAttribute;
  readonly nexus: Nexus;
  /**
   * Expected Data-In length from the transport (iSCSI EDTL for reads, dCBWDataTransferLength
   * when direction is in). 0 when the transport says no data-in.
   */
  readonly dataInLength: number;
  /** Expected Data-Out length from the transport; 0 when the transport says no data-out. */
  readonly dataOutLength: number;
  /**
   * Pull the next `length` bytes of data-out, in order. Resolves with a Buffer of exactly
   * `length` bytes, or fewer if the transport has no more (total > dataOutLength), and
   * rejects if the transport failed (connection lost, command aborted). Calls are sequential:
   * the core never calls again before the previous promise settled.
   */
  dataOut(length: number): Promise<Buffer>;
  /** Set by the fabric/core when the task is aborted (TMF, reset, connection loss). */
  readonly aborted?: boolean;
}

/**
 * The core's answer. `dataIn` is what the command produced; the fabric sends at most
 * `cmd.dataInLength` of it and computes residuals from the two lengths.
 */
export interface ScsiResult {
  readonly status: StatusCode;
  /** Sense data (fixed or descriptor format) when status is CHECK CONDITION. */
  readonly sense?: Buffer;
  /** Data-In payload; may be a view into a larger buffer, never copied by the fabric. */
  readonly dataIn?: Buffer;
  /**
   * Bytes of data-out the command would have taken according to its CDB
   * (transfer length × block size). Lets the fabric report over/underflow residuals.
   */
  readonly dataOutExpected?: number;
}

/** Task management functions (SAM-5 §7). */
export type TaskManagementFunction =
  | 'abort-task'
  | 'abort-task-set'
  | 'clear-task-set'
  | 'clear-aca'
  | 'lun-reset'
  | 'i-t-nexus-reset'
  | 'target-warm-reset'
  | 'target-cold-reset'
  | 'query-task';

/** SAM-5 §7.12 service responses to a task management function. */
export type TmfResponse =
  | 'function-complete'
  | 'function-succeeded'
  | 'function-rejected'
  | 'incorrect-lun'
  | 'task-does-not-exist'
  | 'not-supported';

export interface TmfRequest {
  readonly fn: TaskManagementFunction;
  readonly nexus: Nexus;
  readonly lun: number;
  /** Referenced task tag for abort-task / query-task. */
  readonly referencedTag?: number;
}

/**
 * What a fabric talks to: the LUNs one I_T nexus may reach, and the core behind them.
 * Built by the core (scsi/port.ts) from the configuration's LUN map and ACLs.
 */
export interface ScsiPort {
  execute(cmd: ScsiCommand): Promise<ScsiResult>;
  taskManagement(req: TmfRequest): Promise<TmfResponse>;
  /** The nexus has gone (logout, connection loss without recovery): drop its tasks and state. */
  nexusLost(nexus: Nexus): void;
}
