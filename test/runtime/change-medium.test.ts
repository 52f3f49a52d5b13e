// Runtime.changeMedium: a cdrom backstore's disc swapped from the management side, seen by an
// initiator as NOT READY TO READY CHANGE and the new capacity; PREVENT needs force.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LunboxConfig } from '../../src/config';
import { Runtime } from '../../src/runtime';
import { MediumRemovalPreventedError } from '../../src/scsi/logical-unit';
import { createLogger } from '../../src/util/log';
import { cmd, nexus, sense } from '../scsi/helpers';

const IQN = 'iqn.2026-11.org.lunbox:cd';
const quiet = createLogger({ quiet: true });
const TUR = [0, 0, 0, 0, 0, 0];
const CAP = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];

test('changeMedium: insert another ISO, eject, refuse under PREVENT unless forced; config follows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-cd-'));
  const a = join(dir, 'a.iso');
  const b = join(dir, 'b.iso');
  writeFileSync(a, Buffer.alloc(2048 * 16, 0xaa));
  writeFileSync(b, Buffer.alloc(2048 * 40, 0xbb));
  const cfg: LunboxConfig = {
    version: 1,
    backstores: [{ name: 'cd', type: 'file', path: a, cdrom: true }],
    iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'cd' }] }] },
  };
  const rt = await Runtime.start(cfg, quiet);
  try {
    const port = rt.targetPort(IQN)!;
    const nx = nexus(1);
    await port.execute(cmd(TUR, { nexus: nx }));
    assert.is((await port.execute(cmd(CAP, { nexus: nx }))).dataIn!.readUInt32BE(0), 15);
    await rt.changeMedium('cd', b);
    let r = await port.execute(cmd(TUR, { nexus: nx }));
    assert.equal([sense(r).key, sense(r).asc], [6, 0x2800]);
    assert.is((await port.execute(cmd(CAP, { nexus: nx }))).dataIn!.readUInt32BE(0), 39);
    const rd = await port.execute(cmd([0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0], { nexus: nx }));
    assert.is(rd.dataIn![0], 0xbb);
    assert.is(rt.config.backstores[0]!.path, b);
    // The host locks the tray: a change is refused, then forced.
    await port.execute(cmd([0x1e, 0, 0, 0, 1, 0], { nexus: nx }));
    await rt.changeMedium('cd', null).then(
      () => assert.unreachable('eject under PREVENT'),
      (e: unknown) => assert.instance(e, MediumRemovalPreventedError),
    );
    assert.equal(await rt.changeMedium('cd', null, { force: true }), { forced: true });
    r = await port.execute(cmd(TUR, { nexus: nx }));
    assert.equal([sense(r).key, sense(r).asc], [2, 0x3a02]);
    assert.is(rt.config.backstores[0]!.path, undefined);
    await rt.changeMedium('cd', a);
    assert.is(sense(await port.execute(cmd(TUR, { nexus: nx }))).asc, 0x2800);
    assert.is((await port.execute(cmd(TUR, { nexus: nx }))).status, 0);
    await rt.changeMedium('nope', a).then(() => assert.unreachable('unknown'), (e: Error) => assert.match(e.message, /no backstore/));
  } finally {
    await rt.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('apply: a cdrom whose only change is its path changes the disc (same unit, 28/00, not 3F/0E); PREVENT refuses it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-cd-'));
  const a = join(dir, 'a.iso');
  const b = join(dir, 'b.iso');
  writeFileSync(a, Buffer.alloc(2048 * 16, 0xaa));
  writeFileSync(b, Buffer.alloc(2048 * 40, 0xbb));
  const cfg = (path?: string): LunboxConfig => ({
    version: 1,
    backstores: [{ name: 'cd', type: 'file', ...(path !== undefined ? { path } : {}), cdrom: true }],
    iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'cd' }] }] },
  });
  const rt = await Runtime.start(cfg(a), quiet);
  try {
    const port = rt.targetPort(IQN)!;
    const unit = rt.unit('cd');
    const nx = nexus(2);
    await port.execute(cmd(TUR, { nexus: nx }));
    const report = await rt.apply(cfg(b));
    assert.equal(report.changes, [`backstore cd: medium ${b} inserted`]);
    assert.is(rt.unit('cd'), unit, 'the same logical unit: a disc change, not a new LUN');
    const r = await port.execute(cmd(TUR, { nexus: nx }));
    assert.equal([sense(r).key, sense(r).asc], [6, 0x2800], 'NOT READY TO READY CHANGE, not REPORTED LUNS DATA HAS CHANGED');
    assert.is((await port.execute(cmd(CAP, { nexus: nx }))).dataIn!.readUInt32BE(0), 39);
    // Locked by the host: the apply is refused and nothing changes.
    await port.execute(cmd([0x1e, 0, 0, 0, 1, 0], { nexus: nx }));
    await rt.apply(cfg()).then(
      () => assert.unreachable('eject under PREVENT'),
      (e: unknown) => assert.instance(e, MediumRemovalPreventedError),
    );
    assert.is(rt.config.backstores[0]!.path, b);
    assert.is((await port.execute(cmd(CAP, { nexus: nx }))).dataIn!.readUInt32BE(0), 39);
    // GESN reports the eject request the refusal posted (MMC-6 §6.7.2.5: event 1).
    const gesn = await port.execute(cmd([0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0], { nexus: nx, dataIn: 8 }));
    assert.is(gesn.dataIn![4]! & 0x0f, 1, 'EjectRequest');
    await port.execute(cmd([0x1e, 0, 0, 0, 0, 0], { nexus: nx }));
    const ej = await rt.apply(cfg());
    assert.equal(ej.changes, ['backstore cd: medium ejected']);
    const out = await port.execute(cmd(TUR, { nexus: nx }));
    assert.equal([sense(out).key, sense(out).asc], [2, 0x3a02], 'MEDIUM NOT PRESENT - TRAY OPEN');
  } finally {
    await rt.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
