// iSCSI text key=value codec (RFC 7143 §6.1): "key=value" pairs, each ending with a NUL,
// carried in Login/Text data segments. Keys are at most 63 bytes of [A-Za-z0-9.:+-_] (§6.1),
// values at most 255 bytes except binary/large values (CHAP, §6.1: up to 8192).

export const TextLimits = {
  MAX_KEY_LENGTH: 63,
  MAX_VALUE_LENGTH: 8192,
  /** Bound on a whole negotiation (login or text request spread over C-bit PDUs). */
  MAX_TEXT_LENGTH: 65536,
} as const;

export class TextError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'TextError';
    this.code = code;
  }
}

export type TextPair = readonly [key: string, value: string];

const KEY_RE = /^[A-Za-z0-9.:+\-_]+$/;

/**
 * Decode a data segment (one buffer or the framer's views) into ordered key/value pairs.
 * Trailing bytes after the last NUL (a pair split across C-bit PDUs) are an error here:
 * callers join continued segments first.
 */
export function decodeText(data: Buffer | readonly Buffer[]): TextPair[] {
  const buf = Buffer.isBuffer(data) ? data : data.length === 1 ? data[0]! : Buffer.concat(data as Buffer[]);
  if (buf.length > TextLimits.MAX_TEXT_LENGTH) throw new TextError('ISCSI_TEXT_TOO_LONG', `text of ${buf.length} bytes exceeds ${TextLimits.MAX_TEXT_LENGTH}`);
  const out: TextPair[] = [];
  let i = 0;
  while (i < buf.length) {
    const end = buf.indexOf(0, i);
    if (end < 0) throw new TextError('ISCSI_TEXT_UNTERMINATED', 'key=value pair is not NUL-terminated');
    if (end === i) {
      // §6.1 allows NUL padding only at the very end of a segment.
      for (let j = i; j < buf.length; j++) if (buf[j] !== 0) throw new TextError('ISCSI_TEXT_EMPTY_PAIR', 'empty key=value pair');
      break;
    }
    const eq = buf.indexOf(0x3d, i);
    if (eq < 0 || eq > end) throw new TextError('ISCSI_TEXT_NO_EQUALS', `pair "${buf.toString('latin1', i, Math.min(end, i + 64))}" has no "="`);
    const key = buf.toString('latin1', i, eq);
    if (key.length === 0 || key.length > TextLimits.MAX_KEY_LENGTH || !KEY_RE.test(key)) {
      throw new TextError('ISCSI_TEXT_BAD_KEY', `bad key "${key.slice(0, 64)}" (1-63 chars of A-Z a-z 0-9 . : + - _)`);
    }
    if (end - eq - 1 > TextLimits.MAX_VALUE_LENGTH) throw new TextError('ISCSI_TEXT_VALUE_TOO_LONG', `value of ${key} exceeds ${TextLimits.MAX_VALUE_LENGTH} bytes`);
    out.push([key, buf.toString('utf8', eq + 1, end)]);
    i = end + 1;
  }
  return out;
}

/** Encode pairs as "k=v\0..." (no padding; the PDU writer pads). */
export function encodeText(pairs: readonly TextPair[]): Buffer {
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}
