import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { computeResiduals, tmfResponseCode } from '../../../src/fabrics/iscsi/connection';
import { Ini } from './initiator';
import { IscsiServer } from '../../../src/fabrics/iscsi/index';
import { decodeText, encodeText, type TextPair } from '../../../src/fabrics/iscsi/text';
import type { ScsiCommand, ScsiPort, ScsiResult } from '../../../src/scsi/types';
import { randomBytes, rng } from './rng';

// ---- residuals (§11.4.5), pure
const R: readonly [string, { read: boolean; write: boolean; edtl: number }, number, ScsiResult, [number, boolean, boolean, number]][] = [
  ['read exact', { read: true, write: false, edtl: 0 }, 512, { status: 0, dataIn: Buffer.alloc(512) }, [512, false, false, 0]],
  ['read underflow (EDTL 10000, 512 produced)', { read: true, write: false, edtl: 0 }, 10000, { status: 0, dataIn: Buffer.alloc(512) }, [512, false, true, 9488]],
  ['read overflow (EDTL 200)', { read: true, write: false, edtl: 0 }, 200, { status: 0, dataIn: Buffer.alloc(512) }, [200, true, false, 312]],
  ['read with EDTL 0 and no R bit', { read: false, write: false, edtl: 0 }, 0, { status: 0, dataIn: Buffer.alloc(512) }, [0, true, false, 512]],
  ['write overflow (EDTL 0, CDB wants 512)', { read: false, write: true, edtl: 0 }, 0, { status: 0, dataOutExpected: 512 }, [0, true, false, 512]],
  ['write underflow (EDTL 10000)', { read: false, write: true, edtl: 10000 }, 0, { status: 0, dataOutExpected: 512 }, [0, false, true, 9488]],
  ['no data', { read: false, write: false, edtl: 0 }, 0, { status: 0 }, [0, false, false, 0]],
];
for (const [name, t, rl, r, [send, o, u, n]] of R) {
  test(`residuals: ${name}`, () => {
    assert.equal(computeResiduals(t, rl, r), { send, overflow: o, underflow: u, residual: n });
  });
}

test('§11.6.1 TMF response codes', () => {
  assert.is(tmfResponseCode('function-complete'), 0);
  assert.is(tmfResponseCode('task-does-not-exist'), 1);
  assert.is(tmfResponseCode('incorrect-lun'), 2);
  assert.is(tmfResponseCode('not-supported'), 5);
  assert.is(tmfResponseCode('function-rejected'), 255);
});

// ---- end to end over TCP with a minimal initiator
const disk = Buffer.alloc(64 * 512);
const port: ScsiPort & { lost: number } = {
  lost: 0,
  async execute(cmd: ScsiCommand): Promise<ScsiResult> {
    const op = cmd.cdb[0];
    if (op === 0x00) return { status: 0 };
    if (op === 0x28) {
      const lba = cmd.cdb.readUInt32BE(2);
      const n = cmd.cdb.readUInt16BE(7);
      return { status: 0, dataIn: disk.subarray(lba * 512, (lba + n) * 512) };
    }
    if (op === 0x2a) {
      const lba = cmd.cdb.readUInt32BE(2);
      const n = cmd.cdb.readUInt16BE(7);
      const d = await cmd.dataOut(n * 512);
      d.copy(disk, lba * 512);
      return { status: 0, dataOutExpected: n * 512 };
    }
    const sense = Buffer.alloc(18);
    sense[0] = 0x70;
    sense[2] = 5;
    sense[12] = 0x20;
    return { status: 2, sense };
  },
  async taskManagement() {
    return 'function-complete';
  },
  nexusLost() {
    port.lost++;
  },
};
const IQN = 'iqn.2024-01.org.lunbox:e2e';
const INI = 'iqn.1994-05.com.example:e2e';

let server: IscsiServer;
let P = 0;
test.before(async () => {
  server = new IscsiServer({
    ...(process.env.ISCSI_DEBUG ? { log: (l: string, m: string) => console.error(l, m) } : {}),
    targets: [{ iqn: IQN, tpgt: 1, portals: [{ address: '0.0.0.0', port: 3260 }], demoMode: false, acls: [{ initiator: INI }], relativePortId: 1, port, params: { initialR2T: true, immediateData: false, maxBurstLength: 1024, nopInInterval: 0 } }],
  });
  P = (await server.listen('127.0.0.1', 0)).port;
});
test.after(async () => {
  await server.close();
});

const NORMAL: TextPair[] = [
  ['InitiatorName', INI],
  ['TargetName', IQN],
  ['InitialR2T', 'Yes'],
  ['ImmediateData', 'No'],
  ['MaxBurstLength', '1024'],
  ['MaxRecvDataSegmentLength', '1024'],
];

test('e2e: login, SCSI read/write with R2T, sense, NOP, Reject, logout', async () => {
  const c = await Ini.open(P);
  const lr = (await c.login(NORMAL)).pdu;
  assert.is(lr.bhs[0], 0x23);
  assert.is(lr.bhs.readUInt16BE(36), 0);
  assert.ok(lr.bhs.readUInt16BE(14) !== 0, 'TSIH assigned');
  assert.ok(decodeText(lr.data).some(([k]) => k === 'TargetPortalGroupTag'));
  assert.equal(server.sessions().map((s) => s.initiator), [INI]);

  // WRITE(10) 4 blocks: R2Ts of 1024 bytes each (MaxBurstLength), one outstanding (default).
  c.scsi(10, [0x2a, 0, 0, 0, 0, 2, 0, 0, 4], 0x20, 2048);
  for (let i = 0; i < 2; i++) {
    const r2t = (await c.recv())!;
    assert.is(r2t.bhs[0], 0x31);
    assert.is(r2t.bhs.readUInt32BE(40), i * 1024);
    assert.is(r2t.bhs.readUInt32BE(44), 1024);
    const d = Buffer.alloc(48);
    d[0] = 0x05;
    d[1] = 0x80;
    d.writeUInt32BE(10, 16);
    d.writeUInt32BE(r2t.bhs.readUInt32BE(20), 20);
    d.writeUInt32BE(0, 36);
    d.writeUInt32BE(i * 1024, 40);
    c.send(d, Buffer.alloc(1024, 0x41 + i));
  }
  const wr = (await c.recv())!;
  assert.is(wr.bhs[0], 0x21);
  assert.is(wr.bhs[3], 0);
  assert.is(disk[1024], 0x41);
  assert.is(disk[2047 + 1024], 0x42);

  // READ(10) 4 blocks with EDTL 4096 → Data-In PDUs of ≤1024, status in the last (S), underflow 2048.
  c.scsi(11, [0x28, 0, 0, 0, 0, 2, 0, 0, 4], 0x40, 4096);
  let got = 0;
  for (;;) {
    const p = (await c.recv())!;
    assert.is(p.bhs[0], 0x25);
    assert.ok(p.data.length <= 1024);
    got += p.data.length;
    if (p.bhs[1]! & 0x01) {
      assert.is(p.bhs[1]! & 0x02, 0x02, 'U bit');
      assert.is(p.bhs.readUInt32BE(44), 2048);
      break;
    }
  }
  assert.is(got, 2048);

  // Unknown opcode → CHECK CONDITION with SenseLength-prefixed sense.
  c.scsi(12, [0xff], 0, 0);
  const cc = (await c.recv())!;
  assert.is(cc.bhs[0], 0x21);
  assert.is(cc.bhs[3], 2);
  assert.is(cc.data.readUInt16BE(0), 18);
  assert.is(cc.data[2], 0x70);

  // NOP-Out ping (immediate) → NOP-In echo.
  const nop = Buffer.alloc(48);
  nop[0] = 0x40;
  nop[1] = 0x80;
  nop.writeUInt32BE(13, 16);
  nop.writeUInt32BE(0xffffffff, 20);
  nop.writeUInt32BE(c.cmdSN, 24);
  c.send(nop, Buffer.from('ping'));
  const ni = (await c.recv())!;
  assert.is(ni.bhs[0], 0x20);
  assert.is(ni.bhs.readUInt32BE(16), 13);
  assert.is(ni.data.toString(), 'ping');

  // Bad opcode → Reject carrying our header.
  const bad = Buffer.alloc(48);
  bad[0] = 0x1c;
  bad.writeUInt32BE(0xabcdef, 16);
  c.send(bad);
  const rj = (await c.recv())!;
  assert.is(rj.bhs[0], 0x3f);
  assert.is(rj.bhs[2], 0x05);
  assert.is(rj.data.readUInt32BE(16), 0xabcdef);

  // CmdSN too high → silently dropped; in-window command still works.
  const max = rj.bhs.readUInt32BE(32);
  const saved = c.cmdSN;
  c.cmdSN = max + 1;
  c.scsi(14, [0], 0, 0);
  assert.is(await c.recv(300), null);
  c.cmdSN = saved;
  c.scsi(15, [0], 0, 0);
  assert.is((await c.recv())!.bhs.readUInt32BE(16), 15);

  // Logout (close session).
  const lo = Buffer.alloc(48);
  lo[0] = 0x46;
  lo[1] = 0x80;
  lo.writeUInt32BE(16, 16);
  lo.writeUInt32BE(c.cmdSN, 24);
  c.send(lo);
  const lor = (await c.recv())!;
  assert.is(lor.bhs[0], 0x26);
  assert.is(lor.bhs[2], 0);
  assert.is(await c.recv(), null);
  assert.ok(c.closed);
  assert.ok(port.lost >= 1, 'nexusLost on logout');
});

test('e2e: login status classes', async () => {
  const cases: [TextPair[], number][] = [
    [[['InitiatorName', INI], ['TargetName', 'iqn.none:x']], 0x0203],
    [[['InitiatorName', 'iqn.stranger:x'], ['TargetName', IQN]], 0x0202],
    [[['TargetName', IQN]], 0x0207],
  ];
  for (const [pairs, status] of cases) {
    const c = await Ini.open(P);
    const r = (await c.login(pairs)).pdu;
    assert.is(r.bhs.readUInt16BE(36), status);
    assert.is(await c.recv(), null);
    assert.ok(c.closed);
  }
});

test('e2e: SendTargets lists only targets this initiator may use; wildcard portal → local address', async () => {
  const c = await Ini.open(P);
  await c.login([
    ['InitiatorName', INI],
    ['SessionType', 'Discovery'],
  ]);
  const t = Buffer.alloc(48);
  t[0] = 0x04;
  t[1] = 0x80;
  t.writeUInt32BE(2, 16);
  t.writeUInt32BE(0xffffffff, 20);
  t.writeUInt32BE(c.cmdSN, 24);
  c.send(t, encodeText([['SendTargets', 'All']]));
  const r = (await c.recv())!;
  assert.is(r.bhs[0], 0x24);
  assert.equal(decodeText(r.data), [
    ['TargetName', IQN],
    ['TargetAddress', '127.0.0.1:3260,1'],
  ]);
  // SCSI commands are not allowed in a discovery session.
  c.scsi(3, [0], 0, 0);
  assert.is((await c.recv())!.bhs[0], 0x3f);
  c.sock.destroy();

  const s = await Ini.open(P);
  await s.login([
    ['InitiatorName', 'iqn.stranger:x'],
    ['SessionType', 'Discovery'],
  ]);
  s.send(t, encodeText([['SendTargets', 'All']]));
  assert.is((await s.recv())!.data.length, 0);
  s.sock.destroy();
});

test('e2e: session reinstatement (same ISID, TSIH 0) drops the old session', async () => {
  const a = await Ini.open(P);
  await a.login(NORMAL);
  const before = port.lost;
  const b = await Ini.open(P);
  const r = (await b.login(NORMAL)).pdu;
  assert.is(r.bhs.readUInt16BE(36), 0);
  assert.is(await a.recv(500), null);
  assert.ok(a.closed);
  assert.is(port.lost, before + 1);
  assert.is(server.sessions().length, 1);
  b.sock.destroy();
});

test('fuzz: random bytes after login never crash the server (seeded)', async () => {
  const next = rng(99);
  for (let i = 0; i < 20; i++) {
    const c = await Ini.open(P);
    await c.login(NORMAL);
    for (let j = 0; j < 10; j++) {
      const b = randomBytes(next, 48);
      b[0] = b[0]! & 0x3f;
      b[4] = 0;
      b.writeUIntBE(Math.floor(next() * 600), 5, 3);
      c.sock.write(Buffer.concat([b, randomBytes(next, Math.floor(next() * 700))]));
    }
    await new Promise((r) => setTimeout(r, 20));
    c.sock.destroy();
  }
  // The server still serves a clean login.
  const ok = await Ini.open(P);
  assert.is((await ok.login(NORMAL)).pdu.bhs.readUInt16BE(36), 0);
  ok.sock.destroy();
});

test.run();
