// A fake configfs (usb_gadget) and /sys/class/udc over a temporary directory, for gadget.ts.
//
// Modelled after the kernel (drivers/usb/gadget/configfs.c, fs/configfs):
// - mkdir only where configfs has a group that makes items: a gadget under usb_gadget/, a
//   language under strings/, a config `<name>.<n>` under configs/, a function `<type>.<inst>`
//   under functions/ (unknown types fail like a missing usb_f_<type> module: ENOENT). Anywhere
//   else EPERM. The new item comes with its attribute files and default groups (strings/,
//   configs/, functions/, os_desc/, webusb/), which rmdir cannot remove (EPERM).
// - rmdir removes an item with its attributes, but not while it holds user-made items or
//   symlinks (ENOTEMPTY). Attribute files cannot be created or unlinked.
// - symlinks only from a config item to a function item (or os_desc to a config).
// - UDC: a name binds (ENODEV if no such UDC or a FunctionFS function is not ready, EBUSY if
//   the UDC or this gadget is taken); "\n" unbinds.
// - ncm/ecm (u_ether): dev_addr/host_addr refuse writes (EBUSY) once the function is linked into
//   a config (f_ncm's refcnt); `ifname` reads "(unnamed net_device)" until the first bind, then
//   usb0, usb1, ... (the net device stays registered until the function is removed). ncm has the
//   default group os_desc/interface.ncm; the gadget's os_desc has use, b_vendor_code, qw_sign.
// Not modelled, or believed but unverified: rmdir of a function still linked from a config
// is refused here with EBUSY (the kernel's exact answer is unverified); unlinking from a bound
// config (the kernel unbinds); attribute value validation (e.g. idVendor parsing); os_desc
// and webusb contents; the `ready` attribute only exists on newer kernels.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ConfigFs } from '../../../src/fabrics/usb/gadget';

const err = (code: string, p: string): Error => Object.assign(new Error(`${code}: ${p}`), { code });

const UNNAMED = '(unnamed net_device)';
const GADGET_ATTRS: Record<string, string> = {
  idVendor: '0x0000',
  idProduct: '0x0000',
  bcdDevice: '0x0000',
  bcdUSB: '0x0200',
  bDeviceClass: '0x00',
  bDeviceSubClass: '0x00',
  bDeviceProtocol: '0x00',
  bMaxPacketSize0: '0x40',
  max_speed: 'super-speed-plus',
  UDC: '',
};
const FUNCTION_ATTRS: Record<string, Record<string, string>> = {
  ffs: { ready: '0' },
  acm: { port_num: '0' },
  mass_storage: { stall: '1' },
  ecm: { ifname: UNNAMED, dev_addr: '', host_addr: '', qmult: '5' },
  ncm: { ifname: UNNAMED, dev_addr: '', host_addr: '', qmult: '5', max_segment_size: '1514' },
};
const OS_DESC_ATTRS: Record<string, string> = { use: '0', b_vendor_code: '0x00', qw_sign: '' };
const OS_DESC_INTERFACE_ATTRS: Record<string, string> = { compatible_id: '', sub_compatible_id: '' };

/** f_mass_storage LUN attributes (lun.0 is a default group of the function; lun.N by mkdir). */
const MSC_LUN_ATTRS: Record<string, string> = { file: '', ro: '0', removable: '1', cdrom: '0', nofua: '0', inquiry_string: '', forced_eject: '' };

export class FakeConfigFs implements ConfigFs {
  /** mass_storage LUN dirs whose host holds PREVENT MEDIUM REMOVAL (file writes fail EBUSY). */
  readonly prevented = new Set<string>();
  readonly configfs: string;
  readonly gadgets: string;
  readonly udcClass: string;
  readonly ops: string[] = [];
  private readonly items = new Set<string>();
  private readonly readyFfs = new Set<string>();
  /** Net devices registered by ncm/ecm functions (absolute function dir → name). */
  private readonly netdevs = new Map<string, string>();

  private constructor(readonly root: string) {
    this.configfs = path.join(root, 'sys/kernel/config');
    this.gadgets = path.join(this.configfs, 'usb_gadget');
    this.udcClass = path.join(root, 'sys/class/udc');
  }

  static async create(udcs: readonly string[] = ['dummy_udc.0']): Promise<FakeConfigFs> {
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-configfs-'));
    const f = new FakeConfigFs(root);
    await fsp.mkdir(f.gadgets, { recursive: true });
    await fsp.mkdir(f.udcClass, { recursive: true });
    for (const u of udcs) await f.addUdc(u);
    return f;
  }

  async addUdc(name: string): Promise<void> {
    await fsp.mkdir(path.join(this.udcClass, name));
    await fsp.writeFile(path.join(this.udcClass, name, 'state'), 'not attached\n');
  }

  /** The FunctionFS daemon wrote its descriptors (functions/ffs.<instance> may bind). */
  setFfsReady(instance: string): void {
    this.readyFfs.add(instance);
  }

  async dispose(): Promise<void> {
    await fsp.rm(this.root, { recursive: true, force: true });
  }

  private rel(p: string): string {
    return path.relative(this.gadgets, p);
  }

  /** Path parts below usb_gadget/, or undefined if outside it. */
  private parts(p: string): string[] | undefined {
    const r = this.rel(path.resolve(p));
    if (r.startsWith('..') || path.isAbsolute(r)) return undefined;
    return r === '' ? [] : r.split(path.sep);
  }

  private async fill(dir: string, files: Record<string, string>, groups: string[] = []): Promise<void> {
    for (const [f, v] of Object.entries(files)) await fsp.writeFile(path.join(dir, f), v === '' ? '' : `${v}\n`);
    for (const g of groups) await fsp.mkdir(path.join(dir, g));
  }

  async mkdir(p: string): Promise<void> {
    const parts = this.parts(p);
    const name = parts?.[parts.length - 1] ?? '';
    const under = parts?.slice(0, -1) ?? [];
    if (!parts || parts.length === 0) throw err('EPERM', p);
    if (await this.kind(p)) throw err('EEXIST', p);
    if ((await this.kind(path.dirname(p))) !== 'dir') throw err('ENOENT', p);
    const at = under.slice(1).join('/');
    if (under.length === 0) {
      await fsp.mkdir(p);
      await this.fill(p, GADGET_ATTRS, ['strings', 'configs', 'functions', 'os_desc', 'webusb']);
      await this.fill(path.join(p, 'os_desc'), OS_DESC_ATTRS);
    } else if (at === 'strings' || /^configs\/[^/]+\/strings$/.test(at)) {
      if (!/^0x[0-9a-fA-F]{1,4}$/.test(name)) throw err('EINVAL', p);
      await fsp.mkdir(p);
      await this.fill(p, at === 'strings' ? { manufacturer: '', product: '', serialnumber: '' } : { configuration: '' });
    } else if (at === 'configs') {
      if (!/^[^.]+\.\d+$/.test(name)) throw err('EINVAL', p);
      await fsp.mkdir(p);
      await this.fill(p, { MaxPower: '2', bmAttributes: '0x80' }, ['strings']);
    } else if (at === 'functions') {
      const m = /^([a-z_]+)\.(.+)$/.exec(name);
      if (!m) throw err('EINVAL', p);
      const attrs = FUNCTION_ATTRS[m[1] ?? ''];
      if (!attrs) throw err('ENOENT', p);
      await fsp.mkdir(p);
      await this.fill(p, attrs);
      if (m[1] === 'ncm') {
        await fsp.mkdir(path.join(p, 'os_desc/interface.ncm'), { recursive: true });
        await this.fill(path.join(p, 'os_desc/interface.ncm'), OS_DESC_INTERFACE_ATTRS);
      }
      if (m[1] === 'mass_storage') {
        await fsp.mkdir(path.join(p, 'lun.0'));
        await this.fill(path.join(p, 'lun.0'), MSC_LUN_ATTRS);
      }
    } else if (/^functions\/mass_storage\.[^/]+$/.test(at)) {
      if (!/^lun\.([1-9]|1[0-5])$/.test(name)) throw err('EINVAL', p);
      await fsp.mkdir(p);
      await this.fill(p, MSC_LUN_ATTRS);
    } else {
      throw err('EPERM', p);
    }
    this.items.add(path.resolve(p));
    this.ops.push(`mkdir ${this.rel(p)}`);
  }

  async rmdir(p: string): Promise<void> {
    const abs = path.resolve(p);
    if (!this.items.has(abs)) throw err((await this.kind(p)) ? 'EPERM' : 'ENOENT', p);
    for (const it of this.items) if (it !== abs && it.startsWith(abs + path.sep)) throw err('ENOTEMPTY', p);
    if (await this.hasLinks(abs)) throw err('ENOTEMPTY', p);
    if (await this.isLinkTarget(abs)) throw err('EBUSY', p);
    await fsp.rm(abs, { recursive: true });
    this.items.delete(abs);
    this.netdevs.delete(abs);
    this.ops.push(`rmdir ${this.rel(p)}`);
  }

  private async hasLinks(dir: string): Promise<boolean> {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      if (e.isSymbolicLink()) return true;
      if (e.isDirectory() && (await this.hasLinks(path.join(dir, e.name)))) return true;
    }
    return false;
  }

  private async isLinkTarget(abs: string): Promise<boolean> {
    const g = this.parts(abs)?.[0];
    if (g === undefined) return false;
    const configs = path.join(this.gadgets, g, 'configs');
    for (const c of await this.readdir(configs)) {
      for (const e of await fsp.readdir(path.join(configs, c), { withFileTypes: true })) {
        if (e.isSymbolicLink() && path.resolve(await fsp.readlink(path.join(configs, c, e.name))) === abs) return true;
      }
    }
    return false;
  }

  async writeAttr(p: string, value: string): Promise<void> {
    if ((await this.kind(p)) !== 'file') throw err('ENOENT', p);
    const parts = this.parts(p) ?? [];
    const name = parts[parts.length - 1];
    if (name === 'ready') throw err('EACCES', p);
    const lunDir = path.dirname(path.resolve(p));
    const mscLun = /^functions\/mass_storage\.[^/]+\/lun\.\d+$/.test(parts.slice(1, -1).join('/'));
    if ((name === 'dev_addr' || name === 'host_addr') && (await this.isLinkTarget(path.dirname(path.resolve(p))))) throw err('EBUSY', p);
    if (name === 'ifname') throw err('EACCES', p);
    if (name === 'UDC' && parts.length === 2) {
      await this.writeUdc(p, parts[0] as string, value.trim());
    } else if (mscLun && (name === 'ro' || name === 'cdrom') && (await fsp.readFile(path.join(lunDir, 'file'), 'utf8')).trim() !== '') {
      throw err('EBUSY', p); // f_mass_storage: not while a file is open
    } else if (mscLun && name === 'file' && this.prevented.has(lunDir)) {
      throw err('EBUSY', p); // the host prevents medium removal
    } else if (mscLun && name === 'forced_eject') {
      await fsp.writeFile(path.join(lunDir, 'file'), '');
      this.prevented.delete(lunDir);
    } else {
      await fsp.writeFile(p, value.endsWith('\n') ? value : `${value}\n`);
    }
    this.ops.push(`write ${this.rel(p)}=${value.trim()}`);
  }

  private async writeUdc(p: string, gadget: string, udc: string): Promise<void> {
    const current = (await fsp.readFile(p, 'utf8')).trim();
    if (udc === '') {
      if (current === '') throw err('ENODEV', p); // configfs.c: unbinding an unbound gadget
      await fsp.writeFile(p, '');
      return;
    }
    if (current !== '') throw err('EBUSY', p);
    if ((await this.kind(path.join(this.udcClass, udc))) !== 'dir') throw err('ENODEV', p);
    for (const g of await this.readdir(this.gadgets)) {
      const other = await fsp.readFile(path.join(this.gadgets, g, 'UDC'), 'utf8').catch(() => '');
      if (g !== gadget && other.trim() === udc) throw err('EBUSY', p);
    }
    const configs = path.join(this.gadgets, gadget, 'configs');
    for (const c of await this.readdir(configs)) {
      for (const e of await this.readdir(path.join(configs, c))) {
        if (e.startsWith('ffs.') && (await this.kind(path.join(configs, c, e))) === 'link' && !this.readyFfs.has(e.slice(4))) {
          throw err('ENODEV', p); // f_fs: the function has no descriptors yet
        }
      }
    }
    await fsp.writeFile(p, `${udc}\n`);
    // u_ether registers the net device of each linked ncm/ecm function at the first bind.
    for (const c of await this.readdir(configs)) {
      for (const e of await this.readdir(path.join(configs, c))) {
        const fn = path.join(this.gadgets, gadget, 'functions', e);
        if (!/^(ncm|ecm)\./.test(e) || this.netdevs.has(fn)) continue;
        let n = 0;
        while ([...this.netdevs.values()].includes(`usb${n}`)) n++;
        this.netdevs.set(fn, `usb${n}`);
        await fsp.writeFile(path.join(fn, 'ifname'), `usb${n}\n`);
      }
    }
  }

  readAttr(p: string): Promise<string> {
    return fsp.readFile(p, 'utf8');
  }

  async symlink(target: string, p: string): Promise<void> {
    const from = this.parts(path.dirname(p)) ?? [];
    const to = this.parts(target) ?? [];
    const fromConfig = from.length === 3 && from[1] === 'configs' && this.items.has(path.resolve(path.dirname(p)));
    const fromOsDesc = from.length === 2 && from[1] === 'os_desc';
    const toFunction = to.length === 3 && to[1] === 'functions' && this.items.has(path.resolve(target));
    const toConfig = to.length === 3 && to[1] === 'configs' && this.items.has(path.resolve(target));
    if (!((fromConfig && toFunction) || (fromOsDesc && toConfig)) || to[0] !== from[0]) throw err('EPERM', p);
    if (await this.kind(p)) throw err('EEXIST', p);
    await fsp.symlink(target, p);
    this.ops.push(`symlink ${this.rel(p)}`);
  }

  async unlink(p: string): Promise<void> {
    if ((await this.kind(p)) !== 'link') throw err('EPERM', p);
    await fsp.unlink(p);
    this.ops.push(`unlink ${this.rel(p)}`);
  }

  async readdir(p: string): Promise<string[]> {
    try {
      return await fsp.readdir(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  async kind(p: string): Promise<'dir' | 'file' | 'link' | undefined> {
    try {
      const st = await fsp.lstat(p);
      return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
    } catch {
      return undefined;
    }
  }

  /** Every path under usb_gadget/ with file contents and link targets, for assertions. */
  async tree(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const full = path.join(dir, e.name);
        const r = this.rel(full);
        if (e.isSymbolicLink()) out.push(`${r} -> ${this.rel(path.resolve(await fsp.readlink(full)))}`);
        else if (e.isDirectory()) {
          out.push(`${r}/`);
          await walk(full);
        } else out.push(`${r} = ${(await fsp.readFile(full, 'utf8')).trim()}`.trimEnd());
      }
    };
    await walk(this.gadgets);
    return out;
  }
}
