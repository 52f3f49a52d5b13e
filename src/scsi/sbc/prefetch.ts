// PRE-FETCH(10) and PRE-FETCH(16) (SBC-3 §5.9, §5.10).
//
// PRE-FETCH(10): 0 opcode 34h, 1 IMMED(1), 2..5 LBA, 6 GROUP NUMBER(4:0),
//   7..8 PREFETCH LENGTH, 9 control.
// PRE-FETCH(16): 0 opcode 90h, 1 IMMED(1), 2..9 LBA, 10..13 PREFETCH LENGTH,
//   14 GROUP NUMBER(4:0), 15 control.
//
// The core keeps no cache of its own (RAM is the medium; files sit in the host page cache),
// so nothing is ever "in the cache" on our behalf: SBC-3 §5.9 then asks for GOOD rather than
// CONDITION MET, which is also what libiscsi's Prefetch suites expect. A PREFETCH LENGTH of
// zero means "up to the last logical block" and is range-checked like any other.

import type { Handler } from '../command';
import { checkRange, guarded } from './io';
import { decodeLbaRange } from '../cdb';

export function preFetch(len: 10 | 16): Handler {
  return (ctx) =>
    guarded(ctx, async () => {
      // Same LBA/length positions as READ(10)/READ(16).
      const { lba, blocks } = decodeLbaRange(ctx.cmd.cdb, len);
      const bad = checkRange(ctx, lba, blocks);
      if (bad) return ctx.fail(bad);
      return ctx.good();
    });
}
