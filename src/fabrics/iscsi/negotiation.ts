// Operational key negotiation (RFC 7143 §6.2, §13). One table: for every key its type,
// legal range, whether it applies to discovery sessions, and how the result is computed.
// Unknown keys get "NotUnderstood" (§6.2.1), out-of-range or malformed values "Reject".

import type { TextPair } from './text';

export type DigestType = 'None' | 'CRC32C';

/** Target-side limits/defaults (the `params` of an IscsiTargetDef). */
export interface IscsiTargetParams {
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  immediateData: boolean;
  initialR2T: boolean;
  maxOutstandingR2T: number;
  headerDigest: DigestType[];
  dataDigest: DigestType[];
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxConnections: number;
  errorRecoveryLevel: number;
  /** Seconds between target NOP-In pings on an idle connection; 0 = off. */
  nopInInterval: number;
  /** Seconds a ping may stay unanswered before the connection is dropped. */
  nopInTimeout: number;
}

export const DEFAULT_TARGET_PARAMS: Readonly<IscsiTargetParams> = Object.freeze<IscsiTargetParams>({
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 65536,
  immediateData: true,
  initialR2T: false,
  maxOutstandingR2T: 4,
  headerDigest: ['None', 'CRC32C'],
  dataDigest: ['None', 'CRC32C'],
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  maxConnections: 8,
  errorRecoveryLevel: 0,
  nopInInterval: 15,
  nopInTimeout: 15,
});

/** Values in force for a session/connection; starts at the §13 defaults. */
export interface Negotiated {
  headerDigest: boolean;
  dataDigest: boolean;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** The initiator's declared MaxRecvDataSegmentLength: our Data-In/Text PDUs stay within it. */
  initiatorMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
}

/** RFC 7143 §13 defaults. */
export function rfcDefaults(): Negotiated {
  return {
    headerDigest: false,
    dataDigest: false,
    maxConnections: 1,
    initialR2T: true,
    immediateData: true,
    initiatorMaxRecvDataSegmentLength: 8192,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
  };
}

export class ParamError extends Error {
  readonly code = 'ISCSI_BAD_PARAM';
  constructor(message: string) {
    super(message);
    this.name = 'ParamError';
  }
}

/** Fill defaults and check ranges of configured target params (names the bad field). */
export function resolveTargetParams(p: Partial<IscsiTargetParams> | undefined): IscsiTargetParams {
  const r: IscsiTargetParams = { ...DEFAULT_TARGET_PARAMS, ...(p ?? {}) };
  const range = (k: keyof IscsiTargetParams, lo: number, hi: number) => {
    const v = r[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new ParamError(`params.${k} = ${String(v)}: must be an integer in ${lo}..${hi}`);
  };
  range('maxRecvDataSegmentLength', 512, 16777215);
  range('maxBurstLength', 512, 16777215);
  range('firstBurstLength', 512, 16777215);
  range('maxOutstandingR2T', 1, 65535);
  range('defaultTime2Wait', 0, 3600);
  range('defaultTime2Retain', 0, 3600);
  range('maxConnections', 1, 65535);
  range('errorRecoveryLevel', 0, 2);
  range('nopInInterval', 0, 3600);
  range('nopInTimeout', 1, 3600);
  for (const k of ['headerDigest', 'dataDigest'] as const) {
    const v = r[k];
    if (!Array.isArray(v) || v.length === 0 || v.some((d) => d !== 'None' && d !== 'CRC32C')) throw new ParamError(`params.${k}: must be a non-empty list of "None" | "CRC32C"`);
  }
  return r;
}

type Kind = 'digest' | 'and' | 'or' | 'min' | 'max' | 'declare';
interface KeyDef {
  readonly kind: Kind;
  readonly min?: number;
  readonly max?: number;
  /** Irrelevant in a discovery session (§13: "Irrelevant when SessionType=Discovery"). */
  readonly normalOnly: boolean;
  readonly field: keyof Negotiated;
  readonly ours: (p: IscsiTargetParams) => number | boolean | readonly DigestType[];
}

/** §13 key table. */
export const KEYS: Readonly<Record<string, KeyDef>> = {
  HeaderDigest: { kind: 'digest', normalOnly: false, field: 'headerDigest', ours: (p) => p.headerDigest }, // §13.1
  DataDigest: { kind: 'digest', normalOnly: false, field: 'dataDigest', ours: (p) => p.dataDigest }, // §13.1
  MaxConnections: { kind: 'min', min: 1, max: 65535, normalOnly: true, field: 'maxConnections', ours: (p) => p.maxConnections }, // §13.2
  InitialR2T: { kind: 'or', normalOnly: true, field: 'initialR2T', ours: (p) => p.initialR2T }, // §13.10
  ImmediateData: { kind: 'and', normalOnly: true, field: 'immediateData', ours: (p) => p.immediateData }, // §13.11
  MaxRecvDataSegmentLength: { kind: 'declare', min: 512, max: 16777215, normalOnly: false, field: 'initiatorMaxRecvDataSegmentLength', ours: (p) => p.maxRecvDataSegmentLength }, // §13.12
  MaxBurstLength: { kind: 'min', min: 512, max: 16777215, normalOnly: true, field: 'maxBurstLength', ours: (p) => p.maxBurstLength }, // §13.13
  FirstBurstLength: { kind: 'min', min: 512, max: 16777215, normalOnly: true, field: 'firstBurstLength', ours: (p) => p.firstBurstLength }, // §13.14
  DefaultTime2Wait: { kind: 'max', min: 0, max: 3600, normalOnly: false, field: 'defaultTime2Wait', ours: (p) => p.defaultTime2Wait }, // §13.15
  DefaultTime2Retain: { kind: 'min', min: 0, max: 3600, normalOnly: false, field: 'defaultTime2Retain', ours: (p) => p.defaultTime2Retain }, // §13.16
  MaxOutstandingR2T: { kind: 'min', min: 1, max: 65535, normalOnly: true, field: 'maxOutstandingR2T', ours: (p) => p.maxOutstandingR2T }, // §13.17
  DataPDUInOrder: { kind: 'or', normalOnly: true, field: 'dataPDUInOrder', ours: () => true }, // §13.18: we need in-order
  DataSequenceInOrder: { kind: 'or', normalOnly: true, field: 'dataSequenceInOrder', ours: () => true }, // §13.19
  ErrorRecoveryLevel: { kind: 'min', min: 0, max: 2, normalOnly: false, field: 'errorRecoveryLevel', ours: (p) => p.errorRecoveryLevel }, // §13.20
};

/** Keys the login state machine handles itself (names, session type, security). */
export const LOGIN_KEYS = new Set([
  'InitiatorName',
  'TargetName',
  'SessionType',
  'InitiatorAlias',
  'AuthMethod',
  'CHAP_A',
  'CHAP_I',
  'CHAP_C',
  'CHAP_N',
  'CHAP_R',
]);

/** Parse a §5.1 numerical value: decimal or 0x-hex, no sign, no junk. */
export function parseNumber(v: string): number | null {
  if (/^[0-9]{1,10}$/.test(v)) return Number(v);
  if (/^0[xX][0-9a-fA-F]{1,8}$/.test(v)) return parseInt(v.slice(2), 16);
  return null;
}

function parseBool(v: string): boolean | null {
  return v === 'Yes' ? true : v === 'No' ? false : null;
}

/**
 * Negotiates operational keys for one login (or text renegotiation). Pure: feed it the
 * initiator's pairs, collect the response pairs, read `values` at the end.
 */
export class Negotiator {
  readonly values: Negotiated = rfcDefaults();
  private readonly seen = new Set<string>();
  private declared = false;

  constructor(
    private readonly ours: IscsiTargetParams,
    private readonly discovery: boolean,
  ) {}

  /**
   * Answer one operational key. Returns the response pair, null when no answer is due
   * (declarative keys), or 'duplicate' when the initiator offered the key twice (§6.2: a
   * protocol error that fails the login).
   */
  handle(key: string, value: string): TextPair | null | 'duplicate' {
    if (this.seen.has(key)) return 'duplicate';
    this.seen.add(key);
    const def = KEYS[key];
    if (def === undefined) {
      // §13.23/§13.24 markers were removed by RFC 7143; answer like older targets do.
      if (key === 'IFMarker' || key === 'OFMarker') return [key, 'No'];
      if (key === 'IFMarkInt' || key === 'OFMarkInt') return [key, 'Irrelevant'];
      // Target-declared keys are not the initiator's to send (§13.9, §13.6).
      if (key === 'TargetPortalGroupTag' || key === 'TargetAlias' || key === 'TargetAddress') return [key, 'Reject'];
      return [key, 'NotUnderstood'];
    }
    if (this.discovery && def.normalOnly) return [key, 'Irrelevant'];
    const ours = def.ours(this.ours);
    const v = this.values as unknown as Record<string, number | boolean>;
    switch (def.kind) {
      case 'digest': {
        // §13.1: the responder picks the first value of the offered list it supports.
        const offered = value.split(',');
        const mine = ours as readonly DigestType[];
        const pick = offered.find((o) => (o === 'None' || o === 'CRC32C') && mine.includes(o));
        if (pick === undefined) return [key, 'Reject'];
        v[def.field] = pick === 'CRC32C';
        return [key, pick];
      }
      case 'and':
      case 'or': {
        const b = parseBool(value);
        if (b === null) return [key, 'Reject'];
        const r = def.kind === 'and' ? b && (ours as boolean) : b || (ours as boolean);
        v[def.field] = r;
        return [key, r ? 'Yes' : 'No'];
      }
      case 'min':
      case 'max':
      case 'declare': {
        const n = parseNumber(value);
        if (n === null || n < (def.min ?? 0) || n > (def.max ?? 0xffffffff)) return [key, 'Reject'];
        if (def.kind === 'declare') {
          v[def.field] = n;
          return null;
        }
        const r = def.kind === 'min' ? Math.min(n, ours as number) : Math.max(n, ours as number);
        v[def.field] = r;
        return [key, String(r)];
      }
    }
  }

  /** Keys the target declares on its own, once per login (§13.12: our MaxRecvDataSegmentLength). */
  declarations(): TextPair[] {
    if (this.declared) return [];
    this.declared = true;
    return [['MaxRecvDataSegmentLength', String(this.ours.maxRecvDataSegmentLength)]];
  }

  /** Final values with cross-key rules applied (§13.14: FirstBurstLength <= MaxBurstLength). */
  result(): Negotiated {
    const r = { ...this.values };
    if (r.firstBurstLength > r.maxBurstLength) r.firstBurstLength = r.maxBurstLength;
    return r;
  }
}
