// Validation of the configuration file. Every problem is collected with the path of the
// bad field and what would be valid; unknown keys are errors so a typo is never ignored.
import { isIP } from 'node:net';
import { BackstoreError } from '../backstores/backstore';
import { parseSize } from '../backstores/size';
import { ConfigError } from './errors';
import type { ConfigErrorCode, ConfigIssue } from './errors';
import { iscsiNameProblem } from './iscsi-name';
import { isPrivateIpv4, macProblem, parseIpv4, parseMac, planLink } from '../net/ipv4';
import type { BackstoreConfig, IscsiConfig, IscsiTargetConfig, LunboxConfig, Portal } from './schema';

type Obj = Record<string, unknown>;

const KEYS = {
  top: ['version', 'backstores', 'iscsi', 'usb', 'sbp2', 'console', 'control', 'engine'],
  console: ['device', 'baudRate'],
  control: ['socket'],
  backstore: ['name', 'type', 'size', 'path', 'readOnly', 'blockSize', 'writeCache', 'vendor', 'product', 'revision', 'serial', 'thinProvisioning', 'removable', 'physicalBlockSize', 'protection', 'sanitizeRate', 'cdrom'],
  iscsi: ['portals', 'discoveryAuth', 'targets', 'alua', 'portGroups'],
  portGroup: ['id', 'state', 'ports', 'preferred'],
  usb: ['gadget', 'engine', 'fastPath', 'luns'],
  usbGadget: ['name', 'vendorId', 'productId', 'manufacturer', 'product', 'serial', 'udc', 'acm', 'maxPower', 'ncm'],
  ncm: ['address', 'dhcp', 'leaseTime', 'deviceMac', 'hostMac'],
  usbLun: ['lun', 'backstore', 'readOnly'],
  portal: ['address', 'port'],
  chap: ['userid', 'password', 'mutualUserid', 'mutualPassword'],
  target: ['iqn', 'alias', 'tpgt', 'portals', 'luns', 'acls', 'demoMode', 'auth', 'params', 'relativePortId'],
  lun: ['lun', 'backstore', 'readOnly'],
  acl: ['initiator', 'auth', 'luns'],
  mappedLun: ['lun', 'targetLun', 'readOnly'],
  params: [
    'maxRecvDataSegmentLength', 'maxBurstLength', 'firstBurstLength', 'immediateData', 'initialR2T',
    'maxOutstandingR2T', 'headerDigest', 'dataDigest', 'nopInInterval', 'nopInTimeout',
    'errorRecoveryLevel', 'maxConnections', 'defaultTime2Wait', 'defaultTime2Retain',
  ],
} as const;

const BACKSTORE_TYPES = ['ram', 'file', 'block'] as const;
const BLOCK_SIZES = [512, 1024, 2048, 4096] as const;
const DIGESTS = ['None', 'CRC32C'] as const;
const OPAQUE_SECTIONS = ['sbp2', 'engine'] as const;
const ALUA_STATES = ['active/optimized', 'active/non-optimized', 'standby', 'unavailable', 'transitioning'] as const;
const ALUA_MODES = ['implicit', 'explicit', 'both'] as const;
/** Standard termios speeds a UART can be set to. */
export const BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1500000, 2000000, 3000000] as const;
/** SAM-5 flat/peripheral addressing as LIO uses it: LUNs 0..16383. */
export const MAX_LUN = 16383;
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** RFC 7143 §9.2.1 asks for CHAP secrets of at least 96 bits. */
export const CHAP_RECOMMENDED_BYTES = 12;
const CHAP_MAX_BYTES = 255;
// SPC-5 §6.7.2 standard INQUIRY field widths; the serial is our own bound.
const INQUIRY_LIMITS = { vendor: 8, product: 16, revision: 4, serial: 64 } as const;

const at = (path: string, key: string | number): string =>
  typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Collects issues; each check returns the value when valid, undefined otherwise. */
class Checker {
  readonly issues: ConfigIssue[] = [];

  add(code: ConfigErrorCode, path: string, message: string): void {
    this.issues.push({ code, path, message });
  }

  object(v: unknown, path: string, keys: readonly string[], required: readonly string[]): Obj | undefined {
    if (!isObj(v)) {
      this.add('TYPE', path, `expected an object, got ${describe(v)}`);
      return undefined;
    }
    for (const k of Object.keys(v)) {
      if (keys.includes(k)) continue;
      const near = keys.filter((c) => editDistance(k, c) <= Math.max(1, Math.floor(c.length / 4)));
      this.add(
        'UNKNOWN_KEY',
        at(path, k),
        `unknown key '${k}'${near.length ? ` (did you mean '${near[0]}'?)` : ''}; valid keys: ${keys.join(', ')}`,
      );
    }
    for (const k of required) if (v[k] === undefined) this.add('MISSING', at(path, k), `'${k}' is required`);
    return v;
  }

  array(v: unknown, path: string): unknown[] | undefined {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.add('TYPE', path, `expected an array, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  bool(v: unknown, path: string): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.add('TYPE', path, `expected true or false, got ${describe(v)}`);
    return typeof v === 'boolean' ? v : undefined;
  }

  int(v: unknown, path: string, min: number, max: number): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.add('TYPE', path, `expected a whole number ${min}..${max}, got ${describe(v)}`);
      return undefined;
    }
    if (v < min || v > max) {
      this.add('RANGE', path, `${v} is out of range: expected ${min}..${max}`);
      return undefined;
    }
    return v;
  }

  string(v: unknown, path: string, maxBytes = 4096): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.add('TYPE', path, `expected a string, got ${describe(v)}`);
      return undefined;
    }
    if (v.length === 0) {
      this.add('FORMAT', path, 'must not be empty');
      return undefined;
    }
    if (Buffer.byteLength(v) > maxBytes) {
      this.add('RANGE', path, `is ${Buffer.byteLength(v)} bytes long, the limit is ${maxBytes}`);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string | number>(v: unknown, path: string, allowed: readonly T[]): T | undefined {
    if (v === undefined) return undefined;
    if (!(allowed as readonly unknown[]).includes(v)) {
      this.add('ENUM', path, `${describe(v)} is not valid: expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
      return undefined;
    }
    return v as T;
  }
}

function checkBackstore(c: Checker, v: unknown, path: string): BackstoreConfig | undefined {
  const o = c.object(v, path, KEYS.backstore, ['name', 'type']);
  if (!o) return undefined;
  const name = c.string(o.name, at(path, 'name'));
  if (name !== undefined && !NAME_RE.test(name)) {
    c.add('FORMAT', at(path, 'name'), `bad backstore name ${JSON.stringify(name)}: use 1..64 of A-Z a-z 0-9 _ . -`);
  }
  const type = c.oneOf(o.type, at(path, 'type'), BACKSTORE_TYPES);
  c.bool(o.cdrom, at(path, 'cdrom'));
  const cdrom = o.cdrom === true;
  const blockSize = c.oneOf(o.blockSize, at(path, 'blockSize'), BLOCK_SIZES) ?? (cdrom ? 2048 : 512);
  if (cdrom) checkCdrom(c, o, path, type);
  for (const k of ['readOnly', 'writeCache', 'thinProvisioning', 'removable'] as const) c.bool(o[k], at(path, k));
  for (const [k, max] of Object.entries(INQUIRY_LIMITS)) {
    const s = c.string(o[k], at(path, k), 255);
    if (s === undefined) continue;
    if (!/^[\x20-\x7e]+$/.test(s)) c.add('FORMAT', at(path, k), 'must be printable ASCII (SPC INQUIRY data)');
    else if (s.length > max) c.add('RANGE', at(path, k), `${JSON.stringify(s)} is ${s.length} characters, the INQUIRY field holds ${max}`);
  }

  // size: a positive whole number of bytes or a human size, a multiple of the block size.
  let bytes: number | undefined;
  if (o.size !== undefined) {
    const sp = at(path, 'size');
    if (type === 'block') {
      c.add('FORMAT', sp, 'a block backstore takes its size from the device: remove size');
    } else if (typeof o.size === 'number') {
      if (!Number.isSafeInteger(o.size) || o.size <= 0) c.add('SIZE', sp, `${o.size} is not a whole number of bytes > 0`);
      else bytes = o.size;
    } else if (typeof o.size === 'string') {
      try {
        bytes = parseSize(o.size);
        if (bytes <= 0) {
          c.add('SIZE', sp, `${JSON.stringify(o.size)} must be more than 0 bytes`);
          bytes = undefined;
        }
      } catch (err) {
        c.add('SIZE', sp, err instanceof BackstoreError ? err.message : String(err));
      }
    } else {
      c.add('TYPE', sp, `expected bytes (a number) or a size like '64M', got ${describe(o.size)}`);
    }
    if (bytes !== undefined && bytes % blockSize !== 0) {
      c.add('SIZE', sp, `${bytes} bytes is not a multiple of the block size ${blockSize}`);
    }
  } else if (type === 'ram') {
    c.add('MISSING', at(path, 'size'), "a ram backstore needs a size (e.g. '64M')");
  }

  const pp = at(path, 'path');
  if (type === 'ram' && o.path !== undefined) c.add('FORMAT', pp, 'a ram backstore has no path: remove it');
  // A cdrom without a path is an empty drive.
  if ((type === 'file' || type === 'block') && o.path === undefined && !cdrom) c.add('MISSING', pp, `a ${type} backstore needs a path`);
  if (o.path !== undefined && type !== 'ram') c.string(o.path, pp);
  if (type === 'block' && o.thinProvisioning === true) {
    c.add('FORMAT', at(path, 'thinProvisioning'), 'block backstores cannot unmap (no discard without ioctl): remove thinProvisioning');
  }
  const pbs = c.int(o.physicalBlockSize, at(path, 'physicalBlockSize'), 512, 1 << 20);
  if (pbs !== undefined && (pbs < blockSize || pbs % blockSize !== 0 || ((pbs / blockSize) & (pbs / blockSize - 1)) !== 0)) {
    c.add('RANGE', at(path, 'physicalBlockSize'), `${pbs} must be the block size ${blockSize} times a power of two (e.g. ${blockSize * 8})`);
  }
  if (o.protection !== undefined) {
    if (o.protection !== 0 && o.protection !== 1 && o.protection !== 3) c.add('ENUM', at(path, 'protection'), `${describe(o.protection)}: valid are 0 (can be formatted with PI), 1 or 3 (T10 PI type)`);
    else if (type === 'block') c.add('FORMAT', at(path, 'protection'), 'a block backstore has nowhere to keep protection information: remove protection');
  }
  if (o.sanitizeRate !== undefined) {
    const sp = at(path, 'sanitizeRate');
    if (typeof o.sanitizeRate === 'number') {
      if (!Number.isSafeInteger(o.sanitizeRate) || o.sanitizeRate <= 0) c.add('RANGE', sp, `${o.sanitizeRate} is not a whole number of bytes per second > 0`);
    } else if (typeof o.sanitizeRate === 'string') {
      try {
        if (parseSize(o.sanitizeRate) <= 0) c.add('RANGE', sp, 'must be more than 0 bytes per second');
      } catch (err) {
        c.add('SIZE', sp, err instanceof BackstoreError ? err.message : String(err));
      }
    } else c.add('TYPE', sp, `expected bytes per second (a number) or a size like '32M', got ${describe(o.sanitizeRate)}`);
  }
  return o as unknown as BackstoreConfig;
}

/** A cdrom backstore is an ISO image in a read-only, removable drive with 2048-byte blocks (MMC). */
function checkCdrom(c: Checker, o: Obj, path: string, type: string | undefined): void {
  if (type !== undefined && type !== 'file') c.add('FORMAT', at(path, 'type'), `a cdrom backstore is an image file: type must be 'file', not '${type}'`);
  if (o.readOnly === false) c.add('FORMAT', at(path, 'readOnly'), 'a cdrom is read-only: remove readOnly or set it true');
  if (o.removable === false) c.add('FORMAT', at(path, 'removable'), 'a cdrom is removable medium: remove removable or set it true');
  if (o.blockSize !== undefined && o.blockSize !== 2048) c.add('FORMAT', at(path, 'blockSize'), 'a cdrom has 2048-byte blocks: remove blockSize or set it 2048');
  for (const k of ['size', 'thinProvisioning', 'writeCache', 'physicalBlockSize', 'protection', 'sanitizeRate'] as const) {
    if (o[k] !== undefined) c.add('FORMAT', at(path, k), `not for a cdrom backstore (the disc image defines the medium): remove ${k}`);
  }
}

function checkChap(c: Checker, v: unknown, path: string): void {
  const o = c.object(v, path, KEYS.chap, ['userid', 'password']);
  if (!o) return;
  c.string(o.userid, at(path, 'userid'), CHAP_MAX_BYTES);
  const pw = c.string(o.password, at(path, 'password'), CHAP_MAX_BYTES);
  c.string(o.mutualUserid, at(path, 'mutualUserid'), CHAP_MAX_BYTES);
  const mpw = c.string(o.mutualPassword, at(path, 'mutualPassword'), CHAP_MAX_BYTES);
  if ((o.mutualUserid === undefined) !== (o.mutualPassword === undefined)) {
    const missing = o.mutualUserid === undefined ? 'mutualUserid' : 'mutualPassword';
    c.add('MISSING', at(path, missing), 'mutual CHAP needs both mutualUserid and mutualPassword');
  }
  // RFC 7143 §9.2.1: a secret used to authenticate initiators must not authenticate targets.
  if (pw !== undefined && mpw !== undefined && pw === mpw) {
    c.add('CHAP', at(path, 'mutualPassword'), 'must differ from password (RFC 7143 §9.2.1)');
  }
}

function checkPortals(c: Checker, v: unknown, path: string): void {
  const list = c.array(v, path);
  if (!list) return;
  const seen = new Map<string, number>();
  list.forEach((item, i) => {
    const p = at(path, i);
    const o = c.object(item, p, KEYS.portal, ['address']);
    if (!o) return;
    const address = c.string(o.address, at(p, 'address'), 255);
    if (address !== undefined && address !== 'localhost' && isIP(address) === 0) {
      const hint = /^\[.*\]$/.test(address) ? ' (write IPv6 addresses without brackets)' : '';
      c.add('FORMAT', at(p, 'address'), `${JSON.stringify(address)} is not an IPv4/IPv6 address or 'localhost'${hint}`);
    }
    // Port 0 asks the system for a free port (printed in the iscsi:// URLs at start).
    const port = c.int(o.port, at(p, 'port'), 0, 65535) ?? 3260;
    if (address === undefined) return;
    const key = `${address}|${port}`;
    const prev = seen.get(key);
    if (prev !== undefined) c.add('DUPLICATE', p, `portal ${address}:${port} is listed twice (also ${at(path, prev)})`);
    else seen.set(key, i);
  });
}

function checkParams(c: Checker, v: unknown, path: string): void {
  const o = c.object(v, path, KEYS.params, []);
  if (!o) return;
  // RFC 7143 §13.12-13.14: lengths are 512..2^24-1; FirstBurstLength ≤ MaxBurstLength.
  const mrdsl = at(path, 'maxRecvDataSegmentLength');
  c.int(o.maxRecvDataSegmentLength, mrdsl, 512, 0xffffff);
  const mbl = c.int(o.maxBurstLength, at(path, 'maxBurstLength'), 512, 0xffffff);
  const fbl = c.int(o.firstBurstLength, at(path, 'firstBurstLength'), 512, 0xffffff);
  if (fbl !== undefined && fbl > (mbl ?? 262144)) {
    c.add('RANGE', at(path, 'firstBurstLength'), `${fbl} exceeds maxBurstLength ${mbl ?? '262144 (default)'}`);
  }
  c.bool(o.immediateData, at(path, 'immediateData'));
  c.bool(o.initialR2T, at(path, 'initialR2T'));
  c.int(o.maxOutstandingR2T, at(path, 'maxOutstandingR2T'), 1, 65535);
  for (const k of ['headerDigest', 'dataDigest'] as const) {
    const dp = at(path, k);
    const list = c.array(o[k], dp);
    if (!list) continue;
    if (list.length === 0) c.add('FORMAT', dp, `must list at least one of ${DIGESTS.join(', ')} (in order of preference)`);
    list.forEach((d, i) => c.oneOf(d, at(dp, i), DIGESTS));
    if (new Set(list).size !== list.length) c.add('DUPLICATE', dp, 'lists a digest twice');
  }
  c.int(o.nopInInterval, at(path, 'nopInInterval'), 0, 3600);
  c.int(o.nopInTimeout, at(path, 'nopInTimeout'), 1, 3600);
  // RFC 7143 §13.20, §13.2, §13.15, §13.16.
  c.int(o.errorRecoveryLevel, at(path, 'errorRecoveryLevel'), 0, 2);
  c.int(o.maxConnections, at(path, 'maxConnections'), 1, 65535);
  c.int(o.defaultTime2Wait, at(path, 'defaultTime2Wait'), 0, 3600);
  c.int(o.defaultTime2Retain, at(path, 'defaultTime2Retain'), 0, 3600);
}

function checkIscsiName(c: Checker, v: unknown, path: string): string | undefined {
  const s = c.string(v, path, 1024);
  if (s === undefined) return undefined;
  const problem = iscsiNameProblem(s);
  if (problem) c.add('FORMAT', path, problem);
  return problem ? undefined : s;
}

function checkTarget(c: Checker, v: unknown, path: string, backstores: ReadonlySet<string> | undefined): { iqn?: string; tpgt: number } | undefined {
  const o = c.object(v, path, KEYS.target, ['iqn', 'luns']);
  if (!o) return undefined;
  const iqn = checkIscsiName(c, o.iqn, at(path, 'iqn'));
  c.string(o.alias, at(path, 'alias'), 255);
  const tpgt = c.int(o.tpgt, at(path, 'tpgt'), 1, 65535) ?? 1;
  c.int(o.relativePortId, at(path, 'relativePortId'), 1, 65535);
  if (o.portals !== undefined) checkPortals(c, o.portals, at(path, 'portals'));
  c.bool(o.demoMode, at(path, 'demoMode'));
  if (o.auth !== undefined) checkChap(c, o.auth, at(path, 'auth'));
  if (o.params !== undefined) checkParams(c, o.params, at(path, 'params'));

  const lunsPath = at(path, 'luns');
  const tpgLuns = new Map<number, number>();
  // After a broken LUN entry, "no such LUN" errors in ACLs would only be echoes of it.
  let lunsKnown = true;
  (c.array(o.luns, lunsPath) ?? []).forEach((item, i) => {
    const p = at(lunsPath, i);
    const l = c.object(item, p, KEYS.lun, ['lun', 'backstore']);
    if (!l) return void (lunsKnown = false);
    const lun = c.int(l.lun, at(p, 'lun'), 0, MAX_LUN);
    if (lun === undefined) lunsKnown = false;
    const bs = c.string(l.backstore, at(p, 'backstore'), 64);
    if (bs !== undefined && backstores !== undefined && !backstores.has(bs)) {
      c.add('REFERENCE', at(p, 'backstore'), `no backstore named '${bs}' (defined: ${[...backstores].join(', ') || 'none'})`);
    }
    c.bool(l.readOnly, at(p, 'readOnly'));
    if (lun === undefined) return;
    const prev = tpgLuns.get(lun);
    if (prev !== undefined) c.add('DUPLICATE', at(p, 'lun'), `LUN ${lun} is defined twice in this target (also ${at(lunsPath, prev)})`);
    else tpgLuns.set(lun, i);
  });

  const aclsPath = at(path, 'acls');
  const initiators = new Map<string, number>();
  (c.array(o.acls, aclsPath) ?? []).forEach((item, i) => {
    const p = at(aclsPath, i);
    const a = c.object(item, p, KEYS.acl, ['initiator']);
    if (!a) return;
    const name = checkIscsiName(c, a.initiator, at(p, 'initiator'));
    if (name !== undefined) {
      const prev = initiators.get(name);
      if (prev !== undefined) c.add('DUPLICATE', at(p, 'initiator'), `initiator ${name} has two ACLs (also ${at(aclsPath, prev)})`);
      else initiators.set(name, i);
    }
    if (a.auth !== undefined) checkChap(c, a.auth, at(p, 'auth'));
    const mlPath = at(p, 'luns');
    const mapped = new Map<number, number>();
    (c.array(a.luns, mlPath) ?? []).forEach((mItem, j) => {
      const mp = at(mlPath, j);
      const m = c.object(mItem, mp, KEYS.mappedLun, ['lun']);
      if (!m) return;
      const lun = c.int(m.lun, at(mp, 'lun'), 0, MAX_LUN);
      const targetLun = c.int(m.targetLun, at(mp, 'targetLun'), 0, MAX_LUN);
      c.bool(m.readOnly, at(mp, 'readOnly'));
      const ref = targetLun ?? (m.targetLun === undefined ? lun : undefined);
      if (lunsKnown && ref !== undefined && !tpgLuns.has(ref)) {
        c.add(
          'REFERENCE',
          at(mp, m.targetLun === undefined ? 'lun' : 'targetLun'),
          `the target has no LUN ${ref} (its LUNs: ${[...tpgLuns.keys()].join(', ') || 'none'})`,
        );
      }
      if (lun === undefined) return;
      const prev = mapped.get(lun);
      if (prev !== undefined) c.add('DUPLICATE', at(mp, 'lun'), `mapped LUN ${lun} is defined twice for this initiator (also ${at(mlPath, prev)})`);
      else mapped.set(lun, j);
    });
  });
  return iqn === undefined ? { tpgt } : { iqn, tpgt };
}

function checkConsole(c: Checker, v: unknown): void {
  const o = c.object(v, 'console', KEYS.console, []);
  if (!o) return;
  if (o.device !== false) {
    const d = c.string(o.device, 'console.device', 255);
    if (d !== undefined && !d.startsWith('/')) c.add('FORMAT', 'console.device', `${JSON.stringify(d)} must be an absolute device path (e.g. /dev/ttyGS0), or false for no console`);
  }
  c.oneOf(o.baudRate, 'console.baudRate', BAUD_RATES);
}

function checkControl(c: Checker, v: unknown): void {
  const o = c.object(v, 'control', KEYS.control, []);
  if (!o) return;
  if (o.socket === false) return;
  const s = c.string(o.socket, 'control.socket', 107); // sun_path holds 108 bytes with the NUL
  if (s !== undefined && !s.startsWith('/')) c.add('FORMAT', 'control.socket', `${JSON.stringify(s)} must be an absolute path, or false for no control socket`);
}

/** `backstores` is undefined when a backstore entry was too broken to know its name. */
function checkIscsi(c: Checker, v: unknown, backstores: ReadonlySet<string> | undefined): void {
  const o = c.object(v, 'iscsi', KEYS.iscsi, ['targets']);
  if (!o) return;
  if (o.portals !== undefined) checkPortals(c, o.portals, 'iscsi.portals');
  if (o.discoveryAuth !== undefined) checkChap(c, o.discoveryAuth, 'iscsi.discoveryAuth');
  const seen = new Map<string, number>();
  (c.array(o.targets, 'iscsi.targets') ?? []).forEach((t, i) => {
    const p = at('iscsi.targets', i);
    const r = checkTarget(c, t, p, backstores);
    if (r?.iqn === undefined) return;
    const key = `${r.iqn}|${r.tpgt}`;
    const prev = seen.get(key);
    if (prev !== undefined) c.add('DUPLICATE', at(p, 'iqn'), `target ${r.iqn} tpgt ${r.tpgt} is defined twice (also iscsi.targets[${prev}])`);
    else seen.set(key, i);
  });
  // Relative target port identifiers: explicit or the 1-based position, unique.
  const ports = new Map<number, number>();
  (Array.isArray(o.targets) ? o.targets : []).forEach((t, i) => {
    const id = isObj(t) && typeof t['relativePortId'] === 'number' ? t['relativePortId'] : i + 1;
    const prev = ports.get(id);
    if (prev !== undefined) c.add('DUPLICATE', at(at('iscsi.targets', i), 'relativePortId'), `relative port ${id} is also iscsi.targets[${prev}]'s`);
    else ports.set(id, i);
  });
  checkPortGroups(c, o, ports);
}

function checkPortGroups(c: Checker, o: Obj, ports: ReadonlyMap<number, number>): void {
  c.oneOf(o.alua, 'iscsi.alua', ALUA_MODES);
  if (o.portGroups === undefined) {
    if (o.alua !== undefined) c.add('MISSING', 'iscsi.portGroups', 'ALUA needs port groups: [{ "id": 1, "state": "active/optimized", "ports": [1] }, …]');
    return;
  }
  const groups = c.array(o.portGroups, 'iscsi.portGroups');
  if (!groups) return;
  if (groups.length === 0) c.add('FORMAT', 'iscsi.portGroups', 'list at least one port group, or remove portGroups');
  const ids = new Set<number>();
  const inGroup = new Map<number, number>();
  groups.forEach((g, i) => {
    const p = at('iscsi.portGroups', i);
    const go = c.object(g, p, KEYS.portGroup, ['id', 'state', 'ports']);
    if (!go) return;
    const id = c.int(go.id, at(p, 'id'), 1, 65535);
    if (id !== undefined) {
      if (ids.has(id)) c.add('DUPLICATE', at(p, 'id'), `port group ${id} is defined twice`);
      ids.add(id);
    }
    c.oneOf(go.state, at(p, 'state'), ALUA_STATES);
    c.bool(go.preferred, at(p, 'preferred'));
    (c.array(go.ports, at(p, 'ports')) ?? []).forEach((port, j) => {
      const pp = at(at(p, 'ports'), j);
      const n = c.int(port, pp, 1, 65535);
      if (n === undefined) return;
      if (!ports.has(n)) c.add('REFERENCE', pp, `no iSCSI target has relative port ${n} (targets are numbered from 1, or set relativePortId)`);
      const prev = inGroup.get(n);
      if (prev !== undefined) c.add('DUPLICATE', pp, `relative port ${n} is already in iscsi.portGroups[${prev}]`);
      else inGroup.set(n, i);
    });
  });
  for (const [port, t] of ports) {
    if (!inGroup.has(port)) c.add('MISSING', 'iscsi.portGroups', `relative port ${port} (iscsi.targets[${t}]) is in no port group`);
  }
}

/** Longest DHCP lease offered: 30 days (RFC 2131 allows more; a cable link needs no more). */
export const NCM_MAX_LEASE = 30 * 24 * 3600;

function checkNcm(c: Checker, v: unknown): void {
  const p = 'usb.gadget.ncm';
  if (!isObj(v)) {
    c.add('TYPE', p, `expected true, false or an object with ${KEYS.ncm.join(', ')}; got ${describe(v)}`);
    return;
  }
  const o = c.object(v, p, KEYS.ncm, []);
  if (!o) return;
  const address = c.string(o.address, at(p, 'address'), 64);
  if (address !== undefined) {
    const plan = planLink(address);
    if (typeof plan === 'string') c.add('FORMAT', at(p, 'address'), `${plan}; or true for the default 10.55.0.1/30`);
  }
  c.bool(o.dhcp, at(p, 'dhcp'));
  c.int(o.leaseTime, at(p, 'leaseTime'), 60, NCM_MAX_LEASE);
  const macs: Buffer[] = [];
  for (const k of ['deviceMac', 'hostMac'] as const) {
    const s = c.string(o[k], at(p, k), 32);
    if (s === undefined) continue;
    const b = parseMac(s);
    const why = b ? macProblem(b) : `is not a MAC address like 02:12:34:56:78:9a`;
    if (why || !b) c.add('FORMAT', at(p, k), `${JSON.stringify(s)} ${why}`);
    else macs.push(b);
  }
  if (macs.length === 2 && (macs[0] as Buffer).equals(macs[1] as Buffer)) c.add('FORMAT', at(p, 'hostMac'), 'must differ from deviceMac: they are the two ends of one link');
}

const USB_ENGINES = ['userspace', 'kernel'] as const;

function checkUsb(c: Checker, v: unknown, backstores: ReadonlySet<string> | undefined, types: ReadonlyMap<string, unknown>): void {
  const o = c.object(v, 'usb', KEYS.usb, ['luns']);
  if (!o) return;
  const engine = c.oneOf(o.engine, 'usb.engine', USB_ENGINES);
  c.bool(o.fastPath, 'usb.fastPath');
  if (o.gadget !== undefined) {
    const g = c.object(o.gadget, 'usb.gadget', KEYS.usbGadget, []);
    if (g) {
      c.int(g.vendorId, 'usb.gadget.vendorId', 0, 0xffff);
      c.int(g.productId, 'usb.gadget.productId', 0, 0xffff);
      for (const k of ['name', 'manufacturer', 'product', 'serial', 'udc'] as const) c.string(g[k], at('usb.gadget', k), 126);
      if (typeof g.name === 'string' && !/^[A-Za-z0-9_.-]{1,64}$/.test(g.name)) c.add('FORMAT', 'usb.gadget.name', 'use 1..64 of A-Z a-z 0-9 _ . - (a configfs directory name)');
      c.bool(g.acm, 'usb.gadget.acm');
      c.int(g.maxPower, 'usb.gadget.maxPower', 2, 500);
      if (g.ncm !== undefined && typeof g.ncm !== 'boolean') checkNcm(c, g.ncm);
    }
  }
  const seen = new Set<number>();
  (c.array(o.luns, 'usb.luns') ?? []).forEach((l, i) => {
    const p = at('usb.luns', i);
    const lo = c.object(l, p, KEYS.usbLun, ['lun', 'backstore']);
    if (!lo) return;
    // BOT Get Max LUN: at most 16 LUNs, numbered 0..15.
    const lun = c.int(lo.lun, at(p, 'lun'), 0, 15);
    if (lun !== undefined) {
      if (seen.has(lun)) c.add('DUPLICATE', at(p, 'lun'), `USB LUN ${lun} is listed twice`);
      seen.add(lun);
    }
    const b = c.string(lo.backstore, at(p, 'backstore'));
    if (b !== undefined && backstores && !backstores.has(b)) c.add('REFERENCE', at(p, 'backstore'), `no backstore named '${b}'`);
    if (engine === 'kernel' && b !== undefined && types.get(b) === 'ram') {
      c.add('ENUM', at(p, 'backstore'), `'${b}' is a ram backstore: the kernel engine (usb.engine 'kernel') serves files and block devices only; use a file (on tmpfs for RAM speed) or usb.engine 'userspace'`);
    }
    c.bool(lo.readOnly, at(p, 'readOnly'));
  });
}

/** Check a parsed config document; throws ConfigError listing every problem. */
export function validateConfig(raw: unknown): LunboxConfig {
  const c = new Checker();
  const o = c.object(raw, '', KEYS.top, ['version', 'backstores']);
  if (o) {
    if (o.version !== undefined && o.version !== 1) {
      c.add('ENUM', 'version', `unsupported version ${describe(o.version)}: this lunbox reads version 1`);
    }
    const names = new Map<string, number>();
    const types = new Map<string, unknown>();
    let namesKnown = true;
    (c.array(o.backstores, 'backstores') ?? []).forEach((b, i) => {
      const p = at('backstores', i);
      const bs = checkBackstore(c, b, p);
      if (typeof bs?.name !== 'string') return void (namesKnown = false);
      types.set(bs.name, bs.type);
      const prev = names.get(bs.name);
      if (prev !== undefined) c.add('DUPLICATE', at(p, 'name'), `backstore name '${bs.name}' is used twice (also backstores[${prev}])`);
      else names.set(bs.name, i);
    });
    if (o.iscsi !== undefined) checkIscsi(c, o.iscsi, namesKnown ? new Set(names.keys()) : undefined);
    if (o.usb !== undefined) checkUsb(c, o.usb, namesKnown ? new Set(names.keys()) : undefined, types);
    if (o.console !== undefined) checkConsole(c, o.console);
    if (o.control !== undefined) checkControl(c, o.control);
    for (const k of OPAQUE_SECTIONS) {
      if (o[k] !== undefined && !isObj(o[k])) c.add('TYPE', k, `expected an object, got ${describe(o[k])}`);
    }
  }
  if (c.issues.length) throw new ConfigError(c.issues);
  // A copy: later edits of the caller's object must not change the validated config.
  return structuredClone(raw) as LunboxConfig;
}

/** Things that are valid but probably not meant (printed, never fatal). */
export function configWarnings(cfg: LunboxConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const chap = (a: { password: string; mutualPassword?: string } | undefined, path: string): void => {
    for (const k of ['password', 'mutualPassword'] as const) {
      const s = a?.[k];
      if (s !== undefined && Buffer.byteLength(s) < CHAP_RECOMMENDED_BYTES) {
        out.push({ code: 'CHAP', path: at(path, k), message: `CHAP secret shorter than ${CHAP_RECOMMENDED_BYTES} bytes (RFC 7143 §9.2.1 asks for at least 96 bits)` });
      }
    }
  };
  chap(cfg.iscsi?.discoveryAuth, 'iscsi.discoveryAuth');
  cfg.iscsi?.targets.forEach((t, i) => {
    const p = at('iscsi.targets', i);
    chap(t.auth, at(p, 'auth'));
    t.acls?.forEach((a, j) => chap(a.auth, at(at(p, 'acls'), j) + '.auth'));
    if (t.demoMode === false && !t.acls?.length) {
      out.push({ code: 'INVALID', path: at(p, 'demoMode'), message: 'demoMode is false and there are no ACLs: no initiator can log in' });
    }
  });
  const ncm = cfg.usb?.gadget?.ncm;
  if (typeof ncm === 'object' && ncm.address !== undefined) {
    const board = parseIpv4(ncm.address.split('/')[0] ?? '');
    if (board !== undefined && !isPrivateIpv4(board)) {
      out.push({ code: 'INVALID', path: 'usb.gadget.ncm.address', message: `${ncm.address} is not a private (RFC 1918) address: the computer may already reach that range elsewhere` });
    }
  }
  return out;
}

/** Bytes of a backstore's configured size, or undefined when none is set. */
export function backstoreBytes(b: BackstoreConfig): number | undefined {
  return b.size === undefined ? undefined : typeof b.size === 'number' ? b.size : parseSize(b.size);
}

export interface ResolvedTarget {
  readonly tpgt: number;
  /** Target portals, else iscsi.portals, else [] (the CLI supplies its default). */
  readonly portals: readonly Required<Portal>[];
  readonly demoMode: boolean;
}

/** A target's effective tpgt, portals and demo mode after defaults. */
export function resolveTarget(iscsi: IscsiConfig, t: IscsiTargetConfig): ResolvedTarget {
  const portals = (t.portals ?? iscsi.portals ?? []).map((p) => ({ address: p.address, port: p.port ?? 3260 }));
  return { tpgt: t.tpgt ?? 1, portals, demoMode: t.demoMode ?? !t.acls?.length };
}
