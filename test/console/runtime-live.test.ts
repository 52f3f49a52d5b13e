// Runtime.apply: live changes seen by a nexus that is already logged in (no sockets: the
// test drives the TargetPort of the running target like a fabric would).
import { test } from 'uvu';
import { tcp } from '../integration/helpers';
import * as assert from 'uvu/assert';
import type { LunboxConfig } from '../../src/config';
import { Runtime } from '../../src/runtime';
import { createLogger } from '../../src/util/log';
import { cmd, nexus, sense } from '../scsi/helpers';

const IQN = 'iqn.2026-11.org.lunbox:live';
const quiet = createLogger({ quiet: true });
const base = (): LunboxConfig => ({
  version: 1,
  backstores: [{ name: 'a', type: 'ram', size: '1M' }],
  iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'a' }] }] },
});
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const TUR = [0, 0, 0, 0, 0, 0];
/** A new nexus first gets the power-on unit attention: take it like an initiator would. */
async function login(port: { execute: (c: ReturnType<typeof cmd>) => Promise<{ status: number }> }, nx: ReturnType<typeof nexus>): Promise<void> {
  for (let i = 0; i < 3; i++) if ((await port.execute(cmd(TUR, { nexus: nx }))).status === 0) return;
  throw new Error('unit never ready');
}
const lunsOf = (data: Buffer): number[] => {
  const n = data.readUInt32BE(0) / 8;
  return Array.from({ length: n }, (_, i) => data.readUInt16BE(8 + i * 8) & 0x3fff);
};

test('a LUN added live: the logged-in nexus gets 06/3F/0E, then REPORT LUNS lists it; the old LUN keeps working', async () => {
  const rt = await Runtime.start(base(), quiet);
  try {
    const port = rt.targetPort(IQN)!;
    const nx = nexus(1);
    await login(port, nx);
    const next = base();
    next.backstores.push({ name: 'b', type: 'ram', size: '2M' });
    next.iscsi!.targets[0]!.luns.push({ lun: 1, backstore: 'b' });
    const report = await rt.apply(next);
    assert.ok(report.changes.some((c) => /backstore ram:b added/.test(c)));
    const ua = await port.execute(cmd(TUR, { nexus: nx }));
    assert.is(ua.status, 2);
    assert.equal(sense(ua).key, 6);
    assert.is(sense(ua).asc, 0x3f0e);
    const rl = await port.execute(cmd(REPORT_LUNS, { nexus: nx, dataIn: 256 }));
    assert.equal(lunsOf(rl.dataIn!), [0, 1]);
    // The UA is cleared by REPORT LUNS (SPC-4 §6.33); both LUNs answer.
    assert.is((await port.execute(cmd(TUR, { nexus: nx }))).status, 0);
    // The new unit has its own power-on attention for this nexus, then answers.
    for (let i = 0; i < 3 && (await port.execute(cmd(TUR, { nexus: nx, lun: 1 }))).status !== 0; i++);
    assert.is((await port.execute(cmd(TUR, { nexus: nx, lun: 1 }))).status, 0);
    const rc = await port.execute(cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { nexus: nx, lun: 1, dataIn: 8 }));
    assert.is(rc.dataIn!.readUInt32BE(0), 2 * 1024 * 1024 / 512 - 1);
    assert.is(rt.config.backstores.length, 2);
  } finally {
    await rt.stop();
  }
});

test('a LUN removed live goes away cleanly; a failed open changes nothing', async () => {
  const start = base();
  start.backstores.push({ name: 'b', type: 'ram', size: '1M' });
  start.iscsi!.targets[0]!.luns.push({ lun: 1, backstore: 'b' });
  const rt = await Runtime.start(start, quiet);
  try {
    const port = rt.targetPort(IQN)!;
    const nx = nexus(2);
    await login(port, nx);
    const bad = structuredClone(start);
    bad.backstores.push({ name: 'c', type: 'block', path: '/dev/does-not-exist-lunbox' });
    await rt.apply(bad).then(
      () => assert.unreachable('should fail'),
      (e: Error) => assert.match(e.message, /does-not-exist/),
    );
    assert.is(rt.config.backstores.length, 2);
    const next = base();
    await rt.apply(next);
    const ua = await port.execute(cmd(TUR, { nexus: nx }));
    assert.is(sense(ua).asc, 0x3f0e);
    const rl = await port.execute(cmd(REPORT_LUNS, { nexus: nx, dataIn: 256 }));
    assert.equal(lunsOf(rl.dataIn!), [0]);
    const gone = await port.execute(cmd(TUR, { nexus: nx, lun: 1 }));
    assert.is(sense(gone).asc, 0x2500);
  } finally {
    await rt.stop();
  }
});

test('ACL changes: an initiator losing its ACL sees no LUNs; targets come and go', async () => {
  const start = base();
  start.iscsi!.targets[0]!.acls = [{ initiator: 'iqn.2026-11.test:init3' }];
  const rt = await Runtime.start(start, quiet);
  try {
    const port = rt.targetPort(IQN)!;
    const nx = { ...nexus(3), initiatorName: 'iqn.2026-11.test:init3' };
    await login(port, nx);
    const next = base();
    next.iscsi!.targets[0]!.acls = [{ initiator: 'iqn.2026-11.test:someone-else' }];
    await rt.apply(next);
    const rl = await port.execute(cmd(REPORT_LUNS, { nexus: nx, dataIn: 256 }));
    assert.equal(lunsOf(rl.dataIn!), []);
    const two = base();
    two.iscsi!.targets.push({ iqn: 'iqn.2026-11.org.lunbox:second', luns: [{ lun: 3, backstore: 'a' }] });
    const r = await rt.apply(two);
    assert.ok(r.changes.some((c) => /second tpg 1 added/.test(c)));
    assert.ok(rt.targetPort('iqn.2026-11.org.lunbox:second'));
    assert.is(rt.targetPort(IQN), port, 'the same TargetPort survives');
    assert.ok(rt.urls().some((u) => u.endsWith('/iqn.2026-11.org.lunbox:second/3')));
    await rt.apply(base());
    assert.is(rt.targetPort('iqn.2026-11.org.lunbox:second'), undefined);
  } finally {
    await rt.stop();
  }
});


test('portals: one removed by apply stops listening at once, the other keeps serving; one added listens', async () => {
  const cfg = (ports: number[]): LunboxConfig => ({
    version: 1,
    backstores: [{ name: 'a', type: 'ram', size: '1M' }],
    iscsi: { portals: ports.map((port) => ({ address: '127.0.0.1', port })), targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'a' }] }] },
  });
  const rt = await Runtime.start(cfg([3420, 3421]), quiet);
  try {
    assert.equal([await tcp(3420), await tcp(3421)], ['open', 'open']);
    const r = await rt.apply(cfg([3420]));
    assert.equal(r.changes, ['iscsi portal 127.0.0.1:3421 closed (sessions logged in through it stay until they log out)']);
    assert.equal(r.notes, []);
    assert.is(await tcp(3421), 'refused');
    assert.is(await tcp(3420), 'open');
    assert.equal(rt.portals(), [{ address: '127.0.0.1', port: 3420 }]);
    // Swapped for another port in one change; the old one may come back later.
    const r2 = await rt.apply(cfg([3422]));
    assert.equal(r2.changes, ['iscsi portal 127.0.0.1:3420 closed (sessions logged in through it stay until they log out)', 'iscsi portal 127.0.0.1:3422 listening']);
    assert.equal([await tcp(3420), await tcp(3422)], ['refused', 'open']);
    await rt.apply(cfg([3422, 3420]));
    assert.equal([await tcp(3420), await tcp(3422)], ['open', 'open']);
    assert.ok(rt.urls()[0]!.startsWith('iscsi://127.0.0.1:3422/'));
  } finally {
    await rt.stop();
  }
  assert.equal([await tcp(3420), await tcp(3422)], ['refused', 'refused']);
});

test.run();
