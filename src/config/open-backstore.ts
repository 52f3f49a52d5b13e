// From a validated BackstoreConfig to an open Backstore: the one place that maps config
// keys onto backstore options (thinProvisioning on a file = UNMAP by hole punching).
import { openBlock, openFile, openRam } from '../backstores';
import type { Backstore } from '../backstores';
import type { BackstoreConfig } from './schema';
import { backstoreBytes } from './validate';
import { emptyMedium } from '../scsi/mmc/mmc';

/** A disc image for a cdrom drive (Runtime.changeMedium opens the next one the same way). */
export function openIso(name: string, path: string): Promise<Backstore> {
  return openFile({ name, path, readOnly: true, unmap: 'none' });
}

export async function openBackstore(b: BackstoreConfig): Promise<Backstore> {
  // A cdrom is a read-only image, or an empty drive when no path is given.
  if (b.cdrom === true) return b.path === undefined ? emptyMedium(b.name) : openIso(b.name, b.path);
  const size = backstoreBytes(b);
  const readOnly = b.readOnly === true;
  switch (b.type) {
    case 'ram':
      // validateConfig guarantees a size for ram; 0 makes openRam report it if not validated.
      return openRam({ name: b.name, size: size ?? 0, protectionInfo: b.protection !== undefined });
    case 'file':
      return openFile({
        name: b.name,
        path: b.path ?? '',
        ...(size !== undefined ? { size } : {}),
        readOnly,
        unmap: b.thinProvisioning === true ? 'punch-hole' : 'none',
        // T10 PI tuples live in a sidecar '<image>.pi' file.
        protectionInfo: b.protection !== undefined,
      });
    case 'block':
      return openBlock({ name: b.name, path: b.path ?? '', readOnly });
  }
}
