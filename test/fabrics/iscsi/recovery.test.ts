// End to end over TCP: multiple connections per session (MC/S), ErrorRecoveryLevel 1
// (digest errors, SNACK) and 2 (connection recovery, TASK REASSIGN), RFC 7143 §6.3, §7.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IscsiServer } from '../../../src/fabrics/iscsi/index';
import type { TextPair } from '../../../src/fabrics/iscsi/text';
import type { ScsiCommand, ScsiPort, ScsiResult } from '../../../src/scsi/types';
import { Ini, op, u32, type Pdu } from './initiator';

const BLOCKS = 256;
const disk = Buffer.alloc(BLOCKS * 512);
const executed: number[] = [];
const port: ScsiPort = {
  async execute(cmd: ScsiCommand): Promise<ScsiResult> {
    executed.push(cmd.tag);
    const op0 = cmd.cdb[0];
    if (op0 === 0x00) return { status: 0 };
    if (op0 === 0x28) {
      const lba = cmd.cdb.readUInt32BE(2);
      const n = cmd.cdb.readUInt16BE(7);
      return { status: 0, dataIn: disk.subarray(lba * 512, (lba + n) * 512) };
    }
    if (op0 === 0x2a) {
      const lba = cmd.cdb.readUInt32BE(2);
      const n = cmd.cdb.readUInt16BE(7);
      const d = await cmd.dataOut(n * 512);
      d.copy(disk, lba * 512);
      return { status: 0, dataOutExpected: n * 512 };
    }
    return { status: 2, sense: Buffer.from([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0]) };
  },
  async taskManagement() {
    return 'function-complete';
  },
  nexusLost() {},
};

const IQN = 'iqn.2024-01.org.lunbox:erl';
const INI = 'iqn.1994-05.com.example:erl';
let server: IscsiServer;
let P = 0;
test.before(async () => {
  server = new IscsiServer({
    ...(process.env.ISCSI_DEBUG ? { log: (l: string, m: string) => console.error(l, m) } : {}),
    targets: [
      {
        iqn: IQN,
        tpgt: 1,
        portals: [{ address: '127.0.0.1', port: 3260 }],
        demoMode: true,
        acls: [],
        relativePortId: 1,
        port,
        params: { errorRecoveryLevel: 2, maxConnections: 4, defaultTime2Wait: 0, defaultTime2Retain: 5, initialR2T: true, immediateData: false, maxBurstLength: 4096, firstBurstLength: 4096, nopInInterval: 0, dataDigest: ['CRC32C', 'None'], headerDigest: ['CRC32C', 'None'] },
      },
    ],
  });
  P = (await server.listen('127.0.0.1', 0)).port;
});
test.after(async () => {
  await server.close();
});

function keys(erl: number, extra: TextPair[] = []): TextPair[] {
  return [
    ['InitiatorName', INI],
    ['TargetName', IQN],
    ['ErrorRecoveryLevel', String(erl)],
    ['MaxConnections', '4'],
    ['InitialR2T', 'Yes'],
    ['ImmediateData', 'No'],
    ['MaxBurstLength', '4096'],
    ['FirstBurstLength', '4096'],
    ['MaxRecvDataSegmentLength', '1024'],
    ['DefaultTime2Wait', '0'],
    ['DefaultTime2Retain', '5'],
    ...extra,
  ];
}

async function session(erl: number, isid: string, extra: TextPair[] = []): Promise<Ini> {
  const c = await Ini.open(P);
  const { pdu, keys: k } = await c.login(keys(erl, extra), { isid, cid: 1 });
  assert.is(pdu.bhs.readUInt16BE(36), 0, 'login succeeds');
  assert.is(k.get('ErrorRecoveryLevel'), String(erl));
  return c;
}

async function join(first: Ini, isid: string, cid: number, erl: number): Promise<{ c: Ini; status: number }> {
  const c = await Ini.open(P);
  c.cmdSN = first.cmdSN;
  const { pdu } = await c.login(keys(erl), { isid, tsih: first.tsih, cid });
  return { c, status: pdu.bhs.readUInt16BE(36) };
}

const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
const write10 = (lba: number, blocks: number) => [0x2a, 0, (lba >> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks];
const read10 = (lba: number, blocks: number) => [0x28, 0, (lba >> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks];

async function expectOp(c: Ini, opcode: number): Promise<Pdu> {
  const p = await c.next();
  assert.is(op(p), opcode, `expected opcode 0x${opcode.toString(16)}, got 0x${op(p).toString(16)}`);
  return p;
}

// ------------------------------------------------------------------ MC/S

test('MC/S: second connection joins by TSIH; CmdSN ordered across connections; allegiance; per-connection StatSN', async () => {
  const a = await session(0, '400000000010');
  const { c: b, status } = await join(a, '400000000010', 2, 0);
  assert.is(status, 0);
  assert.is(server.sessions().find((s) => s.isid === '400000000010')!.connections, 2);

  // CmdSN n+1 arrives on B before n arrives on A: it waits (§4.2.2.1), then both run in order.
  const sn = a.cmdSN;
  executed.length = 0;
  b.scsi(0x200, [0], 0, 0, { cmdSN: sn + 1 });
  assert.is(await b.recv(200), null, 'held until the gap is filled');
  a.scsi(0x100, [0], 0, 0, { cmdSN: sn });
  const ra = await expectOp(a, 0x21);
  const rb = await expectOp(b, 0x21);
  assert.equal(executed, [0x100, 0x200]);
  assert.is(u32(ra, 16), 0x100, 'response on the connection the command came from');
  assert.is(u32(rb, 16), 0x200);
  // One session-wide window, advertised on every connection.
  assert.is(u32(ra, 28), sn + 2);
  assert.is(u32(rb, 28), sn + 2);
  // StatSN runs per connection: each continues from its own login.
  assert.is(u32(ra, 24), a.expStatSN);
  assert.is(u32(rb, 24), b.expStatSN);

  // Data-Out on the command's connection; a read on the other one, interleaved.
  a.cmdSN = b.cmdSN = sn + 2;
  a.scsi(0x101, write10(8, 2), 0x20, 1024);
  b.cmdSN++;
  b.scsi(0x201, read10(0, 2), 0x40, 1024);
  a.cmdSN++;
  const r2t = await expectOp(a, 0x31);
  a.answerR2t(r2t, pattern(1024, 3), 1024);
  await b.readAll(0x201);
  assert.is(u32(await expectOp(a, 0x21), 16), 0x101);
  assert.ok(disk.subarray(8 * 512, 10 * 512).equals(pattern(1024, 3)));

  // Logout reason 1 for CID 2, sent on CID 1: B goes, the session stays.
  a.logout(0x102, 1, 2);
  const lr = await expectOp(a, 0x26);
  assert.is(lr.bhs[2], 0);
  assert.is(await b.recv(500), null);
  assert.ok(b.closed);
  assert.is(server.sessions().find((s) => s.isid === '400000000010')!.connections, 1);
  a.scsi(0x103, [0], 0, 0);
  assert.is(u32(await expectOp(a, 0x21), 16), 0x103);

  // Connection reinstatement (same CID 1 logs in again): the old connection goes.
  const { c: a2, status: s2 } = await join(a, '400000000010', 1, 0);
  assert.is(s2, 0);
  assert.is(await a.recv(500), null);
  assert.ok(a.closed);
  a2.scsi(0x104, [0], 0, 0);
  assert.is(u32(await expectOp(a2, 0x21), 16), 0x104);

  // Logout reason 0 on the last connection ends the session.
  a2.logout(0x105, 0, 1);
  assert.is((await expectOp(a2, 0x26)).bhs[2], 0);
  assert.not.ok(server.sessions().some((s) => s.isid === '400000000010'));
});

test('MC/S at ERL 0: one connection dies → its tasks end, the session and the other connection go on', async () => {
  const a = await session(0, '400000000013');
  const { c: b } = await join(a, '400000000013', 2, 0);
  b.cmdSN = a.cmdSN;
  b.scsi(0x400, write10(0, 8), 0x20, 4096);
  a.cmdSN = b.cmdSN;
  await expectOp(b, 0x31);
  b.kill();
  await new Promise((r) => setTimeout(r, 50));
  assert.is(server.sessions().find((s) => s.isid === '400000000013')!.connections, 1);
  a.scsi(0x401, [0], 0, 0);
  assert.is(u32(await expectOp(a, 0x21), 16), 0x401);
  // The dead connection's task is gone: its ITT may be used again at once.
  a.scsi(0x400, [0], 0, 0);
  assert.is(u32(await expectOp(a, 0x21), 16), 0x400);
  a.kill();
});

test('MC/S: MaxConnections is enforced (status 0x0206); unknown TSIH is 0x020a', async () => {
  const a = await Ini.open(P);
  const { keys: k } = await a.login(keys(0).map(([key, v]) => (key === 'MaxConnections' ? [key, '2'] : [key, v])), { isid: '400000000011', cid: 1 });
  assert.is(k.get('MaxConnections'), '2');
  const { c: b, status } = await join(a, '400000000011', 2, 0);
  assert.is(status, 0);
  const { status: s3 } = await join(a, '400000000011', 3, 0);
  assert.is(s3, 0x0206);
  const x = await Ini.open(P);
  const { pdu } = await x.login(keys(0), { isid: '400000000011', tsih: 0x7777, cid: 5 });
  assert.is(pdu.bhs.readUInt16BE(36), 0x020a);
  a.kill();
  b.kill();
});

test('MC/S: a connection the target drops is announced on another one (AsyncEvent 2)', async () => {
  const a = await session(0, '400000000012');
  const { c: b } = await join(a, '400000000012', 2, 0);
  // Immediate data while ImmediateData=No is a protocol error that drops B.
  b.scsi(0x301, write10(0, 1), 0x20, 512, { imm: Buffer.alloc(512) });
  assert.is(op(await b.next()), 0x3f);
  assert.is(await b.recv(500), null);
  const am = await expectOp(a, 0x32);
  assert.is(am.bhs[36], 2, 'AsyncEvent 2: connection dropped');
  assert.is(am.bhs.readUInt16BE(38), 2, 'Parameter1 = CID');
  a.kill();
  b.kill();
});

// ------------------------------------------------------------------ ERL 1

test('ERL 1: data digest error on a Data-Out → Reject 0x02 and a recovery R2T; the data ends up right', async () => {
  const c = await session(1, '400000000020', [['DataDigest', 'CRC32C'], ['HeaderDigest', 'CRC32C']]);
  assert.ok(c.dataDigest && c.headerDigest);
  const src = pattern(4096, 11);
  c.scsi(0x10, write10(32, 8), 0x20, 4096);
  const r2t = await expectOp(c, 0x31);
  assert.is(u32(r2t, 44), 4096);
  // Four 1024-byte PDUs; the second one's digest is wrong.
  c.answerR2t(r2t, src, 1024, (sn) => sn === 1);
  const rj = await expectOp(c, 0x3f);
  assert.is(rj.bhs[2], 0x02, 'Reject reason: data digest error');
  assert.is(rj.data.readUInt32BE(36), 1, 'the rejected header is the Data-Out with DataSN 1');
  const rec = await expectOp(c, 0x31);
  assert.is(u32(rec, 40), 1024, 'recovery R2T for the damaged range');
  assert.is(u32(rec, 44), 1024);
  assert.is(u32(rec, 36), 1, 'R2TSN goes on');
  assert.is(c.closed, false);
  c.answerR2t(rec, src, 1024);
  const rsp = await expectOp(c, 0x21);
  assert.is(rsp.bhs[3], 0);
  assert.is(u32(rsp, 36), 2, 'ExpDataSN counts both R2Ts');
  assert.ok(disk.subarray(32 * 512, 40 * 512).equals(src));
  c.kill();
});

test('ERL 1: a Data-Out with a header digest error is discarded; the DataSN gap brings a recovery R2T', async () => {
  const c = await session(1, '400000000025', [['DataDigest', 'CRC32C'], ['HeaderDigest', 'CRC32C']]);
  const src = pattern(4096, 17);
  c.scsi(0x11, write10(48, 8), 0x20, 4096);
  const r2t = await expectOp(c, 0x31);
  const ttt = u32(r2t, 20);
  for (let sn = 0; sn < 4; sn++) c.dataOut(0x11, ttt, sn, sn * 1024, src.subarray(sn * 1024, (sn + 1) * 1024), sn === 3, { corruptHeaderDigest: sn === 2 });
  const rec = await expectOp(c, 0x31);
  assert.equal([u32(rec, 40), u32(rec, 44)], [2048, 1024]);
  c.answerR2t(rec, src, 1024);
  assert.is((await expectOp(c, 0x21)).bhs[3], 0);
  assert.ok(disk.subarray(48 * 512, 56 * 512).equals(src));
  c.kill();
});

test('ERL 1: header digest error → PDU silently discarded, connection stays', async () => {
  const c = await session(1, '400000000021', [['HeaderDigest', 'CRC32C']]);
  const b = Buffer.alloc(48);
  b[0] = 0x01;
  b[1] = 0x81;
  b.writeUInt32BE(0x20, 16);
  b.writeUInt32BE(c.cmdSN, 24);
  c.send(b, Buffer.alloc(0), { corruptHeaderDigest: true });
  assert.is(await c.recv(300), null, 'nothing comes back');
  // The initiator retries the command (same ITT, same CmdSN).
  c.scsi(0x20, [0], 0, 0);
  assert.is(u32(await expectOp(c, 0x21), 16), 0x20);
  c.kill();
});

test('ERL 1: A bit every MaxBurstLength; Data SNACK resends Data-In; DataACK and ExpStatSN release them', async () => {
  const c = await session(1, '400000000022');
  disk.set(pattern(8192, 5), 64 * 512);
  c.scsi(0x30, read10(64, 16), 0x40, 8192);
  const { data, pdus, status } = await c.readAll(0x30);
  assert.ok(data.equals(pattern(8192, 5)));
  assert.is(pdus.length, 8);
  // §11.7.2: A on the last PDU of each 4096-byte burst except the final one; TTT set.
  const withA = pdus.filter((p) => p.bhs[1]! & 0x40);
  assert.equal(withA.map((p) => u32(p, 36)), [3]);
  const ttt = u32(withA[0]!, 20);
  assert.is.not(ttt, 0xffffffff);
  assert.is(status.bhs[1]! & 1, 1, 'status in the last Data-In');

  // Pretend DataSN 5 and 6 were lost: Data SNACK (type 0) BegRun 5 RunLength 2.
  c.snack(0, 0x30, { begRun: 5, runLength: 2 });
  const r5 = await expectOp(c, 0x25);
  const r6 = await expectOp(c, 0x25);
  assert.equal([u32(r5, 36), u32(r6, 36)], [5, 6]);
  assert.ok(r5.data.equals(pdus[5]!.data));
  assert.is(u32(r6, 40), 6 * 1024);

  // DataACK (type 2) for the first burst; then a SNACK below it is an error.
  c.snack(2, 0xffffffff, { ttt, begRun: 4 });
  c.snack(0, 0x30, { begRun: 1, runLength: 1 });
  const rj = await expectOp(c, 0x3f);
  assert.is(rj.bhs[2], 0x04);

  // Status SNACK (type 1): the Data-In that carried the status comes again, same StatSN.
  c.snack(1, 0xffffffff, { begRun: u32(status, 24), runLength: 1 });
  const again = await expectOp(c, 0x25);
  assert.is(u32(again, 24), u32(status, 24));
  assert.is(again.bhs[1]! & 1, 1);

  // ExpStatSN past the status acknowledges it: the task's Data-In is released.
  c.ack();
  c.nop(0x31);
  await expectOp(c, 0x20);
  c.snack(0, 0x30, { begRun: 7, runLength: 1 });
  assert.is((await expectOp(c, 0x3f)).bhs[2], 0x04);
  c.kill();
});

test('ERL 1: Status SNACK resends a SCSI Response; R-Data SNACK resegments after MaxRecvDataSegmentLength shrinks', async () => {
  const c = await session(1, '400000000023');
  c.scsi(0x40, [0x12, 0, 0, 0, 0xff, 0], 0x40, 255); // INQUIRY → CHECK CONDITION in this port
  const cc = await expectOp(c, 0x21);
  c.snack(1, 0xffffffff, { begRun: u32(cc, 24) });
  const again = await expectOp(c, 0x21);
  assert.ok(again.bhs.subarray(0, 24).equals(cc.bhs.subarray(0, 24)));
  assert.ok(again.data.equals(cc.data), 'sense data again');
  // §7.2.1 command retry (same ITT and CmdSN): the kept status again, not a second execution.
  const runs = executed.length;
  c.scsi(0x40, [0x12, 0, 0, 0, 0xff, 0], 0x40, 255, { cmdSN: c.cmdSN - 1 });
  const retried = await expectOp(c, 0x21);
  assert.is(u32(retried, 24), u32(cc, 24));
  assert.is(executed.length, runs);

  disk.set(pattern(2048, 9), 96 * 512);
  c.scsi(0x41, read10(96, 4), 0x40, 2048);
  const first = await c.readAll(0x41);
  assert.is(first.pdus.length, 2);
  c.text(0x42, [['MaxRecvDataSegmentLength', '512']]);
  await expectOp(c, 0x24);
  c.snack(3, 0x41, { ttt: 0xabcd });
  const parts: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    const p = await expectOp(c, 0x25);
    assert.is(p.data.length, 512);
    assert.is(u32(p, 36), i);
    assert.is(p.bhs[1]! & 1, 0, 'no status in resegmented Data-In');
    parts.push(p.data);
  }
  const rsp = await expectOp(c, 0x21);
  assert.is(u32(rsp, 20), 0xabcd, 'SNACK Tag in the SCSI Response');
  assert.is(u32(rsp, 24), u32(first.status, 24), 'same StatSN');
  assert.is(u32(rsp, 36), 4, 'ExpDataSN');
  assert.ok(Buffer.concat(parts).equals(pattern(2048, 9)));
  c.kill();
});

test('ERL 0: SNACK is rejected; TASK REASSIGN is "not supported" (4)', async () => {
  const c = await session(0, '400000000024');
  c.snack(1, 0xffffffff, { begRun: 0 });
  assert.is((await expectOp(c, 0x3f)).bhs[2], 0x03);
  c.tmf(0x50, 8, 0x1);
  assert.is((await expectOp(c, 0x22)).bhs[2], 4);
  c.kill();
});

// ------------------------------------------------------------------ ERL 2

test('ERL 2: connection killed mid-write; new connection, Logout reason 2, TASK REASSIGN completes the write', async () => {
  const isid = '400000000030';
  const a = await session(2, isid);
  const src = pattern(8192, 21);
  const cmdSN = a.cmdSN;
  a.scsi(0x60, write10(128, 16), 0x20, 8192);
  const r0 = await expectOp(a, 0x31);
  assert.is(u32(r0, 44), 4096);
  a.answerR2t(r0, src, 1024);
  const r1 = await expectOp(a, 0x31);
  assert.is(u32(r1, 40), 4096);
  // Half of the second burst goes out, then the connection dies.
  a.dataOut(0x60, u32(r1, 20), 0, 4096, src.subarray(4096, 5120), false);
  await new Promise((r) => setTimeout(r, 50));
  a.kill();
  await new Promise((r) => setTimeout(r, 50));
  assert.is(server.sessions().find((s) => s.isid === isid)?.connections, 0, 'session survives with no connection');

  const { c: b, status } = await join(a, isid, 2, 2);
  assert.is(status, 0);
  b.cmdSN = cmdSN + 1;
  b.logout(0x61, 2, 1);
  const lr = await expectOp(b, 0x26);
  assert.is(lr.bhs[2], 0, 'logout for recovery accepted');
  assert.is(lr.bhs.readUInt16BE(40), 0, 'Time2Wait');
  assert.is(lr.bhs.readUInt16BE(42), 5, 'Time2Retain');
  b.tmf(0x62, 8, 0x60, { refCmdSN: cmdSN, expDataSN: 0 });
  const tr = await expectOp(b, 0x22);
  assert.is(tr.bhs[2], 0, 'TASK REASSIGN: function complete');
  // Fresh R2T on B for what never arrived: 5120..8191.
  const r2 = await expectOp(b, 0x31);
  assert.is(u32(r2, 16), 0x60);
  assert.is(u32(r2, 40), 5120);
  assert.is(u32(r2, 44), 3072);
  assert.is(u32(r2, 36), 2, 'R2TSN continues');
  b.answerR2t(r2, src, 1024);
  const rsp = await expectOp(b, 0x21);
  assert.is(u32(rsp, 16), 0x60);
  assert.is(rsp.bhs[3], 0);
  assert.ok(disk.subarray(128 * 512, 144 * 512).equals(src), 'written data is correct');
  b.kill();
});

test('ERL 2: read whose status was lost with the connection; reassignment on the same CID resumes Data-In at ExpDataSN', async () => {
  const isid = '400000000031';
  const a = await session(2, isid);
  disk.set(pattern(4096, 33), 160 * 512);
  const cmdSN = a.cmdSN;
  a.scsi(0x70, read10(160, 8), 0x40, 4096);
  const got = await a.readAll(0x70);
  assert.is(got.pdus.length, 4);
  a.kill(); // ExpStatSN never acknowledged the status
  await new Promise((r) => setTimeout(r, 50));
  // Same CID logs in again (connection reinstatement, §6.3.4) and reassigns: it got DataSN 0 and 1.
  const { c: b, status } = await join(a, isid, 1, 2);
  assert.is(status, 0);
  b.cmdSN = cmdSN + 1;
  b.tmf(0x71, 8, 0x70, { refCmdSN: cmdSN, expDataSN: 2 });
  const tr = await expectOp(b, 0x22);
  assert.is(tr.bhs[2], 0);
  const rest = await b.readAll(0x70);
  assert.equal(rest.pdus.map((p) => u32(p, 36)), [2, 3]);
  assert.is(u32(rest.pdus[0]!, 40), 2048);
  assert.ok(rest.data.equals(pattern(4096, 33).subarray(2048)));
  assert.is(u32(rest.status, 24), u32(tr, 24) + 1, 'status with the next StatSN of the new connection');
  // Reassigning again: the task is gone (its status was sent on this connection).
  b.tmf(0x72, 8, 0x70, { expDataSN: 0 });
  assert.is((await expectOp(b, 0x22)).bhs[2], 1);
  b.kill();
});

test('ERL 2: TASK REASSIGN of a task whose connection is alive → 3 (still allegiant)', async () => {
  const isid = '400000000032';
  const a = await session(2, isid);
  const { c: b } = await join(a, isid, 2, 2);
  a.scsi(0x80, write10(0, 8), 0x20, 4096);
  await expectOp(a, 0x31);
  b.cmdSN = a.cmdSN;
  b.tmf(0x81, 8, 0x80);
  assert.is((await expectOp(b, 0x22)).bhs[2], 3);
  a.kill();
  b.kill();
});

test('ERL 2: tasks of a failed connection are dropped after Time2Retain; the session ends with them', async () => {
  const isid = '400000000033';
  const c = await Ini.open(P);
  const { pdu } = await c.login(keys(2).map(([k, v]) => (k === 'DefaultTime2Retain' ? [k, '1'] : [k, v])), { isid, cid: 1 });
  assert.is(pdu.bhs.readUInt16BE(36), 0);
  c.scsi(0x90, write10(0, 8), 0x20, 4096);
  await expectOp(c, 0x31);
  c.kill();
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(server.sessions().some((s) => s.isid === isid));
  await new Promise((r) => setTimeout(r, 1200));
  assert.not.ok(server.sessions().some((s) => s.isid === isid), 'gone after Time2Wait + Time2Retain');
});

test.run();
