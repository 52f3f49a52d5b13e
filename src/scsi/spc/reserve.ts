// RESERVE(6)/(10) and RELEASE(6)/(10): SPC-2 §7.21-§7.24 logical unit reservations.
// The holder is one I_T nexus; other nexuses get RESERVATION CONFLICT (logical-unit.ts).

import { Status } from '../types';
import type { Handler } from '../command';
import { hasPersistentRegistrations } from './persistent-reservations';

export const reserve: Handler = (ctx) => {
  const lu = ctx.lu;
  const id = ctx.cmd.nexus.id;
  // SPC-3 §5.6.3 with CRH=0: once persistent registrations exist, SPC-2 reservations conflict.
  if (hasPersistentRegistrations(lu)) return { status: Status.RESERVATION_CONFLICT };
  // SPC-2 §7.21: a reservation held by another nexus conflicts; our own is simply kept.
  if (lu.reservationHolder !== undefined && lu.reservationHolder !== id) return { status: Status.RESERVATION_CONFLICT };
  lu.reservationHolder = id;
  return ctx.good();
};

export const release: Handler = (ctx) => {
  const lu = ctx.lu;
  if (hasPersistentRegistrations(lu)) return { status: Status.RESERVATION_CONFLICT };
  // SPC-2 §7.23: RELEASE from a non-holder is GOOD and leaves the reservation alone.
  if (lu.reservationHolder === ctx.cmd.nexus.id) lu.reservationHolder = undefined;
  return ctx.good();
};
