// lunbox probe against a fake node-usb binding: a device that answers Bulk-Only Transport
// from a RAM image (CBWs decoded with the fabric's own codec).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeCbw, encodeCsw } from '../../src/fabrics/usb/bot';
import { formatReport, listLunboxDevices, probeDevice, progressBar, selectDevice } from '../../src/host/probe';
import type { UsbBinding, UsbDevice, UsbEndpoint, UsbInterface } from '../../src/host/usb-binding';

interface FakeOpts {
  vid?: number;
  pid?: number;
  manufacturer?: string;
  blocks?: number;
  blockSize?: number;
  kernelDriver?: boolean;
  stallFirstRead?: boolean;
  maxLun?: number;
  bus?: number;
  address?: number;
}

function fakeDevice(o: FakeOpts = {}) {
  const log: string[] = [];
  const blockSize = o.blockSize ?? 512;
  const blocks = o.blocks ?? 8192;
  let pendingIn: Buffer[] = [];
  let kernel = o.kernelDriver ?? true;
  let stall = o.stallFirstRead ?? false;
  let open = false;
  const strings: Record<number, string> = { 1: o.manufacturer ?? 'lunbox', 2: 'lunbox storage', 3: 'SN0001' };
  const handle = (cbw: Buffer): void => {
    const c = decodeCbw(cbw);
    const cdb = c.CBWCB;
    const op = cdb[0]!;
    log.push(`cbw ${op.toString(16)}`);
    let data = Buffer.alloc(0);
    if (op === 0x12) {
      data = Buffer.alloc(36);
      data[1] = 0x80;
      data.write('LUNBOX  ', 8, 'latin1');
      data.write('fake disk       ', 16, 'latin1');
      data.write('0001', 32, 'latin1');
    } else if (op === 0x25) {
      data = Buffer.alloc(8);
      data.writeUInt32BE(blocks - 1, 0);
      data.writeUInt32BE(blockSize, 4);
    } else if (op === 0x28) {
      const n = cdb.readUInt16BE(7);
      data = Buffer.alloc(n * blockSize, 0xab);
    }
    if (op === 0x28 && stall) {
      stall = false;
      pendingIn.push(Buffer.from('STALL'));
      pendingIn.push(encodeCsw(c.dCBWTag, c.dCBWDataTransferLength, 1));
      return;
    }
    if (c.dCBWDataTransferLength > 0) pendingIn.push(data.subarray(0, c.dCBWDataTransferLength));
    pendingIn.push(encodeCsw(c.dCBWTag, Math.max(0, c.dCBWDataTransferLength - data.length), 0));
  };
  const ep = (direction: 'in' | 'out', addr: number): UsbEndpoint & { transfer: (...a: never[]) => unknown } => {
    const base = {
      direction,
      transferType: 2,
      descriptor: { bEndpointAddress: addr, wMaxPacketSize: 512 },
      timeout: 0,
      clearHalt: (cb: (e: Error | undefined) => void) => {
        log.push(`clear-halt ${direction}`);
        cb(undefined);
      },
    };
    if (direction === 'out') {
      return { ...base, transfer: (data: Buffer, cb: (e: Error | undefined) => void) => (handle(data), cb(undefined)) } as never;
    }
    return {
      ...base,
      transfer: (len: number, cb: (e: Error | undefined, d?: Buffer) => void) => {
        const next = pendingIn.shift();
        if (!next) return cb(new Error('LIBUSB_ERROR_TIMEOUT'));
        if (next.toString() === 'STALL') return cb(Object.assign(new Error('LIBUSB_ERROR_PIPE'), { errno: -9 }));
        cb(undefined, next.subarray(0, len));
      },
    } as never;
  };
  const ifaceDesc = { bInterfaceNumber: 1, bInterfaceClass: 8, bInterfaceSubClass: 6, bInterfaceProtocol: 0x50 };
  const iface: UsbInterface = {
    descriptor: ifaceDesc,
    endpoints: [ep('in', 0x81), ep('out', 0x02)],
    isKernelDriverActive: () => kernel,
    detachKernelDriver: () => {
      log.push('detach');
      kernel = false;
    },
    attachKernelDriver: () => {
      log.push('attach');
      kernel = true;
    },
    claim: () => log.push('claim'),
    release: (_c, cb) => {
      log.push('release');
      cb();
    },
  };
  const dev: UsbDevice = {
    busNumber: o.bus ?? 1,
    deviceAddress: o.address ?? 7,
    deviceDescriptor: { idVendor: o.vid ?? 0x1d6b, idProduct: o.pid ?? 0x0104, iManufacturer: 1, iProduct: 2, iSerialNumber: 3 },
    configDescriptor: { interfaces: [[{ bInterfaceNumber: 0, bInterfaceClass: 2, bInterfaceSubClass: 2, bInterfaceProtocol: 1 }], [ifaceDesc]] },
    open: () => {
      open = true;
      log.push('open');
    },
    close: () => {
      open = false;
      log.push('close');
    },
    interface: (n) => {
      if (n !== 1) throw new Error('no such interface');
      return iface;
    },
    getStringDescriptor: (i, cb) => (open ? cb(undefined, strings[i]) : cb(new Error('not open'))),
    controlTransfer: (_t, req, _v, _i, _d, cb) => {
      log.push(`control ${req.toString(16)}`);
      if (req === 0xfe) return cb(undefined, Buffer.from([o.maxLun ?? 0]));
      return cb(undefined, 0);
    },
  };
  return { dev, log, reset: () => (pendingIn = []) };
}

const binding = (...devs: UsbDevice[]): UsbBinding => ({ getDeviceList: () => devs });

test('lists lunbox devices by ids or manufacturer, skipping others', async () => {
  const a = fakeDevice();
  const b = fakeDevice({ vid: 0x1234, pid: 0x5678, manufacturer: 'lunbox', bus: 2, address: 3 });
  const c = fakeDevice({ vid: 0x0781, pid: 0x5567, manufacturer: 'SanDisk', bus: 3, address: 4 });
  const list = await listLunboxDevices(binding(a.dev, b.dev, c.dev));
  assert.equal(list.map((d) => `${d.bus}:${d.address}`), ['1:7', '2:3']);
  assert.equal(list[0], { bus: 1, address: 7, vendorId: 0x1d6b, productId: 0x0104, manufacturer: 'lunbox', product: 'lunbox storage', serial: 'SN0001', massStorage: 1, console: true });
  assert.is(selectDevice(list, '2:3').address, 3);
  assert.is(selectDevice(list, 'SN0001').bus, 1);
  assert.throws(() => selectDevice(list), /2 lunbox devices/);
  assert.throws(() => selectDevice([]), /no lunbox device found/);
});

test('probe: detaches the kernel driver, INQUIRY, READ CAPACITY, read test with progress, gives the driver back', async () => {
  const f = fakeDevice({ blocks: 4096, stallFirstRead: false });
  const usb = binding(f.dev);
  const [info] = await listLunboxDevices(usb);
  const progress: number[] = [];
  let t = 0;
  const report = await probeDevice(usb, info!, { readMiB: 1, transferBytes: 65536, progress: (done) => progress.push(done), now: () => (t += 10) });
  assert.equal(report.inquiry, { peripheralType: 0, removable: true, vendor: 'LUNBOX', product: 'fake disk', revision: '0001' });
  assert.is(report.blocks, 4096);
  assert.is(report.blockSize, 512);
  assert.is(report.bytes, 2 * 1024 * 1024);
  assert.is(report.read!.bytes, 1024 * 1024);
  assert.equal(progress, Array.from({ length: 16 }, (_, i) => (i + 1) * 65536));
  assert.ok(report.read!.mbPerSecond > 0);
  const order = f.log.filter((l) => !l.startsWith('cbw') && !l.startsWith('control'));
  assert.equal(order.slice(-4), ['detach', 'claim', 'release', 'attach', 'close'].slice(-4));
  assert.ok(f.log.includes('detach'));
  assert.ok(f.log.indexOf('attach') > f.log.indexOf('release'));
  const text = formatReport(report);
  assert.match(text, /INQUIRY\s+LUNBOX fake disk 0001/);
  assert.match(text, /capacity\s+4096 blocks x 512 bytes/);
  assert.match(text, /read test\s+1\.0 MiB/);
});

test('a stalled data phase is cleared and the CSW read (BOT §6.7.2); a failed READ is reported', async () => {
  const f = fakeDevice({ stallFirstRead: true });
  const usb = binding(f.dev);
  const [info] = await listLunboxDevices(usb);
  await probeDevice(usb, info!, { readMiB: 1 }).then(
    () => assert.unreachable('READ failed'),
    (e: Error) => assert.match(e.message, /READ\(10\) at LBA 0 failed \(status 1\)/),
  );
  assert.ok(f.log.includes('clear-halt in'));
  assert.ok(f.log.includes('attach'), 'the kernel driver is given back even after a failure');
});

test('a LUN beyond GET MAX LUN is refused before any command', async () => {
  const f = fakeDevice({ maxLun: 0 });
  const usb = binding(f.dev);
  const [info] = await listLunboxDevices(usb);
  await probeDevice(usb, info!, { lun: 2 }).then(
    () => assert.unreachable(),
    (e: Error) => assert.match(e.message, /LUNs 0\.\.0/),
  );
  assert.not.ok(f.log.some((l) => l.startsWith('cbw')));
});

test('progress bar', () => {
  assert.is(progressBar(50, 100, 1000, 10), '[#####-----]  50%  0.0 MB/s');
  assert.match(progressBar(10e6, 10e6, 500, 4), /\[####\] 100%  20\.0 MB\/s/);
});

test.run();
