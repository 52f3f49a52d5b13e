// T10 protection information tuples (SBC-3 §4.22) and their side store.
//
// Protection information (SBC-3 §4.22.2), 8 bytes per logical block:
//   0..1 LOGICAL BLOCK GUARD          CRC-16 T10-DIF of the block's data (crc16.ts)
//   2..3 LOGICAL BLOCK APPLICATION TAG owned by the application client (FFFFh: escape)
//   4..7 LOGICAL BLOCK REFERENCE TAG   type 1: low 32 bits of the LBA; type 3: not defined
// Stored in Backstore.pi at byte lba × 8 as the ones' complement of the tuple, so a range
// never written reads as all-FFh tuples: what FORMAT UNIT leaves (SBC-3 §5.3.2, PI initialised
// to FFFF_FFFF_FFFF_FFFFh) and what an unmapped block carries (SBC-3 §4.7.4.5). A new sparse
// store therefore needs no initialising, and "format" is writing zeros.

import type { Backstore, WriteOptions } from '../../backstores/backstore';
import { Asc, SenseKey, invalidCdb, type SenseSpec } from '../sense';
import { crc16T10Dif } from '../crc16';

export const PI_BYTES = 8;
export type ProtectionType = 0 | 1 | 3;

export const PiOffset = { GUARD: 0, APP_TAG: 2, REF_TAG: 4 } as const;
const ESCAPE_APP = 0xffff;
const ESCAPE_REF = 0xffffffff;

export interface PiChecks {
  readonly guard: boolean;
  readonly app: boolean;
  readonly ref: boolean;
}

const ALL: PiChecks = { guard: true, app: true, ref: true };
const NONE: PiChecks = { guard: false, app: false, ref: false };

/**
 * SBC-3 tables "RDPROTECT field" (READ), "WRPROTECT field" (WRITE, WRITE AND VERIFY) and
 * "VRPROTECT field" (VERIFY, BYTCHK=0): which checks each value asks for on a medium
 * formatted with PI. 000b: the device server checks what it stores (read, verify) or
 * generates the PI (write). 101b..111b are reserved.
 */
export const PROTECT_CHECKS: readonly PiChecks[] = [
  ALL, // 000b
  ALL, // 001b
  { guard: false, app: true, ref: true }, // 010b
  NONE, // 011b
  { guard: true, app: false, ref: false }, // 100b
];

/** RDPROTECT / WRPROTECT / VRPROTECT: byte 1 bits 7:5 of the 10/12/16-byte CDBs. */
export function protectField(cdb: Buffer): number {
  return ((cdb[1] ?? 0) >> 5) & 0x07;
}

/**
 * SBC-3 §4.22.3: a non-zero protect field on a unit not formatted with PI, or a reserved
 * value, is INVALID FIELD IN CDB (pointing at the field's highest set bit).
 */
export function checkProtectField(type: ProtectionType, value: number): SenseSpec | undefined {
  if (value === 0) return undefined;
  if (type === 0 || value >= PROTECT_CHECKS.length) return invalidCdb(1, 31 - Math.clz32(value << 5));
  return undefined;
}

/** Tuples for `data` (whole blocks) starting at `lba`: guard CRC, application tag 0, reference tag. */
export function generatePi(data: Buffer, blockSize: number, lba: bigint, type: ProtectionType): Buffer {
  const n = Math.floor(data.length / blockSize);
  const out = Buffer.allocUnsafe(n * PI_BYTES);
  const first = Number(lba & 0xffffffffn);
  for (let i = 0; i < n; i++) {
    const o = i * PI_BYTES;
    out.writeUInt16BE(crc16T10Dif(data, i * blockSize, (i + 1) * blockSize), o + PiOffset.GUARD);
    out.writeUInt16BE(0, o + PiOffset.APP_TAG);
    out.writeUInt32BE(type === 1 ? (first + i) >>> 0 : ESCAPE_REF, o + PiOffset.REF_TAG);
  }
  return out;
}

/** Expected application tag and mask (only CDBs that carry one: the 32-byte forms). */
export interface ExpectedAppTag {
  readonly tag: number;
  readonly mask: number;
}

function piError(asc: number, lba: bigint): SenseSpec {
  // SBC-3 §4.22.3: ABORTED COMMAND, INFORMATION = LBA of the first block that failed.
  return { key: SenseKey.ABORTED_COMMAND, asc, information: lba };
}

/**
 * Check `pi` (tuples) against `data` (the matching blocks) starting at `lba`. Escapes (SBC-3
 * §4.22.3): type 1 disables every check of a block whose application tag is FFFFh; type 3
 * only when the reference tag is also FFFFFFFFh. The reference tag is checked for type 1 only.
 */
export function checkPi(
  data: Buffer,
  pi: Buffer,
  blockSize: number,
  lba: bigint,
  type: ProtectionType,
  checks: PiChecks,
  expectedApp?: ExpectedAppTag,
): SenseSpec | undefined {
  if (!checks.guard && !checks.ref && !(checks.app && expectedApp)) return undefined;
  const n = Math.floor(pi.length / PI_BYTES);
  const first = Number(lba & 0xffffffffn);
  for (let i = 0; i < n; i++) {
    const o = i * PI_BYTES;
    const app = pi.readUInt16BE(o + PiOffset.APP_TAG);
    const ref = pi.readUInt32BE(o + PiOffset.REF_TAG);
    if (app === ESCAPE_APP && (type === 1 || ref === ESCAPE_REF)) continue;
    if (checks.guard && pi.readUInt16BE(o + PiOffset.GUARD) !== crc16T10Dif(data, i * blockSize, (i + 1) * blockSize)) {
      return piError(Asc.LOGICAL_BLOCK_GUARD_CHECK_FAILED, lba + BigInt(i));
    }
    if (checks.app && expectedApp && (app & expectedApp.mask) !== (expectedApp.tag & expectedApp.mask)) {
      return piError(Asc.LOGICAL_BLOCK_APPLICATION_TAG_CHECK_FAILED, lba + BigInt(i));
    }
    if (checks.ref && type === 1 && ref !== ((first + i) >>> 0)) {
      return piError(Asc.LOGICAL_BLOCK_REFERENCE_TAG_CHECK_FAILED, lba + BigInt(i));
    }
  }
  return undefined;
}


function complement(b: Buffer): void {
  for (let i = 0; i < b.length; i++) b[i] = ~(b[i] ?? 0) & 0xff;
}

function storeOf(bs: Backstore): NonNullable<Backstore['pi']> {
  if (!bs.pi) throw new Error(`backstore ${bs.name} has no protection information store`);
  return bs.pi;
}

/** Read the tuples of `blocks` blocks from `lba`. */
export async function readPi(bs: Backstore, lba: bigint, blocks: number): Promise<Buffer> {
  const b = Buffer.allocUnsafe(blocks * PI_BYTES);
  await storeOf(bs).read(b, 0, b.length, Number(lba) * PI_BYTES);
  complement(b);
  return b;
}

/** Store tuples for the blocks from `lba` (`tuples` is left as it was). */
export async function writePi(bs: Backstore, lba: bigint, tuples: Buffer, opts?: WriteOptions): Promise<void> {
  const b = Buffer.from(tuples);
  complement(b);
  await storeOf(bs).write(b, Number(lba) * PI_BYTES, opts);
}

const ZEROS = Buffer.alloc(64 * 1024);

/** Set the tuples of `blocks` blocks from `lba` to the FFh escape (FORMAT UNIT, unmap, sanitize). */
export async function resetPi(bs: Backstore, lba: bigint, blocks: number): Promise<void> {
  const store = storeOf(bs);
  const start = Number(lba) * PI_BYTES;
  const total = blocks * PI_BYTES;
  for (let done = 0; done < total; ) {
    const n = Math.min(ZEROS.length, total - done);
    await store.write(n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n), start + done);
    done += n;
  }
}
