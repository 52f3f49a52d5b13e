// A libcomposite gadget in configfs: one FunctionFS function (the BOT daemon) — or, for the
// kernel engine, the kernel's mass_storage function — an ACM serial console and an NCM network
// function, behind a small filesystem interface so it can be tested against a fake tree.
//
// Layout (Documentation/usb/gadget_configfs.rst, ABI/testing/configfs-usb-gadget):
//   /sys/kernel/config/usb_gadget/<name>/
//     idVendor idProduct bcdDevice bcdUSB ... UDC        attributes, created by the kernel
//     strings/0x409/{manufacturer,product,serialnumber}  lang dir: mkdir; files: kernel
//     configs/c.1/{MaxPower,bmAttributes}                mkdir c.1; files: kernel
//     configs/c.1/strings/0x409/configuration
//     configs/c.1/<function> -> functions/<function>     symlink binds a function into c.1
//     functions/ffs.<instance>  functions/acm.usb0       mkdir loads usb_f_<type>
//     functions/ncm.usb0/{dev_addr,host_addr,ifname}     MACs: written before the link (EBUSY after)
//     functions/ncm.usb0/os_desc/interface.ncm/compatible_id
//     os_desc/{use,b_vendor_code,qw_sign}, os_desc/c.1 -> configs/c.1
//   /sys/class/udc/<udc>                                 write a name to UDC to bind, "\n" to unbind
// Order for FunctionFS: create → mount -t functionfs <instance> → write descriptors to ep0 →
// bind (binding earlier fails with ENODEV). Teardown is the reverse: unbind, close the ep files
// and umount, then destroy (unlink, rmdir config strings, configs, functions, strings, gadget).
//
// What hosts need from a composite of mass storage + ACM + NCM:
// - ACM and NCM have two interfaces each, grouped by an Interface Association Descriptor (the
//   kernel functions emit it). Windows groups interfaces by IAD only when the device descriptor
//   says EF/02/01 (Miscellaneous / Common / IAD; Microsoft's "USB Interface Association
//   Descriptor" page): so any gadget with ACM or NCM gets those class codes.
// - Windows 10 (2004+) and 11 load their NCM driver (UsbNcm.sys) for a composite function only
//   through a Microsoft OS 1.0 descriptor with compatible ID "WINNCM" (kernel commit "usb:
//   gadget: f_ncm: Add OS descriptor support"): os_desc is turned on with vendor code 0xcd and
//   signature MSFT100. Windows remembers per VID:PID:bcdDevice whether a device has OS
//   descriptors, so a gadget with them defaults to bcdDevice 0x0101, not 0x0100.
// - macOS and Linux bind their CDC NCM drivers by class (02/0d); they need nothing else.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { macProblem, parseMac } from '../../net/ipv4';

/** The filesystem operations the gadget needs; configfs gives them its own meaning. */
export interface ConfigFs {
  /** configfs: creates an item, the kernel fills in its attributes and default groups. */
  mkdir(p: string): Promise<void>;
  /** configfs: removes an item with its attributes (never recursive over user items). */
  rmdir(p: string): Promise<void>;
  writeAttr(p: string, value: string): Promise<void>;
  readAttr(p: string): Promise<string>;
  symlink(target: string, p: string): Promise<void>;
  unlink(p: string): Promise<void>;
  /** Entry names, or [] if the directory does not exist. */
  readdir(p: string): Promise<string[]>;
  /** What is at `p`, without following symlinks. */
  kind(p: string): Promise<'dir' | 'file' | 'link' | undefined>;
}

/** ConfigFs over node:fs — the real one on a board (configfs semantics come from the kernel). */
export function nodeConfigFs(): ConfigFs {
  return {
    mkdir: (p) => fsp.mkdir(p),
    rmdir: (p) => fsp.rmdir(p),
    writeAttr: (p, v) => fsp.writeFile(p, v),
    readAttr: (p) => fsp.readFile(p, 'utf8'),
    symlink: (t, p) => fsp.symlink(t, p),
    unlink: (p) => fsp.unlink(p),
    async readdir(p) {
      try {
        return await fsp.readdir(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
    },
    async kind(p) {
      try {
        const st = await fsp.lstat(p);
        return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
  };
}

/** A gadget setup error, with a stable code and the errno behind it if any. */
export class GadgetError extends Error {
  readonly code: string;
  readonly errno: string | undefined;
  constructor(code: string, message: string, errno?: string) {
    super(message);
    this.name = 'GadgetError';
    this.code = code;
    this.errno = errno;
  }
}

/**
 * Defaults: VID:PID 1d6b:0104 is the Linux Foundation's "Multifunction Composite Gadget"
 * (as PiKVM uses): fine for development, but a product should use its own IDs.
 */
export const GadgetDefaults = {
  idVendor: 0x1d6b,
  idProduct: 0x0104,
  bcdDevice: 0x0100,
  bcdUSB: 0x0200,
  manufacturer: 'lunbox',
  product: 'lunbox storage',
  maxPower: 250,
  bmAttributes: 0x80, // USB 2.0 §9.6.3: bit 7 reserved, set to one (bus-powered)
  configuration: 'lunbox',
  ffsInstance: 'lunbox',
  acmInstance: 'usb0',
  ncmInstance: 'usb0',
  /** bcdDevice of a gadget with Microsoft OS descriptors (see the top of this file). */
  bcdDeviceOsDesc: 0x0101,
  /** Microsoft OS 1.0: the vendor request code and the signature of string 0xEE. */
  osDescVendorCode: 0xcd,
  osDescSignature: 'MSFT100',
  ncmCompatibleId: 'WINNCM',
} as const;

/** USB-IF class codes for a device with Interface Association Descriptors (IAD ECN). */
export const IadDeviceClass = { bDeviceClass: 0xef, bDeviceSubClass: 0x02, bDeviceProtocol: 0x01 } as const;

/** An NCM network function: the MAC addresses of both ends. */
export interface NcmFunctionSpec {
  /** functions/ncm.<instance> [usb0]. */
  readonly instance?: string;
  /** The board's end (configfs dev_addr), aa:bb:cc:dd:ee:ff. */
  readonly devAddr: string;
  /** The computer's end (configfs host_addr). */
  readonly hostAddr: string;
}

/** USB LANGID for English (United States), the only language written. */
export const LANG = '0x409';
export const CONFIG = 'c.1';

export interface GadgetSpec {
  /** Directory name under usb_gadget/. */
  readonly name: string;
  readonly idVendor?: number;
  readonly idProduct?: number;
  readonly bcdDevice?: number;
  readonly bcdUSB?: number;
  readonly manufacturer?: string;
  readonly product?: string;
  readonly serialnumber?: string;
  /** mA drawn from the bus (configfs MaxPower). */
  readonly maxPower?: number;
  readonly bmAttributes?: number;
  readonly configuration?: string;
  /** functions/ffs.<instance>; also the FunctionFS mount "device" name. */
  readonly ffsInstance?: string;
  /** functions/acm.<instance> for the serial console; false for none. */
  readonly acmInstance?: string | false;
  /** An NCM network function (with Microsoft OS descriptors for Windows). */
  readonly ncm?: NcmFunctionSpec;
  /** UDC to bind to; default the first in /sys/class/udc. */
  readonly udc?: string;
  /**
   * The kernel engine: the kernel's own mass_storage function (f_mass_storage) serves these
   * LUNs instead of lunbox's FunctionFS function (no ffs.<instance> then).
   */
  readonly massStorage?: { readonly instance: string; readonly luns: readonly KernelMscLun[] };
}

/** One LUN of the kernel's mass_storage function (configfs functions/mass_storage.<i>/lun.<n>/). */
export interface KernelMscLun {
  /** 0..15; lun.0 always exists, others are created. */
  readonly lun: number;
  /** Backing file or block device; '' for an empty removable drive. */
  readonly file: string;
  readonly readOnly: boolean;
  readonly removable: boolean;
  readonly cdrom: boolean;
  /** Ignore the FUA bit (write-back); default false (FUA honoured). */
  readonly nofua?: boolean;
  /** INQUIRY vendor (8) + product (16) + revision (4), padded by the kernel. */
  readonly inquiry?: string;
}

export interface GadgetRoots {
  readonly fs?: ConfigFs;
  /** configfs mount point. */
  readonly configfs?: string;
  /** The UDC class directory. */
  readonly udcClass?: string;
}

const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const hex4 = (v: number): string => `0x${v.toString(16).padStart(4, '0')}`;
const hex2 = (v: number): string => `0x${v.toString(16).padStart(2, '0')}`;

function checkSpec(s: GadgetSpec): void {
  const bad = (field: string, why: string): never => {
    throw new GadgetError('BAD_SPEC', `gadget ${field}: ${why}`);
  };
  for (const [f, v] of [['name', s.name], ['ffsInstance', s.ffsInstance], ['acmInstance', s.acmInstance], ['ncm.instance', s.ncm?.instance], ['udc', s.udc]] as const) {
    if (typeof v === 'string' && (!NAME_RE.test(v) || v === '.' || v === '..')) bad(f, `${JSON.stringify(v)} must be a plain name ([A-Za-z0-9_.-])`);
  }
  for (const f of ['idVendor', 'idProduct', 'bcdDevice', 'bcdUSB'] as const) {
    const v = s[f];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffff)) bad(f, `must be 0x0000..0xffff, got ${v}`);
  }
  // USB 2.0 §9.6.3 bMaxPower is in 2 mA units up to 250 (500 mA); configfs takes mA.
  if (s.maxPower !== undefined && (!Number.isInteger(s.maxPower) || s.maxPower < 0 || s.maxPower > 500)) {
    bad('maxPower', `must be 0..500 mA, got ${s.maxPower}`);
  }
  if (s.bmAttributes !== undefined && (!Number.isInteger(s.bmAttributes) || (s.bmAttributes & 0x80) === 0 || s.bmAttributes > 0xff)) {
    bad('bmAttributes', `must have bit 7 set (0x80..0xff), got ${s.bmAttributes}`);
  }
  for (const f of ['manufacturer', 'product', 'serialnumber', 'configuration'] as const) {
    const v = s[f];
    // USB string descriptors hold at most 126 UTF-16 units; configfs refuses newlines poorly.
    if (v !== undefined && (v.length > 126 || /[\n\0]/.test(v))) bad(f, 'must be at most 126 characters without newline or NUL');
  }
  if (s.ncm) {
    const dev = parseMac(s.ncm.devAddr);
    const host = parseMac(s.ncm.hostAddr);
    for (const [f, v, b] of [['ncm.devAddr', s.ncm.devAddr, dev], ['ncm.hostAddr', s.ncm.hostAddr, host]] as const) {
      if (!b) bad(f, `${JSON.stringify(v)} is not a MAC address like 02:12:34:56:78:9a`);
      const why = macProblem(b as Buffer);
      if (why) bad(f, `${v} ${why}`);
    }
    if (dev && host && dev.equals(host)) bad('ncm.hostAddr', 'must differ from ncm.devAddr (the two ends of one link)');
  }
}

/** A configfs gadget with a FunctionFS function, an optional ACM console and an optional NCM link. */
export class UsbGadget {
  readonly spec: GadgetSpec;
  readonly dir: string;
  readonly udcClass: string;
  private readonly fs: ConfigFs;
  private readonly gadgetsDir: string;

  constructor(spec: GadgetSpec, roots: GadgetRoots = {}) {
    checkSpec(spec);
    this.spec = spec;
    this.fs = roots.fs ?? nodeConfigFs();
    this.gadgetsDir = path.join(roots.configfs ?? '/sys/kernel/config', 'usb_gadget');
    this.dir = path.join(this.gadgetsDir, spec.name);
    this.udcClass = roots.udcClass ?? '/sys/class/udc';
  }

  /** functions/<type>.<instance> names this gadget links into its configuration. */
  get functions(): string[] {
    const ms = this.spec.massStorage;
    const f = [ms ? `mass_storage.${ms.instance}` : `ffs.${this.spec.ffsInstance ?? GadgetDefaults.ffsInstance}`];
    const acm = this.spec.acmInstance ?? GadgetDefaults.acmInstance;
    if (acm !== false) f.push(`acm.${acm}`);
    // Last, so the interface numbers of the disk and the console stay what they were without it.
    if (this.spec.ncm) f.push(this.ncmFunction as string);
    return f;
  }

  /** functions/ncm.<instance>, when the gadget has NCM. */
  get ncmFunction(): string | undefined {
    return this.spec.ncm ? `ncm.${this.spec.ncm.instance ?? GadgetDefaults.ncmInstance}` : undefined;
  }

  /** Functions with an Interface Association Descriptor (two interfaces each). */
  private get hasIad(): boolean {
    return this.functions.some((f) => f.startsWith('acm.') || f.startsWith('ncm.'));
  }

  /** The FunctionFS instance name to mount (`mount -t functionfs <name> <dir>`). */
  get ffsName(): string {
    return this.spec.ffsInstance ?? GadgetDefaults.ffsInstance;
  }

  private p(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  private async op<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof GadgetError) throw e;
      const errno = (e as NodeJS.ErrnoException).code;
      throw new GadgetError('CONFIGFS', `${what}: ${(e as Error).message}`, errno);
    }
  }

  /**
   * Build the gadget (unbound). Idempotent: a gadget of the same name left by a crashed run is
   * torn down first, whatever functions it had.
   */
  async create(): Promise<void> {
    const s = this.spec;
    const fs = this.fs;
    if ((await fs.kind(this.gadgetsDir)) !== 'dir') {
      throw new GadgetError('NO_CONFIGFS', `${this.gadgetsDir} is missing: mount configfs and load libcomposite`);
    }
    if (await fs.kind(this.dir)) await this.destroy();
    await this.op(`mkdir ${this.dir}`, () => fs.mkdir(this.dir));
    const attr = (rel: string, v: string): Promise<void> => this.op(`write ${rel}`, () => fs.writeAttr(this.p(rel), v));
    await attr('idVendor', hex4(s.idVendor ?? GadgetDefaults.idVendor));
    await attr('idProduct', hex4(s.idProduct ?? GadgetDefaults.idProduct));
    await attr('bcdDevice', hex4(s.bcdDevice ?? (s.ncm ? GadgetDefaults.bcdDeviceOsDesc : GadgetDefaults.bcdDevice)));
    await attr('bcdUSB', hex4(s.bcdUSB ?? GadgetDefaults.bcdUSB));
    if (this.hasIad) {
      await attr('bDeviceClass', hex2(IadDeviceClass.bDeviceClass));
      await attr('bDeviceSubClass', hex2(IadDeviceClass.bDeviceSubClass));
      await attr('bDeviceProtocol', hex2(IadDeviceClass.bDeviceProtocol));
    }
    await this.op('mkdir strings', () => fs.mkdir(this.p('strings', LANG)));
    await attr(`strings/${LANG}/manufacturer`, s.manufacturer ?? GadgetDefaults.manufacturer);
    await attr(`strings/${LANG}/product`, s.product ?? GadgetDefaults.product);
    if (s.serialnumber !== undefined) await attr(`strings/${LANG}/serialnumber`, s.serialnumber);
    await this.op('mkdir config', () => fs.mkdir(this.p('configs', CONFIG)));
    await attr(`configs/${CONFIG}/MaxPower`, String(s.maxPower ?? GadgetDefaults.maxPower));
    await attr(`configs/${CONFIG}/bmAttributes`, hex2(s.bmAttributes ?? GadgetDefaults.bmAttributes));
    await this.op('mkdir config strings', () => fs.mkdir(this.p('configs', CONFIG, 'strings', LANG)));
    await attr(`configs/${CONFIG}/strings/${LANG}/configuration`, s.configuration ?? GadgetDefaults.configuration);
    for (const f of this.functions) {
      await this.op(`mkdir functions/${f}`, () => fs.mkdir(this.p('functions', f)));
      if (f.startsWith('mass_storage.') && s.massStorage) await this.massStorageLuns(f, s.massStorage.luns);
      if (f === this.ncmFunction && s.ncm) {
        // f_ncm reads host_addr into the iMACAddress string when the function is linked, and
        // refuses MAC writes (EBUSY) from then on.
        await attr(`functions/${f}/dev_addr`, s.ncm.devAddr.toLowerCase());
        await attr(`functions/${f}/host_addr`, s.ncm.hostAddr.toLowerCase());
        await attr(`functions/${f}/os_desc/interface.ncm/compatible_id`, GadgetDefaults.ncmCompatibleId);
      }
      await this.op(`link ${f}`, () => fs.symlink(this.p('functions', f), this.p('configs', CONFIG, f)));
    }
    if (s.ncm) {
      await attr('os_desc/use', '1');
      await attr('os_desc/b_vendor_code', hex2(GadgetDefaults.osDescVendorCode));
      await attr('os_desc/qw_sign', GadgetDefaults.osDescSignature);
      await this.op('link os_desc', () => fs.symlink(this.p('configs', CONFIG), this.p('os_desc', CONFIG)));
    }
  }

  /** The network interface of the NCM function (`ifname`: usb0, ...), known once bound. */
  async ncmIfname(): Promise<string | undefined> {
    const f = this.ncmFunction;
    if (!f) return undefined;
    const v = (await this.fs.readAttr(this.p('functions', f, 'ifname')).catch(() => '')).trim();
    // Unbound, u_ether shows the name pattern ("usb%d") or "(unnamed net_device)".
    return /^[A-Za-z0-9_.-]+$/.test(v) && !v.includes('%') ? v : undefined;
  }

  /**
   * f_mass_storage LUN attributes. `ro` and `cdrom` cannot change while a file is open (EBUSY),
   * so they go first and `file` last. `stall` 1: halt bulk endpoints on errors, as BOT asks.
   */
  private async massStorageLuns(f: string, luns: readonly KernelMscLun[]): Promise<void> {
    const attr = (rel: string, v: string): Promise<void> => this.op(`write ${f}/${rel}`, () => this.fs.writeAttr(this.p('functions', f, rel), v));
    await attr('stall', '1');
    for (const l of [...luns].sort((a, b) => a.lun - b.lun)) {
      const dir = `lun.${l.lun}`;
      if (l.lun !== 0) await this.op(`mkdir ${f}/${dir}`, () => this.fs.mkdir(this.p('functions', f, dir)));
      await attr(`${dir}/cdrom`, l.cdrom ? '1' : '0');
      await attr(`${dir}/ro`, l.readOnly || l.cdrom ? '1' : '0');
      await attr(`${dir}/removable`, l.removable || l.cdrom ? '1' : '0');
      await attr(`${dir}/nofua`, l.nofua ? '1' : '0');
      if (l.inquiry !== undefined) await attr(`${dir}/inquiry_string`, l.inquiry);
      if (l.file !== '') await attr(`${dir}/file`, l.file);
    }
  }

  /**
   * Change the medium of a removable kernel mass_storage LUN: a path inserts, '' ejects.
   * `force` ejects even while the host prevents removal (forced_eject, Linux 6.1+).
   */
  async setKernelMedium(lun: number, file: string, force = false): Promise<void> {
    const ms = this.spec.massStorage;
    if (!ms) throw new GadgetError('NO_MASS_STORAGE', 'this gadget has no kernel mass_storage function');
    const dir = this.p('functions', `mass_storage.${ms.instance}`, `lun.${lun}`);
    try {
      if (force && file === '') await this.fs.writeAttr(path.join(dir, 'forced_eject'), '1');
      else await this.fs.writeAttr(path.join(dir, 'file'), file);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).code;
      if (errno === 'EBUSY') {
        throw new GadgetError('MEDIUM_LOCKED', `LUN ${lun}: the host prevents medium removal (unmount it on the host, or force=true)`, errno);
      }
      throw new GadgetError('CONFIGFS', `LUN ${lun}: ${file === '' ? 'eject' : `insert ${file}`}: ${(e as Error).message}`, errno);
    }
  }

  /** UDC names present, sorted. */
  async listUdcs(): Promise<string[]> {
    return (await this.fs.readdir(this.udcClass)).sort();
  }

  /** Gadgets (other than this one) bound to `udc`. */
  async gadgetsOn(udc: string): Promise<string[]> {
    const out: string[] = [];
    for (const g of await this.fs.readdir(this.gadgetsDir)) {
      if (g === this.spec.name) continue;
      const bound = await this.fs.readAttr(path.join(this.gadgetsDir, g, 'UDC')).catch(() => '');
      if (bound.trim() === udc) out.push(g);
    }
    return out;
  }

  /** Pick the UDC: the named one (spec or argument), else the first one. */
  async chooseUdc(name?: string): Promise<string> {
    const want = name ?? this.spec.udc;
    const udcs = await this.listUdcs();
    if (want !== undefined) {
      if (!udcs.includes(want)) {
        throw new GadgetError('UDC_NOT_FOUND', `UDC ${want} not in ${this.udcClass} (have: ${udcs.join(', ') || 'none'})`);
      }
      return want;
    }
    const first = udcs[0];
    if (first === undefined) {
      throw new GadgetError('NO_UDC', `no UDC in ${this.udcClass}: load the controller driver (dwc2, musb) in peripheral mode`);
    }
    return first;
  }

  /** Bind to a UDC (after the FunctionFS descriptors are written). Returns the UDC name. */
  async bind(name?: string): Promise<string> {
    const udc = await this.chooseUdc(name);
    const others = await this.gadgetsOn(udc);
    if (others.length > 0) {
      throw new GadgetError('UDC_BUSY', `UDC ${udc} is used by gadget ${others.join(', ')}: unbind it first`, 'EBUSY');
    }
    try {
      await this.fs.writeAttr(this.p('UDC'), udc);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).code;
      const errnoNum = (e as NodeJS.ErrnoException).errno;
      if (errno === 'ENODEV') {
        throw new GadgetError('FUNCTION_NOT_READY', `binding ${udc} failed: a FunctionFS function has no descriptors yet`, errno);
      }
      if (errno === 'EBUSY') throw new GadgetError('UDC_BUSY', `UDC ${udc} is busy`, errno);
      // ENOTSUPP (524, no name in Node): the UDC has too few endpoints for these functions.
      if (errnoNum === -524 || errnoNum === 524) {
        throw new GadgetError('UDC_ENDPOINTS', `UDC ${udc} has too few endpoints for ${this.functions.join(' + ')}`, errno);
      }
      throw new GadgetError('CONFIGFS', `write UDC ${udc}: ${(e as Error).message}`, errno);
    }
    return udc;
  }

  /** The UDC this gadget is bound to, or undefined. */
  async boundUdc(): Promise<string | undefined> {
    const v = (await this.fs.readAttr(this.p('UDC')).catch(() => '')).trim();
    return v === '' ? undefined : v;
  }

  /** `/sys/class/udc/<udc>/state` ("configured" once the host has set a configuration). */
  async udcState(udc: string): Promise<string | undefined> {
    return (await this.fs.readAttr(path.join(this.udcClass, udc, 'state')).catch(() => undefined))?.trim();
  }

  /** Unbind if bound (writing a newline, as `echo "" > UDC` does). */
  async unbind(): Promise<void> {
    if ((await this.boundUdc()) !== undefined) await this.op('unbind', () => this.fs.writeAttr(this.p('UDC'), '\n'));
  }

  /** Tear the gadget down in reverse order; whatever a previous run created goes too. No-op if absent. */
  async destroy(): Promise<void> {
    const fs = this.fs;
    if ((await fs.kind(this.dir)) !== 'dir') return;
    await this.unbind();
    const configs = await fs.readdir(this.p('configs'));
    for (const c of configs) {
      for (const e of await fs.readdir(this.p('configs', c))) {
        if ((await fs.kind(this.p('configs', c, e))) === 'link') await this.op(`unlink ${c}/${e}`, () => fs.unlink(this.p('configs', c, e)));
      }
    }
    for (const e of await fs.readdir(this.p('os_desc'))) {
      if ((await fs.kind(this.p('os_desc', e))) === 'link') await this.op(`unlink os_desc/${e}`, () => fs.unlink(this.p('os_desc', e)));
    }
    for (const c of configs) {
      for (const l of await fs.readdir(this.p('configs', c, 'strings'))) {
        await this.op(`rmdir ${c} strings`, () => fs.rmdir(this.p('configs', c, 'strings', l)));
      }
      await this.op(`rmdir ${c}`, () => fs.rmdir(this.p('configs', c)));
    }
    for (const f of await fs.readdir(this.p('functions'))) {
      if (f.startsWith('mass_storage.')) {
        // lun.0 is the function's own (default group); the others were made by mkdir.
        for (const l of await fs.readdir(this.p('functions', f))) {
          if (/^lun\.([1-9]|1[0-5])$/.test(l)) await this.op(`rmdir ${f}/${l}`, () => fs.rmdir(this.p('functions', f, l)));
        }
      }
      await this.op(`rmdir functions/${f}`, () => fs.rmdir(this.p('functions', f)));
    }
    for (const l of await fs.readdir(this.p('strings'))) {
      await this.op('rmdir strings', () => fs.rmdir(this.p('strings', l)));
    }
    await this.op(`rmdir ${this.dir}`, () => fs.rmdir(this.dir));
  }
}
