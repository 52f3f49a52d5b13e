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

test.run();
