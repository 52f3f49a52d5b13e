// The unit attention queue of one I_T nexus (SAM-5 §5.14, SPC-4 §7.5.8 UA_INTLCK_CTRL).
//
// Conditions are reported one per command, highest precedence first, oldest first within a
// precedence. SAM-5 §5.14 puts the reset family (29h) above everything; the order of the
// rest is left to the device server: commands cleared (2Fh) next, then parameter changes
// (2Ah), then inventory changes (3Fh), then anything else. A condition already queued is not
// queued again. A reset-family condition replaces what was queued before it (the reset made
// those moot). The queue is bounded: when full, the newest condition of the lowest precedence
// gives way, so a flood of MODE PARAMETERS CHANGED can never push out a reset.

import type { AscCode } from './sense';

/** Per-nexus bound; SPC-4 leaves the depth to the device server. */
export const UA_QUEUE_MAX = 16;

/** Larger is reported first. */
export function uaPrecedence(asc: AscCode): number {
  switch (asc >> 8) {
    case 0x29:
      return 4;
    case 0x2f:
      return 3;
    case 0x2a:
      return 2;
    case 0x3f:
      return 1;
    default:
      return 0;
  }
}

/** Queue `asc` in `q` (in place). Returns false when it was dropped (duplicate, or the queue is full of higher ones). */
export function queueUa(q: AscCode[], asc: AscCode, max = UA_QUEUE_MAX): boolean {
  if (q.includes(asc)) return false;
  const p = uaPrecedence(asc);
  if (p === 4) {
    q.length = 0;
    q.push(asc);
    return true;
  }
  if (q.length >= max) {
    // Evict the newest of the lowest precedence, if it ranks below the newcomer.
    let victim = -1;
    for (let i = 0; i < q.length; i++) {
      if (victim < 0 || uaPrecedence(q[i]!) <= uaPrecedence(q[victim]!)) victim = i;
    }
    if (victim < 0 || uaPrecedence(q[victim]!) >= p) return false;
    q.splice(victim, 1);
  }
  let at = q.length;
  while (at > 0 && uaPrecedence(q[at - 1]!) < p) at--;
  q.splice(at, 0, asc);
  return true;
}
