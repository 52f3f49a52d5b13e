// Settable groups of each node (`set GROUP key=value`, `get GROUP [key]`), mapped onto
// config keys. Names follow targetcli where one exists (attribute, parameter, auth,
// discovery_auth; RFC 7143 key names for parameters); values are parsed by type.

import type { AclConfig, IscsiParams, LunboxConfig, MappedLun, TpgLun } from '../config/index';
import { REDACTED } from '../config/index';
import { findTarget, sameIqn, usbOf } from './nodes';
import type { Node, UsbLun, UsbSection } from './nodes';
import { ShellError } from './words';

type Obj = Record<string, unknown>;
export type ValueType = 'bool' | 'int' | 'string' | 'size' | 'digests' | 'u16' | 'secret';

export interface KeySpec {
  /** Name typed in the shell. */
  readonly key: string;
  /** Name in the config object. */
  readonly field: string;
  readonly type: ValueType;
  readonly help: string;
  /** Shown but not settable here. */
  readonly readOnly?: boolean;
  /** Fixed choices (completion and checking). */
  readonly values?: readonly string[];
}

export interface Group {
  readonly name: string;
  readonly keys: readonly KeySpec[];
  /** The config object the keys live in, for reading (undefined: not set yet). */
  read(cfg: LunboxConfig): Obj | undefined;
  /** The config object in a draft, created if needed, for writing. */
  write(draft: LunboxConfig): Obj;
  /** After a write: drop an emptied object, check combinations. */
  finish?(draft: LunboxConfig): void;
}

const k = (key: string, type: ValueType, help: string, extra: Partial<KeySpec> = {}): KeySpec => ({ key, field: key, type, help, ...extra });

const BACKSTORE_KEYS: readonly KeySpec[] = [
  k('path', 'string', 'image file or block device (changing it reopens the backstore: a disk swap; a CD-ROM changes its disc)'),
  k('size', 'size', "bytes or a size like '64M' (ram; file when it is created)"),
  k('readOnly', 'bool', 'refuse writes (DATA PROTECT)'),
  k('blockSize', 'int', 'logical block size the initiators see', { values: ['512', '1024', '2048', '4096'] }),
  k('writeCache', 'bool', 'SBC WCE: writes may sit in the page cache until SYNCHRONIZE CACHE'),
  k('thinProvisioning', 'bool', 'advertise UNMAP (ram always; file by punching holes)'),
  k('removable', 'bool', 'removable medium (RMB)'),
  k('vendor', 'string', 'INQUIRY T10 vendor (8 characters)'),
  k('product', 'string', 'INQUIRY product (16 characters)'),
  k('revision', 'string', 'INQUIRY revision (4 characters)'),
  k('serial', 'string', 'unit serial number (VPD 80h)'),
  k('cdrom', 'bool', 'a CD-ROM drive (MMC) with path, an .iso, as its disc (file only; read-only, 2048-byte blocks)'),
  k('type', 'string', 'ram, file or block', { readOnly: true }),
];

const PARAM_KEYS: readonly KeySpec[] = [
  k('MaxRecvDataSegmentLength', 'int', 'bytes per data PDU the target receives', { field: 'maxRecvDataSegmentLength' }),
  k('MaxBurstLength', 'int', 'bytes per solicited burst', { field: 'maxBurstLength' }),
  k('FirstBurstLength', 'int', 'bytes of unsolicited data', { field: 'firstBurstLength' }),
  k('ImmediateData', 'bool', 'data may ride with the command', { field: 'immediateData' }),
  k('InitialR2T', 'bool', 'no unsolicited data PDUs', { field: 'initialR2T' }),
  k('MaxOutstandingR2T', 'int', 'R2Ts in flight per task', { field: 'maxOutstandingR2T' }),
  k('HeaderDigest', 'digests', 'CRC32C,None in order of preference', { field: 'headerDigest', values: ['None', 'CRC32C', 'CRC32C,None', 'None,CRC32C'] }),
  k('DataDigest', 'digests', 'CRC32C,None in order of preference', { field: 'dataDigest', values: ['None', 'CRC32C', 'CRC32C,None', 'None,CRC32C'] }),
  k('NopInInterval', 'int', 'seconds between NOP-In pings (0: off)', { field: 'nopInInterval' }),
  k('NopInTimeout', 'int', 'seconds to wait for the NOP-Out answer', { field: 'nopInTimeout' }),
];

const AUTH_KEYS: readonly KeySpec[] = [
  k('userid', 'string', 'CHAP name the initiator gives'),
  k('password', 'secret', 'CHAP secret of the initiator (12+ bytes)'),
  k('mutual_userid', 'string', 'mutual CHAP: the name the target gives', { field: 'mutualUserid' }),
  k('mutual_password', 'secret', 'mutual CHAP: the secret of the target', { field: 'mutualPassword' }),
];

const GADGET_KEYS: readonly KeySpec[] = [
  k('vendorId', 'u16', 'USB vendor id [0x1d6b]'),
  k('productId', 'u16', 'USB product id [0x0104]'),
  k('manufacturer', 'string', 'manufacturer string [lunbox]'),
  k('product', 'string', 'product string [lunbox storage]'),
  k('serial', 'string', 'serial number string [from the board]'),
  k('udc', 'string', "USB device controller in /sys/class/udc ['auto': the board's]"),
  k('acm', 'bool', 'an ACM serial console beside the disk'),
  k('maxPower', 'int', 'mA drawn from the host [250]'),
];

function nodeTarget(cfg: LunboxConfig, n: { iqn: string; tpgt: number }) {
  const t = findTarget(cfg, n.iqn, n.tpgt);
  if (!t) throw new ShellError(`no target ${n.iqn} tpg ${n.tpgt}`);
  return t;
}

function authGroup(name: string, holder: (cfg: LunboxConfig) => object | undefined, field = 'auth'): Group {
  const h = (cfg: LunboxConfig): Obj | undefined => holder(cfg) as Obj | undefined;
  return {
    name,
    keys: AUTH_KEYS,
    read: (cfg) => h(cfg)?.[field] as Obj | undefined,
    write: (d) => {
      const o = h(d);
      if (!o) throw new ShellError(`nothing to set ${name} on`);
      o[field] ??= {};
      return o[field] as Obj;
    },
    finish: (d) => {
      const o = h(d);
      const a = o?.[field] as Obj | undefined;
      if (!o || !a) return;
      if (Object.keys(a).length === 0) return void delete o[field];
      if ((a['userid'] === undefined) !== (a['password'] === undefined)) {
        throw new ShellError(`CHAP needs userid and password together: set ${name} userid=NAME password=SECRET (or unset both: set ${name} userid= password=)`);
      }
    },
  };
}

function aclOf(cfg: LunboxConfig, n: { iqn: string; tpgt: number; initiator: string }): AclConfig | undefined {
  return findTarget(cfg, n.iqn, n.tpgt)?.acls?.find((a) => sameIqn(a.initiator, n.initiator));
}

/** The groups of a node (empty: nothing to set there). */
export function groupsOf(n: Node): Group[] {
  switch (n.kind) {
    case 'backstore':
      return [
        {
          name: 'attribute',
          keys: BACKSTORE_KEYS,
          read: (cfg) => cfg.backstores.find((b) => b.name === n.name) as Obj | undefined,
          write: (d) => {
            const b = d.backstores.find((x) => x.name === n.name);
            if (!b) throw new ShellError(`no backstore ${n.name}`);
            return b as unknown as Obj;
          },
        },
      ];
    case 'iscsi':
      return [
        authGroup('discovery_auth', (cfg) => cfg.iscsi, 'discoveryAuth'),
      ];
    case 'tpg':
      return [
        {
          name: 'attribute',
          keys: [k('demoMode', 'bool', 'any initiator may log in and sees every LUN [true when there are no ACLs]'), k('alias', 'string', 'TargetAlias sent at login')],
          read: (cfg) => findTarget(cfg, n.iqn, n.tpgt) as unknown as Obj | undefined,
          write: (d) => nodeTarget(d, n) as unknown as Obj,
        },
        {
          name: 'parameter',
          keys: PARAM_KEYS,
          read: (cfg) => findTarget(cfg, n.iqn, n.tpgt)?.params as Obj | undefined,
          write: (d) => {
            const t = nodeTarget(d, n);
            t.params ??= {} as IscsiParams;
            return t.params as Obj;
          },
          finish: (d) => {
            const t = findTarget(d, n.iqn, n.tpgt);
            if (t?.params && Object.keys(t.params).length === 0) delete t.params;
          },
        },
        authGroup('auth', (cfg) => findTarget(cfg, n.iqn, n.tpgt)),
      ];
    case 'lun':
      return [
        {
          name: 'attribute',
          keys: [k('readOnly', 'bool', 'this LUN refuses writes'), k('backstore', 'string', 'the backstore exported', { readOnly: true })],
          read: (cfg) => findTarget(cfg, n.iqn, n.tpgt)?.luns.find((l) => l.lun === n.lun) as Obj | undefined,
          write: (d) => {
            const l: TpgLun | undefined = nodeTarget(d, n).luns.find((x) => x.lun === n.lun);
            if (!l) throw new ShellError(`no LUN ${n.lun}`);
            return l as unknown as Obj;
          },
        },
      ];
    case 'acl':
      return [authGroup('auth', (cfg) => aclOf(cfg, n))];
    case 'mapped':
      return [
        {
          name: 'attribute',
          keys: [k('readOnly', 'bool', 'write-protect this mapped LUN'), k('targetLun', 'int', 'the target LUN it maps to')],
          read: (cfg) => {
            const a = aclOf(cfg, n);
            return (a?.luns?.find((m) => m.lun === n.lun) ?? (a ? { lun: n.lun } : undefined)) as Obj | undefined;
          },
          write: (d) => {
            const t = nodeTarget(d, n);
            const a = aclOf(d, n);
            if (!a) throw new ShellError(`no ACL ${n.initiator}`);
            a.luns ??= t.luns.map((l): MappedLun => ({ lun: l.lun }));
            const m = a.luns.find((x) => x.lun === n.lun);
            if (!m) throw new ShellError(`no mapped LUN ${n.lun}`);
            return m as unknown as Obj;
          },
        },
      ];
    case 'usb-gadget':
      return [
        {
          name: 'attribute',
          keys: GADGET_KEYS,
          read: (cfg) => usbOf(cfg).gadget,
          write: (d) => {
            const u = (d.usb ??= { luns: [] }) as UsbSection;
            return (u.gadget ??= {});
          },
        },
      ];
    case 'usb-lun':
      return [
        {
          name: 'attribute',
          keys: [k('readOnly', 'bool', 'refuse writes'), k('backstore', 'string', 'the backstore exported', { readOnly: true })],
          read: (cfg) => usbOf(cfg).luns?.find((l) => l.lun === n.lun) as Obj | undefined,
          write: (d) => {
            const l: UsbLun | undefined = usbOf(d).luns?.find((x) => x.lun === n.lun);
            if (!l) throw new ShellError(`no USB LUN ${n.lun}`);
            return l as unknown as Obj;
          },
        },
      ];
    default:
      return [];
  }
}

const TRUE = ['true', 'yes', 'on', '1'];
const FALSE = ['false', 'no', 'off', '0'];

/** Parse a typed value; '' means unset. */
export function parseValue(spec: KeySpec, text: string): unknown {
  if (text === '') return undefined;
  switch (spec.type) {
    case 'bool': {
      const t = text.toLowerCase();
      if (TRUE.includes(t)) return true;
      if (FALSE.includes(t)) return false;
      throw new ShellError(`${spec.key}=${text}: expected true or false`);
    }
    case 'int': {
      if (!/^\d+$/.test(text)) throw new ShellError(`${spec.key}=${text}: expected a whole number`);
      return Number(text);
    }
    case 'u16': {
      const n = /^0x[0-9a-f]{1,4}$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(n >= 0 && n <= 0xffff)) throw new ShellError(`${spec.key}=${text}: expected 0x0000..0xffff`);
      return n;
    }
    case 'size':
      return /^\d+$/.test(text) ? Number(text) : text;
    case 'digests':
      return text.split(',').map((d) => {
        const v = d.trim().toLowerCase();
        if (v === 'crc32c') return 'CRC32C';
        if (v === 'none') return 'None';
        throw new ShellError(`${spec.key}=${text}: expected CRC32C and/or None, comma-separated`);
      });
    default:
      return text;
  }
}

/** Display a value; secrets are never shown. */
export function showValue(spec: KeySpec, v: unknown): string {
  if (v === undefined) return '';
  if (spec.type === 'secret') return REDACTED;
  if (spec.type === 'u16' && typeof v === 'number') return `0x${v.toString(16).padStart(4, '0')}`;
  if (Array.isArray(v)) return v.join(',');
  return String(v);
}

export function findKey(g: Group, key: string): KeySpec | undefined {
  return g.keys.find((s) => s.key === key) ?? g.keys.find((s) => s.key.toLowerCase() === key.toLowerCase() || s.field.toLowerCase() === key.toLowerCase());
}
