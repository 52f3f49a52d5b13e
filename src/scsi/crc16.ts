// CRC-16/T10-DIF (SBC-3 §4.22.4.2 LOGICAL BLOCK GUARD): polynomial 8BB7h, initial value 0,
// no reflection, no final XOR. Check value of "123456789" is D0DBh.

const POLY = 0x8bb7;

/** 256-entry MSB-first table, built once. */
const TABLE: Uint16Array = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ POLY) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC of buf[start, end), continuing from `crc` (0 for a new computation). */
export function crc16T10Dif(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = ((c << 8) & 0xffff) ^ (TABLE[((c >> 8) ^ (buf[i] ?? 0)) & 0xff] ?? 0);
  return c;
}
