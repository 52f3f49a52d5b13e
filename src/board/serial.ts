// The gadget's default USB serial number: stable on one board, different between boards.
//
// USB Mass Storage Bulk-Only 1.0 §4.1.1 asks for a serial number of at least 12 hex digits,
// unique per VID:PID; hosts key what they remember about a device (Windows: drive letters,
// network settings; macOS: the network service) by it. It also seeds the NCM MAC addresses.
//
// Sources, first found wins:
//   1. the device tree's serial-number (Raspberry Pi: the SoC serial);
//   2. the BeagleBone's board EEPROM (AM335x header 0xAA5533EE, 12-character serial at byte 16);
//   3. /etc/machine-id (per installation; systemd calls it confidential, so only a hash leaves).
// The serial is 16 upper-case hex digits of SHA-256 over a lunbox label and the source value.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface SerialSources {
  readonly dtSerial?: string;
  readonly eeprom?: string;
  readonly machineId?: string;
}

export const SERIAL_PATHS = {
  dtSerial: '/proc/device-tree/serial-number',
  eeprom: '/sys/bus/i2c/devices/0-0050/eeprom',
  machineId: '/etc/machine-id',
} as const;

/** AM335x board EEPROM (BeagleBone Black SRM, "EEPROM data format"): magic, name, version, serial. */
const EEPROM = { MAGIC: 0xaa5533ee, SERIAL_OFFSET: 16, SERIAL_LENGTH: 12 } as const;

export interface BoardIdentity {
  /** Where the serial came from: 'device-tree', 'eeprom', 'machine-id', or 'none'. */
  readonly source: 'device-tree' | 'eeprom' | 'machine-id' | 'none';
  readonly serial: string | undefined;
}

const hashSerial = (label: string, value: string): string =>
  createHash('sha256').update(`lunbox-usb-serial\0${label}\0${value}`).digest('hex').slice(0, 16).toUpperCase();

/** Picks the serial from what a board offers. Pure. */
export function boardSerialFrom(src: SerialSources): BoardIdentity {
  const dt = src.dtSerial?.replace(/\0/g, '').trim();
  if (dt && !/^0*$/.test(dt)) return { source: 'device-tree', serial: hashSerial('dt', dt) };
  const ee = src.eeprom;
  if (ee !== undefined) return { source: 'eeprom', serial: hashSerial('eeprom', ee) };
  const mid = src.machineId?.trim();
  // An image not booted yet says "uninitialized" (machine-id(5)): no identity.
  if (mid && /^[0-9a-f]{32}$/i.test(mid)) return { source: 'machine-id', serial: hashSerial('machine-id', mid) };
  return { source: 'none', serial: undefined };
}

/** The EEPROM's serial, when the bytes carry the AM335x header. */
export function eepromSerial(raw: Buffer): string | undefined {
  if (raw.length < EEPROM.SERIAL_OFFSET + EEPROM.SERIAL_LENGTH || raw.readUInt32BE(0) !== EEPROM.MAGIC) return undefined;
  const s = raw.subarray(EEPROM.SERIAL_OFFSET, EEPROM.SERIAL_OFFSET + EEPROM.SERIAL_LENGTH).toString('latin1');
  return /^[\x21-\x7e]{12}$/.test(s) ? s : undefined;
}

const readOr = (p: string): Buffer | undefined => {
  try {
    return readFileSync(p);
  } catch {
    return undefined;
  }
};

/** This machine's default gadget serial. */
export function detectBoardSerial(paths: { readonly [K in keyof typeof SERIAL_PATHS]?: string } = {}): BoardIdentity {
  const p = { ...SERIAL_PATHS, ...paths };
  const ee = readOr(p.eeprom);
  const eeprom = ee ? eepromSerial(ee) : undefined;
  const dt = readOr(p.dtSerial)?.toString('latin1');
  const mid = readOr(p.machineId)?.toString('latin1');
  return boardSerialFrom({
    ...(dt !== undefined ? { dtSerial: dt } : {}),
    ...(eeprom !== undefined ? { eeprom } : {}),
    ...(mid !== undefined ? { machineId: mid } : {}),
  });
}
