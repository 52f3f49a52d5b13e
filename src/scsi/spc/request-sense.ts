// REQUEST SENSE (SPC-4 §6.29): 1 DESC(0), 4 ALLOCATION LENGTH.
// Returns (and clears) the oldest pending unit attention of this I_T nexus, else NO SENSE.

import { Asc, SenseKey, encodeSense } from '../sense';
import type { Handler } from '../command';

export const requestSense: Handler = (ctx) => {
  const cdb = ctx.cmd.cdb;
  const desc = ((cdb[1] ?? 0) & 0x01) !== 0;
  const alloc = cdb[4] ?? 0;
  // SBC-3 §4.11.2: while a sanitize runs, NOT READY with its progress indication.
  const busy = ctx.lu.condition?.requestSense();
  if (busy) return ctx.good(encodeSense(busy, desc), alloc);
  const ua = ctx.lu.takeUa(ctx.cmd.nexus.id);
  const spec = ua !== undefined ? { key: SenseKey.UNIT_ATTENTION, asc: ua } : { key: SenseKey.NO_SENSE, asc: Asc.NO_ADDITIONAL_SENSE };
  return ctx.good(encodeSense(spec, desc), alloc);
};
