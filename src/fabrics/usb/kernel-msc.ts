// The kernel engine for USB: the same LUN set handed to the kernel's own mass_storage function
// (drivers/usb/gadget/function/f_mass_storage.c) through configfs, in the same gadget layout
// (strings, MaxPower, UDC choice, ACM console) as lunbox's userspace FunctionFS function.
//
// What changes for the user: the kernel moves the data (no Node in the data path, the
// throughput of the kernel function), but only what f_mass_storage offers is served: a file
// or block device per LUN, read-only, removable, CD-ROM (2048-byte blocks from an ISO), FUA
// on or off, an INQUIRY string. RAM backstores, other block sizes, protection information,
// thin provisioning, persistent reservations and lunbox's SCSI core are not there (the
// runtime refuses RAM and warns about the rest). Medium changes write lun.N/file.
//
// Kernel semantics relied on (ABI/testing/configfs-usb-gadget-mass-storage): lun.0 exists with
// the function, lun.1..lun.15 are made by mkdir; `ro` and `cdrom` fail with EBUSY while a file
// is open; writing `file` fails with EBUSY while the host prevents medium removal;
// `forced_eject` (Linux 6.1+) ejects regardless.

import { promises as fsp, constants as C } from 'node:fs';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import type { LogFn } from '../../util/log';
import { GadgetDefaults, GadgetError, UsbGadget, nodeConfigFs } from './gadget';
import type { ConfigFs, GadgetSpec, KernelMscLun } from './gadget';
import { hostname } from 'node:os';
import { UsbTargetError } from './usb-target';
import type { UsbGadgetOptions } from './usb-target';
import { NcmError, planNcm, startNcmLink } from './ncm';
import type { DhcpLike, NcmLink, NcmPlan } from './ncm';
import { IpToolError, nodeIpTool } from '../../net/ip-tool';
import type { IpTool } from '../../net/ip-tool';
import type { DhcpServerOptions } from '../../net/dhcp-server';

export interface KernelUsbOptions {
  readonly gadget: UsbGadgetOptions;
  readonly luns: readonly KernelMscLun[];
  readonly log?: LogFn;
  // Injection points for tests (defaults: the real system).
  readonly configFs?: ConfigFs;
  readonly configfsRoot?: string;
  readonly udcClass?: string;
  /** Skip the root/modprobe preflight (tests). */
  readonly preflight?: boolean;
  readonly ipTool?: IpTool;
  readonly createDhcp?: (o: DhcpServerOptions) => DhcpLike;
  readonly ncmPollMs?: number;
  readonly ncmWaitMs?: number;
}

function modprobe(mod: string): Promise<boolean> {
  return new Promise((resolve) => execFile('modprobe', [mod], { timeout: 20_000 }, (e) => resolve(!e)));
}

export class KernelUsbTarget {
  readonly gadget: UsbGadget;
  private readonly opts: KernelUsbOptions;
  private readonly log: LogFn;
  private readonly configfsRoot: string;
  private udc_: string | undefined;
  private started = false;
  private ncmLink: NcmLink | undefined;
  private ifname_: string | undefined;
  /** The NCM link's addresses and MACs, when the gadget has NCM (as with the userspace engine). */
  readonly ncm: NcmPlan | undefined;

  constructor(opts: KernelUsbOptions) {
    this.opts = opts;
    this.log = opts.log ?? (() => undefined);
    this.configfsRoot = opts.configfsRoot ?? '/sys/kernel/config';
    const seen = new Set<number>();
    for (const l of opts.luns) {
      if (!Number.isInteger(l.lun) || l.lun < 0 || l.lun > 15) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun}: mass_storage LUNs are 0..15`);
      if (seen.has(l.lun)) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun} is given twice`);
      if (l.file === '' && !(l.removable || l.cdrom)) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun}: only a removable LUN may start without a medium`);
      seen.add(l.lun);
    }
    if (opts.luns.length === 0) throw new UsbTargetError('BAD_LUNS', 'usb: at least one LUN is needed');
    if (!seen.has(0)) throw new UsbTargetError('BAD_LUNS', 'usb: the kernel mass_storage function always has LUN 0: configure it');
    const g = opts.gadget;
    const name = g.name ?? 'lunbox';
    this.ncm = g.ncm ? planNcm(g.ncm, g.serial ?? hostname()) : undefined;
    const spec: GadgetSpec = {
      name,
      massStorage: { instance: name, luns: opts.luns },
      ...(this.ncm ? { ncm: { devAddr: this.ncm.deviceMac, hostAddr: this.ncm.hostMac } } : {}),
      acmInstance: g.acm === true ? GadgetDefaults.acmInstance : false,
      ...(g.vendorId !== undefined ? { idVendor: g.vendorId } : {}),
      ...(g.productId !== undefined ? { idProduct: g.productId } : {}),
      ...(g.manufacturer !== undefined ? { manufacturer: g.manufacturer } : {}),
      ...(g.product !== undefined ? { product: g.product } : {}),
      ...(g.serial !== undefined ? { serialnumber: g.serial } : {}),
      ...(g.udc !== undefined ? { udc: g.udc } : {}),
      ...(g.maxPower !== undefined ? { maxPower: g.maxPower } : {}),
    };
    this.gadget = new UsbGadget(spec, { fs: opts.configFs ?? nodeConfigFs(), configfs: this.configfsRoot, ...(opts.udcClass !== undefined ? { udcClass: opts.udcClass } : {}) });
  }

  get udc(): string | undefined {
    return this.udc_;
  }

  /** The board's NCM interface (usb0, ...), once started. */
  get ncmInterface(): string | undefined {
    return this.ifname_;
  }

  private async preflight(): Promise<void> {
    const gadgets = path.join(this.configfsRoot, 'usb_gadget');
    const isDir = async (p: string): Promise<boolean> => (await fsp.stat(p).catch(() => undefined))?.isDirectory() === true;
    const root = typeof process.getuid === 'function' ? process.getuid() === 0 : true;
    if (root) {
      if (!(await isDir(gadgets))) await modprobe('libcomposite');
      await modprobe('usb_f_mass_storage'); // mkdir functions/mass_storage.* loads it too, where modules autoload
    }
    if (!(await isDir(gadgets))) {
      throw new UsbTargetError('NO_CONFIGFS', `${gadgets} is missing: mount configfs (mount -t configfs none ${this.configfsRoot}) and load libcomposite (modprobe libcomposite)`);
    }
    if (!root && (await fsp.access(gadgets, C.W_OK).then(() => false, () => true))) {
      throw new UsbTargetError('NOT_ROOT', `USB gadget setup needs root (configfs ${gadgets}, UDC binding): run lunbox as root`);
    }
  }

  private fail(e: unknown): UsbTargetError {
    if (e instanceof UsbTargetError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof GadgetError) {
      if (e.code === 'CONFIGFS' && e.errno === 'ENOENT' && /functions\/mass_storage\./.test(msg) && /mkdir/.test(msg)) {
        return new UsbTargetError('NO_FUNCTIONFS', `${msg}: the kernel has no mass_storage gadget function (modprobe usb_f_mass_storage; CONFIG_USB_CONFIGFS_MASS_STORAGE)`, e);
      }
      if (e.code === 'CONFIGFS' && /\/file: /.test(msg)) {
        return new UsbTargetError('START_FAILED', `kernel mass_storage could not open a LUN's file: ${msg} (does the path exist, and is it not in use read-write elsewhere?)`, e);
      }
      if (e.code === 'NO_UDC' || e.code === 'UDC_NOT_FOUND') return new UsbTargetError(e.code, msg, e);
      if (e.code === 'UDC_BUSY') return new UsbTargetError('UDC_BUSY', msg, e);
      if (e.code === 'NO_CONFIGFS') return new UsbTargetError('NO_CONFIGFS', `${msg} (modprobe libcomposite)`, e);
    }
    if (e instanceof GadgetError && e.code === 'CONFIGFS' && e.errno === 'ENOENT' && /functions\/ncm\./.test(msg)) {
      return new UsbTargetError('NO_NCM', `${msg}: the kernel has no NCM gadget function (modprobe usb_f_ncm; CONFIG_USB_CONFIGFS_NCM), or set usb.gadget.ncm to false`, e);
    }
    if (e instanceof NcmError || e instanceof IpToolError) return new UsbTargetError('NCM_FAILED', `USB network (NCM): ${msg}`, e);
    if ((e as { errno?: unknown }).errno === 'EACCES' || (e as { errno?: unknown }).errno === 'EPERM') {
      return new UsbTargetError('NOT_ROOT', `USB gadget setup needs root: ${msg}`, e);
    }
    return new UsbTargetError('START_FAILED', `USB target (kernel engine): ${msg}`, e);
  }

  /** Build and bind. Idempotent; a leftover gadget of the same name is removed first. */
  async start(): Promise<void> {
    if (this.started) return;
    try {
      if (this.opts.preflight !== false) await this.preflight();
      const udc = await this.gadget.chooseUdc();
      await this.gadget.create(); // destroys a leftover gadget of the same name first
      this.udc_ = await this.gadget.bind(udc);
      if (this.ncm) {
        const { ifname, link } = await startNcmLink(this.gadget, this.ncm, {
          ip: this.opts.ipTool ?? nodeIpTool(),
          log: this.log,
          ...(this.opts.createDhcp ? { createDhcp: this.opts.createDhcp } : {}),
          ...(this.opts.ncmPollMs !== undefined ? { pollMs: this.opts.ncmPollMs } : {}),
          ...(this.opts.ncmWaitMs !== undefined ? { waitMs: this.opts.ncmWaitMs } : {}),
        });
        this.ifname_ = ifname;
        this.ncmLink = link;
      }
      this.started = true;
      const luns = [...this.opts.luns].sort((a, b) => a.lun - b.lun).map((l) => `${l.lun}:${l.cdrom ? 'cdrom' : 'disk'}${l.readOnly ? ' ro' : ''}`);
      const extras = [this.gadget.spec.acmInstance !== false ? ', ACM console' : '', this.ifname_ ? `, NCM network ${this.ifname_}` : ''].join('');
      this.log('info', `usb: gadget ${this.gadget.spec.name} bound to ${udc} (kernel mass_storage: LUN ${luns.join(', ')})${extras}`);
    } catch (e) {
      await this.ncmLink?.stop().catch(() => undefined);
      this.ncmLink = undefined;
      await this.gadget.destroy().catch(() => undefined);
      this.udc_ = undefined;
      throw this.fail(e);
    }
  }

  /** Insert (path) or eject (null) the medium of a removable LUN. */
  async setMedium(lun: number, file: string | null, opts: { force?: boolean } = {}): Promise<void> {
    if (!this.started) throw new UsbTargetError('START_FAILED', 'the USB gadget is not running');
    const l = this.opts.luns.find((x) => x.lun === lun);
    if (!l) throw new UsbTargetError('BAD_LUNS', `usb LUN ${lun} does not exist`);
    if (!(l.removable || l.cdrom)) throw new UsbTargetError('BAD_LUNS', `usb LUN ${lun} is not removable`);
    if (file === null) {
      await this.gadget.setKernelMedium(lun, '', opts.force === true);
    } else {
      // A disc already in the drive goes out first (the kernel answers EBUSY to a direct swap
      // only when removal is prevented; ejecting first keeps that rule for both halves).
      await this.gadget.setKernelMedium(lun, '', opts.force === true);
      await this.gadget.setKernelMedium(lun, file);
    }
  }

  /** Unbind and remove the gadget. Idempotent. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.ncmLink?.stop().catch((e: Error) => this.log('warn', `usb: stopping the NCM link: ${e.message}`));
    this.ncmLink = undefined;
    this.ifname_ = undefined;
    await this.gadget.destroy();
    this.udc_ = undefined;
    this.log('info', `usb: gadget ${this.gadget.spec.name} removed`);
  }
}
