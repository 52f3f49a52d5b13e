// MMC-6 constants shared by the CD/DVD-ROM device server: opcodes, media event codes,
// profiles, and the empty-drive medium.

import type { Backstore } from '../../backstores/backstore';

/** MMC-6 §6 operation codes (the SPC/SBC ones a CD-ROM also takes live in cdb.ts). */
export const MmcOp = {
  READ_TOC_PMA_ATIP: 0x43,
  GET_CONFIGURATION: 0x46,
  GET_EVENT_STATUS_NOTIFICATION: 0x4a,
  READ_DISC_INFORMATION: 0x51,
  READ_TRACK_INFORMATION: 0x52,
  GET_PERFORMANCE: 0xac,
  READ_DVD_STRUCTURE: 0xad,
  SET_CD_SPEED: 0xbb,
  MECHANISM_STATUS: 0xbd,
} as const;

/** MMC-6 §6.7.2.5 Table 151: media class event codes. */
export const MediaEvent = {
  NO_CHANGE: 0x0,
  EJECT_REQUEST: 0x1,
  NEW_MEDIA: 0x2,
  MEDIA_REMOVAL: 0x3,
  MEDIA_CHANGED: 0x4,
} as const;
export type MediaEventCode = (typeof MediaEvent)[keyof typeof MediaEvent];

/** MMC-6 §5.3.1 Table 91: profiles we present. */
export const Profile = {
  NONE: 0x0000,
  CD_ROM: 0x0008,
  DVD_ROM: 0x0010,
} as const;

/** Red Book limit: 80 minutes × 60 s × 75 frames. A larger image is presented as a DVD-ROM. */
export const CD_MAX_BLOCKS = 80 * 60 * 75;
/** Sectors before LBA 0 on a CD (the 2-second pregap): MSF 00:02:00 is LBA 0. */
export const MSF_OFFSET = 150;

export function profileFor(blocks: number, present: boolean): number {
  if (!present) return Profile.NONE;
  return blocks > CD_MAX_BLOCKS ? Profile.DVD_ROM : Profile.CD_ROM;
}

/** LBA → MSF bytes [0, M, S, F] (MMC-6 §6.26.2.2: the address field with MSF=1). */
export function lbaToMsf(lba: number): [number, number, number, number] {
  const f = lba + MSF_OFFSET;
  return [0, Math.floor(f / (75 * 60)) & 0xff, Math.floor(f / 75) % 60, f % 75];
}

const EMPTY = new WeakSet<Backstore>();

const noMedium = (): Promise<never> => Promise.reject(new Error('no medium in the drive'));

/** The backstore of an empty drive: 0 bytes; every command that reads it is stopped first by NOT READY. */
export function emptyMedium(name: string): Backstore {
  const b: Backstore = {
    kind: 'file',
    name,
    size: 0,
    readOnly: true,
    canUnmap: false,
    unmapReadsZero: false,
    volatileCache: false,
    read: noMedium,
    write: noMedium,
    unmap: noMedium,
    flush: () => Promise.resolve(),
    mapping: (_p, length) => Promise.resolve({ mapped: false, length }),
    close: () => Promise.resolve(),
  };
  EMPTY.add(b);
  return b;
}

export function isEmptyMedium(b: Backstore): boolean {
  return EMPTY.has(b);
}
