// Which logical units an I_T nexus reaches, for commands that address units other than the
// one they were sent to (EXTENDED COPY copy targets, SPC-4 §6.4.5). The TargetPort records
// its LUN map per nexus object as it first sees it; the copy manager looks it up.

import type { Nexus } from './types';
import type { LunMapEntry } from './port';

type LunMap = (nexus: Nexus) => readonly LunMapEntry[];

const SCOPES = new WeakMap<Nexus, LunMap>();

export function setNexusScope(nexus: Nexus, lunMap: LunMap): void {
  SCOPES.set(nexus, lunMap);
}

/** The LUN map entries a nexus reaches (empty when it never came through a TargetPort). */
export function unitsOf(nexus: Nexus): readonly LunMapEntry[] {
  return SCOPES.get(nexus)?.(nexus) ?? [];
}
