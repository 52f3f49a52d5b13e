// `lunbox probe`: find lunbox devices on this computer's USB bus and, on request, talk
// Bulk-Only Transport to one directly (libusb via node-usb, the kernel's usb-storage
// driver detached for the duration): INQUIRY, READ CAPACITY, a timed read test, a report.
// Everything goes through the UsbBinding interface, so tests run it on a fake device.

import { CSW_LENGTH, CswStatus, decodeCsw, encodeCbw } from '../fabrics/usb/bot';
import type { UsbBinding, UsbDevice, UsbInEndpoint, UsbInterface, UsbInterfaceDescriptor, UsbOutEndpoint } from './usb-binding';

/** The gadget's defaults (src/fabrics/usb/gadget.ts GadgetDefaults). */
export const LUNBOX_VID = 0x1d6b;
export const LUNBOX_PID = 0x0104;
/** USB Mass Storage class, SCSI transparent command set, Bulk-Only Transport. */
const MSC = { CLASS: 0x08, SUBCLASS_SCSI: 0x06, PROTOCOL_BOT: 0x50 } as const;
/** BOT 1.0 §3.1, §3.2 class requests; USB 2.0 §9.4.1 CLEAR_FEATURE(ENDPOINT_HALT). */
const REQ = { BOT_RESET: 0xff, GET_MAX_LUN: 0xfe, CLEAR_FEATURE: 0x01, ENDPOINT_HALT: 0 } as const;
const BULK = 2;
const OP = { TEST_UNIT_READY: 0x00, REQUEST_SENSE: 0x03, INQUIRY: 0x12, READ_CAPACITY_10: 0x25, READ_10: 0x28, SERVICE_ACTION_IN_16: 0x9e } as const;

export interface LunboxDeviceInfo {
  readonly bus: number;
  readonly address: number;
  readonly vendorId: number;
  readonly productId: number;
  readonly manufacturer?: string;
  readonly product?: string;
  readonly serial?: string;
  /** Interface number of the mass-storage (BOT) interface, if any. */
  readonly massStorage?: number;
  /** The gadget's ACM serial console is present. */
  readonly console: boolean;
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

function stringDescriptor(d: UsbDevice, index: number): Promise<string | undefined> {
  if (index === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => d.getStringDescriptor(index, (err, v) => resolve(err ? undefined : v)));
}

function interfaceDescriptors(d: UsbDevice): UsbInterfaceDescriptor[] {
  return (d.configDescriptor?.interfaces ?? []).map((alts) => alts[0]).filter((x): x is UsbInterfaceDescriptor => x !== undefined);
}

const isBot = (i: UsbInterfaceDescriptor): boolean =>
  i.bInterfaceClass === MSC.CLASS && i.bInterfaceSubClass === MSC.SUBCLASS_SCSI && i.bInterfaceProtocol === MSC.PROTOCOL_BOT;

/** lunbox devices: VID:PID 1d6b:0104 (the gadget default), or manufacturer "lunbox". */
export async function listLunboxDevices(usb: UsbBinding): Promise<LunboxDeviceInfo[]> {
  const out: LunboxDeviceInfo[] = [];
  for (const d of usb.getDeviceList()) {
    const dd = d.deviceDescriptor;
    const idsMatch = dd.idVendor === LUNBOX_VID && dd.idProduct === LUNBOX_PID;
    const ifaces = interfaceDescriptors(d);
    // Devices with other ids are only opened when they offer mass storage (a changed VID:PID).
    if (!idsMatch && !ifaces.some(isBot)) continue;
    let manufacturer: string | undefined;
    let product: string | undefined;
    let serial: string | undefined;
    try {
      d.open();
      manufacturer = await stringDescriptor(d, dd.iManufacturer);
      product = await stringDescriptor(d, dd.iProduct);
      serial = await stringDescriptor(d, dd.iSerialNumber);
    } catch {
      // No permission to open: ids alone decide.
    } finally {
      try {
        d.close();
      } catch {
        /* not open */
      }
    }
    if (!idsMatch && !/lunbox/i.test(manufacturer ?? '')) continue;
    const ms = ifaces.find(isBot);
    out.push({
      bus: d.busNumber,
      address: d.deviceAddress,
      vendorId: dd.idVendor,
      productId: dd.idProduct,
      ...(manufacturer !== undefined ? { manufacturer } : {}),
      ...(product !== undefined ? { product } : {}),
      ...(serial !== undefined ? { serial } : {}),
      ...(ms ? { massStorage: ms.bInterfaceNumber } : {}),
      console: ifaces.some((i) => i.bInterfaceClass === 0x02 || i.bInterfaceClass === 0x0a),
    });
  }
  return out;
}

export function describeDevice(i: LunboxDeviceInfo): string {
  const name = [i.manufacturer, i.product].filter(Boolean).join(' ') || 'unknown';
  return `${i.bus}:${i.address}  ${hex4(i.vendorId)}:${hex4(i.productId)}  ${name}${i.serial ? `  serial ${i.serial}` : ''}  ${i.massStorage !== undefined ? 'mass storage' : 'no mass storage'}${i.console ? ', serial console' : ''}`;
}

/** Pick a device by BUS:ADDR or serial; without a selector, the only one. */
export function selectDevice(list: readonly LunboxDeviceInfo[], selector?: string): LunboxDeviceInfo {
  if (selector !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(selector);
    const hit = list.find((i) => (m ? i.bus === Number(m[1]) && i.address === Number(m[2]) : i.serial === selector));
    if (!hit) throw new Error(`no lunbox device ${selector}; found: ${list.map((i) => `${i.bus}:${i.address}${i.serial ? ` (${i.serial})` : ''}`).join(', ') || 'none'}`);
    return hit;
  }
  if (list.length === 0) throw new Error(`no lunbox device found (looked for ${hex4(LUNBOX_VID)}:${hex4(LUNBOX_PID)} or manufacturer "lunbox"); is the board plugged in and its gadget bound?`);
  if (list.length > 1) throw new Error(`${list.length} lunbox devices: choose one by BUS:ADDR or serial: ${list.map((i) => `${i.bus}:${i.address}`).join(', ')}`);
  return list[0]!;
}

// ------------------------------------------------------------------ BOT host side

export class BotHostError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BotHostError';
  }
}

export interface BotReply {
  readonly status: number;
  readonly data: Buffer;
  readonly residue: number;
}

const inTransfer = (ep: UsbInEndpoint, length: number): Promise<Buffer> =>
  new Promise((resolve, reject) => ep.transfer(length, (err, data) => (err ? reject(err) : resolve(data ?? Buffer.alloc(0)))));
const outTransfer = (ep: UsbOutEndpoint, data: Buffer): Promise<void> =>
  new Promise((resolve, reject) => ep.transfer(data, (err) => (err ? reject(err) : resolve())));
const clearHalt = (ep: { clearHalt(cb: (e: Error | undefined) => void): void }): Promise<void> =>
  new Promise((resolve) => ep.clearHalt(() => resolve()));
const isStall = (e: unknown): boolean => /STALL|PIPE/i.test(String((e as { errno?: unknown; message?: string }).message ?? e)) || (e as { errno?: number }).errno === -9;

/** A Bulk-Only Transport initiator on one claimed interface (BOT 1.0 §5, §6). */
export class BotHost {
  private tag = 1;

  constructor(
    private readonly dev: UsbDevice,
    private readonly iface: UsbInterface,
    private readonly epIn: UsbInEndpoint,
    private readonly epOut: UsbOutEndpoint,
  ) {}

  /** One command: CBW, data phase, CSW; a stalled data phase is cleared and the CSW read. */
  async command(lun: number, cdb: readonly number[] | Buffer, dataIn: number): Promise<BotReply> {
    const tag = this.tag++ >>> 0;
    await outTransfer(this.epOut, encodeCbw({ tag, dataTransferLength: dataIn, dataIn: dataIn > 0, lun, cdb: Buffer.from(cdb) }));
    let data: Buffer = Buffer.alloc(0);
    if (dataIn > 0) {
      try {
        data = await inTransfer(this.epIn, dataIn);
      } catch (e) {
        if (!isStall(e)) throw e;
        await clearHalt(this.epIn); // §6.7.2: the host clears the halt, then reads the CSW
      }
    }
    let raw: Buffer;
    try {
      raw = await inTransfer(this.epIn, CSW_LENGTH);
    } catch (e) {
      if (!isStall(e)) throw e;
      await clearHalt(this.epIn);
      raw = await inTransfer(this.epIn, CSW_LENGTH);
    }
    const csw = decodeCsw(raw);
    if (csw.dCSWTag !== tag) throw new BotHostError('CSW_TAG', `CSW tag ${csw.dCSWTag} does not match CBW tag ${tag}`);
    if (csw.bCSWStatus === CswStatus.PHASE_ERROR) {
      await this.resetRecovery();
      throw new BotHostError('PHASE_ERROR', 'the device reported a phase error (reset recovery done)');
    }
    return { status: csw.bCSWStatus, data, residue: csw.dCSWDataResidue };
  }

  /** BOT §5.3.4 reset recovery: Bulk-Only Mass Storage Reset, then clear both halts. */
  async resetRecovery(): Promise<void> {
    const ifn = this.iface.descriptor.bInterfaceNumber;
    await new Promise<void>((r) => this.dev.controlTransfer(0x21, REQ.BOT_RESET, 0, ifn, Buffer.alloc(0), () => r()));
    await clearHalt(this.epIn);
    await clearHalt(this.epOut);
  }

  /** BOT §3.2 GET MAX LUN; a stall means one LUN. */
  getMaxLun(): Promise<number> {
    const ifn = this.iface.descriptor.bInterfaceNumber;
    return new Promise((resolve) =>
      this.dev.controlTransfer(0xa1, REQ.GET_MAX_LUN, 0, ifn, 1, (err, data) => resolve(!err && Buffer.isBuffer(data) && data.length > 0 ? (data[0] ?? 0) : 0)),
    );
  }

  async requestSense(lun: number): Promise<{ key: number; asc: number; ascq: number } | undefined> {
    const r = await this.command(lun, [OP.REQUEST_SENSE, 0, 0, 0, 18, 0], 18);
    if (r.status !== 0 || r.data.length < 14) return undefined;
    return { key: (r.data[2] ?? 0) & 0x0f, asc: r.data[12] ?? 0, ascq: r.data[13] ?? 0 };
  }
}

// ------------------------------------------------------------------ the probe

export interface ProbeReport {
  readonly device: LunboxDeviceInfo;
  readonly maxLun: number;
  readonly lun: number;
  readonly inquiry: { readonly peripheralType: number; readonly removable: boolean; readonly vendor: string; readonly product: string; readonly revision: string };
  readonly blockSize: number;
  readonly blocks: number;
  readonly bytes: number;
  readonly read?: { readonly bytes: number; readonly seconds: number; readonly mbPerSecond: number; readonly transferBytes: number };
  readonly notes: string[];
}

export interface ProbeOptions {
  readonly lun?: number;
  /** MiB to read in the throughput test; 0 skips it. */
  readonly readMiB?: number;
  /** Bytes per READ(10); default 128 KiB. */
  readonly transferBytes?: number;
  readonly progress?: (done: number, total: number, elapsedMs: number) => void;
  readonly now?: () => number;
}

const ascii = (b: Buffer, from: number, to: number): string => b.subarray(from, to).toString('latin1').replace(/[^\x20-\x7e]/g, '').trim();

/** Open the device, claim its mass-storage interface, run the checks, put everything back. */
export async function probeDevice(usb: UsbBinding, info: LunboxDeviceInfo, opts: ProbeOptions = {}): Promise<ProbeReport> {
  const dev = usb.getDeviceList().find((d) => d.busNumber === info.bus && d.deviceAddress === info.address);
  if (!dev) throw new Error(`device ${info.bus}:${info.address} went away`);
  if (info.massStorage === undefined) throw new Error(`device ${info.bus}:${info.address} has no mass-storage (BOT) interface: is a LUN configured in the gadget?`);
  const notes: string[] = [];
  dev.open();
  const iface = dev.interface(info.massStorage);
  let detached = false;
  let claimed = false;
  try {
    if (iface.isKernelDriverActive()) {
      // usb-storage owns it; give it back afterwards (finally below).
      iface.detachKernelDriver();
      detached = true;
    }
    iface.claim();
    claimed = true;
    const epIn = iface.endpoints.find((e) => e.direction === 'in' && e.transferType === BULK) as UsbInEndpoint | undefined;
    const epOut = iface.endpoints.find((e) => e.direction === 'out' && e.transferType === BULK) as UsbOutEndpoint | undefined;
    if (!epIn || !epOut) throw new Error('the mass-storage interface lacks a bulk-in or bulk-out endpoint');
    epIn.timeout = 10_000;
    epOut.timeout = 10_000;
    const bot = new BotHost(dev, iface, epIn, epOut);
    const maxLun = await bot.getMaxLun();
    const lun = opts.lun ?? 0;
    if (lun > maxLun) throw new Error(`LUN ${lun} does not exist: the device has LUNs 0..${maxLun}`);

    const inq = await bot.command(lun, [OP.INQUIRY, 0, 0, 0, 36, 0], 36);
    if (inq.status !== 0 || inq.data.length < 36) throw new Error(`INQUIRY failed (status ${inq.status}, ${inq.data.length} bytes)`);
    const inquiry = {
      peripheralType: (inq.data[0] ?? 0) & 0x1f,
      removable: ((inq.data[1] ?? 0) & 0x80) !== 0,
      vendor: ascii(inq.data, 8, 16),
      product: ascii(inq.data, 16, 32),
      revision: ascii(inq.data, 32, 36),
    };
    // Unit attentions (power on, LUNs changed) come first: TEST UNIT READY until ready.
    for (let i = 0; i < 5; i++) {
      const tur = await bot.command(lun, [OP.TEST_UNIT_READY, 0, 0, 0, 0, 0], 0);
      if (tur.status === 0) break;
      const s = await bot.requestSense(lun);
      if (s) notes.push(`TEST UNIT READY: sense ${s.key.toString(16)}/${s.asc.toString(16).padStart(2, '0')}/${s.ascq.toString(16).padStart(2, '0')}`);
    }
    let cap = await bot.command(lun, [OP.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    if (cap.status !== 0 || cap.data.length < 8) throw new Error(`READ CAPACITY(10) failed (status ${cap.status})`);
    let lastLba = cap.data.readUInt32BE(0);
    let blockSize = cap.data.readUInt32BE(4);
    if (lastLba === 0xffffffff) {
      const cdb = [OP.SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
      cap = await bot.command(lun, cdb, 32);
      if (cap.status !== 0 || cap.data.length < 12) throw new Error('READ CAPACITY(16) failed');
      lastLba = Number(cap.data.readBigUInt64BE(0));
      blockSize = cap.data.readUInt32BE(8);
    }
    if (blockSize === 0) throw new Error('READ CAPACITY reports a block size of 0');
    const blocks = lastLba + 1;
    const bytes = blocks * blockSize;
    let read: ProbeReport['read'];
    const wantMiB = opts.readMiB ?? 64;
    if (wantMiB > 0) {
      const now = opts.now ?? (() => performance.now());
      const xfer = Math.max(blockSize, Math.floor((opts.transferBytes ?? 128 * 1024) / blockSize) * blockSize);
      const total = Math.min(wantMiB * 1024 * 1024, bytes);
      if (total < wantMiB * 1024 * 1024) notes.push(`read test limited to the LUN size (${total} bytes)`);
      const t0 = now();
      let done = 0;
      let lba = 0;
      while (done < total) {
        const len = Math.min(xfer, total - done);
        const n = len / blockSize;
        const cdb = [OP.READ_10, 0, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, (n >>> 8) & 0xff, n & 0xff, 0];
        const r = await bot.command(lun, cdb, len);
        if (r.status !== 0) throw new Error(`READ(10) at LBA ${lba} failed (status ${r.status})`);
        done += len;
        lba += n;
        opts.progress?.(done, total, now() - t0);
      }
      const seconds = Math.max(1e-6, (now() - t0) / 1000);
      read = { bytes: total, seconds, mbPerSecond: total / 1e6 / seconds, transferBytes: xfer };
    }
    return { device: info, maxLun, lun, inquiry, blockSize, blocks, bytes, ...(read ? { read } : {}), notes };
  } finally {
    if (claimed) await new Promise<void>((r) => iface.release(true, () => r()));
    if (detached) {
      try {
        iface.attachKernelDriver();
      } catch (e) {
        notes.push(`could not give the interface back to the kernel driver: ${(e as Error).message}`);
      }
    }
    dev.close();
  }
}

/** `[#########-----------]  45%  12.3 MB/s` */
export function progressBar(done: number, total: number, elapsedMs: number, width = 30): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const fill = Math.round(f * width);
  const rate = elapsedMs > 0 ? done / 1e6 / (elapsedMs / 1000) : 0;
  return `[${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${String(Math.floor(f * 100)).padStart(3)}%  ${rate.toFixed(1)} MB/s`;
}

const TYPES: Readonly<Record<number, string>> = { 0: 'disk', 5: 'CD-ROM', 7: 'optical', 0x1f: 'no device' };

export function formatReport(r: ProbeReport): string {
  const gib = r.bytes / 2 ** 30;
  const lines = [
    `device      ${describeDevice(r.device)}`,
    `LUNs        0..${r.maxLun} (probed LUN ${r.lun})`,
    `INQUIRY     ${r.inquiry.vendor} ${r.inquiry.product} ${r.inquiry.revision}  type ${TYPES[r.inquiry.peripheralType] ?? r.inquiry.peripheralType}${r.inquiry.removable ? ', removable' : ''}`,
    `capacity    ${r.blocks} blocks x ${r.blockSize} bytes = ${r.bytes} bytes (${gib >= 1 ? gib.toFixed(2) + ' GiB' : (r.bytes / 2 ** 20).toFixed(1) + ' MiB'})`,
  ];
  if (r.read) {
    lines.push(`read test   ${(r.read.bytes / 2 ** 20).toFixed(1)} MiB in ${r.read.seconds.toFixed(2)} s = ${r.read.mbPerSecond.toFixed(1)} MB/s (${r.read.transferBytes / 1024} KiB per READ(10); USB 2.0 high speed tops out near 53 MB/s)`);
  }
  for (const n of r.notes) lines.push(`note        ${n}`);
  return lines.join('\n');
}

