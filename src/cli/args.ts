// Command-line parsing for `lunbox`: a small explicit parser (no dependency) whose
// errors name the bad option and what would be valid. Pure functions, unit-tested.

import { planLink } from '../net/ipv4';
import { MGMT_COMMANDS, parseConfigIo, parseMgmt } from './mgmt-args';
import type { MgmtCommand } from './mgmt-args';

export class UsageError extends Error {
  readonly code = 'EUSAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Listen {
  readonly address: string;
  readonly port: number;
}

export type BackstoreSpec =
  | { readonly type: 'ram'; readonly size: string }
  | { readonly type: 'file'; readonly path: string; readonly size?: string }
  | { readonly type: 'block'; readonly path: string };

export interface ServeOptions {
  readonly config?: string;
  readonly listen: readonly Listen[];
  readonly backstore?: BackstoreSpec;
  /** An ISO image exported as a CD-ROM LUN (LUN 1 beside a --backstore disk, else LUN 0). */
  readonly cdrom?: string;
  readonly iqn?: string;
  readonly readOnly: boolean;
  readonly blockSize?: number;
  readonly verbose: boolean;
  readonly quiet: boolean;
  /** Serial device for the management shell ('none': no serial console). */
  readonly console?: string;
  /** Control socket path for `lunbox shell` ('none': no socket). */
  readonly control?: string;
  /** Directory for state kept across restarts (APTPL reservations); 'none': keep nothing. */
  readonly stateDir?: string;
  /** Export the LUN as USB mass storage on the board's device port. */
  readonly usb: boolean;
  /** UDC to bind (/sys/class/udc); default the board's or the first. */
  readonly udc?: string;
  /** An ACM serial function beside the USB disk. */
  readonly acm: boolean;
  /** USB serial number string of the gadget. */
  readonly usbSerial?: string;
  /** Who serves the USB LUNs: lunbox's SCSI core (userspace) or the kernel's mass_storage. */
  readonly usbEngine?: 'userspace' | 'kernel';
  /** A USB network (NCM) beside the disk, with the iSCSI portal on the board's address. */
  readonly ncm: boolean;
  /** The board's ADDRESS/PREFIX on that network. */
  readonly ncmAddress?: string;
}

export type Command =
  | { readonly kind: 'help'; readonly topic?: string }
  | { readonly kind: 'version' }
  | { readonly kind: 'serve'; readonly opts: ServeOptions }
  | { readonly kind: 'config-check'; readonly file: string }
  | { readonly kind: 'board'; readonly argv: readonly string[] }
  | MgmtCommand;

/** `ADDR:PORT`, `[V6]:PORT`, `ADDR` (port 3260) or `:PORT` (127.0.0.1). */
export function parseListen(text: string, defaultPort = 3260): Listen {
  let address: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (v6) {
    address = v6[1] ?? '';
    portText = v6[2];
  } else if ((text.match(/:/g) ?? []).length > 1) {
    // A bare IPv6 address without brackets and without a port.
    address = text;
  } else {
    const i = text.lastIndexOf(':');
    address = i < 0 ? text : text.slice(0, i);
    portText = i < 0 ? undefined : text.slice(i + 1);
  }
  if (address === '') address = '127.0.0.1';
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText) || Number(portText) > 65535) {
      throw new UsageError(`--listen ${text}: the port must be a number from 0 to 65535 (e.g. 127.0.0.1:3260)`);
    }
    port = Number(portText);
  }
  return { address, port };
}

/** `ram:SIZE`, `file:PATH[:SIZE]`, `block:DEVICE`. */
export function parseBackstore(text: string): BackstoreSpec {
  const i = text.indexOf(':');
  const type = i < 0 ? text : text.slice(0, i);
  const rest = i < 0 ? '' : text.slice(i + 1);
  const sizeLike = /^\d+(\.\d+)?\s*([kmgtp](i?b)?|b)?$/i;
  switch (type) {
    case 'ram':
      if (!sizeLike.test(rest)) throw new UsageError(`--backstore ${text}: a RAM backstore needs a size, e.g. ram:64M`);
      return { type: 'ram', size: rest };
    case 'file': {
      if (rest === '') throw new UsageError(`--backstore ${text}: give the image path, e.g. file:/srv/disk.img:1G`);
      // The size is optional and comes last; a path may itself contain ':'.
      const j = rest.lastIndexOf(':');
      if (j > 0 && sizeLike.test(rest.slice(j + 1))) return { type: 'file', path: rest.slice(0, j), size: rest.slice(j + 1) };
      return { type: 'file', path: rest };
    }
    case 'block':
      if (rest === '') throw new UsageError(`--backstore ${text}: give the device, e.g. block:/dev/sda`);
      return { type: 'block', path: rest };
    default:
      throw new UsageError(`--backstore ${text}: unknown type '${type}'; valid: ram:SIZE, file:PATH[:SIZE], block:DEVICE`);
  }
}

const SERVE_FLAGS = ['--config', '--listen', '--backstore', '--cdrom', '--iqn', '--read-only', '--block-size', '--console', '--control', '--state-dir', '--usb', '--udc', '--acm', '--ncm', '--ncm-address', '--serial', '--usb-engine', '--verbose', '--quiet', '--help'];

export function parseArgs(argv: readonly string[]): Command {
  const args = [...argv];
  const first = args[0];
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    return args[1] !== undefined && first === 'help' ? { kind: 'help', topic: args[1] } : { kind: 'help' };
  }
  if (first === '--version' || first === '-V' || first === 'version') return { kind: 'version' };
  if (first === 'config') {
    const sub = args[1];
    if (sub === 'check') {
      const file = args[2];
      if (file === undefined) throw new UsageError('lunbox config check FILE: give the config file to check');
      return { kind: 'config-check', file };
    }
    if (sub === 'import' || sub === 'export') return parseConfigIo(sub, args.slice(2));
    if (sub === undefined || sub === '--help') return { kind: 'help', topic: 'config' };
    throw new UsageError(`lunbox config ${sub}: unknown subcommand; valid: check, import, export`);
  }
  if (first === 'board') return { kind: 'board', argv: args.slice(1) };
  if ((MGMT_COMMANDS as readonly string[]).includes(first)) return parseMgmt(first, args.slice(1));
  if (first !== 'serve') {
    if (first.startsWith('-')) return parseServe(args);
    throw new UsageError(`unknown command '${first}'; valid: serve, shell, console, probe, config, board, help, version (see lunbox --help)`);
  }
  return parseServe(args.slice(1));
}

function parseServe(args: string[]): Command {
  const listen: Listen[] = [];
  let config: string | undefined;
  let backstore: BackstoreSpec | undefined;
  let cdrom: string | undefined;
  let iqn: string | undefined;
  let readOnly = false;
  let blockSize: number | undefined;
  let verbose = false;
  let quiet = false;
  let consoleDevice: string | undefined;
  let control: string | undefined;
  let stateDir: string | undefined;
  let usb = false;
  let udc: string | undefined;
  let acm = false;
  let ncm = false;
  let ncmAddress: string | undefined;
  let usbSerial: string | undefined;
  let usbEngine: 'userspace' | 'kernel' | undefined;
  for (let i = 0; i < args.length; i++) {
    const raw = args[i] ?? '';
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const value = (): string => {
      if (eq > 0) return raw.slice(eq + 1);
      const v = args[++i];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) throw new UsageError(`${flag} needs a value (see lunbox serve --help)`);
      return v;
    };
    switch (flag) {
      case '--help':
      case '-h':
        return { kind: 'help', topic: 'serve' };
      case '--config':
      case '-c':
        config = value();
        break;
      case '--listen':
      case '-l':
        listen.push(parseListen(value()));
        break;
      case '--backstore':
      case '-b':
        if (backstore) throw new UsageError('--backstore given twice: the quick form exports one LUN; use --config for more');
        backstore = parseBackstore(value());
        break;
      case '--cdrom':
        if (cdrom !== undefined) throw new UsageError('--cdrom given twice: the quick form has one drive; use --config for more');
        cdrom = value();
        if (cdrom === '') throw new UsageError('--cdrom needs the path of an ISO image, e.g. --cdrom /srv/debian.iso');
        break;
      case '--iqn':
        iqn = value();
        break;
      case '--read-only':
        readOnly = true;
        break;
      case '--block-size': {
        const v = value();
        const n = Number(v);
        if (![512, 1024, 2048, 4096].includes(n)) throw new UsageError(`--block-size ${v}: valid sizes are 512, 1024, 2048, 4096`);
        blockSize = n;
        break;
      }
      case '--console':
        consoleDevice = value();
        break;
      case '--control':
        control = value();
        break;
      case '--state-dir':
        stateDir = value();
        break;
      case '--usb':
        usb = true;
        break;
      case '--udc':
        udc = value();
        usb = true;
        break;
      case '--acm':
        acm = true;
        break;
      case '--ncm':
        ncm = true;
        usb = true;
        break;
      case '--ncm-address': {
        const v = value();
        const plan = planLink(v);
        if (typeof plan === 'string') throw new UsageError(`--ncm-address ${v}: ${plan}`);
        ncmAddress = v;
        ncm = true;
        usb = true;
        break;
      }
      case '--serial':
        usbSerial = value();
        break;
      case '--usb-engine': {
        const v = value();
        if (v !== 'userspace' && v !== 'kernel') throw new UsageError(`--usb-engine is 'userspace' (lunbox's SCSI core) or 'kernel' (the kernel's mass_storage function), got '${v}'`);
        usbEngine = v;
        break;
      }
      case '--verbose':
      case '-v':
        verbose = true;
        break;
      case '--quiet':
      case '-q':
        quiet = true;
        break;
      default:
        throw new UsageError(`unknown option '${raw}' for serve; valid: ${SERVE_FLAGS.join(', ')}`);
    }
  }
  if (config !== undefined && (backstore || cdrom !== undefined || iqn !== undefined || readOnly || blockSize !== undefined || usb || acm || ncm || usbSerial !== undefined || usbEngine !== undefined)) {
    throw new UsageError('--config cannot be combined with --backstore/--cdrom/--iqn/--read-only/--block-size/--usb/--udc/--acm/--ncm/--ncm-address/--serial/--usb-engine: put those in the config file');
  }
  if (!usb && (acm || usbSerial !== undefined || usbEngine !== undefined)) throw new UsageError('--acm, --serial and --usb-engine describe the USB gadget: add --usb');
  return {
    kind: 'serve',
    opts: {
      listen,
      readOnly,
      verbose,
      quiet,
      usb,
      acm,
      ncm,
      ...(ncmAddress !== undefined ? { ncmAddress } : {}),
      ...(udc !== undefined ? { udc } : {}),
      ...(usbSerial !== undefined ? { usbSerial } : {}),
      ...(usbEngine !== undefined ? { usbEngine } : {}),
      ...(config !== undefined ? { config } : {}),
      ...(backstore ? { backstore } : {}),
      ...(cdrom !== undefined ? { cdrom } : {}),
      ...(iqn !== undefined ? { iqn } : {}),
      ...(blockSize !== undefined ? { blockSize } : {}),
      ...(consoleDevice !== undefined ? { console: consoleDevice } : {}),
      ...(control !== undefined ? { control } : {}),
      ...(stateDir !== undefined ? { stateDir } : {}),
    },
  };
}
