import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BotFunction, CswStatus, encodeCbw, usbNexus } from '../../../src/fabrics/usb/bot';
import { serveEp0 } from '../../../src/fabrics/usb/ep0-events';
import { encodeBotDescriptors, encodeBotStrings } from '../../../src/fabrics/usb/functionfs-descriptors';
import {
  FfsEndpoints,
  FunctionFs,
  currentMaxPacket,
  normalizeErrno,
  parseFfsMounts,
  parseUdcSpeed,
} from '../../../src/fabrics/usb/functionfs';
import { FakeFfsIo } from './fake-ffs-io';
import { BLOCK, FakePort } from './fake-port';

const MNT = '/dev/ffs-lunbox';

async function opened(io: FakeFfsIo): Promise<{ ffs: FunctionFs; eps: FfsEndpoints }> {
  const ffs = new FunctionFs({ instance: 'lunbox', io });
  await ffs.mount();
  await ffs.writeDescriptors(encodeBotDescriptors(), encodeBotStrings());
  return { ffs, eps: await ffs.openEndpoints() };
}

const read10 = (lba: number, blocks: number): Buffer => {
  const c = Buffer.alloc(10);
  c[0] = 0x28;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
};
const write10 = (lba: number, blocks: number): Buffer => {
  const c = read10(lba, blocks);
  c[0] = 0x2a;
  return c;
};
const inquiry = (alloc: number): Buffer => Buffer.from([0x12, 0, 0, 0, alloc, 0]);

test('current_speed strings map to bulk packet sizes; unknown means not connected', async () => {
  assert.is(parseUdcSpeed('high-speed\n'), 'high');
  assert.is(parseUdcSpeed('full-speed'), 'full');
  assert.is(parseUdcSpeed('super-speed'), 'super');
  assert.is(parseUdcSpeed('super-speed-plus'), 'super');
  assert.is(parseUdcSpeed('UNKNOWN'), undefined);
  assert.is(parseUdcSpeed(undefined), undefined);
  const io = new FakeFfsIo();
  io.sysfs.set('/sys/class/udc/u/current_speed', 'full-speed\n');
  assert.equal(await currentMaxPacket(io, '/sys/class/udc', 'u'), { speed: 'full', mps: 64 });
  assert.equal(await currentMaxPacket(io, '/sys/class/udc', 'other'), { speed: undefined, mps: 512 });
});

test('/proc/mounts: FunctionFS entries only, octal escapes decoded', () => {
  const m = parseFfsMounts('sysfs /sys sysfs rw 0 0\nlunbox /dev/ffs-lunbox functionfs rw 0 0\nx /mnt/a\\040b functionfs rw 0 0\n');
  assert.equal(m, [
    { instance: 'lunbox', dir: '/dev/ffs-lunbox' },
    { instance: 'x', dir: '/mnt/a b' },
  ]);
});

test('errnos libuv cannot name (EBADMSG, EL2HLT, ESHUTDOWN, EIDRM) get their names', () => {
  const e = normalizeErrno(Object.assign(new Error('Unknown system error -74: Unknown system error -74, read'), { errno: -74, code: 'Unknown system error -74' }));
  assert.is(e.code, 'EBADMSG');
  assert.match(e.message, /^EBADMSG: EBADMSG, read/);
  assert.is((normalizeErrno(Object.assign(new Error('x'), { errno: -51 })) as NodeJS.ErrnoException).code, 'EL2HLT');
  assert.is(normalizeErrno(Object.assign(new Error('x'), { errno: -108, code: 'ESHUTDOWN' })).code, 'ESHUTDOWN');
  assert.is((normalizeErrno(Object.assign(new Error('x'), { errno: -43 })) as NodeJS.ErrnoException).code, 'EIDRM');
  assert.is(normalizeErrno(Object.assign(new Error('x'), { errno: -2, code: 'ENOENT' })).code, 'ENOENT');
  assert.is(normalizeErrno('not an error'), 'not an error');
});

test('mount, descriptors + strings to ep0, then ep1/ep2 open; unmount closes everything', async () => {
  const io = new FakeFfsIo();
  const ffs = new FunctionFs({ instance: 'lunbox', io, mountOptions: 'no_disconnect=1' });
  assert.is(ffs.mountPoint, MNT);
  await ffs.mount();
  assert.ok(io.dirs.has(MNT));
  await ffs.openEndpoints().then(
    () => assert.unreachable('ep files exist only after the descriptors'),
    (e: { code: string }) => assert.is(e.code, 'EP_OPEN'),
  );
  await ffs.writeDescriptors(encodeBotDescriptors(), encodeBotStrings());
  assert.equal(io.bus.ep0.blobs, [encodeBotDescriptors(), encodeBotStrings()]);
  const eps = await ffs.openEndpoints();
  assert.ok(eps.inFd !== eps.outFd);
  await ffs.unmount();
  assert.equal(io.log, [
    `mount lunbox ${MNT} -o no_disconnect=1`,
    'open ep0',
    'open ep1',
    'open ep2',
    'close ep1',
    'close ep2',
    'close ep0',
    `umount ${MNT}`,
  ]);
  assert.is(io.mounts.length, 0);
});

test('leftover mounts of the instance (a crashed run) are unmounted, others kept', async () => {
  const io = new FakeFfsIo();
  io.mounts.push({ instance: 'lunbox', dir: '/somewhere/else' }, { instance: 'adb', dir: '/dev/usb-ffs/adb' }, { instance: 'lunbox', dir: MNT });
  const ffs = new FunctionFs({ instance: 'lunbox', io });
  assert.is(await ffs.unmountLeftovers(), 2);
  assert.equal(io.mounts, [{ instance: 'adb', dir: '/dev/usb-ffs/adb' }]);
});

test('halting: wrong-direction I/O, EBADMSG (unnamed errno -74) is success; EAGAIN is retried', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  await eps.haltIn();
  assert.ok(io.bus.in.halted);
  io.haltErrors.push('EAGAIN', 'EAGAIN');
  await eps.haltOut();
  assert.ok(io.bus.out.halted);
  assert.is(eps.stats.halts, 2);
  io.haltErrors.push('EIO');
  await eps.haltIn().then(
    () => assert.unreachable('EIO is a failure'),
    (e: { code: string }) => assert.is(e.code, 'EIO'),
  );
});

test('a 0-byte write reaches the pipe as a zero-length packet; reads stop at a short packet', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  const w = eps.writeIn(Buffer.alloc(0));
  const r = await io.bus.in.hostRead(512, 1000);
  await w;
  assert.is(r.data.length, 0);
  assert.ok(io.bus.trace.includes('IN ZLP'));
  const host = io.bus.out.hostWrite(Buffer.alloc(31, 7), 1000);
  const got = await eps.readOut(512);
  assert.is(got.length, 31);
  assert.is((await host).sent, 31);
});

test('ENOMEM from the kernel (no buffer for a big transfer): split into halves, same bytes, limit kept', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  io.maxAlloc = 100 * 1024;
  const data = Buffer.alloc(256 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const csw = Buffer.alloc(13, 0x53);
  const w = eps.writeInv([data, csw]);
  const d = await io.bus.in.hostRead(data.length, 1000);
  const s = await io.bus.in.hostRead(512, 1000);
  await w;
  assert.ok(d.data.equals(data), 'data arrives whole and in order');
  assert.ok(s.data.equals(csw), 'the CSW lands in the next request');
  // 256K+13 failed; then 128K failed; 64K pieces went out (last one with the CSW).
  assert.equal(io.inWrites.map((x) => x.bytes), [65536, 65536, 65536, 65536, 13]);
  assert.is(eps.maxTransfer, 64 * 1024);
  assert.is(eps.stats.splits, 2);
  // Reads: the host's 192 KiB transfer is taken in 64 KiB pieces, then a short one ends it.
  const payload = Buffer.alloc(192 * 1024 + 100, 0x77);
  const host = io.bus.out.hostWrite(payload, 1000);
  const got = await eps.readOut(256 * 1024);
  assert.is(got.length, payload.length);
  assert.ok(got.equals(payload));
  assert.is((await host).sent, payload.length);
  assert.equal(io.outReads.slice(-4), [65536, 65536, 65536, 65536]);
  // At the floor (16 KiB) an ENOMEM is an error, not a loop.
  io.maxAlloc = 1000;
  await eps.writeIn(Buffer.alloc(64 * 1024)).then(
    () => assert.unreachable('should fail'),
    (e: { code: string }) => assert.is(e.code, 'ENOMEM'),
  );
});

test('cancel abandons a pending read; its data goes to the next readOut (the CBW after a reset)', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  const pending = eps.readOut(512);
  eps.cancel();
  await pending.then(
    () => assert.unreachable('cancelled'),
    (e: { code: string }) => assert.is(e.code, 'ECANCELED'),
  );
  const cbw = Buffer.alloc(31, 0x55);
  const host = io.bus.out.hostWrite(cbw, 1000);
  const next = await eps.readOut(512);
  assert.ok(next.equals(cbw));
  assert.is(eps.stats.adopted, 1);
  assert.is(eps.stats.reads, 1, 'one kernel read served both callers');
  await host;
});

test('an adopted read that a reset cut short: the abandoned data-out in front of the next CBW is dropped', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  // A data-out read of 64 KiB; the host sends 16 KiB of it, then gives up (reset).
  const dataOut = eps.readOut(64 * 1024);
  const sent = io.bus.out.hostWrite(Buffer.alloc(16 * 1024, 0xa5), 1000);
  await new Promise((r) => setTimeout(r, 10));
  eps.cancel();
  await dataOut.catch(() => undefined);
  await sent;
  // The host's next CBW completes the kernel read (a short packet after whole packets).
  const cbw = Buffer.alloc(31, 0x55);
  const host = io.bus.out.hostWrite(cbw, 1000);
  const next = await eps.readOut(512);
  assert.ok(next.equals(cbw), `got ${next.length} bytes`);
  assert.is(eps.stats.discardedOut, 16 * 1024);
  await host;
  // Nothing of the abandoned data-out is left for later reads either.
  const later = eps.readOut(512);
  const host2 = io.bus.out.hostWrite(Buffer.alloc(31, 0x66), 1000);
  assert.ok((await later).equals(Buffer.alloc(31, 0x66)));
  await host2;
});

test('an adopted read that ended with the old session (ESHUTDOWN) is replaced by a fresh read', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  const pending = eps.readOut(512);
  eps.cancel();
  await pending.catch(() => undefined);
  io.disable(); // the orphan fails with ESHUTDOWN
  io.enable();
  const next = eps.readOut(512);
  const host = io.bus.out.hostWrite(Buffer.alloc(31, 1), 1000);
  assert.is((await next).length, 31);
  await host;
});

test('disable: pending endpoint I/O fails with ESHUTDOWN', async () => {
  const io = new FakeFfsIo();
  const { eps } = await opened(io);
  const r = eps.readOut(512);
  const w = eps.writeIn(Buffer.alloc(512));
  io.disable();
  for (const p of [r, w]) {
    await p.then(
      () => assert.unreachable('shut down'),
      (e: { code: string }) => assert.is(e.code, 'ESHUTDOWN'),
    );
  }
});

// ---------------------------------------------------------------------------------------
// The BOT machine over the file-level endpoints, with the usb-storage-like host of fake-ffs.

interface Rig {
  io: FakeFfsIo;
  port: FakePort;
  bot: BotFunction;
  loop: Promise<unknown>;
}

async function rig(opts: { pipelineStatus?: boolean; mps?: number } = {}): Promise<Rig> {
  const io = new FakeFfsIo({ maxPacketSize: opts.mps ?? 512, timeoutMs: 2000 });
  const { ffs, eps } = await opened(io);
  const port = new FakePort(2048);
  const bot = new BotFunction({
    port,
    nexus: usbNexus({ gadget: 'lunbox', udc: 'dummy_udc.0' }),
    endpoints: eps,
    maxPacketSize: opts.mps ?? 512,
    pipelineStatus: opts.pipelineStatus ?? true,
  });
  const handler = {
    event: async (kind: string) => {
      if (kind === 'enable') bot.enable(opts.mps ?? 512);
      else if (kind === 'disable' || kind === 'unbind') await bot.disable();
    },
    setup: bot.setup.bind(bot),
  };
  const loop = serveEp0(ffs.ep0, handler);
  io.bus.ep0.event('bind');
  io.bus.ep0.event('enable');
  return { io, port, bot, loop };
}

async function done(r: Rig): Promise<void> {
  r.io.bus.ep0.event('disable');
  r.io.disable();
  r.io.bus.ep0.close();
  await r.loop;
}

test('BOT over FunctionFS files: INQUIRY, READ(10) with the CSW riding on the data, WRITE(10), REQUEST SENSE', async () => {
  const r = await rig();
  const host = r.io.bus.host;
  try {
    const maxLun = await host.getMaxLun();
    assert.equal([...maxLun.data], [0]);
    const inq = await host.transport({ cdb: inquiry(36), dir: 'in', length: 36 });
    assert.is(inq.csw?.bCSWStatus, CswStatus.PASSED);
    assert.is(inq.data.subarray(8, 14).toString(), 'LUNBOX');
    // 36 bytes is not a whole packet: data and CSW go in separate writes.
    assert.equal(r.io.inWrites.slice(-2), [{ bytes: 36, parts: 1 }, { bytes: 13, parts: 1 }]);

    const data = Buffer.alloc(64 * BLOCK);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const w = await host.transport({ cdb: write10(8, 64), dir: 'out', length: data.length, data });
    assert.is(w.csw?.bCSWStatus, CswStatus.PASSED);
    assert.is(w.csw?.dCSWDataResidue, 0);
    const rd = await host.transport({ cdb: read10(8, 64), dir: 'in', length: data.length });
    assert.is(rd.csw?.bCSWStatus, CswStatus.PASSED);
    assert.ok(rd.data.equals(data));
    assert.not.ok(rd.zlpBeforeCsw);
    assert.equal(r.io.inWrites.at(-1), { bytes: data.length + 13, parts: 2 }, 'one writev: data + CSW');

    // Out of range: CHECK CONDITION, sense held for REQUEST SENSE (BOT has no autosense).
    const bad = await host.transport({ cdb: read10(1 << 20, 1), dir: 'in', length: BLOCK });
    assert.is(bad.csw?.bCSWStatus, CswStatus.FAILED);
    assert.is(bad.csw?.dCSWDataResidue, BLOCK);
    const sense = await host.transport({ cdb: Buffer.from([0x03, 0, 0, 0, 18, 0]), dir: 'in', length: 18 });
    assert.is(sense.data[12], 0x21, 'LBA OUT OF RANGE');
    assert.equal(r.io.bus.overflows, 0);
  } finally {
    await done(r);
  }
});

test('BOT over FunctionFS files without pipelining and at full speed (64-byte packets)', async () => {
  const r = await rig({ pipelineStatus: false, mps: 64 });
  try {
    const data = Buffer.alloc(8 * BLOCK, 0xa5);
    const w = await r.io.bus.host.transport({ cdb: write10(0, 8), dir: 'out', length: data.length, data });
    assert.is(w.csw?.bCSWStatus, CswStatus.PASSED);
    const rd = await r.io.bus.host.transport({ cdb: read10(0, 8), dir: 'in', length: data.length });
    assert.ok(rd.data.equals(data));
    // Hi>Di (case 5): 96 bytes expected, 36 sent; short packet, halt, CSW after the clear.
    const inq = await r.io.bus.host.transport({ cdb: inquiry(36), dir: 'in', length: 96 });
    assert.is(inq.csw?.dCSWDataResidue, 60);
    assert.is(inq.data.length, 36);
    assert.ok(r.io.bus.trace.includes('HALT IN'), 'Bulk-In halted after the short data (f_mass_storage stall=1)');
  } finally {
    await done(r);
  }
});

test('Bulk-Only reset while a READ\'s data waits on bulk-IN: refused (the write cannot be taken back); after the port reset the next command gets its own data', async () => {
  const r = await rig();
  try {
    const host = r.io.bus.host;
    // A READ whose data the host never takes: the device's blocking write waits on bulk-IN.
    const sent = await r.io.bus.out.hostWrite(encodeCbw({ tag: 77, dataTransferLength: 8 * BLOCK, dataIn: true, lun: 0, cdb: read10(0, 8) }), 1000);
    assert.is(sent.sent, 31);
    await new Promise((res) => setTimeout(res, 20));
    const reset = await host.resetRecovery();
    assert.ok(reset.stalled, 'the class reset is refused (ep0 stalled)');
    // The host resets the port: DISABLE ends the blocked write (ESHUTDOWN), then ENABLE.
    r.io.bus.ep0.event('disable');
    r.io.disable();
    await new Promise((res) => setTimeout(res, 20));
    r.io.enable();
    r.io.bus.ep0.event('enable');
    await new Promise((res) => setTimeout(res, 20));
    const inq = await host.transport({ cdb: inquiry(36), dir: 'in', length: 36 });
    assert.is(inq.csw?.bCSWStatus, CswStatus.PASSED);
    assert.is(inq.data.subarray(8, 14).toString(), 'LUNBOX', 'INQUIRY data, not the abandoned READ\'s');
    // With nothing outstanding on bulk-IN, a reset is accepted.
    const again = await host.resetRecovery();
    assert.not.ok(again.stalled);
  } finally {
    await done(r);
  }
});

test('Bulk-Only Mass Storage Reset during a held command: the next CBW is served (adopted read)', async () => {
  const r = await rig();
  try {
    r.port.holdOpcodes.add(0x00);
    const host = r.io.bus.host;
    const stuck = host.transport({ cdb: Buffer.alloc(6), dir: 'none', length: 0 });
    await new Promise((res) => setTimeout(res, 20));
    const reset = await host.resetRecovery();
    assert.not.ok(reset.stalled);
    r.port.holdOpcodes.clear();
    r.port.release();
    await stuck.catch(() => undefined);
    const inq = await host.transport({ cdb: inquiry(36), dir: 'in', length: 36 });
    assert.is(inq.csw?.bCSWStatus, CswStatus.PASSED);
  } finally {
    await done(r);
  }
});

test.run();
