import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BotFunction, decodeCsw, encodeCbw, usbNexus } from '../../../src/fabrics/usb/bot';
import type { BotOutcome } from '../../../src/fabrics/usb/bot';
import { BotFastPath } from '../../../src/fabrics/usb/bot-fast';
import { findFastAddon } from '../../../src/fabrics/usb/fast-addon';
import { CTL_WORDS, Ctl, Lease, LEASE_STRIDE, LeaseFlag, planFast } from '../../../src/fabrics/usb/bot-fast-worker';
import { FfsEndpoints, nodeFfsIo } from '../../../src/fabrics/usb/functionfs';
import { openFile } from '../../../src/backstores/file';
import { LogicalUnit } from '../../../src/scsi/logical-unit';
import { TargetPort } from '../../../src/scsi/port';
import type { Nexus } from '../../../src/scsi/types';
import { cmd as scsiCmd, nexus as scsiNexus } from '../../scsi/helpers';

// ---------------------------------------------------------------------------------------
// planFast: which CBWs the worker serves itself (everything else goes to the core).

const BLOCKS = 2048; // 1 MiB of 512-byte blocks

function leased(flags: number, lun = 0): Int32Array {
  const ctl = new Int32Array(CTL_WORDS);
  const at = Ctl.LEASES + lun * LEASE_STRIDE;
  ctl[at + Lease.FLAGS] = flags;
  ctl[at + Lease.FD] = 42;
  ctl[at + Lease.BLOCK_SIZE] = 512;
  ctl[at + Lease.BLOCKS_LO] = BLOCKS;
  ctl[at + Lease.BLOCKS_HI] = 0;
  ctl[at + Lease.MAX_BLOCKS] = 1024;
  return ctl;
}

function rw10(write: boolean, lba: number, blocks: number, opts: { byte1?: number; group?: number; control?: number } = {}): Buffer {
  const c = Buffer.alloc(10);
  c[0] = write ? 0x2a : 0x28;
  c[1] = opts.byte1 ?? 0;
  c.writeUInt32BE(lba, 2);
  c[6] = opts.group ?? 0;
  c.writeUInt16BE(blocks, 7);
  c[9] = opts.control ?? 0;
  return c;
}

function cbwOf(cdb: Buffer, length: number, dataIn: boolean, lun = 0, tag = 7): Buffer {
  return encodeCbw({ tag, dataTransferLength: length, dataIn, lun, cdb });
}

const RW = LeaseFlag.READ | LeaseFlag.WRITE;

test('planFast: READ(10) and WRITE(10) of a leased LUN, exactly as long as the host said', () => {
  const r = planFast(cbwOf(rw10(false, 16, 8), 4096, true, 0, 0x1234), 31, 1, leased(RW), 1 << 22);
  assert.equal(r, { write: false, lun: 0, tag: 0x1234, fd: 42, position: 16 * 512, bytes: 4096, sync: false });
  const w = planFast(cbwOf(rw10(true, 2040, 8), 4096, false), 31, 1, leased(RW), 1 << 22);
  assert.equal(w, { write: true, lun: 0, tag: 7, fd: 42, position: 2040 * 512, bytes: 4096, sync: false });
});

test('planFast: FUA, or a lease with the write cache off, makes the write synchronous; DPO is fine', () => {
  assert.is(planFast(cbwOf(rw10(true, 0, 1, { byte1: 0x08 }), 512, false), 31, 1, leased(RW), 1 << 22)?.sync, true);
  assert.is(planFast(cbwOf(rw10(true, 0, 1), 512, false), 31, 1, leased(RW | LeaseFlag.WRITE_THROUGH), 1 << 22)?.sync, true);
  assert.is(planFast(cbwOf(rw10(false, 0, 1, { byte1: 0x18 }), 512, true), 31, 1, leased(RW), 1 << 22)?.sync, false);
});

test('planFast: READ(16) and WRITE(16), and an LBA beyond 2^53 left to the core', () => {
  const c = Buffer.alloc(16);
  c[0] = 0x88;
  c.writeBigUInt64BE(100n, 2);
  c.writeUInt32BE(4, 10);
  assert.equal(planFast(cbwOf(c, 2048, true), 31, 1, leased(RW), 1 << 22)?.position, 100 * 512);
  c[0] = 0x8a;
  assert.is(planFast(cbwOf(c, 2048, false), 31, 1, leased(RW), 1 << 22)?.write, true);
  c.writeBigUInt64BE(1n << 60n, 2);
  assert.is(planFast(cbwOf(c, 2048, false), 31, 1, leased(RW), 1 << 22), undefined);
});

test('planFast: everything the core must answer is handed over', () => {
  const ok = (cbw: Buffer, ctl = leased(RW), n = 31): boolean => planFast(cbw, n, 1, ctl, 8192) !== undefined;
  assert.ok(ok(cbwOf(rw10(false, 0, 8), 4096, true)), 'the baseline is served');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4096, true), leased(0)), 'no lease');
  assert.not.ok(ok(cbwOf(rw10(true, 0, 8), 4096, false), leased(LeaseFlag.READ)), 'a read-only lease and a WRITE');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4096, true), leased(RW, 1)), 'the lease is for another LUN');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4096, true, 1)), 'LUN beyond the count');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4096, true), leased(RW), 32), 'not 31 bytes');
  const badSig = cbwOf(rw10(false, 0, 8), 4096, true);
  badSig[0] = 0;
  assert.not.ok(ok(badSig), 'bad signature');
  const reserved = cbwOf(rw10(false, 0, 8), 4096, true);
  reserved[12] = 0x81;
  assert.not.ok(ok(reserved), 'reserved flag bit');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4000, true)), 'host length differs (case 5/7)');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8), 4096, false)), 'host direction differs (case 10)');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 0), 0, true)), 'zero blocks');
  assert.not.ok(ok(cbwOf(rw10(false, BLOCKS - 4, 8), 4096, true)), 'beyond the last block');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 1025), 1025 * 512, true)), 'above MAXIMUM TRANSFER LENGTH');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 32), 32 * 512, true)), 'above the worker buffer limit');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8, { byte1: 0x20 }), 4096, true)), 'RDPROTECT set');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8, { byte1: 0x04 }), 4096, true)), 'a reserved byte-1 bit');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8, { group: 1 }), 4096, true)), 'GROUP NUMBER');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8, { control: 4 }), 4096, true)), 'NACA in CONTROL');
  assert.not.ok(ok(cbwOf(Buffer.from([0x08, 0, 0, 0, 8, 0]), 4096, true)), 'READ(6)');
  assert.not.ok(ok(cbwOf(Buffer.from([0x12, 0, 0, 0, 36, 0]), 36, true)), 'INQUIRY');
  assert.not.ok(ok(cbwOf(rw10(false, 0, 8).subarray(0, 9), 4096, true)), 'CB length too short for READ(10)');
});

// ---------------------------------------------------------------------------------------
// The whole path with a real worker thread: the bulk endpoints are two FIFOs, the LUN a file
// backstore under the real core. The test is the host: it writes CBWs and data-out into one
// FIFO and reads data-in and CSWs from the other.

interface Rig {
  dir: string;
  outFd: number;
  inFd: number;
  unit: LogicalUnit;
  bot: BotFunction;
  fast: BotFastPath;
  outcomes: BotOutcome[];
  nexus: Nexus;
  port: TargetPort;
  close(): Promise<void>;
}

/** The two loops the worker can run: JavaScript, and C from the lunbox-fast addon (dist/). */
interface Variant {
  readonly name: string;
  /** The addon's path; '' when it is missing (the C variant's tests then fail, saying why). */
  readonly native?: string;
  /** The C loop's READs take its pread path instead of the backstore's mapping. */
  readonly noMmap?: boolean;
}
const ADDON = findFastAddon({}, path.resolve(__dirname, '../../../dist'));
const VARIANTS: readonly Variant[] = [
  { name: 'JavaScript loop' },
  { name: 'C loop', native: ADDON.path ?? '' },
  { name: 'C loop, READs by pread', native: ADDON.path ?? '', noMmap: true },
];

async function rig(v: Variant): Promise<Rig> {
  if (v.native === '') assert.unreachable(`the lunbox-fast addon is missing (${ADDON.why}): run npm run build with a C compiler (apt-get install gcc)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lunbox-fast-'));
  execFileSync('mkfifo', [path.join(dir, 'out'), path.join(dir, 'in')]);
  // O_RDWR: a FIFO opened both ways never blocks on open and never sees end-of-file.
  const outFd = fs.openSync(path.join(dir, 'out'), fs.constants.O_RDWR);
  const inFd = fs.openSync(path.join(dir, 'in'), fs.constants.O_RDWR);
  const store = await openFile({ name: 'disk', path: path.join(dir, 'disk.img'), size: 1024 * 1024, create: true });
  const unit = new LogicalUnit({ backstore: store });
  const entries = [{ lun: 0, unit }];
  const port = new TargetPort({ lunMap: () => entries });
  const nexus = usbNexus({ gadget: 'g', udc: 'dummy_udc.0' });
  const endpoints = new FfsEndpoints(nodeFfsIo(), inFd, outFd);
  const outcomes: BotOutcome[] = [];
  let fast: BotFastPath | undefined;
  const bot = new BotFunction({ port, nexus, endpoints, externalCbws: true, pipelineStatus: false, onReset: () => fast?.reset() });
  fast = new BotFastPath({ bot, endpoints, entries, nexus, lunCount: 1, onOutcome: (o) => outcomes.push(o), log: () => undefined, ...(v.native ? { native: v.native } : {}) });
  // The C loop reads LUNBOX_USB_NO_MMAP at its first READ: it stays set while this rig lives.
  if (v.noMmap) process.env['LUNBOX_USB_NO_MMAP'] = '1';
  fast.start();
  if (v.native) {
    for (let i = 0; i < 400 && !fast.native; i++) await sleep(5);
    assert.ok(fast.native, `the worker runs the C loop of ${v.native}`);
  }
  bot.enable(512);
  fast.enable(512);
  const f = fast;
  return {
    dir, outFd, inFd, unit, bot, fast: f, outcomes, nexus, port,
    async close() {
      // The worker is blocked reading the FIFO (a gadget's unbind would end that with ESHUTDOWN).
      const stopped = f.stop();
      fs.writeSync(outFd, Buffer.alloc(1));
      await stopped;
      if (v.noMmap) delete process.env['LUNBOX_USB_NO_MMAP'];
      await bot.disable();
      await unit.close();
      fs.closeSync(outFd);
      fs.closeSync(inFd);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run `body` on a fresh rig whose host has cleared its unit attention (the lease is granted). */
async function withAttachedRig(v: Variant, body: (r: Rig) => Promise<void>): Promise<void> {
  const r = await rig(v);
  try {
    await attach(r);
    await body(r);
  } finally {
    await r.close();
  }
}

/** Read exactly n bytes from the device's bulk-IN FIFO (on the threadpool: the core may need the event loop). */
async function hostRead(r: Rig, n: number): Promise<Buffer> {
  const b = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    got += await new Promise<number>((res, rej) => fs.read(r.inFd, b, got, n - got, null, (e, k) => (e ? rej(e) : res(k))));
  }
  return b;
}

function hostWrite(r: Rig, b: Buffer): void {
  assert.is(fs.writeSync(r.outFd, b), b.length);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The CSW of a command the core answered is out before the main thread grants leases again. */
async function leaseBecomes(r: Rig, want: 'no' | 'read' | 'read-write'): Promise<string> {
  for (let i = 0; i < 200 && r.fast.leaseOf(0) !== want; i++) await sleep(5);
  return r.fast.leaseOf(0);
}

/** One command without data-out: its data-in (dataIn bytes) and CSW. */
async function command(r: Rig, cbw: Buffer, dataIn: number): Promise<{ data: Buffer; csw: ReturnType<typeof decodeCsw> }> {
  hostWrite(r, cbw);
  const data = await hostRead(r, dataIn);
  return { data, csw: decodeCsw(await hostRead(r, 13)) };
}

/** Unit attention away: TEST UNIT READY (CHECK CONDITION), REQUEST SENSE; then the lease is granted. */
async function attach(r: Rig): Promise<void> {
  const tur = await command(r, cbwOf(Buffer.alloc(6), 0, false, 0, 1), 0);
  assert.is(tur.csw.bCSWStatus, 1, 'power-on unit attention first');
  assert.is(r.fast.leaseOf(0), 'no', 'no lease while sense is held');
  const rs = await command(r, cbwOf(Buffer.from([0x03, 0, 0, 0, 18, 0]), 18, true, 0, 2), 18);
  assert.is(rs.csw.bCSWStatus, 0);
  assert.is(rs.data[12], 0x29, 'POWER ON, RESET sense');
  assert.is(await leaseBecomes(r, 'read-write'), 'read-write');
}

/** Writes wait until the worker is blocked reading data-out: a FIFO has no packet boundaries. */
async function writeCommand(r: Rig, cbw: Buffer, data: Buffer): Promise<ReturnType<typeof decodeCsw>> {
  hostWrite(r, cbw);
  await sleep(100);
  hostWrite(r, data);
  return decodeCsw(await hostRead(r, 13));
}

for (const v of VARIANTS) {
  test(`fast path (${v.name}): the worker serves READ and WRITE, the core the rest, with the same bytes on the medium`, () =>
    withAttachedRig(v, async (r) => {
      const pattern = Buffer.alloc(8 * 512);
      for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
      const w = await writeCommand(r, cbwOf(rw10(true, 100, 8), pattern.length, false, 0, 10), pattern);
      assert.equal([w.dCSWTag, w.dCSWDataResidue, w.bCSWStatus], [10, 0, 0]);
      const onDisk = fs.readFileSync(path.join(r.dir, 'disk.img')).subarray(100 * 512, 100 * 512 + pattern.length);
      assert.ok(onDisk.equals(pattern), 'the worker wrote the data at LBA 100');
      const rd = await command(r, cbwOf(rw10(false, 100, 8), pattern.length, true, 0, 11), pattern.length);
      assert.equal([rd.csw.dCSWTag, rd.csw.dCSWDataResidue, rd.csw.bCSWStatus], [11, 0, 0]);
      assert.ok(rd.data.equals(pattern), 'READ returns it');
      const c = r.fast.counters;
      assert.equal([c.reads, c.writes], [1, 1], 'both served by the worker');
      assert.is(c.forwarded, 2, 'TEST UNIT READY and REQUEST SENSE went to the core');
      // READ(6) goes to the core and sees the worker's write.
      const r6 = await command(r, cbwOf(Buffer.from([0x08, 0, 0, 100, 8, 0]), pattern.length, true, 0, 12), pattern.length);
      assert.is(r6.csw.bCSWStatus, 0);
      assert.ok(r6.data.equals(pattern));
      assert.is(r.fast.counters.forwarded, 3);
    }));

  test(`fast path (${v.name}): what the core must answer reaches it (out of range: CHECK CONDITION and its sense), then the lease comes back`, () =>
    withAttachedRig(v, async (r) => {
      // No data stage (dCBWDataTransferLength 0): a FIFO cannot stall as a halted Bulk-In would.
      const bad = await command(r, cbwOf(rw10(false, 2047, 8), 0, true, 0, 20), 0);
      assert.equal([bad.csw.dCSWTag, bad.csw.bCSWStatus], [20, 1]);
      assert.is(await leaseBecomes(r, 'no'), 'no', 'sense held for REQUEST SENSE');
      const rs = await command(r, cbwOf(Buffer.from([0x03, 0, 0, 0, 18, 0]), 18, true, 0, 21), 18);
      assert.equal([rs.data[2]! & 0x0f, rs.data[12]], [0x05, 0x21], 'ILLEGAL REQUEST, LBA OUT OF RANGE');
      assert.is(await leaseBecomes(r, 'read-write'), 'read-write');
    }));

  test(`fast path (${v.name}): a command from another nexus takes the lease back first; a unit attention too`, () =>
    withAttachedRig(v, async (r) => {
      assert.ok(r.unit.fastLease !== undefined, 'the unit is leased');
      const other: Nexus = { ...r.nexus, id: 'iqn.other|t', initiatorName: 'iqn.other', initiatorPort: 'iqn.other' };
      const res = await r.unit.execute({ lun: 0, cdb: Buffer.from([0x00, 0, 0, 0, 0, 0]), tag: 1, attribute: 'simple', nexus: other, dataInLength: 0, dataOutLength: 0, dataOut: async () => Buffer.alloc(0), aborted: false });
      assert.is(res.status, 2, 'the other nexus gets its own power-on unit attention');
      assert.is(r.fast.leaseOf(0), 'no', 'lease revoked before it ran');
      assert.is(r.unit.fastLease, undefined);
      // The next USB command goes to the core, which grants the lease again (no other task now).
      const rd = await command(r, cbwOf(rw10(false, 0, 1), 512, true, 0, 30), 512);
      assert.is(rd.csw.bCSWStatus, 0);
      assert.is(await leaseBecomes(r, 'read-write'), 'read-write');
      r.unit.capacityChanged();
      assert.is(r.fast.leaseOf(0), 'no', 'a unit attention for the holder revokes');
      const ua = await command(r, cbwOf(rw10(false, 0, 1), 0, true, 0, 31), 0);
      assert.is(ua.csw.bCSWStatus, 1, 'and the core reports it');
    }));

  test(`fast path (${v.name}): another initiator on the same LUN sees the worker's writes, and the worker sees its writes (read-ahead dropped)`, () =>
    withAttachedRig(v, async (r) => {
      const B = scsiNexus(2);
      const viaB = (cdb: number[] | Buffer, o: { data?: Buffer; dataIn?: number } = {}) => r.port.execute(scsiCmd(cdb, { nexus: B, ...o }));
      await viaB([0x00, 0, 0, 0, 0, 0]); // its power-on unit attention
      // B reads sequentially: the file backstore reads ahead LBA 24..31 (zeros now).
      for (const lba of [8, 16]) assert.is((await viaB([0x28, 0, 0, 0, 0, lba, 0, 0, 8, 0], { dataIn: 4096 })).status, 0);
      assert.is(r.fast.leaseOf(0), 'no', 'B took the lease back');
      // Any USB command the core answers grants the lease again, and drops that read-ahead.
      const tur = await command(r, cbwOf(Buffer.alloc(6), 0, false, 0, 40), 0);
      assert.is(tur.csw.bCSWStatus, 0);
      assert.is(await leaseBecomes(r, 'read-write'), 'read-write');
      const y = Buffer.alloc(4096, 0x5a);
      const w = await writeCommand(r, cbwOf(rw10(true, 24, 8), 4096, false, 0, 41), y);
      assert.is(w.bCSWStatus, 0);
      assert.is(r.fast.counters.writes, 1, 'the worker wrote LBA 24..31');
      const seen = await viaB([0x28, 0, 0, 0, 0, 24, 0, 0, 8, 0], { dataIn: 4096 });
      assert.is(seen.status, 0);
      assert.ok(seen.dataIn?.equals(y), 'B reads the worker\'s data, not what was read ahead before it');
      // B writes; the USB host's next READ goes through the core (lease gone) and sees it.
      const z = Buffer.alloc(4096, 0xa5);
      assert.is((await viaB([0x2a, 0, 0, 0, 0, 32, 0, 0, 8, 0], { data: z })).status, 0);
      const rd = await command(r, cbwOf(rw10(false, 32, 8), 4096, true, 0, 42), 4096);
      assert.is(rd.csw.bCSWStatus, 0);
      assert.ok(rd.data.equals(z));
    }));

  test(`fast path (${v.name}): a read-only LUN map entry leases reads only; the core refuses the WRITE`, () =>
    withAttachedRig(v, async (r) => {
      const grant = r.unit.fastPathGrant(r.nexus, true);
      assert.equal(grant, { read: true, write: false, writeThrough: !r.unit.writeCacheEnabled });
      r.unit.writeCacheEnabled = false;
      assert.is(r.unit.fastPathGrant(r.nexus, false)?.writeThrough, true);
    }));
}

test.run();
