import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GadgetError, UsbGadget } from '../../../src/fabrics/usb/gadget';
import type { GadgetSpec } from '../../../src/fabrics/usb/gadget';
import { FakeConfigFs } from './fake-configfs';

async function withFs(udcs: string[], body: (f: FakeConfigFs) => Promise<void>): Promise<void> {
  const f = await FakeConfigFs.create(udcs);
  try {
    await body(f);
  } finally {
    await f.dispose();
  }
}

const gadget = (f: FakeConfigFs, spec: Partial<GadgetSpec> = {}): UsbGadget =>
  new UsbGadget({ name: 'lunbox', serialnumber: '0001', ...spec }, { fs: f, configfs: f.configfs, udcClass: f.udcClass });

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, GadgetError);
    return (e as GadgetError).code;
  }
  return 'none';
}

test('create: gadget attributes, strings, c.1, ffs + acm linked, defaults 1d6b:0104', async () => {
  await withFs(['dummy_udc.0'], async (f) => {
    await gadget(f).create();
    const tree = await f.tree();
    for (const line of [
      'lunbox/idVendor = 0x1d6b',
      'lunbox/idProduct = 0x0104',
      'lunbox/bcdDevice = 0x0100',
      'lunbox/bcdUSB = 0x0200',
      'lunbox/strings/0x409/manufacturer = lunbox',
      'lunbox/strings/0x409/product = lunbox storage',
      'lunbox/strings/0x409/serialnumber = 0001',
      'lunbox/configs/c.1/MaxPower = 250',
      'lunbox/configs/c.1/bmAttributes = 0x80',
      'lunbox/configs/c.1/strings/0x409/configuration = lunbox',
      'lunbox/functions/ffs.lunbox/',
      'lunbox/functions/acm.usb0/',
      'lunbox/configs/c.1/ffs.lunbox -> lunbox/functions/ffs.lunbox',
      'lunbox/configs/c.1/acm.usb0 -> lunbox/functions/acm.usb0',
      'lunbox/UDC =',
    ]) {
      assert.ok(tree.includes(line), `missing ${line}\n${tree.join('\n')}`);
    }
  });
});

test('create: overrides and no ACM', async () => {
  await withFs([], async (f) => {
    const g = gadget(f, { idVendor: 0x1209, idProduct: 0x0001, bcdDevice: 0x0203, maxPower: 100, acmInstance: false, ffsInstance: 'disk' });
    await g.create();
    const tree = await f.tree();
    assert.ok(tree.includes('lunbox/idVendor = 0x1209'));
    assert.ok(tree.includes('lunbox/bcdDevice = 0x0203'));
    assert.ok(tree.includes('lunbox/configs/c.1/MaxPower = 100'));
    assert.ok(tree.includes('lunbox/configs/c.1/ffs.disk -> lunbox/functions/ffs.disk'));
    assert.not.ok(tree.some((l) => l.includes('acm.')));
    assert.is(g.ffsName, 'disk');
  });
});

test('bind: first UDC by default, a named one on request, written to UDC', async () => {
  await withFs(['musb-hdrc.0', 'dummy_udc.0'], async (f) => {
    const g = gadget(f);
    await g.create();
    f.setFfsReady('lunbox');
    assert.is(await g.bind(), 'dummy_udc.0'); // sorted: the first one
    assert.is(await g.boundUdc(), 'dummy_udc.0');
    assert.is(await g.udcState('dummy_udc.0'), 'not attached');
    await g.unbind();
    assert.is(await g.boundUdc(), undefined);
    assert.is(await g.bind('musb-hdrc.0'), 'musb-hdrc.0');
  });
});

test('bind errors: no UDC, unknown UDC, FunctionFS not ready, UDC taken by another gadget', async () => {
  await withFs([], async (f) => {
    const g = gadget(f);
    await g.create();
    assert.is(await code(g.bind()), 'NO_UDC');
    assert.is(await code(g.bind('fe980000.usb')), 'UDC_NOT_FOUND');
  });
  await withFs(['dummy_udc.0'], async (f) => {
    const g = gadget(f);
    await g.create();
    assert.is(await code(g.bind()), 'FUNCTION_NOT_READY');
    // BeagleBone-style stock gadget holding the UDC
    const other = new UsbGadget({ name: 'g_multi', acmInstance: false, ffsInstance: 'other' }, { fs: f, configfs: f.configfs, udcClass: f.udcClass });
    await other.create();
    f.setFfsReady('other');
    await other.bind();
    f.setFfsReady('lunbox');
    try {
      await g.bind();
      assert.unreachable();
    } catch (e) {
      assert.is((e as GadgetError).code, 'UDC_BUSY');
      assert.match((e as GadgetError).message, 'g_multi');
    }
  });
});

test('destroy: reverse order (unbind, links, config strings, configs, functions, strings, gadget)', async () => {
  await withFs(['dummy_udc.0'], async (f) => {
    const g = gadget(f);
    await g.create();
    f.setFfsReady('lunbox');
    await g.bind();
    f.ops.length = 0;
    await g.destroy();
    assert.equal(f.ops, [
      'write lunbox/UDC=',
      'unlink lunbox/configs/c.1/acm.usb0',
      'unlink lunbox/configs/c.1/ffs.lunbox',
      'rmdir lunbox/configs/c.1/strings/0x409',
      'rmdir lunbox/configs/c.1',
      'rmdir lunbox/functions/acm.usb0',
      'rmdir lunbox/functions/ffs.lunbox',
      'rmdir lunbox/strings/0x409',
      'rmdir lunbox',
    ]);
    assert.equal(await f.tree(), []);
    await g.destroy(); // absent: nothing to do
  });
});

test('create is idempotent: a crashed run (bound, other functions, second config) is removed first', async () => {
  await withFs(['dummy_udc.0'], async (f) => {
    const crashed = gadget(f, { acmInstance: 'gs9' });
    await crashed.create();
    await f.mkdir(`${crashed.dir}/functions/mass_storage.0`);
    await f.mkdir(`${crashed.dir}/configs/c.2`);
    await f.symlink(`${crashed.dir}/functions/mass_storage.0`, `${crashed.dir}/configs/c.2/mass_storage.0`);
    f.setFfsReady('lunbox');
    await crashed.bind();
    const g = gadget(f);
    await g.create();
    await g.create(); // and again
    const tree = await f.tree();
    assert.not.ok(tree.some((l) => l.includes('mass_storage') || l.includes('gs9') || l.includes('c.2')), tree.join('\n'));
    assert.ok(tree.includes('lunbox/UDC ='));
    assert.ok(tree.includes('lunbox/configs/c.1/acm.usb0 -> lunbox/functions/acm.usb0'));
  });
});

test('the fake is configfs-like: default groups cannot be removed, functions cannot go while linked', async () => {
  await withFs([], async (f) => {
    const g = gadget(f);
    await g.create();
    const errno = async (p: Promise<unknown>): Promise<string | undefined> => {
      try {
        await p;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
      return undefined;
    };
    assert.is(await errno(f.rmdir(`${g.dir}/strings`)), 'EPERM');
    assert.is(await errno(f.rmdir(`${g.dir}/functions/ffs.lunbox`)), 'EBUSY');
    assert.is(await errno(f.rmdir(`${g.dir}/configs/c.1`)), 'ENOTEMPTY');
    assert.is(await errno(f.unlink(`${g.dir}/idVendor`)), 'EPERM');
    assert.is(await errno(f.mkdir(`${g.dir}/functions/nosuch.0`)), 'ENOENT');
    assert.is(await errno(f.mkdir(`${g.dir}/configs/c`)), 'EINVAL');
    assert.is(await errno(f.mkdir(`${g.dir}/elsewhere`)), 'EPERM');
  });
});

test('missing configfs and bad specs are typed errors', async () => {
  await withFs([], async (f) => {
    const g = new UsbGadget({ name: 'x' }, { fs: f, configfs: `${f.root}/nowhere`, udcClass: f.udcClass });
    assert.is(await code(g.create()), 'NO_CONFIGFS');
  });
  const bad = (spec: GadgetSpec): string => {
    try {
      new UsbGadget(spec);
    } catch (e) {
      return (e as GadgetError).code;
    }
    return 'none';
  };
  assert.is(bad({ name: '../etc' }), 'BAD_SPEC');
  assert.is(bad({ name: 'a/b' }), 'BAD_SPEC');
  assert.is(bad({ name: 'g', idVendor: 0x10000 }), 'BAD_SPEC');
  assert.is(bad({ name: 'g', maxPower: 900 }), 'BAD_SPEC');
  assert.is(bad({ name: 'g', bmAttributes: 0x40 }), 'BAD_SPEC');
  assert.is(bad({ name: 'g', product: 'two\nlines' }), 'BAD_SPEC');
  assert.is(bad({ name: 'g' }), 'none');
});

const NCM = { devAddr: '02:57:4a:2e:c4:ff', hostAddr: '06:57:4a:2e:c4:ff' };

test('create with NCM: MACs written before the link, WINNCM OS descriptor, IAD class codes, bcdDevice 0x0101', async () => {
  await withFs(['dummy_udc.0'], async (f) => {
    const g = gadget(f, { ncm: NCM });
    await g.create();
    const tree = await f.tree();
    for (const line of [
      'lunbox/bcdDevice = 0x0101',
      'lunbox/bDeviceClass = 0xef',
      'lunbox/bDeviceSubClass = 0x02',
      'lunbox/bDeviceProtocol = 0x01',
      'lunbox/functions/ncm.usb0/dev_addr = 02:57:4a:2e:c4:ff',
      'lunbox/functions/ncm.usb0/host_addr = 06:57:4a:2e:c4:ff',
      'lunbox/functions/ncm.usb0/os_desc/interface.ncm/compatible_id = WINNCM',
      'lunbox/configs/c.1/ncm.usb0 -> lunbox/functions/ncm.usb0',
      'lunbox/os_desc/use = 1',
      'lunbox/os_desc/b_vendor_code = 0xcd',
      'lunbox/os_desc/qw_sign = MSFT100',
      'lunbox/os_desc/c.1 -> lunbox/configs/c.1',
    ]) {
      assert.ok(tree.includes(line), `missing ${line}\n${tree.join('\n')}`);
    }
    // f_ncm takes host_addr for its iMACAddress string when linked: the writes come first.
    const ops = f.ops.map((o) => o.replace(/=.*/, ''));
    assert.ok(ops.indexOf('write lunbox/functions/ncm.usb0/host_addr') < ops.indexOf('symlink lunbox/configs/c.1/ncm.usb0'));
    // NCM goes last: the disk keeps interface 0 and the console 1-2, as without NCM.
    assert.equal(g.functions, ['ffs.lunbox', 'acm.usb0', 'ncm.usb0']);
    // Once linked the kernel refuses new MACs (f_ncm refcnt): the fake does too.
    try {
      await f.writeAttr(`${g.dir}/functions/ncm.usb0/dev_addr`, '02:00:00:00:00:01');
      assert.unreachable();
    } catch (e) {
      assert.is((e as NodeJS.ErrnoException).code, 'EBUSY');
    }
  });
});

test('NCM: ifname names no interface until bound, then usb0; destroy removes function, os_desc link and all', async () => {
  await withFs(['dummy_udc.0'], async (f) => {
    const g = gadget(f, { ncm: NCM, acmInstance: false });
    await g.create();
    assert.is(await g.ncmIfname(), undefined);
    f.setFfsReady('lunbox');
    await g.bind();
    assert.is(await g.ncmIfname(), 'usb0');
    f.ops.length = 0;
    await g.destroy();
    assert.ok(f.ops.includes('unlink lunbox/os_desc/c.1'));
    assert.ok(f.ops.includes('rmdir lunbox/functions/ncm.usb0'));
    assert.equal(await f.tree(), []);
    await g.create(); // and again, from nothing
    assert.is(await g.ncmIfname(), undefined);
    assert.is(await gadget(f).ncmIfname(), undefined, 'no NCM, no interface');
  });
});

test('IAD class codes only with a two-interface function; none for the disk alone', async () => {
  await withFs([], async (f) => {
    await gadget(f, { acmInstance: false }).create();
    const tree = await f.tree();
    assert.ok(tree.includes('lunbox/bDeviceClass = 0x00'), tree.join('\n'));
    assert.ok(tree.includes('lunbox/bcdDevice = 0x0100'));
    assert.ok(tree.includes('lunbox/os_desc/use = 0'));
    await gadget(f).create(); // ACM: EF/02/01 too
    assert.ok((await f.tree()).includes('lunbox/bDeviceClass = 0xef'));
  });
});

test('NCM specs: MACs must be unicast, well-formed and differ', () => {
  const bad = (ncm: { devAddr: string; hostAddr: string }): string => {
    try {
      new UsbGadget({ name: 'g', ncm });
    } catch (e) {
      return (e as GadgetError).message;
    }
    return 'none';
  };
  assert.match(bad({ devAddr: '02:00:00:00:00:01', hostAddr: '02:00:00:00:00:01' }), 'ncm.hostAddr: must differ');
  assert.match(bad({ devAddr: '01:00:5e:00:00:01', hostAddr: '02:00:00:00:00:01' }), 'ncm.devAddr: 01:00:5e:00:00:01 is a multicast');
  assert.match(bad({ devAddr: '02:00:00:00:00:01', hostAddr: 'nope' }), 'ncm.hostAddr: "nope" is not a MAC address');
  assert.is(bad(NCM), 'none');
});

test.run();
