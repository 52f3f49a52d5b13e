// Extended INQUIRY Data VPD page 86h (SPC-4 §7.8.7), page length 3Ch:
//   4 ACTIVATE MICROCODE(7:6) SPT(5:3) GRD_CHK(2) APP_CHK(1) REF_CHK(0)
//   5 UASK_SUP(5) GROUP_SUP(4) PRIOR_SUP(3) HEADSUP(2) ORDSUP(1) SIMPSUP(0)
//   6 WU_SUP(3) CRD_SUP(2) NV_SUP(1) V_SUP(0)   7 P_I_I_SUP(4) LUICLR(0)
//   8 R_SUP(4) CBCS(0)   9 MULTI I_T NEXUS MICROCODE DOWNLOAD(3:0)
//   10..11 EXTENDED SELF-TEST COMPLETION MINUTES   12 POA_SUP HRA_SUP VSA_SUP
//   13 MAXIMUM SUPPORTED SENSE DATA LENGTH

import type { LogicalUnit } from '../logical-unit';

/** SPT 011b: protection types 1 and 3 (SPC-4 table "SUPPORTED PROTECTION TYPE field"). */
const SPT_TYPES_1_AND_3 = 0x03;

/** The page body (without the 4-byte VPD header). */
export function extendedInquiry(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(0x3c);
  if (lu.options.protectionCapable) {
    // GRD_CHK and REF_CHK: the guard and (type 1) reference tag are checked. APP_CHK stays
    // 0: an expected application tag only comes with the 32-byte CDBs, which are not offered.
    b[0] = (SPT_TYPES_1_AND_3 << 3) | 0x04 | 0x01;
  }
  b[1] = 0x04 | 0x02 | 0x01; // HEADSUP, ORDSUP, SIMPSUP: the task attributes the task set honours
  if (lu.backstore.volatileCache) b[2] = 0x01; // V_SUP: a volatile cache (SYNCHRONIZE CACHE flushes it)
  b[9] = 252; // maximum sense data length
  return b;
}
