// Which board lunbox runs on, and its facts: UDC, serial devices, LED, boot fragments, Node line.
// The facts live in board/*.json (one file per board, also read by scripts/make-image through
// node), imported here so the bundle carries them: one source of truth.
//
// Detection reads the device-tree model (/proc/device-tree/model: a NUL-terminated string such
// as "Raspberry Pi 4 Model B Rev 1.4") and matches each board's modelPatterns. An unknown board
// gets a generic default: the first UDC in /sys/class/udc and ttyGS0 for the gadget console.

import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import beagleboneBlack from '../../board/beaglebone-black.json';
import pi4 from '../../board/pi-4.json';
import pi5 from '../../board/pi-5.json';
import piZero2W from '../../board/pi-zero-2-w.json';
import piZeroW from '../../board/pi-zero-w.json';

// x64 only describes the machine lunbox happens to run on (a PC, a VM), never a board file.
export type CpuArch = 'armv6' | 'armv7' | 'arm64' | 'x64';

export interface BoardFacts {
  readonly id: string;
  readonly name: string;
  /** Regular expressions (JS syntax) tried against the device-tree model. */
  readonly modelPatterns: readonly string[];
  readonly soc: string;
  readonly arch: CpuArch;
  /** UDC names in /sys/class/udc, preferred first (kernels differ, e.g. musb-hdrc.0[.auto]). */
  readonly udc: readonly string[];
  readonly usbPort: string;
  readonly serial: { readonly gadget: string; readonly uart: string; readonly uartNote: string };
  readonly led: { readonly name: string; readonly paths: readonly string[] } | null;
  readonly boot: {
    /** Lines config.txt needs (Raspberry Pi firmware), appended under [all]. */
    readonly configTxt: readonly string[];
    /** /etc/modules-load.d/lunbox.conf */
    readonly modules: readonly string[];
    /** Stock units that would take the UDC or the gadget tty: masked in the image. */
    readonly maskUnits: readonly string[];
    /** Stock configfs gadgets removed before lunbox binds the UDC. */
    readonly stockGadgets: readonly string[];
  };
  readonly node: { readonly line: number; readonly tarballArch: readonly string[]; readonly source: string; readonly distroPackage: string };
  readonly image: { readonly os: string; readonly bootFat: 'required' | 'optional'; readonly userland: readonly string[] };
}

const CPU_ARCHES: readonly CpuArch[] = ['armv6', 'armv7', 'arm64'];

/** Checks a parsed board file, so a bad edit fails loudly (in tests) rather than at detection time. */
export function checkBoardFacts(raw: unknown, where: string): BoardFacts {
  const o = raw as Record<string, unknown>;
  const bad = (field: string, why: string): never => {
    throw new Error(`${where}: ${field}: ${why}`);
  };
  if (typeof o !== 'object' || o === null) bad('(top)', 'must be an object');
  for (const f of ['id', 'name', 'soc', 'usbPort'] as const) if (typeof o[f] !== 'string' || o[f] === '') bad(f, 'must be a non-empty string');
  if (!/^[a-z0-9-]+$/.test(o['id'] as string)) bad('id', 'must be lowercase letters, digits and dashes');
  if (!CPU_ARCHES.includes(o['arch'] as CpuArch)) bad('arch', `must be one of ${CPU_ARCHES.join(', ')}`);
  const strings = (v: unknown, field: string, nonEmpty: boolean): void => {
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string') || (nonEmpty && v.length === 0)) bad(field, `must be ${nonEmpty ? 'a non-empty' : 'an'} array of strings`);
  };
  strings(o['modelPatterns'], 'modelPatterns', true);
  for (const p of o['modelPatterns'] as string[]) {
    try {
      new RegExp(p);
    } catch (e) {
      bad('modelPatterns', `${JSON.stringify(p)} is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  strings(o['udc'], 'udc', true);
  const boot = o['boot'] as Record<string, unknown> | undefined;
  if (typeof boot !== 'object' || boot === null) bad('boot', 'must be an object');
  for (const f of ['configTxt', 'modules', 'maskUnits', 'stockGadgets']) strings(boot?.[f], `boot.${f}`, false);
  if (!(boot?.['modules'] as string[]).includes('libcomposite')) bad('boot.modules', 'must include libcomposite (configfs gadgets)');
  const node = o['node'] as Record<string, unknown> | undefined;
  if (typeof node?.['line'] !== 'number') bad('node.line', 'must be a number');
  strings(node?.['tarballArch'], 'node.tarballArch', true);
  if (o['arch'] !== 'arm64' && (node?.['line'] as number) > 22) bad('node.line', '32-bit ARM has no Node line after 22');
  const serial = o['serial'] as Record<string, unknown> | undefined;
  if (typeof serial?.['gadget'] !== 'string' || typeof serial['uart'] !== 'string') bad('serial', 'needs gadget and uart device names');
  const image = o['image'] as Record<string, unknown> | undefined;
  if (image?.['bootFat'] !== 'required' && image?.['bootFat'] !== 'optional') bad('image.bootFat', "must be 'required' or 'optional'");
  return raw as BoardFacts;
}

/** Every supported board, in the order they are tried. */
export const boards: readonly BoardFacts[] = [
  checkBoardFacts(piZeroW, 'board/pi-zero-w.json'),
  checkBoardFacts(piZero2W, 'board/pi-zero-2-w.json'),
  checkBoardFacts(pi4, 'board/pi-4.json'),
  checkBoardFacts(pi5, 'board/pi-5.json'),
  checkBoardFacts(beagleboneBlack, 'board/beaglebone-black.json'),
];

/** What an unknown board gets: no boot fragments, the first UDC present, the gadget console. */
export const GENERIC_BOARD: BoardFacts = {
  id: 'generic',
  name: 'generic Linux board',
  modelPatterns: [],
  soc: 'unknown',
  arch: process.arch === 'arm64' ? 'arm64' : process.arch === 'x64' ? 'x64' : 'armv7',
  udc: [],
  usbPort: 'the board\'s USB device (OTG/peripheral) port',
  serial: { gadget: 'ttyGS0', uart: 'ttyS0', uartNote: 'board-specific' },
  led: null,
  boot: { configTxt: [], modules: ['libcomposite'], maskUnits: [], stockGadgets: [] },
  node: { line: 22, tarballArch: ['arm64', 'armv7l', 'armv6l', 'x64'], source: 'https://nodejs.org/dist/', distroPackage: 'nodejs' },
  image: { os: 'any Linux with configfs and a UDC', bootFat: 'optional', userland: [] },
};

export type Detection =
  | { readonly known: true; readonly board: BoardFacts; readonly model: string }
  | { readonly known: false; readonly board: BoardFacts; readonly model: string; readonly message: string };

/** The device-tree model as text: the trailing NUL (and any stray whitespace) removed. */
export function cleanModel(raw: string | Buffer): string {
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  return text.replace(/\0+$/g, '').replace(/\0/g, ' ').trim();
}

/** Picks the board whose modelPatterns match `modelString` (raw /proc/device-tree/model content is fine). */
export function detectBoard(modelString: string | Buffer): Detection {
  const model = cleanModel(modelString);
  for (const board of boards) {
    if (board.modelPatterns.some((p) => new RegExp(p).test(model))) return { known: true, board, model };
  }
  const what = model === '' ? 'no device-tree model (not an ARM board, or /proc/device-tree is missing)' : `unknown board "${model}"`;
  return {
    known: false,
    board: GENERIC_BOARD,
    model,
    message:
      `${what}: using the generic defaults (the first UDC in /sys/class/udc, console on ttyGS0). ` +
      `Supported boards: ${boards.map((b) => b.name).join(', ')}.`,
  };
}

export function boardById(id: string): BoardFacts | undefined {
  return boards.find((b) => b.id === id);
}

export interface HostPaths {
  /** Default /proc/device-tree/model. */
  readonly modelPath?: string;
  /** Default /sys/class/udc. */
  readonly udcClass?: string;
}

/** Reads the model file; '' when there is none (x86 hosts, containers). */
export function readModel(modelPath = '/proc/device-tree/model'): string {
  try {
    return cleanModel(readFileSync(modelPath));
  } catch {
    return '';
  }
}

/** UDC names present, sorted (readdir order is not stable across kernels). */
export function listUdcs(udcClass = '/sys/class/udc'): string[] {
  try {
    return readdirSync(udcClass).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}

/**
 * The UDC to bind: the board's preferred names first, then (unknown board, or a kernel that
 * names it differently) the first present, as PiKVM's find_udc does. undefined when none.
 */
export function resolveUdc(board: BoardFacts, present: readonly string[]): string | undefined {
  for (const name of board.udc) if (present.includes(name)) return name;
  return present[0];
}

/** The first LED path of the board that exists, if any. */
export function resolveLed(board: BoardFacts, exists: (p: string) => boolean): string | undefined {
  return board.led?.paths.find((p) => exists(path.join(p, 'brightness')));
}

/** Detection on this host. LUNBOX_BOARD=<id> forces a board (a model string no file knows yet). */
export function detectHostBoard(paths: HostPaths = {}, env: NodeJS.ProcessEnv = process.env): Detection & { readonly udc: string | undefined; readonly udcs: string[] } {
  const udcs = listUdcs(paths.udcClass);
  const forced = env['LUNBOX_BOARD'];
  const model = readModel(paths.modelPath);
  let det: Detection;
  if (forced !== undefined && forced !== '') {
    const b = boardById(forced);
    if (!b) throw new Error(`LUNBOX_BOARD=${forced}: unknown board; valid: ${boards.map((x) => x.id).join(', ')}`);
    det = { known: true, board: b, model };
  } else {
    det = detectBoard(model);
  }
  return { ...det, udc: resolveUdc(det.board, udcs), udcs };
}
