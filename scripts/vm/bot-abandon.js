// Helper of scripts/vm/guest-usb-abandon.sh: the computer's side, by libusb (node-usb), of
// commands a host abandons midway with a Bulk-Only Mass Storage Reset (USB MSC BOT 1.0
// §5.3.4: Reset Recovery is the class reset, then CLEAR_FEATURE(ENDPOINT_HALT) on both bulk
// endpoints). After each one the next command must get its own data and CSW: nothing the
// abandoned command had queued may come out in its place.
//
//   node scripts/vm/bot-abandon.js IMAGE [--port-reset]
//
// IMAGE is the disk's backing file (LUN 0, 512-byte blocks), read here to check the data.
// --port-reset: should the device refuse (stall) the Bulk-Only reset, reset the USB port (as
// Linux's usb-storage does when the class reset fails) and go on; without it a refused reset
// is a failure.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const usb = require(path.join(__dirname, '..', '..', 'node_modules', 'usb'));

const image = process.argv[2];
const portReset = process.argv.includes('--port-reset');
if (!image) {
  console.error('usage: node bot-abandon.js IMAGE');
  process.exit(2);
}
let failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? 'PASS' : 'FAIL'}: ${name}${!ok && detail ? ` (${detail})` : ''}`);
  if (!ok) failed++;
}
function medium(lba, blocks) {
  const fd = fs.openSync(image, 'r');
  try {
    const b = Buffer.alloc(blocks * 512);
    fs.readSync(fd, b, 0, b.length, lba * 512);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

let dev, iface, ifn, epIn, epOut;
let hadDriver = false;
/** Open the gadget, take its mass-storage interface from usb-storage, find the bulk pipes. */
function open() {
  dev = usb.findByIds(0x1d6b, 0x0104);
  if (!dev) throw new Error('the gadget (1d6b:0104) is not on the bus');
  dev.open();
  iface = dev.interfaces.find((i) => i.descriptor.bInterfaceClass === 8);
  ifn = iface.descriptor.bInterfaceNumber;
  if (iface.isKernelDriverActive()) {
    hadDriver = true;
    iface.detachKernelDriver();
  }
  iface.claim();
  epIn = iface.endpoints.find((e) => e.direction === 'in' && e.transferType === 2);
  epOut = iface.endpoints.find((e) => e.direction === 'out' && e.transferType === 2);
  epIn.timeout = 5000;
  epOut.timeout = 5000;
}
/** A USB port reset (the device sees a bus reset and is configured again), then open again. */
async function portResetAndReopen() {
  await new Promise((r) => dev.reset(() => r()));
  try {
    dev.close();
  } catch {
    // already gone with the reset
  }
  for (let i = 0; i < 50; i++) {
    try {
      open();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  open();
}
try {
  open();
} catch (e) {
  console.log(`FAIL: ${e.message}`);
  process.exit(1);
}

const inXfer = (n) => new Promise((res, rej) => epIn.transfer(n, (e, d) => (e ? rej(e) : res(d ?? Buffer.alloc(0)))));
const outXfer = (b) => new Promise((res, rej) => epOut.transfer(b, (e) => (e ? rej(e) : res())));
const clearHalt = (ep) => new Promise((res) => ep.clearHalt(() => res()));
const control = (type, req, length) =>
  new Promise((res, rej) => dev.controlTransfer(type, req, 0, ifn, length, (e, d) => (e ? rej(e) : res(d))));

let tag = 0x1000;
function cbw(length, dataIn, cdb) {
  const b = Buffer.alloc(31);
  b.writeUInt32LE(0x43425355, 0);
  b.writeUInt32LE(++tag, 4);
  b.writeUInt32LE(length, 8);
  b[12] = dataIn ? 0x80 : 0;
  b[14] = cdb.length;
  cdb.copy(b, 15);
  return b;
}
const rw10 = (op, lba, blocks) => Buffer.from([op, 0, (lba >>> 24) & 255, (lba >>> 16) & 255, (lba >>> 8) & 255, lba & 255, 0, blocks >> 8, blocks & 255, 0]);
const READ10 = 0x28;
const WRITE10 = 0x2a;

/** Bulk-Only Mass Storage Reset, then both halts cleared (Reset Recovery); a port reset if the
    device refuses the class reset and --port-reset allows it. */
async function resetRecovery(what) {
  try {
    await control(0x21, 0xff, Buffer.alloc(0));
  } catch (e) {
    if (!portReset || !/STALL|PIPE/.test(e.message)) throw e;
    check(`${what}: the device refused the Bulk-Only reset; the host resets the port`, true);
    portResets++;
    await portResetAndReopen();
    return;
  }
  await clearHalt(epIn);
  await clearHalt(epOut);
}

/** The CSW, clearing a halt of bulk-IN first if the device stalled it (BOT §6.7.2, 6.7.3). */
async function readCsw() {
  try {
    return await inXfer(512);
  } catch (e) {
    if (!/STALL/.test(e.message)) throw e;
    await clearHalt(epIn);
    return inXfer(512);
  }
}

/** REQUEST SENSE: the sense data (fixed format). */
async function requestSense() {
  const c = cbw(18, true, Buffer.from([0x03, 0, 0, 0, 18, 0]));
  const dataIn = inXfer(18);
  dataIn.catch(() => undefined);
  await outXfer(c);
  const data = await dataIn;
  await readCsw();
  return data;
}

/** Unit attentions a READ met (after a port reset the device reports one, as it must). */
let unitAttentions = 0;
let portResets = 0;

/**
 * A whole READ: its data and its CSW (asked for as a full packet, so stray data shows). The
 * data-in request goes to the host controller with the CBW, not after it: bulk-IN is polled
 * from the moment the CBW is sent, so whatever the device left queued there is taken at
 * once, before the device has even read the CBW (a host may do so; this makes the race a
 * device must not lose certain to be run). A READ that fails with a unit attention (no data,
 * bulk-IN stalled, CSW FAILED, then REQUEST SENSE) is sent again, as a host does.
 */
async function read(lba, blocks) {
  for (let attempt = 0; ; attempt++) {
    const c = cbw(blocks * 512, true, rw10(READ10, lba, blocks));
    const dataIn = inXfer(blocks * 512);
    dataIn.catch(() => undefined); // awaited below unless the CBW fails
    await outXfer(c);
    let data;
    try {
      data = await dataIn;
    } catch (e) {
      if (!/STALL/.test(e.message)) throw e;
      await clearHalt(epIn);
      data = Buffer.alloc(0);
    }
    const csw = await readCsw();
    const tag = c.readUInt32LE(4);
    if (attempt < 2 && data.length === 0 && csw.length === 13 && csw.readUInt32LE(4) === tag && csw[12] === 1) {
      const sense = await requestSense();
      if ((sense[2] & 0x0f) === 6) {
        unitAttentions++;
        continue;
      }
    }
    return { data, csw, tag };
  }
}

/** The next command after a reset gets exactly its own data and a good CSW. */
async function verify(what, lba, blocks) {
  try {
    const r = await read(lba, blocks);
    const cswOk = r.csw.length === 13 && r.csw.readUInt32LE(0) === 0x53425355 && r.csw.readUInt32LE(4) === r.tag && r.csw[12] === 0;
    check(`${what}: the next READ (LBA ${lba}, ${blocks} blocks) gets its own data`, r.data.equals(medium(lba, blocks)), `${r.data.length} bytes, not the medium's`);
    check(`${what}: and its own CSW`, cswOk, `${r.csw.length} bytes: ${r.csw.subarray(0, 13).toString('hex')}`);
  } catch (e) {
    check(`${what}: the next READ (LBA ${lba}, ${blocks} blocks) completes`, false, e.message);
    await resetRecovery(what).catch(() => undefined);
  }
}

/** Start a command (`begin`), abandon it with Reset Recovery, then check the READs after it. */
async function abandon(what, begin) {
  try {
    await begin(what);
    await new Promise((r) => setTimeout(r, 50));
    await resetRecovery(what);
  } catch (e) {
    check(`${what}: host side`, false, e.message);
  }
  await verify(what, 2000, 8);
  await verify(what, 4000, 240);
}

async function main() {
  // Warm up: a whole READ and GET MAX LUN.
  await control(0xa1, 0xfe, 1);
  await verify('before any reset', 0, 8);

  // READs abandoned with their data partly taken: none, one piece, all but the CSW.
  for (const take of [0, 512, 16384, 65536, 122880]) {
    await abandon(`READ of 240 blocks abandoned after ${take} bytes`, async (what) => {
      await outXfer(cbw(240 * 512, true, rw10(READ10, 0, 240)));
      if (take > 0) {
        const got = await inXfer(take);
        check(`${what}: those bytes were the medium's`, got.equals(medium(0, 240).subarray(0, take)));
      }
    });
  }

  // WRITEs abandoned with their data-out partly sent: none, one piece, most of it.
  for (const give of [0, 16384, 98304]) {
    await abandon(`WRITE of 240 blocks abandoned after ${give} bytes`, async () => {
      await outXfer(cbw(240 * 512, false, rw10(WRITE10, 8192, 240)));
      if (give > 0) await outXfer(Buffer.alloc(give, 0xa5));
    });
  }
  // A whole WRITE still lands where it should after all that.
  const data = Buffer.alloc(240 * 512);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 5) & 0xff;
  const c = cbw(data.length, false, rw10(WRITE10, 10000, 240));
  await outXfer(c);
  await outXfer(data);
  const csw = await inXfer(512);
  check('a whole WRITE after the resets: good CSW', csw.length === 13 && csw.readUInt32LE(4) === c.readUInt32LE(4) && csw[12] === 0, csw.toString('hex'));
  const back = await read(10000, 240);
  check('and it reads back', back.data.equals(data) && back.csw[12] === 0);
  check(`a unit attention only after a port reset (${unitAttentions} after ${portResets} port resets)`, unitAttentions <= portResets);
}

main()
  .catch((e) => check('the abandon sequence ran', false, e.message))
  .finally(() => {
    iface.release(true, () => {
      try {
        if (hadDriver) iface.attachKernelDriver();
      } catch (e) {
        console.log(`note: usb-storage not attached again: ${e.message}`);
      }
      dev.close();
      process.exit(failed === 0 ? 0 : 1);
    });
  });
