// The kernel engine for USB against the fake configfs: the mass_storage function's LUN
// attributes in the kernel's order, medium changes, PREVENT, teardown, and bad LUN sets.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KernelUsbTarget } from '../../../src/fabrics/usb/kernel-msc';
import type { KernelMscLun } from '../../../src/fabrics/usb/gadget';
import { UsbTargetError } from '../../../src/fabrics/usb/usb-target';
import { validateConfig, ConfigError } from '../../../src/config';
import { FakeConfigFs } from './fake-configfs';
import { FakeIpTool } from './fake-ip-tool';
import { ncmMacs } from '../../../src/fabrics/usb/ncm';

async function withFs(body: (f: FakeConfigFs) => Promise<void>): Promise<void> {
  const f = await FakeConfigFs.create(['dummy_udc.0']);
  try {
    await body(f);
  } finally {
    await f.dispose();
  }
}

const target = (f: FakeConfigFs, luns: KernelMscLun[], acm = false): KernelUsbTarget =>
  new KernelUsbTarget({ gadget: { serial: 'K1', acm }, luns, configFs: f, configfsRoot: f.configfs, udcClass: f.udcClass, preflight: false });

const disk: KernelMscLun = { lun: 0, file: '/srv/disk.img', readOnly: false, removable: false, cdrom: false, inquiry: 'LUNBOX  FILE            0001' };
const cd: KernelMscLun = { lun: 1, file: '/srv/a.iso', readOnly: true, removable: true, cdrom: true };

test('start: mass_storage (no ffs) with LUN attributes, ro/cdrom before file, lun.1 made by mkdir, bound', async () => {
  await withFs(async (f) => {
    const t = target(f, [cd, disk], true);
    await t.start();
    assert.is(t.udc, 'dummy_udc.0');
    const tree = await f.tree();
    for (const line of [
      'lunbox/UDC = dummy_udc.0',
      'lunbox/configs/c.1/mass_storage.lunbox -> lunbox/functions/mass_storage.lunbox',
      'lunbox/configs/c.1/acm.usb0 -> lunbox/functions/acm.usb0',
      'lunbox/functions/mass_storage.lunbox/stall = 1',
      'lunbox/functions/mass_storage.lunbox/lun.0/file = /srv/disk.img',
      'lunbox/functions/mass_storage.lunbox/lun.0/ro = 0',
      'lunbox/functions/mass_storage.lunbox/lun.0/removable = 0',
      'lunbox/functions/mass_storage.lunbox/lun.0/inquiry_string = LUNBOX  FILE            0001',
      'lunbox/functions/mass_storage.lunbox/lun.1/file = /srv/a.iso',
      'lunbox/functions/mass_storage.lunbox/lun.1/cdrom = 1',
      'lunbox/functions/mass_storage.lunbox/lun.1/ro = 1',
    ]) {
      assert.ok(tree.includes(line), `missing: ${line}\n${tree.join('\n')}`);
    }
    assert.not.ok(tree.some((l) => l.includes('ffs.')), 'no FunctionFS function in kernel mode');
    const ops = f.ops.filter((o) => o.includes('lun.1'));
    assert.ok(ops.indexOf('write lunbox/functions/mass_storage.lunbox/lun.1/ro=1') < ops.indexOf('write lunbox/functions/mass_storage.lunbox/lun.1/file=/srv/a.iso'));
    await t.stop();
    assert.equal(await f.tree(), [], 'stop removes everything, lun.1 before its function');
  });
});

test('medium changes: eject, insert, PREVENT refuses unless forced (forced_eject)', async () => {
  await withFs(async (f) => {
    const t = target(f, [disk, cd]);
    await t.start();
    const lunDir = `${f.gadgets}/lunbox/functions/mass_storage.lunbox/lun.1`;
    const file = async (): Promise<string> => ((await f.tree()).find((l) => l.startsWith('lunbox/functions/mass_storage.lunbox/lun.1/file')) ?? '').replace(/^.*= ?/, '');
    await t.setMedium(1, null);
    assert.is(await file(), '');
    await t.setMedium(1, '/srv/b.iso');
    assert.is(await file(), '/srv/b.iso');
    f.prevented.add(lunDir);
    try {
      await t.setMedium(1, '/srv/c.iso');
      assert.unreachable('PREVENT must refuse');
    } catch (e) {
      assert.match((e as Error).message, /prevents medium removal/);
    }
    assert.is(await file(), '/srv/b.iso', 'the disc stays when refused');
    await t.setMedium(1, '/srv/c.iso', { force: true });
    assert.is(await file(), '/srv/c.iso');
    try {
      await t.setMedium(0, null);
      assert.unreachable('a fixed disk has no medium to change');
    } catch (e) {
      assert.match((e as Error).message, /not removable/);
    }
    await t.stop();
  });
});

test('NCM with the kernel engine: the network comes up the same way, and goes with stop', async () => {
  await withFs(async (f) => {
    const ip = new FakeIpTool();
    ip.add('usb0');
    let running = 0;
    const t = new KernelUsbTarget({
      gadget: { serial: 'K1', acm: true, ncm: { address: '10.55.0.1/30' } },
      luns: [disk],
      configFs: f,
      configfsRoot: f.configfs,
      udcClass: f.udcClass,
      preflight: false,
      ipTool: ip,
      createDhcp: () => ({ start: async () => void running++, stop: async () => void running-- }),
      ncmPollMs: 60_000,
    });
    await t.start();
    const tree = await f.tree();
    assert.ok(tree.includes('lunbox/configs/c.1/ncm.usb0 -> lunbox/functions/ncm.usb0'), tree.join('\n'));
    assert.ok(tree.includes(`lunbox/functions/ncm.usb0/host_addr = ${ncmMacs('K1').hostMac}`));
    assert.is(t.ncmInterface, 'usb0');
    assert.ok(ip.commands.includes('ip addr replace 10.55.0.1/30 broadcast + dev usb0'), ip.commands.join('\n'));
    assert.is(running, 1);
    await t.stop();
    assert.is(running, 0);
    assert.equal(await f.tree(), []);
  });
});

test('bad LUN sets are refused before touching configfs', () => {
  const bad = (luns: KernelMscLun[], re: RegExp): void => {
    try {
      new KernelUsbTarget({ gadget: {}, luns, preflight: false });
      assert.unreachable('should throw');
    } catch (e) {
      assert.instance(e, UsbTargetError);
      assert.match((e as Error).message, re);
    }
  };
  bad([], /at least one LUN/);
  bad([cd], /always has LUN 0/);
  bad([disk, { ...disk }], /given twice/);
  bad([{ ...disk, lun: 16 }], /0\.\.15/);
  bad([{ ...disk, file: '' }], /only a removable LUN/);
});

test('config: usb.engine is userspace or kernel; a ram backstore cannot go to the kernel', () => {
  const base = {
    version: 1,
    backstores: [
      { name: 'r', type: 'ram', size: '16M' },
      { name: 'f', type: 'file', path: '/tmp/x.img', size: '16M' },
    ],
  };
  const ok = validateConfig({ ...base, usb: { engine: 'kernel', luns: [{ lun: 0, backstore: 'f' }] } });
  assert.is(ok.usb?.engine, 'kernel');
  const fails = (usb: unknown, re: RegExp): void => {
    try {
      validateConfig({ ...base, usb });
      assert.unreachable('should fail');
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.match((e as Error).message, re);
    }
  };
  fails({ engine: 'kernel', luns: [{ lun: 0, backstore: 'r' }] }, /usb\.luns\[0\]\.backstore.*ram backstore/);
  fails({ engine: 'lio', luns: [{ lun: 0, backstore: 'f' }] }, /usb\.engine/);
});

test.run();
