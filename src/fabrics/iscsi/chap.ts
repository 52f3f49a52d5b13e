// CHAP authentication for the login security stage (RFC 7143 §12.1.3, RFC 1994).
// Only CHAP_A=5 (MD5). Response = MD5(Identifier || secret || Challenge).
// The target challenges first; with mutual CHAP the initiator then challenges the target
// (CHAP_I/CHAP_C next to its CHAP_N/CHAP_R) and a reflected challenge is refused.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TextPair } from './text';

export interface ChapCredentials {
  readonly userid: string;
  readonly password: string;
  readonly mutualUserid?: string;
  readonly mutualPassword?: string;
}

export class ChapError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ChapError';
    this.code = code;
  }
}

export const CHAP_MD5 = 5;
export const CHAP_CHALLENGE_LENGTH = 16;
const MAX_CHALLENGE = 1024;

/** RFC 1994 §2: MD5 over the identifier octet, the secret and the challenge. */
export function chapResponse(id: number, secret: string | Buffer, challenge: Buffer): Buffer {
  const h = createHash('md5');
  h.update(Buffer.from([id & 0xff]));
  h.update(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret);
  h.update(challenge);
  return h.digest();
}

/** §6.1 binary values: "0x" + hex (what we send). */
export function encodeChapBinary(b: Buffer): string {
  return '0x' + b.toString('hex');
}

/** §6.1 binary values: "0x"/"0X" hex or "0b"/"0B" base64. */
export function decodeChapBinary(s: string): Buffer {
  if (/^0[xX]([0-9a-fA-F]{2})+$/.test(s)) return Buffer.from(s.slice(2), 'hex');
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) return Buffer.from('0' + s.slice(2), 'hex'); // odd digit count
  if (/^0[bB][A-Za-z0-9+/]+={0,2}$/.test(s)) return Buffer.from(s.slice(2), 'base64');
  throw new ChapError('ISCSI_CHAP_BAD_BINARY', `"${s.slice(0, 32)}" is not a 0x-hex or 0b-base64 value`);
}

type ChapState = 'wait-algorithm' | 'wait-response' | 'done';

/**
 * The target side of one CHAP exchange. `step()` takes the CHAP keys of one login request
 * and returns the keys to answer with; it throws ChapError on any authentication failure
 * (the login answers 0x0201).
 */
export class ChapAuthenticator {
  private state: ChapState = 'wait-algorithm';
  private id = 0;
  private challenge: Buffer = Buffer.alloc(0);

  constructor(
    private readonly creds: ChapCredentials,
    private readonly random: (n: number) => Buffer = randomBytes,
  ) {}

  get done(): boolean {
    return this.state === 'done';
  }

  step(keys: ReadonlyMap<string, string>): TextPair[] {
    switch (this.state) {
      case 'wait-algorithm': {
        const a = keys.get('CHAP_A');
        if (a === undefined) return []; // initiator not there yet (still AuthMethod only)
        if (!a.split(',').includes(String(CHAP_MD5))) throw new ChapError('ISCSI_CHAP_ALGORITHM', `CHAP_A=${a}: only 5 (MD5) is supported`);
        this.id = this.random(1)[0]!;
        this.challenge = this.random(CHAP_CHALLENGE_LENGTH);
        this.state = 'wait-response';
        return [
          ['CHAP_A', String(CHAP_MD5)],
          ['CHAP_I', String(this.id)],
          ['CHAP_C', encodeChapBinary(this.challenge)],
        ];
      }
      case 'wait-response': {
        const n = keys.get('CHAP_N');
        const r = keys.get('CHAP_R');
        if (n === undefined || r === undefined) throw new ChapError('ISCSI_CHAP_MISSING', 'CHAP_N and CHAP_R are required');
        if (n !== this.creds.userid) throw new ChapError('ISCSI_CHAP_USER', `CHAP_N "${n}" is not the configured user`);
        const got = decodeChapBinary(r);
        const want = chapResponse(this.id, this.creds.password, this.challenge);
        if (got.length !== want.length || !timingSafeEqual(got, want)) throw new ChapError('ISCSI_CHAP_RESPONSE', 'CHAP_R does not match');
        const ii = keys.get('CHAP_I');
        const ic = keys.get('CHAP_C');
        const mutualConfigured = this.creds.mutualUserid !== undefined && this.creds.mutualPassword !== undefined;
        if (ii === undefined && ic === undefined) {
          // Configured mutual CHAP that the initiator does not do is a failure (as LIO does).
          if (mutualConfigured) throw new ChapError('ISCSI_CHAP_MUTUAL_REQUIRED', 'mutual CHAP is configured but the initiator did not challenge');
          this.state = 'done';
          return [];
        }
        if (ii === undefined || ic === undefined) throw new ChapError('ISCSI_CHAP_MISSING', 'mutual CHAP needs both CHAP_I and CHAP_C');
        if (!mutualConfigured) throw new ChapError('ISCSI_CHAP_NO_MUTUAL', 'initiator asks for mutual CHAP but no target credentials are configured');
        const iid = /^[0-9]{1,3}$/.test(ii) ? Number(ii) : /^0[xX][0-9a-fA-F]{1,2}$/.test(ii) ? parseInt(ii.slice(2), 16) : -1;
        if (iid < 0 || iid > 255) throw new ChapError('ISCSI_CHAP_BAD_ID', `CHAP_I=${ii} is not 0..255`);
        const ichal = decodeChapBinary(ic);
        if (ichal.length === 0 || ichal.length > MAX_CHALLENGE) throw new ChapError('ISCSI_CHAP_BAD_CHALLENGE', `CHAP_C of ${ichal.length} bytes`);
        // §12.1.3: a target must refuse its own challenge reflected back at it.
        if (ichal.equals(this.challenge)) throw new ChapError('ISCSI_CHAP_REFLECTED', 'initiator reflected the target challenge');
        this.state = 'done';
        return [
          ['CHAP_N', this.creds.mutualUserid!],
          ['CHAP_R', encodeChapBinary(chapResponse(iid, this.creds.mutualPassword!, ichal))],
        ];
      }
      case 'done':
        return [];
    }
  }
}
