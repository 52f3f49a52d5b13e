// Where the lunbox-fast addon is (src/native/lunbox-fast.c, built by scripts/build-native.sh):
// with it the USB fast path's worker runs its serve loop in C, and a READ's data is copied
// once (page cache to USB request) instead of twice. Without it the worker runs the same
// loop in JavaScript: the same answers, more CPU per command.
//
// Looked for, first found wins:
//   LUNBOX_USB_NATIVE=PATH                    that file ('0': none, the JavaScript loop)
//   DIR/lunbox-fast.node                      DIR: the directory of the running bundle
//   DIR/native/lunbox-fast-linux-ARCH.node    (dist/ in a checkout, /usr/lib/lunbox on a board)
//   /usr/lib/lunbox/lunbox-fast.node

import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The addon's file for this machine, or why there is none (for the log). */
export function findFastAddon(env: NodeJS.ProcessEnv = process.env, here: string = __dirname): { path?: string; why: string } {
  const forced = env['LUNBOX_USB_NATIVE'];
  if (forced === '0') return { why: 'LUNBOX_USB_NATIVE=0' };
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64' && process.arch !== 'arm')) {
    return { why: `no addon for ${process.platform}-${process.arch}` };
  }
  if (forced !== undefined && forced !== '') {
    return existsSync(forced) ? { path: forced, why: 'LUNBOX_USB_NATIVE' } : { why: `LUNBOX_USB_NATIVE=${forced}: no such file` };
  }
  const candidates = [join(here, 'lunbox-fast.node'), join(here, 'native', `lunbox-fast-linux-${process.arch}.node`), '/usr/lib/lunbox/lunbox-fast.node'];
  for (const c of candidates) if (existsSync(c)) return { path: c, why: 'found' };
  return { why: `lunbox-fast.node not found beside ${here} nor in /usr/lib/lunbox (scripts/build-native.sh builds it)` };
}
