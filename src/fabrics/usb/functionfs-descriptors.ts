// FunctionFS descriptor and string blobs: the first two writes to ep0. Pure encoders, no I/O.
//
// include/uapi/linux/usb/functionfs.h, all integers little-endian:
//   struct usb_functionfs_descs_head_v2 {        // 12 bytes
//     le32 magic;   // FUNCTIONFS_DESCRIPTORS_MAGIC_V2 = 3
//     le32 length;  // whole blob, must equal the write(2) length
//     le32 flags;   // FUNCTIONFS_HAS_*_DESC, ...
//   }
//   le32 eventfd   (only with FUNCTIONFS_EVENTFD; never used here)
//   le32 fs_count, hs_count, ss_count   (each only when its HAS_*_DESC flag is set)
//   then the FS descriptors, the HS descriptors, the SS descriptors (USB 2.0 §9.6 layouts).
//
//   struct usb_functionfs_strings_head {         // 16 bytes
//     le32 magic;      // FUNCTIONFS_STRINGS_MAGIC = 2
//     le32 length;     // whole blob
//     le32 str_count;  // strings per language (>= highest iInterface used)
//     le32 lang_count;
//   }
//   then per language: le16 code, str_count NUL-terminated UTF-8 strings.
//
// Descriptors (USB 2.0 §9.6.5 interface, §9.6.6 endpoint; USB 3.2 §9.6.7 SS companion):
//   interface  9 bytes: bLength bDescriptorType=4 bInterfaceNumber bAlternateSetting
//                       bNumEndpoints bInterfaceClass bInterfaceSubClass bInterfaceProtocol iInterface
//   endpoint   7 bytes: bLength bDescriptorType=5 bEndpointAddress bmAttributes
//                       wMaxPacketSize(le16) bInterval
//   SS comp.   6 bytes: bLength bDescriptorType=0x30 bMaxBurst bmAttributes wBytesPerInterval(le16)
// FunctionFS renumbers interfaces, endpoints and strings; the numbers written here are
// function-local (interface 0, endpoints 1.., strings 1..). Endpoint files are named ep1, ep2, ...
// in the order the endpoint descriptors appear (without FUNCTIONFS_VIRTUAL_ADDR).

/** functionfs.h magics. */
export const FfsMagic = {
  STRINGS: 2,
  DESCRIPTORS_V2: 3,
} as const;

/** functionfs.h `enum functionfs_flags`; an unknown flag makes the write fail with ENOSYS. */
export const FfsFlag = {
  HAS_FS_DESC: 1,
  HAS_HS_DESC: 2,
  HAS_SS_DESC: 4,
  HAS_MS_OS_DESC: 8,
  VIRTUAL_ADDR: 16,
  EVENTFD: 32,
  ALL_CTRL_RECIP: 64,
  CONFIG0_SETUP: 128,
} as const;

/** USB 2.0 table 9-5 descriptor types (plus USB 3 SS endpoint companion). */
export const DescriptorType = {
  INTERFACE: 0x04,
  ENDPOINT: 0x05,
  SS_ENDPOINT_COMPANION: 0x30,
} as const;

/** Mass Storage Class Overview 1.4 §2: class 08h, SCSI transparent 06h, Bulk-Only 50h. */
export const MassStorage = {
  CLASS: 0x08,
  SUBCLASS_SCSI: 0x06,
  PROTOCOL_BOT: 0x50,
} as const;

/** USB 2.0 §5.8.3 / USB 3.2 §9.6.6: bulk max packet size per speed. */
export const BulkMaxPacket = { full: 64, high: 512, super: 1024 } as const;
export type UsbSpeed = keyof typeof BulkMaxPacket;

export const DESCS_HEAD_LENGTH = 12;
export const STRINGS_HEAD_LENGTH = 16;
const INTERFACE_LENGTH = 9;
const ENDPOINT_LENGTH = 7;
const SS_COMPANION_LENGTH = 6;
const BM_ATTRIBUTES_BULK = 0x02;
const ENDPOINT_DIR_IN = 0x80;

export interface BotDescriptorOptions {
  /** Function-local endpoint numbers (1..15); ep file names follow declaration order. */
  readonly inEndpoint?: number;
  readonly outEndpoint?: number;
  /** Include SuperSpeed descriptors (harmless on high-speed-only UDCs). Default true. */
  readonly superSpeed?: boolean;
  /** String index of the interface name (1 = first string of the strings blob; 0 = none). */
  readonly iInterface?: number;
  /** SS companion bMaxBurst (0..15): packets per burst beyond the first. Default 0. */
  readonly ssMaxBurst?: number;
}

/** A descriptor encoding error, with a stable code. */
export class DescriptorError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'DescriptorError';
    this.code = code;
  }
}

function interfaceDescriptor(iInterface: number): Buffer {
  return Buffer.from([
    INTERFACE_LENGTH,
    DescriptorType.INTERFACE,
    0, // bInterfaceNumber: function-local, FunctionFS remaps
    0, // bAlternateSetting
    2, // bNumEndpoints: bulk IN + bulk OUT (BOT §4.1)
    MassStorage.CLASS,
    MassStorage.SUBCLASS_SCSI,
    MassStorage.PROTOCOL_BOT,
    iInterface,
  ]);
}

function bulkEndpoint(address: number, maxPacket: number): Buffer {
  const b = Buffer.alloc(ENDPOINT_LENGTH);
  b[0] = ENDPOINT_LENGTH;
  b[1] = DescriptorType.ENDPOINT;
  b[2] = address;
  b[3] = BM_ATTRIBUTES_BULK;
  b.writeUInt16LE(maxPacket, 4);
  b[6] = 0; // bInterval: ignored for bulk IN/OUT at FS, NAK rate at HS (0 = never NAKs)
  return b;
}

function ssCompanion(maxBurst: number): Buffer {
  // bmAttributes 0: no streams; wBytesPerInterval 0: only meaningful for periodic endpoints.
  return Buffer.from([SS_COMPANION_LENGTH, DescriptorType.SS_ENDPOINT_COMPANION, maxBurst, 0, 0, 0]);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/**
 * The FunctionFS v2 descriptor blob of one Bulk-Only mass-storage interface:
 * interface 08/06/50 with bulk IN then bulk OUT, for full, high and (optionally) super speed.
 */
export function encodeBotDescriptors(opts: BotDescriptorOptions = {}): Buffer {
  const inEp = opts.inEndpoint ?? 1;
  const outEp = opts.outEndpoint ?? 2;
  const ss = opts.superSpeed ?? true;
  const iInterface = opts.iInterface ?? 1;
  const burst = opts.ssMaxBurst ?? 0;
  for (const [name, v] of [['inEndpoint', inEp], ['outEndpoint', outEp]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 15) {
      throw new DescriptorError('BAD_ENDPOINT', `${name} must be an endpoint number 1..15, got ${v}`);
    }
  }
  if (inEp === outEp) throw new DescriptorError('BAD_ENDPOINT', 'inEndpoint and outEndpoint must differ');
  if (!Number.isInteger(iInterface) || iInterface < 0 || iInterface > 255) {
    throw new DescriptorError('BAD_STRING_INDEX', `iInterface must be 0..255, got ${iInterface}`);
  }
  if (!Number.isInteger(burst) || burst < 0 || burst > 15) {
    throw new DescriptorError('BAD_BURST', `ssMaxBurst must be 0..15, got ${burst}`);
  }
  const intf = interfaceDescriptor(iInterface);
  const inAddr = ENDPOINT_DIR_IN | inEp;
  const speedList = (mps: number, companion: boolean): Buffer[] =>
    companion
      ? [intf, bulkEndpoint(inAddr, mps), ssCompanion(burst), bulkEndpoint(outEp, mps), ssCompanion(burst)]
      : [intf, bulkEndpoint(inAddr, mps), bulkEndpoint(outEp, mps)];
  const lists = [speedList(BulkMaxPacket.full, false), speedList(BulkMaxPacket.high, false)];
  if (ss) lists.push(speedList(BulkMaxPacket.super, true));
  const flags = FfsFlag.HAS_FS_DESC | FfsFlag.HAS_HS_DESC | (ss ? FfsFlag.HAS_SS_DESC : 0);
  const counts = lists.map((l) => u32(l.length));
  const body = Buffer.concat([...counts, ...lists.flat()]);
  const head = Buffer.concat([u32(FfsMagic.DESCRIPTORS_V2), u32(DESCS_HEAD_LENGTH + body.length), u32(flags)]);
  return Buffer.concat([head, body]);
}

/** One language of the strings blob: a USB LANGID (0x0409 = English, United States). */
export interface FfsLanguage {
  readonly code: number;
  readonly strings: readonly string[];
}

/**
 * The FunctionFS strings blob. Every language must carry the same number of strings
 * (functionfs.h: str_count is per language); strings may not contain NUL.
 */
export function encodeFfsStrings(languages: readonly FfsLanguage[]): Buffer {
  const count = languages[0]?.strings.length ?? 0;
  const parts: Buffer[] = [];
  for (const lang of languages) {
    if (!Number.isInteger(lang.code) || lang.code < 0 || lang.code > 0xffff) {
      throw new DescriptorError('BAD_LANGID', `language code must be a 16-bit LANGID, got ${lang.code}`);
    }
    if (lang.strings.length !== count) {
      throw new DescriptorError(
        'STRING_COUNT_MISMATCH',
        `language 0x${lang.code.toString(16)} has ${lang.strings.length} strings, expected ${count}`,
      );
    }
    const code = Buffer.alloc(2);
    code.writeUInt16LE(lang.code, 0);
    parts.push(code);
    for (const s of lang.strings) {
      if (s.includes('\0')) throw new DescriptorError('NUL_IN_STRING', `string ${JSON.stringify(s)} contains NUL`);
      parts.push(Buffer.from(s + '\0', 'utf8'));
    }
  }
  // functionfs.h: str_count and lang_count are both zero or both non-zero.
  const langCount = count === 0 ? 0 : languages.length;
  const body = langCount === 0 ? Buffer.alloc(0) : Buffer.concat(parts);
  return Buffer.concat([
    u32(FfsMagic.STRINGS),
    u32(STRINGS_HEAD_LENGTH + body.length),
    u32(count),
    u32(langCount),
    body,
  ]);
}

/** The strings blob for a BOT function: one US-English interface name (string index 1). */
export function encodeBotStrings(interfaceName = 'lunbox mass storage'): Buffer {
  return encodeFfsStrings([{ code: 0x0409, strings: [interfaceName] }]);
}

/** Endpoint file names in a FunctionFS mount for the BOT descriptors (declaration order). */
export const BotEpFiles = { bulkIn: 'ep1', bulkOut: 'ep2' } as const;
