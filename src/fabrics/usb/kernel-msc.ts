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

import type { LogFn } from '../../util/log';
import { GadgetError, UsbGadget, nodeConfigFs } from './gadget';
import type { KernelMscLun } from './gadget';
import { UsbTargetError, checkUsbLuns, gadgetNcm, gadgetSpec, startEngineNcm, usbPreflight, usbSetupError } from './usb-target';
import type { UsbEngineOptions } from './usb-target';
import type { NcmLink, NcmPlan } from './ncm';

export interface KernelUsbOptions extends UsbEngineOptions {
  readonly luns: readonly KernelMscLun[];
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
    checkUsbLuns(opts.luns, 'mass_storage LUNs');
    for (const l of opts.luns) {
      if (l.file === '' && !(l.removable || l.cdrom)) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun}: only a removable LUN may start without a medium`);
    }
    if (!opts.luns.some((l) => l.lun === 0)) throw new UsbTargetError('BAD_LUNS', 'usb: the kernel mass_storage function always has LUN 0: configure it');
    this.ncm = gadgetNcm(opts.gadget);
    const spec = gadgetSpec(opts.gadget, this.ncm, { massStorage: { instance: opts.gadget.name ?? 'lunbox', luns: opts.luns } });
    this.gadget = new UsbGadget(spec, { fs: opts.configFs ?? nodeConfigFs(), configfs: this.configfsRoot, ...(opts.udcClass !== undefined ? { udcClass: opts.udcClass } : {}) });
  }

  get udc(): string | undefined {
    return this.udc_;
  }

  /** The board's NCM interface (usb0, ...), once started. */
  get ncmInterface(): string | undefined {
    return this.ifname_;
  }

  private fail(e: unknown): UsbTargetError {
    return usbSetupError(e, this.opts.udcClass ?? '/sys/class/udc', 'USB target (kernel engine)', (err, msg) => {
      if (!(err instanceof GadgetError) || err.code !== 'CONFIGFS') return undefined;
      if (err.errno === 'ENOENT' && /functions\/mass_storage\./.test(msg) && /mkdir/.test(msg)) {
        return new UsbTargetError('NO_FUNCTIONFS', `${msg}: the kernel has no mass_storage gadget function (modprobe usb_f_mass_storage; CONFIG_USB_CONFIGFS_MASS_STORAGE)`, err);
      }
      if (/\/file: /.test(msg)) {
        return new UsbTargetError('START_FAILED', `kernel mass_storage could not open a LUN's file: ${msg} (does the path exist, and is it not in use read-write elsewhere?)`, err);
      }
      return undefined;
    });
  }

  /** Build and bind. Idempotent; a leftover gadget of the same name is removed first. */
  async start(): Promise<void> {
    if (this.started) return;
    try {
      // mkdir functions/mass_storage.* loads usb_f_mass_storage too, where modules autoload.
      if (this.opts.preflight !== false) await usbPreflight(this.configfsRoot, ['usb_f_mass_storage'], 'UDC binding');
      const udc = await this.gadget.chooseUdc();
      await this.gadget.create(); // destroys a leftover gadget of the same name first
      this.udc_ = await this.gadget.bind(udc);
      if (this.ncm) {
        const { ifname, link } = await startEngineNcm(this.gadget, this.ncm, this.opts, this.log);
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
