// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for iSCSI header and data digests.
// RFC 7143 §13.1 / Appendix B.4: the digest is the standard CRC-32C (init ~0, final xor ~0)
// and goes on the wire least significant byte first ("aa 36 91 8a" for 32 zero bytes).
// Slicing-by-8 tables: one 8 KiB table set built once, no per-call allocation.

const POLY = 0x82f63b78;

const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let t = 1; t < 8; t++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[t * 256 + n] = c;
  }
}

/**
 * Continue a CRC over `buf`. Start with `crc32cInit` (0xffffffff), finish with `crc32cFinal`.
 * Works on the raw (un-finalized) register so a digest can span several views.
 */
export function crc32cUpdate(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = crc | 0;
  let i = start;
  // Slicing-by-8: consume 8 bytes per step while possible.
  const end8 = end - ((end - i) & 7);
  while (i < end8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      T[7 * 256 + (a & 0xff)]! ^
      T[6 * 256 + ((a >>> 8) & 0xff)]! ^
      T[5 * 256 + ((a >>> 16) & 0xff)]! ^
      T[4 * 256 + (a >>> 24)]! ^
      T[3 * 256 + buf[i + 4]!]! ^
      T[2 * 256 + buf[i + 5]!]! ^
      T[1 * 256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return c;
}

export const crc32cInit = 0xffffffff | 0;
export function crc32cFinal(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC-32C of one or more buffers, as an unsigned 32-bit number. */
export function crc32c(...bufs: readonly Uint8Array[]): number {
  let c = crc32cInit;
  for (const b of bufs) c = crc32cUpdate(c, b);
  return crc32cFinal(c);
}

/** The 4 digest bytes as they go on the wire (RFC 7143 Appendix B.4: little-endian). */
export function digestBytes(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}
