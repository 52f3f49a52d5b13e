// GET EVENT STATUS NOTIFICATION (MMC-6 §6.7, polled only) and MECHANISM STATUS (MMC-6 §6.11).
//
// GESN CDB: 0 4Ah, 1 POLLED(0), 4 NOTIFICATION CLASS REQUEST (bit n = class n), 7..8 ALLOCATION.
// Event header, 4 bytes: 0..1 EVENT DESCRIPTOR LENGTH (n-2), 2 NEA(7) NOTIFICATION CLASS(2:0),
//   3 SUPPORTED EVENT CLASSES.
// Media event descriptor (class 4), 4 bytes: 0 EVENT CODE(3:0), 1 MEDIA PRESENT(1) DOOR OR TRAY
//   OPEN(0), 2 START SLOT, 3 END SLOT.
// MECHANISM STATUS header, 8 bytes: 0 FAULT(7) CHANGER STATE(6:5) CURRENT SLOT(4:0),
//   1 MECHANISM STATE(7:5) DOOR OPEN(4), 2..4 CURRENT LBA (obsolete), 5 SLOTS, 6..7 SLOT TABLE LENGTH.

import { invalidCdb } from '../sense';
import type { Handler } from '../command';
import type { MediaEventCode } from './mmc';

/** MMC-6 Table 146: notification class numbers. */
export const EventClass = { OPERATIONAL_CHANGE: 1, POWER_MANAGEMENT: 2, EXTERNAL_REQUEST: 3, MEDIA: 4, MULTI_HOST: 5, DEVICE_BUSY: 6 } as const;
const MEDIA_BIT = 1 << EventClass.MEDIA;
const NEA = 0x80;

export interface MediaStatus {
  readonly event: MediaEventCode;
  readonly mediumPresent: boolean;
  readonly trayOpen: boolean;
}

/** The GESN answer for a class request mask: the media event when asked for, else NEA. */
export function encodeEventStatus(request: number, m: MediaStatus): Buffer {
  if ((request & MEDIA_BIT) === 0) {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(2, 0);
    b[2] = NEA;
    b[3] = MEDIA_BIT;
    return b;
  }
  const b = Buffer.alloc(8);
  b.writeUInt16BE(6, 0);
  b[2] = EventClass.MEDIA;
  b[3] = MEDIA_BIT;
  b[4] = m.event & 0x0f;
  b[5] = (m.mediumPresent ? 0x02 : 0) | (m.trayOpen ? 0x01 : 0);
  return b;
}

export const getEventStatusNotification: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  // Asynchronous notification is not supported (MMC-6 §6.7.1: POLLED 0 → INVALID FIELD).
  if (((cdb[1] ?? 0) & 0x01) === 0) return ctx.fail(invalidCdb(1, 0));
  const request = cdb[4] ?? 0;
  const lu = ctx.lu;
  // Reporting an event consumes it (MMC-6 §6.7.2.1).
  const event = (request & MEDIA_BIT) !== 0 ? lu.takeMediaEvent() : 0;
  // MEDIA PRESENT only with the tray closed: Linux's sr reads MEDIA PRESENT before DOOR OPEN.
  const out = encodeEventStatus(request, { event, mediumPresent: lu.mediumLoaded, trayOpen: lu.trayOpen });
  return ctx.good(out, cdb.readUInt16BE(7));
};

export function encodeMechanismStatus(trayOpen: boolean): Buffer {
  const b = Buffer.alloc(8);
  b[1] = trayOpen ? 0x10 : 0;
  return b;
}

export const mechanismStatus: Handler = (ctx) => ctx.good(encodeMechanismStatus(ctx.lu.trayOpen), ctx.cmd.cdb.readUInt16BE(8));
