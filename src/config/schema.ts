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
  /** Physical block size (blockSize × 2^n): READ CAPACITY 16 LBPPBE, VPD B0 granularities. */
  physicalBlockSize?: number;
  /** T10 protection information: 1 or 3 formats with PI; 0 can be formatted with PI later (FORMAT UNIT). */
  protection?: 0 | 1 | 3;
  /** SANITIZE pace in bytes per second (or '32M'); default 32 MiB/s. */
  sanitizeRate?: number | string;
  /**
   * A CD/DVD-ROM drive (MMC, peripheral device type 05h) with `path` (an .iso) as its disc:
   * type 'file', read-only, removable, 2048-byte blocks. No `path`: an empty drive.
   */
  cdrom?: boolean;
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
  /** Highest ErrorRecoveryLevel offered (0..2). */
  errorRecoveryLevel?: number;
  /** Connections per session offered (MC/S). */
  maxConnections?: number;
  defaultTime2Wait?: number;
  defaultTime2Retain?: number;
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
  /** Relative target port identifier (VPD 83, ALUA port groups); default: 1-based position. */
  relativePortId?: number;
}

export type AluaState = 'active/optimized' | 'active/non-optimized' | 'standby' | 'unavailable' | 'transitioning';

/** SPC-4 §5.15 target port group: the access state of a set of target ports. */
export interface PortGroupConfig {
  id: number;
  state: AluaState;
  /** Relative target port identifiers of the targets in this group. */
  ports: number[];
  preferred?: boolean;
}

export interface IscsiConfig {
  portals?: Portal[];
  discoveryAuth?: Chap;
  targets: IscsiTargetConfig[];
  /** ALUA: how access states change (TPGS in INQUIRY); needs portGroups. */
  alua?: 'implicit' | 'explicit' | 'both';
  portGroups?: PortGroupConfig[];
}

/** USB mass storage (Bulk-Only Transport over FunctionFS in a configfs gadget). */
export interface UsbConfig {
  gadget?: {
    name?: string;
    vendorId?: number;
    productId?: number;
    manufacturer?: string;
    product?: string;
    serial?: string;
    /** A UDC name from /sys/class/udc, or 'auto' (the board's, else the first). */
    udc?: string;
    /** An ACM serial function beside the disk (the board's console, /dev/ttyGS0). */
    acm?: boolean;
    /** mA drawn from the host, 2..500. */
    maxPower?: number;
    /** A USB network (CDC NCM) beside the disk: true for the defaults, or the settings. */
    ncm?: boolean | NcmConfig;
  };
  /**
   * Who serves the LUNs: 'userspace' (default: lunbox's SCSI core over FunctionFS) or 'kernel'
   * (the kernel's mass_storage function via configfs; file and block backstores only).
   */
  engine?: 'userspace' | 'kernel';
  /**
   * Userspace engine: serve plain READ and WRITE in a worker thread that owns the bulk endpoints,
   * under a lease from the SCSI core (README "USB mass storage"). Default true.
   */
  fastPath?: boolean;
  /** Up to 16 LUNs (Get Max LUN). */
  luns: { lun: number; backstore: string; readOnly?: boolean }[];
}

/** The NCM link on the USB cable: the board's address, and DHCP for the computer. */
export interface NcmConfig {
  /** The board's ADDRESS/PREFIX on the link; default 10.55.0.1/30 (the computer gets 10.55.0.2). */
  address?: string;
  /** Hand the computer its address by DHCP (no router, no DNS); default true. */
  dhcp?: boolean;
  /** DHCP lease in seconds, 60..2592000; default 3600. */
  leaseTime?: number;
  /** MAC of the board's end (usb0); default derived from the USB serial number (02:...). */
  deviceMac?: string;
  /** MAC of the computer's end; default derived from the USB serial number (06:...). */
  hostMac?: string;
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
  usb?: UsbConfig;
  /** Sections owned by later work: kept as given, only checked to be objects. */
  sbp2?: unknown;
  console?: ConsoleConfig;
  control?: ControlConfig;
  engine?: unknown;
}
