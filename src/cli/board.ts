// `lunbox board`: prints the detected board and its facts (UDC, serial devices, LED, boot
// fragments, Node line). Wired into main.ts/args.ts by the lead; everything injectable for tests.

import { existsSync } from 'node:fs';
import { detectHostBoard, resolveLed } from '../board/detect';
import type { HostPaths } from '../board/detect';
import { detectBoardSerial } from '../board/serial';
import type { SERIAL_PATHS } from '../board/serial';
import { ncmMacs } from '../fabrics/usb/ncm';

export const HELP_BOARD = `Usage: lunbox board [--json]

Prints the board lunbox runs on, found from /proc/device-tree/model, and its facts:
USB device controller (UDC), serial devices, activity LED, boot fragments, Node.js line,
and the default USB serial number with the NCM MAC addresses derived from it.
An unknown board gets generic defaults (the first UDC in /sys/class/udc, console on ttyGS0).
LUNBOX_BOARD=<id> forces a board (pi-zero-w, pi-zero-2-w, pi-4, pi-5, beaglebone-black).

  --json   the same as one JSON object (for scripts)`;

export interface BoardCommandIo extends HostPaths {
  readonly out?: (s: string) => void;
  readonly err?: (s: string) => void;
  readonly env?: NodeJS.ProcessEnv;
  readonly exists?: (p: string) => boolean;
  readonly serialPaths?: { readonly [K in keyof typeof SERIAL_PATHS]?: string };
}

/** Runs `lunbox board ARGS`; returns the exit status (0, or 2 on a usage error). */
export function boardCommand(argv: readonly string[], io: BoardCommandIo = {}): number {
  const out = io.out ?? ((s: string) => process.stdout.write(s));
  const err = io.err ?? ((s: string) => process.stderr.write(s));
  let json = false;
  for (const a of argv) {
    if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') {
      out(HELP_BOARD + '\n');
      return 0;
    } else {
      err(`lunbox board: unknown option '${a}'; valid: --json, --help\n`);
      return 2;
    }
  }
  const paths: HostPaths = {
    ...(io.modelPath !== undefined ? { modelPath: io.modelPath } : {}),
    ...(io.udcClass !== undefined ? { udcClass: io.udcClass } : {}),
  };
  const det = detectHostBoard(paths, io.env ?? process.env);
  const exists = io.exists ?? existsSync;
  const b = det.board;
  const led = resolveLed(b, exists) ?? null;
  const id = detectBoardSerial(io.serialPaths);
  const macs = id.serial !== undefined ? ncmMacs(id.serial) : undefined;
  if (json) {
    out(
      JSON.stringify(
        {
          known: det.known, model: det.model, ...(det.known ? {} : { message: det.message }), udc: det.udc ?? null, udcsPresent: det.udcs, led,
          usbSerial: id.serial ?? null, usbSerialSource: id.source, ncm: macs ?? null, board: b,
        },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  const lines = [
    `board:     ${b.name} (${b.id})${det.known ? '' : ' - not recognised'}`,
    `model:     ${det.model === '' ? '(none: no /proc/device-tree/model)' : det.model}`,
    `cpu:       ${b.soc}, ${b.arch}`,
    `udc:       ${det.udc ?? 'none present'}${b.udc.length > 0 ? ` (expected ${b.udc.join(' or ')})` : ''}${det.udcs.length > 0 ? `; present: ${det.udcs.join(', ')}` : ''}`,
    `usb port:  ${b.usbPort}`,
    `console:   /dev/${b.serial.gadget} (USB ACM gadget), /dev/${b.serial.uart} (UART: ${b.serial.uartNote})`,
    `led:       ${b.led ? `${b.led.name}${led ? ` at ${led}` : ' (not found)'}` : 'none'}`,
    `boot:      ${b.boot.configTxt.length > 0 ? `config.txt: ${b.boot.configTxt.join('; ')}; ` : ''}modules: ${b.boot.modules.join(', ')}` +
      `${b.boot.maskUnits.length > 0 ? `; masked: ${b.boot.maskUnits.join(', ')}` : ''}`,
    `node:      ${b.node.line} (${b.node.tarballArch.join(' / ')}), ${b.node.source}`,
    `serial:    ${id.serial !== undefined ? `${id.serial} (USB serial number when the config sets none; from the ${id.source})` : 'none found (device tree, EEPROM, /etc/machine-id): set usb.gadget.serial'}`,
    ...(macs ? [`ncm:       board ${macs.deviceMac}, computer ${macs.hostMac} (with that serial)`] : []),
  ];
  out(lines.join('\n') + '\n');
  if (!det.known) err(`lunbox board: ${det.message}\n`);
  if (det.udc === undefined) err('lunbox board: no UDC in /sys/class/udc: USB gadget mode is off (Pi: dtoverlay=dwc2,dr_mode=peripheral and the dwc2 module; see board/FLASHING.md)\n');
  return 0;
}
