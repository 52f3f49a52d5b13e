// START STOP UNIT on a CD/DVD drive (MMC-6 §6.39): LOEJ with START 0 opens the tray (eject),
// LOEJ with START 1 closes it (load); a PREVENT in effect refuses both (MMC-6 §6.39.2.2,
// 05/53/02 MEDIUM REMOVAL PREVENTED). CDB: 1 IMMED(0), 4 POWER CONDITION(7:4) LOEJ(1) START(0).

import { Asc, SenseKey } from '../sense';
import type { Handler } from '../command';

export const mmcStartStopUnit: Handler = (ctx) => {
  const b4 = ctx.cmd.cdb[4] ?? 0;
  // A power condition makes LOEJ and START ignored; a drive with no power states accepts it.
  if (b4 >> 4 !== 0 || (b4 & 0x02) === 0) return ctx.good();
  const lu = ctx.lu;
  const load = (b4 & 0x01) !== 0;
  if (lu.isPrevented() && (load ? lu.trayOpen : !lu.trayOpen)) {
    return ctx.fail({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.MEDIUM_REMOVAL_PREVENTED });
  }
  if (load) lu.closeTray();
  else lu.openTray();
  return ctx.good();
};
