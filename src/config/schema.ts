// The lunbox configuration file: one JSON document. Types only; rules live in validate.ts.

export type BackstoreType = 'ram' | 'file' | 'block';
export type BlockSize = 512 | 1024 | 2048 | 4096;

export interface BackstoreConfig {
  name: string;
  type: BackstoreType;
  /** Bytes, or a human size ('64M'). Required for ram; for file only to create it. */
  size?: number | string;
  path?: string;
  readOnly?: boolean;
  /** Logical block size the core presents; default 512. */
  blockSize?: BlockSize;
  /** SBC WCE bit; default true where the backstore has a volatile cache. */
  writeCache?: boolean;
  /** SPC INQUIRY T10 vendor (≤ 8), product (≤ 16), revision (≤ 4), unit serial (≤ 64). */
  vendor?: string;
  product?: string;
  revision?: string;
  serial?: string;
  /** Advertise UNMAP (ram always can; file via punch-hole; block cannot). */
  thinProvisioning?: boolean;
  /** Removable medium (RMB): START STOP UNIT may eject, PREVENT ALLOW MEDIUM REMOVAL applies. */
  removable?: boolean;
}

export interface Chap {
  userid: string;
  password: string;
  /** Mutual CHAP: the target's name and secret, presented to the initiator. */
  mutualUserid?: string;
  mutualPassword?: string;
}

export interface Portal {
  address: string;
  port?: number;
}

export type DigestName = 'None' | 'CRC32C';

export interface IscsiParams {
  maxRecvDataSegmentLength?: number;
  maxBurstLength?: number;
  firstBurstLength?: number;
  immediateData?: boolean;
  initialR2T?: boolean;
  maxOutstandingR2T?: number;
  headerDigest?: DigestName[];
  dataDigest?: DigestName[];
  /** Seconds between NOP-In pings; 0 turns them off. */
  nopInInterval?: number;
  /** Seconds to wait for the NOP-Out answer before dropping the connection. */
  nopInTimeout?: number;
}

export interface TpgLun {
  lun: number;
  backstore: string;
  readOnly?: boolean;
}

export interface MappedLun {
  /** LUN number the initiator sees. */
  lun: number;
  /** The target's LUN it maps to; default: same number. */
  targetLun?: number;
  readOnly?: boolean;
}

export interface AclConfig {
  initiator: string;
  auth?: Chap;
  /** Default: every target LUN under its own number. */
  luns?: MappedLun[];
}

export interface IscsiTargetConfig {
  iqn: string;
  alias?: string;
  /** Target portal group tag; default 1. */
  tpgt?: number;
  /** Default: iscsi.portals. */
  portals?: Portal[];
  luns: TpgLun[];
  acls?: AclConfig[];
  /** Any initiator may log in and sees every LUN; default true when there are no ACLs. */
  demoMode?: boolean;
  auth?: Chap;
  params?: IscsiParams;
}

export interface IscsiConfig {
  portals?: Portal[];
  discoveryAuth?: Chap;
  targets: IscsiTargetConfig[];
}

/** The management shell on a serial line (USB ACM gadget port or a UART). */
export interface ConsoleConfig {
  /** Serial device the daemon serves the shell on; default /dev/ttyGS0; false: none. */
  device?: string | false;
  /** Line speed (a UART needs it; ignored by the ACM gadget); default 115200. */
  baudRate?: number;
}

/** The local control socket `lunbox shell` talks to. */
export interface ControlConfig {
  /** Unix socket path; default /run/lunbox/control.sock; false: none. */
  socket?: string | false;
}

export interface LunboxConfig {
  version: 1;
  backstores: BackstoreConfig[];
  iscsi?: IscsiConfig;
  /** Sections owned by later work: kept as given, only checked to be objects. */
  usb?: unknown;
  sbp2?: unknown;
  console?: ConsoleConfig;
  control?: ControlConfig;
  engine?: unknown;
}
