// IPv4 addresses, prefixes and MAC addresses as small pure helpers: parsing with errors that
// say what is wrong, and the address plan of a point-to-point link (board + one computer).

/** An IPv4 address as an unsigned 32-bit number. */
export type Ipv4 = number;

/** A dotted quad → number, or undefined when it is not exactly four decimal octets. */
export function parseIpv4(text: string): Ipv4 | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] ?? '';
    // Leading zeros read as octal in some tools (inet_aton): refuse them rather than guess.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const o = Number(part);
    if (o > 255) return undefined;
    v = v * 256 + o;
  }
  return v >>> 0;
}

export function formatIpv4(v: Ipv4): string {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff].join('.');
}

export function prefixMask(prefix: number): Ipv4 {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** RFC 1918 private ranges: 10/8, 172.16/12, 192.168/16. */
export function isPrivateIpv4(v: Ipv4): boolean {
  return v >>> 24 === 10 || (v >>> 20) === ((172 << 4) | 1) || v >>> 16 === ((192 << 8) | 168);
}

/** The addresses of a link on which the board has one address and serves one computer. */
export interface LinkPlan {
  /** The board's address (usb0). */
  readonly board: string;
  /** The one address the DHCP server hands out: the lowest usable one that is not the board's. */
  readonly host: string;
  readonly prefix: number;
  readonly netmask: string;
  readonly network: string;
  readonly broadcast: string;
  /** `board/prefix`, as `ip addr` takes it. */
  readonly cidr: string;
}

/**
 * `a.b.c.d/n` → the link plan, or a sentence saying why not. /31 and /32 are refused: they have
 * no room for a second host with a broadcast address, which DHCP replies may need (RFC 2131 §4.1).
 */
export function planLink(cidr: string): LinkPlan | string {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) return `${JSON.stringify(cidr)} is not ADDRESS/PREFIX (e.g. 10.55.0.1/30)`;
  const addr = parseIpv4(m[1] ?? '');
  if (addr === undefined) return `${JSON.stringify(m[1])} is not an IPv4 address (four numbers 0..255, e.g. 10.55.0.1)`;
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) return `prefix /${prefix} must be /8../30 (a /30 holds the board and one computer)`;
  const mask = prefixMask(prefix);
  const network = (addr & mask) >>> 0;
  const broadcast = (network | ~mask) >>> 0;
  if (addr === network) return `${formatIpv4(addr)} is the network address of /${prefix}: use ${formatIpv4(network + 1)}/${prefix}`;
  if (addr === broadcast) return `${formatIpv4(addr)} is the broadcast address of /${prefix}: use ${formatIpv4(network + 1)}/${prefix}`;
  const first = network + 1;
  const host = first === addr ? first + 1 : first;
  return {
    board: formatIpv4(addr),
    host: formatIpv4(host >>> 0),
    prefix,
    netmask: formatIpv4(mask),
    network: formatIpv4(network),
    broadcast: formatIpv4(broadcast),
    cidr: `${formatIpv4(addr)}/${prefix}`,
  };
}

/** `aa:bb:cc:dd:ee:ff` (or with dashes, any case) → 6 bytes, or undefined. */
export function parseMac(text: string): Buffer | undefined {
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(text);
  if (!m) return undefined;
  return Buffer.from([m[1], m[3], m[4], m[5], m[6], m[7]].map((h) => parseInt(h ?? '', 16)));
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** IEEE 802 first-octet bits: I/G (bit 0, group) and U/L (bit 1, locally administered). */
export const MacBits = { GROUP: 0x01, LOCAL: 0x02 } as const;

/** Why a MAC cannot name one end of a link, or undefined when it can (a unicast address). */
export function macProblem(b: Buffer): string | undefined {
  if (b.length !== 6) return 'must be 6 bytes';
  if (((b[0] ?? 0) & MacBits.GROUP) !== 0) return 'is a multicast/broadcast address (bit 0 of the first byte is set)';
  if (b.every((x) => x === 0)) return 'is all zeros';
  return undefined;
}
