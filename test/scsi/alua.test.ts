import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status, type Nexus } from '../../src/scsi/types';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { AluaConfigError, AluaGroups, type AluaMode } from '../../src/scsi/spc/alua';
import { MemStore, cmd, nexus, sense } from './helpers';

/** A nexus through relative target port `port` (1 or 2). */
function via(port: number, n = 1): Nexus {
  const base = nexus(n);
  return { ...base, id: `${base.id}|p${port}`, relativeTargetPortId: port, targetPort: `iqn.test:tgt,t,0x000${port}` };
}

async function twoPorts(mode: AluaMode = 'both') {
  const lu = new LogicalUnit({ backstore: new MemStore('disk1', 1024 * 512) });
  const alua = new AluaGroups({
    alua: mode,
    portGroups: [
      { id: 10, state: 'active/optimized', ports: [1], preferred: true },
      { id: 20, state: 'standby', ports: [2] },
    ],
  });
  const ports = [1, 2].map(() => new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }], alua }));
  const p1 = ports[0]!;
  const p2 = ports[1]!;
  const a = via(1);
  const b = via(2);
  // Eat the power-on unit attentions (INQUIRY binds without consuming them).
  await p1.execute(cmd([0x03, 0, 0, 0, 18, 0], { nexus: a }));
  await p2.execute(cmd([0x03, 0, 0, 0, 18, 0], { nexus: b }));
  for (const [p, n] of [[p1, a], [p2, b]] as const) {
    const r = await p.execute(cmd([0x12, 0, 0, 0, 96, 0], { nexus: n }));
    assert.is(r.status, Status.GOOD);
    while (lu.pendingUas(n.id).length > 0) lu.takeUa(n.id);
  }
  return { lu, alua, p1, p2, a, b };
}

const rtpg = (format = 0, alloc = 1024) => [0xa3, (format << 5) | 0x0a, 0, 0, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0, 0];
const stpg = (len: number) => [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, len, 0, 0];
const TUR = [0, 0, 0, 0, 0, 0];

test('TPGS in standard INQUIRY: 00 without groups, 01/10/11 by mode (SPC-4 §6.6.2)', async () => {
  const lu = new LogicalUnit({ backstore: new MemStore('d', 64 * 512) });
  const plain = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  let r = await plain.execute(cmd([0x12, 0, 0, 0, 96, 0]));
  assert.is((r.dataIn![5]! >> 4) & 3, 0);
  assert.is(r.dataIn![5]! & 0x08, 0x08, '3PC');
  for (const [mode, tpgs] of [['implicit', 1], ['explicit', 2], ['both', 3]] as const) {
    const { p1, a } = await twoPorts(mode);
    r = await p1.execute(cmd([0x12, 0, 0, 0, 96, 0], { nexus: a }));
    assert.is((r.dataIn![5]! >> 4) & 3, tpgs, mode);
  }
});

test('REPORT TARGET PORT GROUPS length format (SPC-4 §6.27)', async () => {
  const { p2, b } = await twoPorts();
  const r = await p2.execute(cmd(rtpg(0), { nexus: b }));
  assert.is(r.status, Status.GOOD);
  const d = r.dataIn!;
  assert.is(d.readUInt32BE(0), d.length - 4);
  assert.is(d.length, 4 + 2 * (8 + 4));
  // Group 10: PREF, active/optimized, T_SUP U_SUP S_SUP AN_SUP AO_SUP, one port (1).
  assert.is(d[4], 0x80 | 0x0);
  assert.is(d[5], 0x8f);
  assert.is(d.readUInt16BE(6), 10);
  assert.is(d[9], 0x00);
  assert.is(d[11], 1);
  assert.is(d.readUInt16BE(14), 1);
  // Group 20: standby, port 2.
  assert.is(d[16], 0x02);
  assert.is(d.readUInt16BE(18), 20);
  assert.is(d.readUInt16BE(26), 2);
});

test('REPORT TARGET PORT GROUPS extended header, allocation length, bad format', async () => {
  const { p1, a } = await twoPorts();
  let r = await p1.execute(cmd(rtpg(1), { nexus: a }));
  const d = r.dataIn!;
  assert.is(d.readUInt32BE(0), d.length - 4);
  assert.is(d[4], 0x10);
  assert.is(d.readUInt16BE(10), 10);
  r = await p1.execute(cmd(rtpg(0, 6), { nexus: a }));
  assert.is(r.dataIn!.length, 6);
  r = await p1.execute(cmd(rtpg(2), { nexus: a }));
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 7 });
});

test('RTPG and STPG are not offered without target port groups', async () => {
  const lu = new LogicalUnit({ backstore: new MemStore('d', 64 * 512) });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd(TUR));
  let r = await port.execute(cmd(rtpg()));
  assert.is(sense(r).key, 5);
  r = await port.execute(cmd(stpg(0)));
  assert.is(sense(r).key, 5);
});

test('standby allows the SPC-4 §5.15.2.4.5 commands, others get NOT READY 04/0B', async () => {
  const { p2, b } = await twoPorts();
  const ok = [
    [0x12, 0, 0, 0, 96, 0], // INQUIRY
    [0x03, 0, 0, 0, 18, 0], // REQUEST SENSE
    [0x1a, 0, 0x3f, 0, 255, 0], // MODE SENSE(6)
    [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], // REPORT LUNS
    [0x5e, 0, 0, 0, 0, 0, 0, 0, 255, 0], // PR IN READ KEYS
    rtpg(),
  ];
  for (const c of ok) assert.is((await p2.execute(cmd(c, { nexus: b }))).status, Status.GOOD, `0x${c[0]!.toString(16)}`);
  for (const c of [TUR, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]]) {
    const r = await p2.execute(cmd(c, { nexus: b }));
    assert.is(r.status, Status.CHECK_CONDITION);
    assert.is(sense(r).key, 2);
    assert.is(sense(r).asc, 0x040b);
  }
});

test('unavailable and transitioning states (SPC-4 §5.15.2.4.6, §5.15.2.4.7)', async () => {
  const { alua, p2, b, lu } = await twoPorts();
  alua.setGroupState(20, 'unavailable');
  lu.takeUa(b.id);
  let r = await p2.execute(cmd([0x1a, 0, 0x3f, 0, 255, 0], { nexus: b }));
  assert.is(sense(r).asc, 0x040c, 'MODE SENSE not allowed while unavailable');
  r = await p2.execute(cmd(rtpg(), { nexus: b }));
  assert.is(r.status, Status.GOOD);
  alua.setGroupState(20, 'transitioning');
  lu.takeUa(b.id);
  r = await p2.execute(cmd(TUR, { nexus: b }));
  assert.is(sense(r).asc, 0x040a);
  assert.is(r.dataIn, undefined);
  r = await p2.execute(cmd(rtpg(), { nexus: b }));
  assert.is(r.dataIn![16]! & 0x0f, 0x0f);
  assert.is(r.dataIn![21], 0x02, 'STATUS CODE: altered by implicit behaviour');
  r = await p2.execute(cmd([0x12, 0, 0, 0, 96, 0], { nexus: b }));
  assert.is(r.status, Status.GOOD);
});

test('active/non-optimized allows everything', async () => {
  const { alua, p2, b, lu } = await twoPorts();
  alua.setGroupState(20, 'active/non-optimized');
  lu.takeUa(b.id);
  const r = await p2.execute(cmd(TUR, { nexus: b }));
  assert.is(r.status, Status.GOOD);
});

test('setGroupState raises ASYMMETRIC ACCESS STATE CHANGED on every nexus', async () => {
  const { alua, p1, p2, a, b } = await twoPorts();
  alua.setGroupState(20, 'active/optimized');
  for (const [p, n] of [[p1, a], [p2, b]] as const) {
    const r = await p.execute(cmd(TUR, { nexus: n }));
    assert.is(sense(r).key, 6);
    assert.is(sense(r).asc, 0x2a06);
    assert.is((await p.execute(cmd(TUR, { nexus: n }))).status, Status.GOOD);
  }
});

test('SET TARGET PORT GROUPS switches states; UA to the other nexuses only (SPC-4 §6.42)', async () => {
  const { p1, p2, a, b } = await twoPorts();
  const data = Buffer.alloc(12);
  data[4] = 0x02; // group 10 → standby
  data.writeUInt16BE(10, 6);
  data[8] = 0x00; // group 20 → active/optimized
  data.writeUInt16BE(20, 10);
  let r = await p2.execute(cmd(stpg(12), { nexus: b, data }));
  assert.is(r.status, Status.GOOD);
  r = await p2.execute(cmd(TUR, { nexus: b }));
  assert.is(r.status, Status.GOOD, 'no UA for the nexus that sent STPG');
  r = await p1.execute(cmd(TUR, { nexus: a }));
  assert.is(sense(r).asc, 0x2a06);
  r = await p1.execute(cmd(TUR, { nexus: a }));
  assert.is(sense(r).asc, 0x040b);
  r = await p1.execute(cmd(rtpg(), { nexus: a }));
  assert.is(r.dataIn![4]! & 0x0f, 0x02);
  assert.is(r.dataIn![9], 0x01, 'STATUS CODE: altered by SET TARGET PORT GROUPS');
});

test('SET TARGET PORT GROUPS errors', async () => {
  const { p1, a } = await twoPorts();
  const bad = (state: number, group: number) => {
    const d = Buffer.alloc(8);
    d[4] = state;
    d.writeUInt16BE(group, 6);
    return d;
  };
  let r = await p1.execute(cmd(stpg(8), { nexus: a, data: bad(0x0f, 10) }));
  assert.equal(sense(r).field, { cdb: false, byte: 4, bit: 3 }, 'transitioning cannot be requested');
  r = await p1.execute(cmd(stpg(8), { nexus: a, data: bad(0x00, 99) }));
  assert.equal(sense(r).field, { cdb: false, byte: 6 }, 'unknown group');
  r = await p1.execute(cmd(stpg(6), { nexus: a, data: Buffer.alloc(6) }));
  assert.is(sense(r).asc, 0x1a00);
  r = await p1.execute(cmd(stpg(0), { nexus: a }));
  assert.is(r.status, Status.GOOD);
  // Implicit-only ALUA: STPG is not supported.
  const imp = await twoPorts('implicit');
  r = await imp.p1.execute(cmd(stpg(8), { nexus: imp.a, data: bad(0, 10) }));
  assert.is(sense(r).key, 5);
});

test('VPD 83h carries relative target port (4) and target port group (5) designators', async () => {
  const { p2, b } = await twoPorts();
  const r = await p2.execute(cmd([0x12, 1, 0x83, 0, 255, 0], { nexus: b }));
  const d = r.dataIn!;
  const found = new Map<number, Buffer>();
  for (let o = 4; o < d.length; o += 4 + d[o + 3]!) found.set(d[o + 1]! & 0x3f, d.subarray(o + 4, o + 4 + d[o + 3]!));
  assert.is(found.get(0x14)!.readUInt16BE(2), 2, 'relative target port 2');
  assert.is(found.get(0x15)!.readUInt16BE(2), 20, 'target port group 20');
});

test('REPORT SUPPORTED OPERATION CODES lists RTPG/STPG only with groups', async () => {
  const { p1, a } = await twoPorts();
  const rsoc = [0xa3, 0x0c, 0x02, 0xa3, 0, 0x0a, 0, 0, 1, 0, 0, 0];
  let r = await p1.execute(cmd(rsoc, { nexus: a }));
  assert.is(r.dataIn![1]! & 7, 3);
  assert.equal([...r.dataIn!.subarray(4, 6)], [0xa3, 0xea]);
  const lu = new LogicalUnit({ backstore: new MemStore('d', 64 * 512) });
  const plain = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await plain.execute(cmd(TUR));
  r = await plain.execute(cmd(rsoc));
  assert.is(r.dataIn![1]! & 7, 1);
});

test('AluaGroups configuration errors have a stable code', () => {
  const bad = [
    { portGroups: [] },
    { portGroups: [{ id: 1, state: 'standby' as const, ports: [1] }, { id: 1, state: 'standby' as const, ports: [2] }] },
    { portGroups: [{ id: 1, state: 'standby' as const, ports: [1] }, { id: 2, state: 'standby' as const, ports: [1] }] },
    { portGroups: [{ id: 1, state: 'offline' as never, ports: [1] }] },
    { portGroups: [{ id: 1, state: 'standby' as const, ports: [0] }] },
  ];
  for (const opts of bad) {
    try {
      new AluaGroups(opts);
      assert.unreachable('should throw');
    } catch (e) {
      assert.instance(e, AluaConfigError);
      assert.is((e as AluaConfigError).code, 'ALUA_CONFIG');
    }
  }
});

test.run();
