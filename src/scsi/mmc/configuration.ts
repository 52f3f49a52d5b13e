// GET CONFIGURATION (MMC-6 §6.6) and its feature descriptors (MMC-6 §5.3).
//
// CDB: 0 46h, 1 RT(1:0), 2..3 STARTING FEATURE NUMBER, 7..8 ALLOCATION LENGTH.
// Feature header, 8 bytes: 0..3 DATA LENGTH (n-4), 6..7 CURRENT PROFILE.
// Feature descriptor: 0..1 FEATURE CODE, 2 VERSION(5:2) PERSISTENT(1) CURRENT(0),
//   3 ADDITIONAL LENGTH, 4.. feature dependent data.
// RT 00b: every feature from the starting number; 01b: the current ones; 10b: that one only.

import { invalidCdb } from '../sense';
import type { Handler } from '../command';
import { Profile, profileFor } from './mmc';

export const Feature = {
  PROFILE_LIST: 0x0000,
  CORE: 0x0001,
  MORPHING: 0x0002,
  REMOVABLE_MEDIUM: 0x0003,
  RANDOM_READABLE: 0x0010,
  CD_READ: 0x001e,
  DVD_READ: 0x001f,
} as const;

export const RequestType = { ALL: 0, CURRENT: 1, ONE: 2 } as const;

/** What the descriptors depend on. */
export interface DriveState {
  readonly blocks: number;
  readonly mediumPresent: boolean;
  readonly blockSize: number;
}

function descriptor(code: number, version: number, persistent: boolean, current: boolean, body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b.writeUInt16BE(code, 0);
  b[2] = (version << 2) | (persistent ? 0x02 : 0) | (current ? 0x01 : 0);
  b[3] = body.length;
  body.copy(b, 4);
  return b;
}

/** Every feature we have, in feature code order, with its CURRENT bit for `s`. */
export function features(s: DriveState): { code: number; current: boolean; bytes: Buffer }[] {
  const profile = profileFor(s.blocks, s.mediumPresent);
  const list: [number, number, boolean, boolean, Buffer][] = [];
  // §5.3.1: profile descriptors 0..1 PROFILE NUMBER, 2 CURRENTP(0); highest number first.
  const profiles = Buffer.alloc(8);
  profiles.writeUInt16BE(Profile.DVD_ROM, 0);
  profiles[2] = profile === Profile.DVD_ROM ? 1 : 0;
  profiles.writeUInt16BE(Profile.CD_ROM, 4);
  profiles[6] = profile === Profile.CD_ROM ? 1 : 0;
  list.push([Feature.PROFILE_LIST, 0, true, true, profiles]);
  // §5.3.2 Core: 4..7 PHYSICAL INTERFACE STANDARD (1: SCSI family), 8 INQ2(1) DBE(0).
  const core = Buffer.alloc(8);
  core.writeUInt32BE(1, 0);
  core[4] = 0x01;
  list.push([Feature.CORE, 2, true, true, core]);
  // §5.3.3 Morphing: 4 OCEVENT(1) ASYNC(0); neither (GESN is polled, no operational events).
  list.push([Feature.MORPHING, 1, true, true, Buffer.alloc(4)]);
  // §5.3.4 Removable Medium: 4 MECHANISM(7:5)=001b tray, LOAD(4), EJECT(3), PVNT JMPR(2), LOCK(0).
  list.push([Feature.REMOVABLE_MEDIUM, 0, true, true, Buffer.from([0x20 | 0x10 | 0x08 | 0x04 | 0x01, 0, 0, 0])]);
  // §5.3.5 Random Readable: 4..7 LOGICAL BLOCK SIZE, 8..9 BLOCKING (16 for DVD, 1 for CD), 10 PP.
  const rr = Buffer.alloc(8);
  rr.writeUInt32BE(s.blockSize, 0);
  rr.writeUInt16BE(profile === Profile.DVD_ROM ? 16 : 1, 4);
  list.push([Feature.RANDOM_READABLE, 0, false, profile !== Profile.NONE, rr]);
  // §5.3.11 CD Read: 4 DAP(7) C2 FLAGS(1) CD-TEXT(0): none (data discs only).
  list.push([Feature.CD_READ, 2, false, profile === Profile.CD_ROM, Buffer.alloc(4)]);
  // §5.3.12 DVD Read: 4 MULTI110(0), 6 DUAL-RW(1) DUAL-R(0).
  list.push([Feature.DVD_READ, 1, false, profile === Profile.DVD_ROM, Buffer.alloc(4)]);
  return list.map(([code, v, p, c, body]) => ({ code, current: c, bytes: descriptor(code, v, p, c, body) }));
}

/** The GET CONFIGURATION parameter data, or undefined for a reserved RT. */
export function encodeConfiguration(s: DriveState, rt: number, start: number): Buffer | undefined {
  if (rt > RequestType.ONE) return undefined;
  const picked = features(s).filter((f) =>
    rt === RequestType.ONE ? f.code === start : f.code >= start && (rt === RequestType.ALL || f.current),
  );
  const head = Buffer.alloc(8);
  const body = Buffer.concat(picked.map((f) => f.bytes));
  head.writeUInt32BE(4 + body.length, 0);
  head.writeUInt16BE(profileFor(s.blocks, s.mediumPresent), 6);
  return Buffer.concat([head, body]);
}

export const getConfiguration: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const out = encodeConfiguration(
    { blocks: ctx.lu.blockCount, mediumPresent: ctx.lu.mediumLoaded, blockSize: ctx.lu.blockSize },
    (cdb[1] ?? 0) & 0x03,
    cdb.readUInt16BE(2),
  );
  if (!out) return ctx.fail(invalidCdb(1, 1));
  return ctx.good(out, cdb.readUInt16BE(7));
};
