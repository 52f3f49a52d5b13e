// CD/DVD-ROM units (MMC-6): byte layouts of READ TOC, GET CONFIGURATION, GESN, mode page 2Ah,
// the command table of device type 05h, tray and medium changes with PREVENT and unit attentions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { LogicalUnit, MediumRemovalPreventedError } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { MMC_COMMANDS } from '../../src/scsi/commands';
import { emptyMedium, lbaToMsf } from '../../src/scsi/mmc/mmc';
import { encodeFullToc, encodeSessionInfo, encodeToc } from '../../src/scsi/mmc/toc';
import { encodeConfiguration } from '../../src/scsi/mmc/configuration';
import { encodeEventStatus } from '../../src/scsi/mmc/events';
import { encodeDvdStructure, encodeTrackInformation } from '../../src/scsi/mmc/disc';
import { MemStore, cmd, nexus, rw10, sense } from './helpers';

const hex = (b: Buffer | undefined): string => (b ? b.toString('hex').replace(/(..)/g, '$1 ').trim() : '');

/** A CD of `blocks` 2048-byte sectors, byte i of sector n = n & 0xff. */
function disc(name: string, blocks: number, fill = 0): MemStore {
  const s = new MemStore(name, blocks * 2048);
  for (let n = 0; n < blocks; n++) s.data.fill((n + fill) & 0xff, n * 2048, (n + 1) * 2048);
  return s;
}

async function drive(blocks = 300) {
  const store = disc('cd0', blocks);
  const lu = new LogicalUnit({ backstore: store, deviceType: 'cdrom' });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd([0, 0, 0, 0, 0, 0])); // power-on UA
  return { store, lu, port };
}

// ------------------------------------------------------------------ byte layouts

test('LBA → MSF: LBA 0 is 00:02:00 (the 150-frame pregap)', () => {
  assert.equal(lbaToMsf(0), [0, 0, 2, 0]);
  assert.equal(lbaToMsf(300), [0, 0, 6, 0]);
  assert.equal(lbaToMsf(4500 - 150 + 74), [0, 1, 0, 74]);
});

test('READ TOC format 0: header, track 1, lead-out AAh, LBA and MSF', () => {
  // 0..1 length 18, first 1, last 1 | 00 ADR/CTL 14 track 01 00 start 0 | 00 14 AA 00 start 300
  assert.is(hex(encodeToc(300, false, 0)), '00 12 01 01 00 14 01 00 00 00 00 00 00 14 aa 00 00 00 01 2c');
  assert.is(hex(encodeToc(300, true, 1)), '00 12 01 01 00 14 01 00 00 00 02 00 00 14 aa 00 00 00 06 00');
  // starting track AAh: the lead-out only; track 2 does not exist
  assert.is(hex(encodeToc(300, false, 0xaa)), '00 0a 01 01 00 14 aa 00 00 00 01 2c');
  assert.is(encodeToc(300, false, 2), undefined);
});

test('READ TOC format 1 (session info) and format 2 (full TOC, MSF)', () => {
  assert.is(hex(encodeSessionInfo(false)), '00 0a 01 01 00 14 01 00 00 00 00 00');
  assert.is(hex(encodeSessionInfo(true)), '00 0a 01 01 00 14 01 00 00 00 02 00');
  const full = encodeFullToc(300);
  assert.is(full.length, 4 + 4 * 11);
  assert.is(hex(full.subarray(0, 4)), '00 2e 01 01');
  // session 1, ADR/CTL 14, TNO 0, POINT A0: PMIN first track 1, PSEC disc type 00
  assert.is(hex(full.subarray(4, 15)), '01 14 00 a0 00 00 00 00 01 00 00');
  assert.is(hex(full.subarray(15, 26)), '01 14 00 a1 00 00 00 00 01 00 00');
  // A2: lead-out at LBA 300 = 00:06:00
  assert.is(hex(full.subarray(26, 37)), '01 14 00 a2 00 00 00 00 00 06 00');
  assert.is(hex(full.subarray(37, 48)), '01 14 00 01 00 00 00 00 00 02 00');
});

test('GET CONFIGURATION: header, profile list, core, removable medium; RT 0/1/2', () => {
  const cd = { blocks: 300, mediumPresent: true, blockSize: 2048 };
  const all = encodeConfiguration(cd, 0, 0)!;
  assert.is(all.readUInt32BE(0), all.length - 4);
  assert.is(all.readUInt16BE(6), 0x0008, 'current profile CD-ROM');
  // profile list: 0000 03(persistent, current) 08 | 0010 00 00 | 0008 01 00
  assert.is(hex(all.subarray(8, 20)), '00 00 03 08 00 10 00 00 00 08 01 00');
  // core: version 2, persistent, current; interface 1 (SCSI), INQ2
  assert.is(hex(all.subarray(20, 32)), '00 01 0b 08 00 00 00 01 01 00 00 00');
  const codes: number[] = [];
  for (let o = 8; o < all.length; o += 4 + (all[o + 3] ?? 0)) codes.push(all.readUInt16BE(o));
  assert.equal(codes, [0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001e, 0x001f]);
  // RT 1 from 0003h: only current features (DVD Read is not current on a CD)
  const cur = encodeConfiguration(cd, 1, 3)!;
  const curCodes: number[] = [];
  for (let o = 8; o < cur.length; o += 4 + (cur[o + 3] ?? 0)) curCodes.push(cur.readUInt16BE(o));
  assert.equal(curCodes, [0x0003, 0x0010, 0x001e]);
  // RT 2: exactly the feature asked for; removable medium: tray, load, eject, jumper, lock
  assert.is(hex(encodeConfiguration(cd, 2, 3)!.subarray(8)), '00 03 03 04 3d 00 00 00');
  // random readable: block size 2048, blocking 1
  assert.is(hex(encodeConfiguration(cd, 2, 0x10)!.subarray(8)), '00 10 01 08 00 00 08 00 00 01 00 00');
  assert.is(encodeConfiguration(cd, 3, 0), undefined, 'RT 11b is reserved');
  // a DVD-sized image is a DVD-ROM; no medium: profile 0
  assert.is(encodeConfiguration({ blocks: 400000, mediumPresent: true, blockSize: 2048 }, 0, 0)!.readUInt16BE(6), 0x0010);
  assert.is(encodeConfiguration({ blocks: 0, mediumPresent: false, blockSize: 2048 }, 0, 0)!.readUInt16BE(6), 0x0000);
});

test('GESN: media class descriptor; NEA when the media class is not asked for', () => {
  assert.is(hex(encodeEventStatus(0x10, { event: 2, mediumPresent: true, trayOpen: false })), '00 06 04 10 02 02 00 00');
  assert.is(hex(encodeEventStatus(0x10, { event: 3, mediumPresent: false, trayOpen: true })), '00 06 04 10 03 01 00 00');
  assert.is(hex(encodeEventStatus(0x02, { event: 0, mediumPresent: true, trayOpen: false })), '00 02 80 10');
});

test('READ TRACK INFORMATION and READ DVD STRUCTURE layouts', () => {
  const t = encodeTrackInformation(300, 1, 1)!;
  assert.is(t.length, 48);
  assert.is(hex(t.subarray(0, 8)), '00 2e 01 01 00 04 01 00');
  assert.is(t.readUInt32BE(24), 300);
  assert.is(t.readUInt32BE(28), 299);
  assert.is(encodeTrackInformation(300, 1, 2), undefined);
  assert.is(encodeTrackInformation(300, 0, 300), undefined);
  const p = encodeDvdStructure(0, 400000)!;
  assert.is(p.length, 2052);
  assert.is(hex(p.subarray(0, 16)), '08 02 00 00 01 0f 01 00 00 03 00 00 00 09 1a 7f');
  assert.is(encodeDvdStructure(0x30, 400000), undefined);
});

// ------------------------------------------------------------------ the unit

test('INQUIRY: peripheral device type 05h, RMB, MMC-6 version descriptor; no SBC VPD pages', async () => {
  const { port } = await drive();
  const r = await port.execute(cmd([0x12, 0, 0, 0, 96, 0]));
  assert.is(r.dataIn?.[0], 0x05);
  assert.is(r.dataIn?.[1], 0x80);
  assert.is(r.dataIn?.readUInt16BE(62), 0x04e0);
  const vpd = await port.execute(cmd([0x12, 1, 0, 0, 64, 0]));
  assert.is(hex(vpd.dataIn?.subarray(4)), '00 80 83 86');
  assert.is(sense(await port.execute(cmd([0x12, 1, 0xb0, 0, 64, 0]))).asc, 0x2400);
});

test('READ CAPACITY(10) and READ(10)/READ(12) in 2048-byte blocks', async () => {
  const { port } = await drive(300);
  const cap = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(hex(cap.dataIn), '00 00 01 2b 00 00 08 00');
  const r = await port.execute(cmd(rw10(Op.READ_10, 7, 2)));
  assert.is(r.dataIn?.length, 4096);
  assert.is(r.dataIn?.[0], 7);
  assert.is(r.dataIn?.[4095], 8);
  const r12 = await port.execute(cmd([0xa8, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0]));
  assert.is(r12.dataIn?.[2047], 9);
});

test('writes and disk-only commands are not offered: INVALID COMMAND OPERATION CODE', async () => {
  const { port, store } = await drive();
  for (const cdb of [rw10(Op.WRITE_10, 0, 1), [0x0a, 0, 0, 0, 1, 0], [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0x08, 0, 0, 0, 1, 0]]) {
    const r = await port.execute(cmd(cdb, { data: Buffer.alloc(2048) }));
    assert.is(sense(r).key, 5);
    assert.is(sense(r).asc, 0x2000, `opcode ${cdb[0]}`);
  }
  assert.is(store.writes.length, 0);
  const names = MMC_COMMANDS.map((c) => c.name);
  for (const n of ['WRITE(10)', 'UNMAP', 'WRITE SAME(16)', 'FORMAT UNIT', 'SYNCHRONIZE CACHE(10)', 'READ CAPACITY(16)']) assert.not.ok(names.includes(n), n);
  // REPORT SUPPORTED OPERATION CODES lists the MMC table
  const rsoc = await port.execute(cmd([0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]));
  const ops = new Set<number>();
  for (let o = 4; o < (rsoc.dataIn?.length ?? 0); o += 8) ops.add(rsoc.dataIn?.[o] ?? 0);
  for (const op of [0x43, 0x46, 0x4a, 0x51, 0x52, 0xad, 0xbd, 0x28]) assert.ok(ops.has(op), `RSOC lists ${op.toString(16)}`);
  assert.not.ok(ops.has(0x2a));
});

test('READ TOC through the unit: MSF bit, format in the CONTROL byte (SFF-8020i), bad formats', async () => {
  const { port } = await drive(300);
  const r = await port.execute(cmd([0x43, 0x02, 0, 0, 0, 0, 0, 0, 0x20, 0]));
  assert.is(hex(r.dataIn), hex(encodeToc(300, true, 0)));
  // Linux sr asks for the session info with format 01b in CONTROL bits 7:6
  const s = await port.execute(cmd([0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40]));
  assert.is(hex(s.dataIn), hex(encodeSessionInfo(false)));
  assert.is(sense(await port.execute(cmd([0x43, 0, 5, 0, 0, 0, 0, 0, 12, 0]))).asc, 0x2400);
  assert.is(sense(await port.execute(cmd([0x43, 0, 0, 0, 0, 0, 5, 0, 12, 0]))).asc, 0x2400);
});

test('MODE SENSE(10) page 2Ah: tray, eject, lock and LOCK STATE following PREVENT; no block descriptor', async () => {
  const { port } = await drive();
  let r = await port.execute(cmd([0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff, 0]));
  const d = r.dataIn!;
  assert.is(d.readUInt16BE(6), 0, 'block descriptor length');
  assert.is(d[8], 0x2a);
  assert.is(d[9], 0x14);
  assert.is(d[10]! & 0x08, 0x08, 'DVD-ROM read');
  assert.is(d[14], 0x2d, 'tray, eject, prevent jumper, lock; unlocked');
  await port.execute(cmd([0x1e, 0, 0, 0, 1, 0]));
  r = await port.execute(cmd([0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff, 0]));
  assert.is(r.dataIn![14], 0x2f, 'LOCK STATE');
  r = await port.execute(cmd([0x5a, 0, 0x1a, 0, 0, 0, 0, 0, 0xff, 0]));
  assert.is(hex(r.dataIn!.subarray(8, 10)), '1a 0a');
  assert.is(sense(await port.execute(cmd([0x5a, 0, 0x08, 0, 0, 0, 0, 0, 0xff, 0]))).asc, 0x2400, 'no caching page');
  r = await port.execute(cmd([0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 0xff, 0xf0]));
  assert.is(r.status, Status.GOOD);
});

test('host eject (LOEJ) and load: 3A/02 tray open, GESN events, MECHANISM STATUS, UA 28/00 after load', async () => {
  const { port, lu } = await drive();
  const gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
  assert.is(hex((await port.execute(cmd(gesn))).dataIn), '00 06 04 10 00 02 00 00');
  assert.is((await port.execute(cmd([0x1b, 0, 0, 0, 0x02, 0]))).status, Status.GOOD);
  let r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.equal([sense(r).key, sense(r).asc], [2, 0x3a02]);
  assert.is(sense(await port.execute(cmd(rw10(Op.READ_10, 0, 1)))).asc, 0x3a02);
  assert.is(hex((await port.execute(cmd(gesn))).dataIn), '00 06 04 10 03 01 00 00', 'MediaRemoval, tray open');
  assert.is(hex((await port.execute(cmd(gesn))).dataIn), '00 06 04 10 00 01 00 00', 'the event was consumed');
  r = await port.execute(cmd([0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]));
  assert.is(r.dataIn?.[1], 0x10, 'DOOR OPEN');
  // load: the other nexus and this one see NOT READY TO READY CHANGE; GESN is UA-exempt
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: nexus(2) }));
  lu.takeUa(nexus(2).id);
  assert.is((await port.execute(cmd([0x1b, 0, 0, 0, 0x03, 0]))).status, Status.GOOD);
  assert.is(hex((await port.execute(cmd(gesn))).dataIn), '00 06 04 10 02 02 00 00', 'NewMedia');
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.equal([sense(r).key, sense(r).asc], [6, 0x2800]);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: nexus(2) }));
  assert.equal([sense(r).key, sense(r).asc], [6, 0x2800]);
  assert.is((await port.execute(cmd([0, 0, 0, 0, 0, 0]))).status, Status.GOOD);
});

test('PREVENT is honoured by host eject; the management side needs force and is reported', async () => {
  const { port, lu, store } = await drive();
  await port.execute(cmd([0x1e, 0, 0, 0, 1, 0]));
  assert.is(sense(await port.execute(cmd([0x1b, 0, 0, 0, 0x02, 0]))).asc, 0x5302);
  assert.throws(() => lu.ejectMedium(), (e: unknown) => e instanceof MediumRemovalPreventedError);
  const gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
  assert.is(hex((await port.execute(cmd(gesn))).dataIn), '00 06 04 10 01 02 00 00', 'EjectRequest posted to the host');
  assert.is((await port.execute(cmd([0, 0, 0, 0, 0, 0]))).status, Status.GOOD, 'still loaded');
  const other = disc('other', 10);
  assert.throws(() => lu.insertMedium(other), (e: unknown) => e instanceof MediumRemovalPreventedError);
  const change = lu.ejectMedium({ force: true });
  assert.equal(change, { previous: store, forced: true });
  assert.not.ok(lu.isPrevented());
  const r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.equal([sense(r).key, sense(r).asc], [2, 0x3a02]);
  assert.is(sense(await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).asc, 0x3a02);
  // GET CONFIGURATION with no medium: current profile 0000h
  const gc = await port.execute(cmd([0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0]));
  assert.is(gc.dataIn?.readUInt16BE(6), 0);
  // host closes the empty tray: medium not present, tray closed (3A/01)
  await port.execute(cmd([0x1b, 0, 0, 0, 0x03, 0]));
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0]))).asc, 0x3a01);
});

test('insertMedium of a different ISO: UA 28/00, NewMedia, the new capacity and data', async () => {
  const { port, lu, store } = await drive(300);
  const second = disc('cd0', 50, 0x40);
  const change = lu.insertMedium(second);
  assert.equal(change, { previous: store, forced: false });
  const r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.equal([sense(r).key, sense(r).asc], [6, 0x2800]);
  assert.is(hex((await port.execute(cmd([0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0]))).dataIn), '00 06 04 10 02 02 00 00');
  const cap = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.is(cap.dataIn?.readUInt32BE(0), 49);
  const rd = await port.execute(cmd(rw10(Op.READ_10, 3, 1)));
  assert.is(rd.dataIn?.[0], 0x43);
  const toc = await port.execute(cmd([0x43, 0, 0, 0, 0, 0, 0, 0, 20, 0]));
  assert.is(toc.dataIn?.readUInt32BE(16), 50, 'lead-out follows the new disc');
  await lu.idle();
});

test('an empty drive: emptyMedium backstore, then insertMedium makes it ready', async () => {
  const lu = new LogicalUnit({ backstore: emptyMedium('cd1'), deviceType: 'cdrom' });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0]))).asc, 0x3a01);
  assert.equal(lu.insertMedium(disc('cd1', 20)), { previous: undefined, forced: false });
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0]))).asc, 0x2800);
  assert.is((await port.execute(cmd([0, 0, 0, 0, 0, 0]))).status, Status.GOOD);
});

test('READ DVD STRUCTURE on a CD: 05/30/02; GET PERFORMANCE and SET CD SPEED accepted', async () => {
  const { port } = await drive();
  const r = await port.execute(cmd([0xad, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x04, 0, 0]));
  assert.equal([sense(r).key, sense(r).asc], [5, 0x3002]);
  const p = await port.execute(cmd([0xac, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]));
  assert.is(p.dataIn?.readUInt32BE(0), 20);
  assert.is((await port.execute(cmd([0xbb, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0]))).status, Status.GOOD);
  const di = await port.execute(cmd([0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0]));
  assert.is(hex(di.dataIn?.subarray(0, 9)), '00 20 0e 01 01 01 01 20 00');
});

test('a cdrom unit refuses disk-only options', () => {
  const s = disc('x', 4);
  assert.throws(() => new LogicalUnit({ backstore: s, deviceType: 'cdrom', blockSize: 512 }), /2048/);
  assert.throws(() => new LogicalUnit({ backstore: s, deviceType: 'cdrom', readOnly: false }), /read-only/);
  const lu = new LogicalUnit({ backstore: s, deviceType: 'cdrom' });
  assert.equal([lu.options.readOnly, lu.options.removable, lu.blockSize, lu.options.writeCache], [true, true, 2048, false]);
  assert.throws(() => new LogicalUnit({ backstore: disc('y', 4) }).ejectMedium(), /only a cdrom/);
});

test.run();
