// DHCPv4 messages (RFC 2131, options RFC 2132): pure decode/encode, no I/O.
//
// RFC 2131 §2 figure 1, network byte order:
//   off size field
//     0    1 op       1 BOOTREQUEST, 2 BOOTREPLY
//     1    1 htype    hardware type (1 Ethernet, RFC 1700 "ARP hardware types")
//     2    1 hlen     hardware address length (6 for Ethernet)
//     3    1 hops     relay hops, 0 from a client
//     4    4 xid      transaction id chosen by the client
//     8    2 secs     seconds since the client began
//    10    2 flags    bit 15 BROADCAST (§4.1: the client cannot take unicast before it has an address)
//    12    4 ciaddr   client address (only when it already has one: BOUND, RENEW, REBIND)
//    16    4 yiaddr   "your" address, set by the server
//    20    4 siaddr   next server (BOOTP), 0 here
//    24    4 giaddr   relay agent address
//    28   16 chaddr   client hardware address, hlen bytes used
//    44   64 sname    server host name, NUL-terminated (or options when overloaded)
//   108  128 file     boot file name, NUL-terminated (or options when overloaded)
//   236    4 magic cookie 99.130.83.99 (RFC 2131 §3, RFC 2132 §2)
//   240    . options  code, length, value; 0 is one byte of padding, 255 ends them
// Options of the same code that appear more than once are one option, concatenated (RFC 3396 §5);
// option 52 (overload, RFC 2132 §9.3) continues the options in `file` (1), `sname` (2) or both (3).

import { formatIpv4, parseIpv4 } from './ipv4';

export const DhcpOffset = {
  OP: 0,
  HTYPE: 1,
  HLEN: 2,
  HOPS: 3,
  XID: 4,
  SECS: 8,
  FLAGS: 10,
  CIADDR: 12,
  YIADDR: 16,
  SIADDR: 20,
  GIADDR: 24,
  CHADDR: 28,
  SNAME: 44,
  FILE: 108,
  COOKIE: 236,
  OPTIONS: 240,
} as const;

export const DhcpSize = {
  CHADDR: 16,
  SNAME: 64,
  FILE: 128,
  /** The fixed part and the magic cookie. */
  HEADER: 240,
  /** BOOTP's fixed 300-byte message (RFC 951); some clients still drop shorter replies. */
  MIN_MESSAGE: 300,
} as const;

export const MAGIC_COOKIE = 0x63825363;

export const BootpOp = { REQUEST: 1, REPLY: 2 } as const;
export const HType = { ETHERNET: 1 } as const;
/** RFC 2131 §2 figure 2: the leftmost bit of `flags`. */
export const BROADCAST_FLAG = 0x8000;

/** RFC 2132 option codes used here. */
export const DhcpOption = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOST_NAME: 12,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  END: 255,
} as const;

/** RFC 2132 §9.6 option 53 values. */
export const DhcpType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export function dhcpTypeName(t: number | undefined): string {
  const e = Object.entries(DhcpType).find(([, v]) => v === t);
  return e ? e[0] : t === undefined ? 'BOOTP (no message type)' : `type ${t}`;
}

/** One DHCP message with RFC 2131's field names. Addresses are dotted quads. */
export interface DhcpMessage {
  readonly op: number;
  readonly htype: number;
  readonly hlen: number;
  readonly hops: number;
  readonly xid: number;
  readonly secs: number;
  readonly flags: number;
  readonly ciaddr: string;
  readonly yiaddr: string;
  readonly siaddr: string;
  readonly giaddr: string;
  /** All 16 bytes of the field; the hardware address is the first `hlen`. */
  readonly chaddr: Buffer;
  readonly sname: string;
  readonly file: string;
  /** Code → value, in order of first appearance; repeated codes already concatenated. */
  readonly options: ReadonlyMap<number, Buffer>;
}

export type DhcpErrorCode = 'DHCP_SHORT' | 'DHCP_BAD_OP' | 'DHCP_BAD_HLEN' | 'DHCP_BAD_COOKIE' | 'DHCP_BAD_OPTION' | 'DHCP_BAD_OVERLOAD' | 'DHCP_BAD_FIELD';

export class DhcpError extends Error {
  readonly code: DhcpErrorCode;
  constructor(code: DhcpErrorCode, message: string) {
    super(message);
    this.name = 'DhcpError';
    this.code = code;
  }
}

const OVERLOAD_FILE = 1;
const OVERLOAD_SNAME = 2;

/** Reads the option TLVs of `area` into `out`, up to END or the end of the area. */
function readOptions(area: Buffer, where: string, out: Map<number, Buffer[]>): void {
  let i = 0;
  while (i < area.length) {
    const code = area[i] as number;
    if (code === DhcpOption.PAD) {
      i++;
      continue;
    }
    if (code === DhcpOption.END) return;
    // A length byte and `len` value bytes must fit in what is left (RFC 2132 §2).
    if (i + 1 >= area.length) throw new DhcpError('DHCP_BAD_OPTION', `option ${code} in ${where} at byte ${i} has no length byte`);
    const len = area[i + 1] as number;
    if (i + 2 + len > area.length) {
      throw new DhcpError('DHCP_BAD_OPTION', `option ${code} in ${where} at byte ${i} says ${len} bytes, ${area.length - i - 2} are left`);
    }
    const list = out.get(code);
    const value = area.subarray(i + 2, i + 2 + len);
    if (list) list.push(value);
    else out.set(code, [value]);
    i += 2 + len;
  }
  // Running off the end without END is tolerated: the TLVs themselves were complete.
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('latin1');
}

/** Decodes one UDP payload. Throws DhcpError (and nothing else) when it is not a DHCP message. */
export function decodeDhcp(buf: Buffer): DhcpMessage {
  if (buf.length < DhcpSize.HEADER) throw new DhcpError('DHCP_SHORT', `${buf.length} bytes: a DHCP message has at least ${DhcpSize.HEADER}`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const op = dv.getUint8(DhcpOffset.OP);
  if (op !== BootpOp.REQUEST && op !== BootpOp.REPLY) throw new DhcpError('DHCP_BAD_OP', `op ${op}: expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)`);
  const hlen = dv.getUint8(DhcpOffset.HLEN);
  if (hlen > DhcpSize.CHADDR) throw new DhcpError('DHCP_BAD_HLEN', `hlen ${hlen}: chaddr holds ${DhcpSize.CHADDR} bytes`);
  const cookie = dv.getUint32(DhcpOffset.COOKIE);
  if (cookie !== MAGIC_COOKIE) {
    throw new DhcpError('DHCP_BAD_COOKIE', `magic cookie 0x${cookie.toString(16).padStart(8, '0')}: expected 0x63825363 (99.130.83.99)`);
  }
  const ip = (off: number): string => formatIpv4(dv.getUint32(off));
  const snameRaw = buf.subarray(DhcpOffset.SNAME, DhcpOffset.SNAME + DhcpSize.SNAME);
  const fileRaw = buf.subarray(DhcpOffset.FILE, DhcpOffset.FILE + DhcpSize.FILE);

  const found = new Map<number, Buffer[]>();
  readOptions(buf.subarray(DhcpOffset.OPTIONS), 'options', found);
  let overload = 0;
  const ov = found.get(DhcpOption.OVERLOAD);
  if (ov) {
    const v = Buffer.concat(ov);
    overload = v.length === 1 ? (v[0] as number) : -1;
    if (overload < 1 || overload > 3) throw new DhcpError('DHCP_BAD_OVERLOAD', `option 52 (overload) must be one byte 1..3, got ${v.toString('hex') || 'nothing'}`);
    // RFC 2131 §4.1: `file` is read before `sname`.
    if (overload & OVERLOAD_FILE) readOptions(fileRaw, 'file', found);
    if (overload & OVERLOAD_SNAME) readOptions(snameRaw, 'sname', found);
  }
  const options = new Map<number, Buffer>();
  for (const [code, parts] of found) options.set(code, parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts));
  return {
    op,
    htype: dv.getUint8(DhcpOffset.HTYPE),
    hlen,
    hops: dv.getUint8(DhcpOffset.HOPS),
    xid: dv.getUint32(DhcpOffset.XID),
    secs: dv.getUint16(DhcpOffset.SECS),
    flags: dv.getUint16(DhcpOffset.FLAGS),
    ciaddr: ip(DhcpOffset.CIADDR),
    yiaddr: ip(DhcpOffset.YIADDR),
    siaddr: ip(DhcpOffset.SIADDR),
    giaddr: ip(DhcpOffset.GIADDR),
    chaddr: buf.subarray(DhcpOffset.CHADDR, DhcpOffset.CHADDR + DhcpSize.CHADDR),
    sname: overload & OVERLOAD_SNAME ? '' : cString(snameRaw),
    file: overload & OVERLOAD_FILE ? '' : cString(fileRaw),
    options,
  };
}

/**
 * Encodes a message: fixed fields, cookie, options in map order (values over 255 bytes split into
 * several instances, RFC 3396), END, zero padding up to 300 bytes. Overload (52) is never used.
 */
export function encodeDhcp(m: DhcpMessage): Buffer {
  const bad = (field: string, why: string): never => {
    throw new DhcpError('DHCP_BAD_FIELD', `${field}: ${why}`);
  };
  const u8 = (f: 'op' | 'htype' | 'hlen' | 'hops'): number => (Number.isInteger(m[f]) && m[f] >= 0 && m[f] <= 0xff ? m[f] : bad(f, `${m[f]} is not 0..255`));
  if (m.hlen > DhcpSize.CHADDR) bad('hlen', `${m.hlen} is more than the ${DhcpSize.CHADDR} bytes of chaddr`);
  if (m.chaddr.length > DhcpSize.CHADDR) bad('chaddr', `${m.chaddr.length} bytes: the field holds ${DhcpSize.CHADDR}`);
  const sname = Buffer.from(m.sname, 'latin1');
  const file = Buffer.from(m.file, 'latin1');
  if (sname.length >= DhcpSize.SNAME) bad('sname', `at most ${DhcpSize.SNAME - 1} bytes`);
  if (file.length >= DhcpSize.FILE) bad('file', `at most ${DhcpSize.FILE - 1} bytes`);
  let optLen = 1; // END
  for (const [code, v] of m.options) {
    if (!Number.isInteger(code) || code <= DhcpOption.PAD || code >= DhcpOption.END) bad(`option ${code}`, 'codes are 1..254');
    optLen += v.length === 0 ? 2 : Math.ceil(v.length / 255) * 2 + v.length;
  }
  const out = Buffer.alloc(Math.max(DhcpSize.MIN_MESSAGE, DhcpSize.HEADER + optLen));
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint8(DhcpOffset.OP, u8('op'));
  dv.setUint8(DhcpOffset.HTYPE, u8('htype'));
  dv.setUint8(DhcpOffset.HLEN, u8('hlen'));
  dv.setUint8(DhcpOffset.HOPS, u8('hops'));
  dv.setUint32(DhcpOffset.XID, m.xid >>> 0);
  dv.setUint16(DhcpOffset.SECS, m.secs & 0xffff);
  dv.setUint16(DhcpOffset.FLAGS, m.flags & 0xffff);
  for (const [f, off] of [['ciaddr', DhcpOffset.CIADDR], ['yiaddr', DhcpOffset.YIADDR], ['siaddr', DhcpOffset.SIADDR], ['giaddr', DhcpOffset.GIADDR]] as const) {
    const v = parseIpv4(m[f]);
    dv.setUint32(off, v ?? bad(f, `${JSON.stringify(m[f])} is not an IPv4 address`));
  }
  m.chaddr.copy(out, DhcpOffset.CHADDR);
  sname.copy(out, DhcpOffset.SNAME);
  file.copy(out, DhcpOffset.FILE);
  dv.setUint32(DhcpOffset.COOKIE, MAGIC_COOKIE);
  let i: number = DhcpOffset.OPTIONS;
  for (const [code, v] of m.options) {
    let off = 0;
    do {
      const part = v.subarray(off, off + 255);
      out[i++] = code;
      out[i++] = part.length;
      part.copy(out, i);
      i += part.length;
      off += 255;
    } while (off < v.length);
  }
  out[i] = DhcpOption.END;
  return out;
}

/** The client's hardware address (the first hlen bytes of chaddr) as aa:bb:..., lower case. */
export function clientHardwareAddress(m: DhcpMessage): string {
  return Array.from(m.chaddr.subarray(0, m.hlen), (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Option 53, or undefined for a plain BOOTP message. */
export function messageType(m: DhcpMessage): number | undefined {
  const v = m.options.get(DhcpOption.MESSAGE_TYPE);
  return v?.length === 1 ? v[0] : undefined;
}

/** An option holding one IPv4 address (50, 54, 1), or undefined when absent or not 4 bytes. */
export function addressOption(m: DhcpMessage, code: number): string | undefined {
  const v = m.options.get(code);
  return v?.length === 4 ? formatIpv4(v.readUInt32BE(0)) : undefined;
}

export const ipOption = (addr: string): Buffer => {
  const v = parseIpv4(addr);
  if (v === undefined) throw new DhcpError('DHCP_BAD_FIELD', `${JSON.stringify(addr)} is not an IPv4 address`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

export const u32Option = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
