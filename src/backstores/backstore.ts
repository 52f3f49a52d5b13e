// The Backstore interface: byte ranges and Buffers only. Block size, LBA ranges,
// protection information and every SCSI rule live in the core (DESIGN.md).

export type BackstoreKind = 'file' | 'block' | 'ram';

export interface BackstoreInfo {
  readonly kind: BackstoreKind;
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** `unmap()` really deallocates (hole punch, discard, dropped chunk). */
  readonly canUnmap: boolean;
  /** Deallocated ranges read back as zeros (SBC-3 LBPRZ). */
  readonly unmapReadsZero: boolean;
  /** Writes are cached (a power loss may drop them until flush()): SBC WCE default. */
  readonly volatileCache: boolean;
  /** Where the data lives (file path, device node) for `info`/logs; undefined for RAM. */
  readonly path?: string;
}

export interface WriteOptions {
  /** Force Unit Access: the data is on stable storage when the promise resolves. */
  readonly fua?: boolean;
}

/**
 * Bytes kept beside the data for T10 protection information (8 per logical block at
 * byte lba × 8). Ranges never written read as zeros; what the bytes mean is the core's
 * business (scsi/sbc/protection.ts).
 */
export interface ProtectionInfoStore {
  read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void>;
  write(data: Buffer, position: number, opts?: WriteOptions): Promise<void>;
}

export interface Backstore extends BackstoreInfo {
  /** Side store for protection information; present when the backstore was opened with one. */
  readonly pi?: ProtectionInfoStore | undefined;
  /**
   * Read `length` bytes at byte `position` into `into` at `intoOffset`.
   * The caller has range-checked; ranges never cross `size`.
   */
  read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void>;
  /**
   * Optional: read `length` bytes at `position` into a buffer the backstore gives away (the
   * caller owns it). Lets a read-ahead hit hand over its buffer instead of copying it.
   */
  readOwned?(length: number, position: number): Promise<Buffer>;
  /**
   * Optional: the open file descriptor another thread of this process may pread/pwrite
   * directly (the USB fast path, usb/bot-fast.ts). Before such writes the caller calls
   * dropReadAhead(), and it writes only while it holds the unit's lease.
   */
  directFd?(): number | undefined;
  /** Optional: forget data read ahead, which a write through directFd() would make stale. */
  dropReadAhead?(): void;
  /** Write all of `data` at byte `position`. */
  write(data: Buffer, position: number, opts?: WriteOptions): Promise<void>;
  /** Make every completed write durable (fdatasync / fsync). */
  flush(): Promise<void>;
  /**
   * Deallocate a byte range. Only called when `canUnmap`; afterwards the range reads as
   * zeros when `unmapReadsZero`.
   */
  unmap(position: number, length: number): Promise<void>;
  /**
   * Whether the range starting at `position` is mapped, and for how many bytes that stays
   * true (for GET LBA STATUS). Backstores that cannot tell report everything mapped.
   */
  mapping(position: number, length: number): Promise<{ mapped: boolean; length: number }>;
  /** Change the size (grow/shrink a file or RAM store); block devices reject this. */
  resize?(size: number): Promise<void>;
  close(): Promise<void>;
}

/** Typed errors for backstore set-up (hot-path I/O errors are turned into sense by the core). */
export class BackstoreError extends Error {
  constructor(
    readonly code:
      | 'ENOENT'
      | 'EEXIST'
      | 'EINVAL'
      | 'EACCES'
      | 'ENOTBLK'
      | 'ESIZE'
      | 'EIO',
    message: string,
  ) {
    super(message);
    this.name = 'BackstoreError';
  }
}
