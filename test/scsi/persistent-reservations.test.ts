import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status, type Nexus } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import {
  MemoryPrStore,
  PrType,
  decodeTransportId,
  prState,
  usePrStore,
} from '../../src/scsi/spc/persistent-reservations';
import { MemStore, cmd, nexus, rw10, sense } from './helpers';
import { fixture } from './setup';

type Port = TargetPort;

/** SPC-4 §6.16.1 PR OUT CDB + §6.16.3 basic parameter list. */
function prout(sa: number, type: number, rk: bigint, sark: bigint, flags = 0, extra?: Buffer) {
  const list = Buffer.alloc(24 + (extra ? extra.length : 0));
  list.writeBigUInt64BE(rk, 0);
  list.writeBigUInt64BE(sark, 8);
  list[20] = flags;
  if (extra) extra.copy(list, 24);
  const c = Buffer.alloc(10);
  c[0] = 0x5f;
  c[1] = sa;
  c[2] = type;
  c.writeUInt32BE(list.length, 5);
  return { cdb: c, data: list };
}

async function out(port: Port, n: Nexus, sa: number, type: number, rk: bigint, sark: bigint, flags = 0, extra?: Buffer) {
  const p = prout(sa, type, rk, sark, flags, extra);
  return port.execute(cmd(p.cdb, { nexus: n, data: p.data }));
}

async function inp(port: Port, n: Nexus, sa: number, alloc = 4096) {
  return port.execute(cmd([0x5e, sa, 0, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0], { nexus: n, dataIn: alloc }));
}

async function twoInitiators() {
  const f = await fixture();
  await f.port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: f.n2 })); // eat n2's power-on UA
  return f;
}

const read = (port: Port, n: Nexus) => port.execute(cmd(rw10(Op.READ_10, 0, 1), { nexus: n }));
const write = (port: Port, n: Nexus) => port.execute(cmd(rw10(Op.WRITE_10, 0, 1), { nexus: n, data: Buffer.alloc(512) }));

test('REGISTER, READ KEYS with generation; unregistered RESERVE → RESERVATION CONFLICT', async () => {
  const { port, n1, n2 } = await twoInitiators();
  assert.is((await out(port, n1, 0, 0, 0n, 0xaan)).status, Status.GOOD);
  assert.is((await out(port, n2, 0, 0, 0n, 0xbbn)).status, Status.GOOD);
  const r = await inp(port, n1, 0);
  assert.is(r.dataIn!.readUInt32BE(0), 2);
  assert.is(r.dataIn!.readUInt32BE(4), 16);
  assert.is(r.dataIn!.readBigUInt64BE(8), 0xaan);
  assert.is(r.dataIn!.readBigUInt64BE(16), 0xbbn);
  // Wrong key for a registered nexus, or any key for an unregistered one: conflict.
  assert.is((await out(port, n1, 0, 0, 0x1n, 0xccn)).status, Status.RESERVATION_CONFLICT);
  const n3 = nexus(3);
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n3 }));
  assert.is((await out(port, n3, 1, PrType.WRITE_EXCLUSIVE, 0x1n, 0n)).status, Status.RESERVATION_CONFLICT);
});

test('READ KEYS truncated by the allocation length', async () => {
  const { port, n1 } = await fixture();
  await out(port, n1, 0, 0, 0n, 0x1234n);
  const r = await inp(port, n1, 0, 8);
  assert.is(r.dataIn!.length, 8);
  assert.is(r.dataIn!.readUInt32BE(4), 8);
});

// SPC-4 §5.9.1 command conflicts for every type, as holder n1 / registrant n2 / stranger n3.
const ACCESS: [number, [boolean, boolean], [boolean, boolean]][] = [
  // type, registrant [read, write], non-registrant [read, write]
  [PrType.WRITE_EXCLUSIVE, [true, false], [true, false]],
  [PrType.EXCLUSIVE_ACCESS, [false, false], [false, false]],
  [PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, [true, true], [true, false]],
  [PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, [true, true], [false, false]],
  [PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, [true, true], [true, false]],
  [PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, [true, true], [false, false]],
];
for (const [type, registrant, stranger] of ACCESS) {
  test(`type ${type}: access for holder, registrant and non-registrant`, async () => {
    const { port, n1, n2 } = await twoInitiators();
    const n3 = nexus(3);
    await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n3 }));
    await out(port, n1, 0, 0, 0n, 1n);
    await out(port, n2, 0, 0, 0n, 2n);
    assert.is((await out(port, n1, 1, type, 1n, 0n)).status, Status.GOOD);
    const ok = (s: number) => s === Status.GOOD;
    assert.ok(ok((await read(port, n1)).status) && ok((await write(port, n1)).status));
    assert.is(ok((await read(port, n2)).status), registrant[0]);
    assert.is(ok((await write(port, n2)).status), registrant[1]);
    assert.is(ok((await read(port, n3)).status), stranger[0]);
    assert.is(ok((await write(port, n3)).status), stranger[1]);
    // INQUIRY and TEST UNIT READY are never blocked.
    assert.is((await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n3 }))).status, Status.GOOD);
    // READ RESERVATION: key 0 for all-registrants types (§6.15.3).
    const rr = (await inp(port, n2, 1)).dataIn!;
    assert.is(rr.readUInt32BE(4), 16);
    assert.is(rr.readBigUInt64BE(8), type >= 7 ? 0n : 1n);
    assert.is(rr[21], type);
  });
}

test('unregistering the holder releases; all-registrants reservations outlive their holder', async () => {
  const { port, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n2, 0, 0, 0n, 2n);
  await out(port, n1, 1, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, 1n, 0n);
  await out(port, n1, 0, 0, 1n, 0n);
  assert.is((await inp(port, n2, 1)).dataIn!.readUInt32BE(4), 16);
  await out(port, n2, 1, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, 2n, 0n);
  await out(port, n2, 0, 0, 2n, 0n);
  assert.is((await inp(port, n2, 1)).dataIn!.readUInt32BE(4), 0);
});

test('RELEASE of a registrants-only reservation: 2A/04 to the other registrants; wrong type → 26/04', async () => {
  const { port, lu, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n2, 0, 0, 0n, 2n);
  await out(port, n1, 1, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 1n, 0n);
  const bad = await out(port, n1, 2, PrType.WRITE_EXCLUSIVE, 1n, 0n);
  assert.is(sense(bad).asc, 0x2604);
  assert.is((await out(port, n1, 2, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 1n, 0n)).status, Status.GOOD);
  assert.equal(lu.pendingUas(n2.id), [0x2a04]);
  assert.equal(lu.pendingUas(n1.id), []);
});

test('PREEMPT takes the reservation, removes the key, 2A/05 to the preempted nexus', async () => {
  const { port, lu, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n2, 0, 0, 0n, 2n);
  await out(port, n1, 1, PrType.EXCLUSIVE_ACCESS, 1n, 0n);
  assert.is((await out(port, n2, 4, PrType.WRITE_EXCLUSIVE, 2n, 1n)).status, Status.GOOD);
  assert.equal(lu.pendingUas(n1.id), [0x2a05]);
  const s = prState(lu);
  assert.equal(s.registrations.map((r) => r.key), ['0000000000000002']);
  assert.equal(s.reservation, { holder: 0, type: PrType.WRITE_EXCLUSIVE });
  // Preempting a key nobody holds → RESERVATION CONFLICT; SARK 0 on a non-AR type → invalid field.
  assert.is((await out(port, n2, 4, PrType.WRITE_EXCLUSIVE, 2n, 9n)).status, Status.RESERVATION_CONFLICT);
  assert.is(sense(await out(port, n2, 4, PrType.WRITE_EXCLUSIVE, 2n, 0n)).asc, 0x2600);
});

test('PREEMPT AND ABORT aborts the preempted nexus tasks', async () => {
  const { port, store, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n2, 0, 0, 0n, 2n);
  store.delay = 50;
  const slow = port.execute(cmd(rw10(Op.READ_10, 0, 1), { nexus: n1 }));
  await new Promise((r) => setTimeout(r, 5));
  store.delay = 0;
  assert.is((await out(port, n2, 5, PrType.EXCLUSIVE_ACCESS, 2n, 1n)).status, Status.GOOD);
  assert.is((await slow).status, Status.TASK_ABORTED);
});

test('CLEAR drops everything and tells the others 2A/03', async () => {
  const { port, lu, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n2, 0, 0, 0n, 2n);
  await out(port, n1, 1, PrType.WRITE_EXCLUSIVE, 1n, 0n);
  assert.is((await out(port, n1, 3, 0, 1n, 0n)).status, Status.GOOD);
  assert.equal(lu.pendingUas(n2.id), [0x2a03]);
  assert.equal(prState(lu).registrations, []);
  assert.is(prState(lu).generation, 3);
});

test('REPORT CAPABILITIES and READ FULL STATUS with TransportIDs', async () => {
  const { port, n1 } = await fixture();
  const cap = (await inp(port, n1, 2)).dataIn!;
  assert.is(cap.readUInt16BE(0), 8);
  assert.is(cap[4], 0xea);
  assert.is(cap[5], 0x01);
  await out(port, n1, 0, 0, 0n, 7n, 0x04); // ALL_TG_PT
  await out(port, n1, 1, PrType.EXCLUSIVE_ACCESS, 7n, 0n);
  const fs = (await inp(port, n1, 3)).dataIn!;
  assert.is(fs.readBigUInt64BE(8), 7n);
  assert.is(fs[8 + 12], 0x03); // ALL_TG_PT, R_HOLDER
  assert.is(fs[8 + 13], PrType.EXCLUSIVE_ACCESS);
  const tidLen = fs.readUInt32BE(8 + 20);
  const tid = decodeTransportId(fs, 8 + 24);
  assert.is(tid?.initiatorPort, n1.initiatorPort.toLowerCase());
  assert.is(fs.readUInt32BE(4), 24 + tidLen);
});

function iscsiTid(name: string, format = 1): Buffer {
  const s = Buffer.from(`${name}\0`);
  const len = (s.length + 3) & ~3;
  const b = Buffer.alloc(4 + len);
  b[0] = (format << 6) | 5;
  b.writeUInt16BE(len, 2);
  s.copy(b, 4);
  return b;
}

test('SPEC_I_PT registers the listed iSCSI ports too', async () => {
  const { port, lu, n1, n2 } = await twoInitiators();
  const t = iscsiTid(n2.initiatorPort);
  const extra = Buffer.alloc(4 + t.length);
  extra.writeUInt32BE(t.length, 0);
  t.copy(extra, 4);
  assert.is((await out(port, n1, 0, 0, 0n, 5n, 0x08, extra)).status, Status.GOOD);
  assert.is(prState(lu).registrations.length, 2);
  // n2 is registered now: its key works.
  assert.is((await out(port, n2, 1, PrType.WRITE_EXCLUSIVE, 5n, 0n)).status, Status.GOOD);
  assert.equal(decodeTransportId(iscsiTid('iqn.X', 0)), { initiatorName: 'iqn.x', length: 12 });
});

test('REGISTER AND MOVE hands the reservation to another port', async () => {
  const { port, lu, n1, n2 } = await twoInitiators();
  await out(port, n1, 0, 0, 0n, 1n);
  await out(port, n1, 1, PrType.WRITE_EXCLUSIVE, 1n, 0n);
  const t = iscsiTid(n2.initiatorPort);
  const list = Buffer.alloc(24 + t.length);
  list.writeBigUInt64BE(1n, 0);
  list.writeBigUInt64BE(9n, 8);
  list[17] = 0x02; // UNREG
  list.writeUInt16BE(1, 18);
  list.writeUInt32BE(t.length, 20);
  t.copy(list, 24);
  const c = Buffer.from([0x5f, 7, PrType.WRITE_EXCLUSIVE, 0, 0, 0, 0, 0, list.length, 0]);
  assert.is((await port.execute(cmd(c, { nexus: n1, data: list }))).status, Status.GOOD);
  assert.is((await write(port, n2)).status, Status.GOOD);
  assert.is((await write(port, n1)).status, Status.RESERVATION_CONFLICT);
  assert.equal(prState(lu).registrations.map((r) => r.key), ['0000000000000009']);
});

test('SPC-2 RESERVE/RELEASE conflict while registrations exist (CRH=0)', async () => {
  const { port, n1 } = await fixture();
  await out(port, n1, 0, 0, 0n, 1n);
  assert.is((await port.execute(cmd([0x16, 0, 0, 0, 0, 0]))).status, Status.RESERVATION_CONFLICT);
  assert.is((await port.execute(cmd([0x17, 0, 0, 0, 0, 0]))).status, Status.RESERVATION_CONFLICT);
});

test('parameter list length, scope and type are checked', async () => {
  const { port, n1 } = await fixture();
  const p = prout(0, 0, 0n, 1n);
  const short = Buffer.from(p.cdb);
  short.writeUInt32BE(20, 5);
  assert.is(sense(await port.execute(cmd(short, { data: p.data.subarray(0, 20) }))).asc, 0x1a00);
  await out(port, n1, 0, 0, 0n, 1n);
  assert.equal(sense(await out(port, n1, 1, 0x10 | 1, 1n, 0n)).field, { cdb: true, byte: 2, bit: 7 });
  assert.equal(sense(await out(port, n1, 1, 2, 1n, 0n)).field, { cdb: true, byte: 2, bit: 3 });
  assert.is(sense(await inp(port, n1, 4)).asc, 0x2400);
});

test('APTPL state goes to the PrStore and comes back on a new unit', async () => {
  const store = new MemoryPrStore();
  const mk = async () => {
    const lu = new LogicalUnit({ backstore: new MemStore('disk1', 1024 * 512), serial: 'pr-serial' });
    await usePrStore(lu, store);
    const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
    await port.execute(cmd([0, 0, 0, 0, 0, 0]));
    return { lu, port };
  };
  const a = await mk();
  await out(a.port, nexus(1), 0, 0, 0n, 0x42n, 0x01); // APTPL
  await out(a.port, nexus(1), 1, PrType.EXCLUSIVE_ACCESS, 0x42n, 0n);
  assert.ok(store.states.get('pr-serial')?.aptpl);
  const b = await mk();
  assert.equal(prState(b.lu).reservation, { holder: 0, type: PrType.EXCLUSIVE_ACCESS });
  await b.port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: nexus(2) })); // power-on UA first
  assert.is((await write(b.port, nexus(2))).status, Status.RESERVATION_CONFLICT);
  // Registering again without APTPL discards the persisted state.
  await out(b.port, nexus(1), 0, 0, 0x42n, 0x43n);
  assert.equal(store.states.get('pr-serial')?.registrations, []);
});

test('without a PrStore: PTPL_C is 0 and REGISTER with APTPL is refused (nothing could keep it)', async () => {
  const { port, n1 } = await fixture();
  const caps = await inp(port, n1, 2); // REPORT CAPABILITIES
  assert.is(caps.status, Status.GOOD);
  assert.is((caps.dataIn?.[2] ?? 0xff) & 0x01, 0, 'PTPL_C');
  const r = await out(port, n1, 0, 0, 0n, 0x42n, 0x01);
  assert.is(r.status, Status.CHECK_CONDITION);
  assert.equal(sense(r).field, { cdb: false, byte: 20, bit: 0 });
  assert.is(sense(r).asc, 0x2600, 'INVALID FIELD IN PARAMETER LIST');
  // The same REGISTER without APTPL works.
  assert.is((await out(port, n1, 0, 0, 0n, 0x42n)).status, Status.GOOD);
});

test.run();
