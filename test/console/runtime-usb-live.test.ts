// Runtime.apply on the USB fabric: a change of the `usb` section or of a backstore the gadget
// exports rebuilds the gadget (the host sees a disconnect and a new enumeration), over the fake
// configfs + FunctionFS. Each gadget started gets a fresh fake bus, as a host sees a new device
// after re-enumeration; the host checks go through the newest one (Get Max LUN, CBWs).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { LunboxConfig } from '../../src/config';
import { ConfigModel } from '../../src/console/model';
import { Shell } from '../../src/console/shell';
import { CswStatus } from '../../src/fabrics/usb/bot';
import type { ConfigFs } from '../../src/fabrics/usb/gadget';
import { Runtime, UsbRestartError } from '../../src/runtime';
import type { UsbDependant, UsbSystem } from '../../src/runtime';
import { createLogger } from '../../src/util/log';
import { FakeConfigFs } from '../fabrics/usb/fake-configfs';
import { FakeFfsIo } from '../fabrics/usb/fake-ffs-io';
import type { FakeUsbHost } from '../fabrics/usb/fake-ffs';
import { linked } from '../fabrics/usb/fake-linked';
import { FakeIpTool } from '../fabrics/usb/fake-ip-tool';

const logs: string[] = [];
/** Warnings and errors go to `logs` (checked where they matter), not to the test output. */
const quiet = createLogger({ quiet: true, stream: new Writable({ write: (c: Buffer, _e, done) => void (logs.push(c.toString()), done()) }) });
const UDC = 'dummy_udc.0';
const GADGET = { udc: UDC, serial: 'LIVE01', product: 'live test' };

interface Env {
  cfs: FakeConfigFs;
  /** One fake bus per gadget started, oldest first. */
  buses: FakeFfsIo[];
  system: () => UsbSystem;
  host: () => FakeUsbHost;
  /** configfs seen by the next gadget started (tests make it fail). */
  wrap: ((fs: ConfigFs) => ConfigFs) | undefined;
  /** More of the system (the USB network's ip tool and DHCP server). */
  extra: Partial<UsbSystem>;
  dir: string;
}

async function withEnv(body: (e: Env) => Promise<void>): Promise<void> {
  const cfs = await FakeConfigFs.create([UDC]);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-usb-live-'));
  const env: Env = {
    cfs,
    buses: [],
    dir,
    wrap: undefined,
    extra: {},
    system: () => {
      const io = new FakeFfsIo({ timeoutMs: 2000 });
      env.buses.push(io);
      const fs = linked(cfs, io);
      return {
        configFs: env.wrap ? env.wrap(fs) : fs,
        configfsRoot: cfs.configfs,
        udcClass: cfs.udcClass,
        ffsIo: io,
        mountPoint: '/run/test-ffs-live',
        preflight: false,
        ...env.extra,
      };
    },
    host: () => {
      const io = env.buses[env.buses.length - 1];
      if (!io) throw new Error('no gadget was started');
      return io.bus.host;
    },
  };
  try {
    await body(env);
  } finally {
    await cfs.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const base = (luns: { lun: number; backstore: string; readOnly?: boolean }[] = [{ lun: 0, backstore: 'd0' }]): LunboxConfig => ({
  version: 1,
  backstores: [
    { name: 'd0', type: 'ram', size: '1M' },
    { name: 'd1', type: 'ram', size: '2M' },
  ],
  usb: { gadget: { ...GADGET }, luns },
});

const READ_CAPACITY = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const rw10 = (op: number, lba: number, blocks: number): Buffer => Buffer.from([op, 0, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0]);

async function maxLun(host: FakeUsbHost): Promise<number | undefined> {
  const r = await host.getMaxLun();
  return r.stalled || r.timedOut ? undefined : r.data[0];
}

/** A new enumeration is a new nexus: take the power-on unit attention, then TEST UNIT READY passes. */
async function ready(host: FakeUsbHost, lun: number): Promise<boolean> {
  for (let i = 0; i < 4; i++) {
    const r = await host.transport({ cdb: Buffer.alloc(6), dir: 'none', length: 0, lun });
    if (r.csw?.bCSWStatus === CswStatus.PASSED) return true;
  }
  return false;
}

async function lastLba(host: FakeUsbHost, lun: number): Promise<number> {
  const r = await host.transport({ cdb: Buffer.from(READ_CAPACITY), dir: 'in', length: 8, lun });
  assert.is(r.csw?.bCSWStatus, CswStatus.PASSED, `READ CAPACITY on LUN ${lun}`);
  return r.data.readUInt32BE(0);
}

async function write(host: FakeUsbHost, lun: number, lba: number, data: Buffer): Promise<number | undefined> {
  return (await host.transport({ cdb: rw10(0x2a, lba, data.length / 512), dir: 'out', length: data.length, data, lun })).csw?.bCSWStatus;
}

async function read(host: FakeUsbHost, lun: number, lba: number, blocks: number): Promise<Buffer> {
  const r = await host.transport({ cdb: rw10(0x28, lba, blocks), dir: 'in', length: blocks * 512, lun });
  assert.is(r.csw?.bCSWStatus, CswStatus.PASSED, `READ on LUN ${lun}`);
  return r.data;
}

const pattern = (seed: number, n = 1024): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
const gadgetDir = (e: Env): string => path.join(e.cfs.gadgets, 'lunbox');
const udcOf = async (e: Env): Promise<string> => (await e.cfs.readAttr(path.join(gadgetDir(e), 'UDC')).catch(() => '')).trim();

test('add a USB LUN live: the gadget is rebuilt, the host enumerates LUNs 0 and 1, LUN 0 keeps its data', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      assert.is(await maxLun(e.host()), 0);
      assert.ok(await ready(e.host(), 0));
      assert.is(await write(e.host(), 0, 8, pattern(1)), CswStatus.PASSED);
      e.cfs.ops.length = 0;

      const r = await rt.apply(base([{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]));
      assert.equal(r.notes, ['usb: the USB host sees the device disconnect and reconnect with LUN 0 (d0), LUN 1 (d1) (LUN 1 (d1) added)']);
      assert.ok(r.changes.includes('usb: LUN 1 (d1) added: the gadget was rebuilt with LUN 0 (d0), LUN 1 (d1)'), r.changes.join('\n'));
      // Unplugged (unbind, gadget removed), then plugged in again.
      const ops = e.cfs.ops;
      const unbind = ops.indexOf('write lunbox/UDC=');
      const removed = ops.indexOf('rmdir lunbox');
      const bound = ops.lastIndexOf(`write lunbox/UDC=${UDC}`);
      assert.ok(unbind >= 0 && removed > unbind && bound > removed, ops.join('\n'));
      assert.is(e.buses.length, 2, 'a new enumeration');
      assert.is(await udcOf(e), UDC);
      assert.is(rt.usbUdc(), UDC);

      const host = e.host();
      assert.is(await maxLun(host), 1, 'Get Max LUN');
      assert.ok(await ready(host, 0));
      assert.ok(await ready(host, 1));
      assert.is(await lastLba(host, 1), (2 << 20) / 512 - 1);
      assert.equal(await read(host, 0, 8, 2), pattern(1), 'LUN 0 data intact');
      assert.equal(rt.config.usb?.luns, [{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]);
    } finally {
      await rt.stop();
    }
    assert.is(await e.cfs.kind(gadgetDir(e)), undefined, 'stop removes the rebuilt gadget');
  });
});

test('remove a USB LUN live: Get Max LUN drops to 0, LUN 0 still reads; its backstore closes once removed', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base([{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]), quiet, { usbSystem: e.system });
    try {
      assert.is(await maxLun(e.host()), 1);
      assert.ok(await ready(e.host(), 0));
      assert.is(await write(e.host(), 0, 0, pattern(2)), CswStatus.PASSED);
      const d1 = rt.unit('d1')!;
      const next = base();
      next.backstores = next.backstores.filter((b) => b.name !== 'd1');
      const r = await rt.apply(next);
      assert.ok(r.notes[0]?.includes('disconnect and reconnect with LUN 0 (d0) (LUN 1 (d1) removed)'), r.notes.join('\n'));
      assert.ok(r.changes.includes('backstore ram:d1 removed'));
      assert.is(await maxLun(e.host()), 0);
      assert.ok(await ready(e.host(), 0));
      assert.equal(await read(e.host(), 0, 0, 2), pattern(2));
      assert.is(rt.unit('d1'), undefined);
      // The unit is closed: a command to it now fails (no task accepted).
      assert.ok((d1 as unknown as { closed: boolean }).closed, 'the removed unit was closed');
    } finally {
      await rt.stop();
    }
  });
});

test('the last USB LUN deleted: the gadget is removed; a LUN added again brings it back', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      const r = await rt.apply(base([]));
      assert.equal(r.notes, ['usb: no USB LUNs left: the gadget was removed (the USB host sees the device disconnect)']);
      assert.is(await e.cfs.kind(gadgetDir(e)), undefined);
      assert.is(rt.usbUdc(), undefined);
      // Another change that leaves USB without LUNs does not touch it.
      const idle = base([]);
      idle.usb!.gadget!.product = 'still nothing';
      assert.equal((await rt.apply(idle)).notes, []);
      assert.is(e.buses.length, 1);
      const back = await rt.apply(base([{ lun: 0, backstore: 'd1' }]));
      assert.equal(back.notes, ['usb: the gadget is up with LUN 0 (d1): the USB host sees a new device']);
      assert.is(await maxLun(e.host()), 0);
      assert.ok(await ready(e.host(), 0));
      assert.is(await lastLba(e.host(), 0), (2 << 20) / 512 - 1);
    } finally {
      await rt.stop();
    }
  });
});

test('a gadget string changed live: configfs has the new product string after the re-enumeration', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      const strings = path.join(gadgetDir(e), 'strings/0x409');
      assert.is((await e.cfs.readAttr(path.join(strings, 'product'))).trim(), 'live test');
      const next = base();
      next.usb!.gadget = { ...GADGET, product: 'Renamed Disk', vendorId: 0x1234 };
      const r = await rt.apply(next);
      assert.ok(r.notes[0]?.includes('(gadget product "Renamed Disk"; gadget vendorId 0x1234)'), r.notes.join('\n'));
      assert.is((await e.cfs.readAttr(path.join(strings, 'product'))).trim(), 'Renamed Disk');
      assert.is((await e.cfs.readAttr(path.join(gadgetDir(e), 'idVendor'))).trim(), '0x1234');
      assert.is(e.buses.length, 2);
      assert.ok(await ready(e.host(), 0));
      // An iSCSI-only or unrelated change does not re-enumerate.
      const same = structuredClone(next);
      same.backstores.push({ name: 'd2', type: 'ram', size: '1M' });
      assert.equal((await rt.apply(same)).notes, []);
      assert.is(e.buses.length, 2);
    } finally {
      await rt.stop();
    }
  });
});

test('a backstore the gadget exports, changed: reopened, the host sees the new unit; writes made before are on disk', async () => {
  await withEnv(async (e) => {
    const img = path.join(e.dir, 'disk.img');
    const cfg = (vendor?: string): LunboxConfig => ({
      version: 1,
      backstores: [{ name: 'f0', type: 'file', path: img, size: '1M', ...(vendor ? { vendor } : {}) }],
      usb: { gadget: { ...GADGET }, luns: [{ lun: 0, backstore: 'f0' }] },
    });
    const rt = await Runtime.start(cfg(), quiet, { usbSystem: e.system });
    try {
      assert.ok(await ready(e.host(), 0));
      assert.is(await write(e.host(), 0, 4, pattern(3, 2048)), CswStatus.PASSED);
      const old = rt.unit('f0')!;
      const r = await rt.apply(cfg('ACME'));
      assert.ok(r.notes[0]?.includes('(backstore f0 (LUN 0) reopened with new settings)'), r.notes.join('\n'));
      assert.ok(r.changes.includes('backstore file:f0 reopened with new settings'));
      assert.is.not(rt.unit('f0'), old);
      const onDisk = await fsp.readFile(img);
      assert.equal(onDisk.subarray(4 * 512, 8 * 512), pattern(3, 2048), 'the host\'s writes are in the file');
      const host = e.host();
      assert.ok(await ready(host, 0));
      const inq = await host.transport({ cdb: Buffer.from([0x12, 0, 0, 0, 36, 0]), dir: 'in', length: 36 });
      assert.is(inq.data.subarray(8, 16).toString().trim(), 'ACME');
      assert.equal(await read(host, 0, 4, 4), pattern(3, 2048));
    } finally {
      await rt.stop();
    }
  });
});

test('data safety: a write in flight finishes before the gadget goes, then the store is flushed, then closed', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      assert.ok(await ready(e.host(), 0));
      const store = rt.unit('d0')!.backstore;
      const events: string[] = [];
      const { write: w, flush: f, close: c } = store;
      let started!: () => void;
      const inWrite = new Promise<void>((r) => (started = r));
      Object.assign(store, {
        write: async (data: Buffer, pos: number) => {
          events.push('write start');
          started();
          await new Promise((r) => setTimeout(r, 150));
          await w.call(store, data, pos);
          events.push('write end');
        },
        flush: async () => {
          events.push('flush');
          await f.call(store);
        },
        close: async () => {
          events.push('close');
          await c.call(store);
        },
      });
      const host = e.host();
      const pending = write(host, 0, 0, pattern(4, 4096));
      await inWrite;
      // d0 leaves USB and the config: it must be written, flushed and only then closed.
      const next = base([{ lun: 0, backstore: 'd1' }]);
      next.backstores = next.backstores.filter((b) => b.name !== 'd0');
      await rt.apply(next);
      await pending.catch(() => undefined);
      assert.equal(events.slice(0, 3), ['write start', 'write end', 'flush'], events.join(', '));
      assert.is(events[events.length - 1], 'close');
      assert.ok(events.indexOf('close') > events.indexOf('write end'));
    } finally {
      await rt.stop();
    }
  });
});

test('a failed rebuild: the previous gadget is restored, nothing changes, the error names the cause', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      assert.ok(await ready(e.host(), 0));
      assert.is(await write(e.host(), 0, 2, pattern(5)), CswStatus.PASSED);
      const next = base([{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]);
      next.usb!.gadget = { ...GADGET, udc: 'fe980000.usb' };
      try {
        await rt.apply(next);
        assert.unreachable('a UDC that does not exist cannot start');
      } catch (err) {
        assert.instance(err, UsbRestartError);
        const u = err as UsbRestartError;
        assert.is(u.code, 'START_FAILED');
        assert.match(u.message, /^usb: the gadget with the new settings did not start: .*fe980000\.usb/);
        assert.match(u.message, /Nothing was changed: the previous gadget is back with LUN 0 \(d0\)/);
      }
      assert.equal(rt.config.usb?.luns, [{ lun: 0, backstore: 'd0' }], 'the running config is the old one');
      assert.equal(rt.config.usb?.gadget, GADGET);
      assert.is(rt.unit('d1') !== undefined, true);
      assert.is(await udcOf(e), UDC);
      assert.is(rt.usbUdc(), UDC);
      const host = e.host();
      assert.is(await maxLun(host), 0);
      assert.ok(await ready(host, 0));
      assert.equal(await read(host, 0, 2, 2), pattern(5));
    } finally {
      await rt.stop();
    }
  });
});

test('the restore fails too: both errors, no gadget; the next change rebuilds it', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      // From now on configfs refuses new gadgets (as if libcomposite went away).
      e.wrap = (fs) => ({ ...fs, mkdir: async (p) => Promise.reject(Object.assign(new Error(`EPERM: ${p}`), { code: 'EPERM' })) });
      const next = base();
      next.usb!.gadget = { ...GADGET, product: 'never' };
      try {
        await rt.apply(next);
        assert.unreachable();
      } catch (err) {
        const u = err as UsbRestartError;
        assert.is(u.code, 'GADGET_DOWN');
        assert.ok(u.restoreError, 'the restore error is kept');
        assert.match(u.message, /did not start: .*EPERM.*\. Restoring the previous gadget failed too: .*EPERM.*No USB gadget runs now/);
      }
      assert.is(rt.usbUdc(), undefined);
      assert.is(await e.cfs.kind(gadgetDir(e)), undefined);
      assert.ok(logs.some((l) => l.includes('error: usb: no gadget runs:')), 'logged as an error');
      e.wrap = undefined;
      // The same config again: the gadget is rebuilt because it is down.
      const r = await rt.apply(rt.config);
      assert.ok(r.notes[0]?.includes('the gadget is up with LUN 0 (d0)'), r.notes.join('\n'));
      assert.is(rt.usbUdc(), UDC);
      assert.ok(await ready(e.host(), 0));
    } finally {
      await rt.stop();
    }
  });
});

test('usb.fastPath changed live rebuilds the gadget, and setting it back to its default does too', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      const off = base();
      off.usb = { ...off.usb!, fastPath: false };
      const r = await rt.apply(off);
      assert.ok(r.changes.includes('usb: fast path off: the gadget was rebuilt with LUN 0 (d0)'), r.changes.join('\n'));
      assert.is(e.buses.length, 2, 'a new enumeration');
      const same = await rt.apply(off);
      assert.is(e.buses.length, 2, `no change, no rebuild: ${same.changes.join('; ')}`);
      const back = await rt.apply(base());
      assert.ok(back.changes.includes('usb: fast path on: the gadget was rebuilt with LUN 0 (d0)'), back.changes.join('\n'));
    } finally {
      await rt.stop();
    }
  });
});

test('a LUN set the engine refuses is refused before the gadget is touched', async () => {
  await withEnv(async (e) => {
    const img = path.join(e.dir, 'k.img');
    const cfg = (luns: { lun: number; backstore: string }[]): LunboxConfig => ({
      version: 1,
      backstores: [
        { name: 'k0', type: 'file', path: img, size: '1M' },
        { name: 'k1', type: 'file', path: path.join(e.dir, 'k1.img'), size: '1M' },
      ],
      usb: { engine: 'kernel', gadget: { ...GADGET }, luns },
    });
    const rt = await Runtime.start(cfg([{ lun: 0, backstore: 'k0' }]), quiet, { usbSystem: e.system });
    try {
      e.cfs.ops.length = 0;
      // The kernel's mass_storage function always has LUN 0.
      await rt.apply(cfg([{ lun: 1, backstore: 'k1' }])).then(
        () => assert.unreachable(),
        (err: Error) => assert.match(err.message, /^usb: the kernel mass_storage function always has LUN 0: configure it \(nothing was changed; the gadget runs as before\)$/),
      );
      assert.equal(e.cfs.ops, [], 'configfs untouched');
      assert.equal(rt.config.usb?.luns, [{ lun: 0, backstore: 'k0' }]);
      assert.is(await udcOf(e), UDC);
    } finally {
      await rt.stop();
    }
  });
});

test('kernel engine: add LUN 1 live (lun.1 made), a file the kernel refuses restores the old gadget', async () => {
  await withEnv(async (e) => {
    const k0 = path.join(e.dir, 'k0.img');
    const k1 = path.join(e.dir, 'k1.img');
    const cfg = (luns: { lun: number; backstore: string }[], gadget = {}): LunboxConfig => ({
      version: 1,
      backstores: [
        { name: 'k0', type: 'file', path: k0, size: '1M' },
        { name: 'k1', type: 'file', path: k1, size: '1M' },
      ],
      usb: { engine: 'kernel', gadget: { ...GADGET, ...gadget }, luns },
    });
    const fn = (e2: Env): string => path.join(gadgetDir(e2), 'functions/mass_storage.lunbox');
    const rt = await Runtime.start(cfg([{ lun: 0, backstore: 'k0' }]), quiet, { usbSystem: e.system });
    try {
      assert.is(await e.cfs.kind(path.join(fn(e), 'lun.1')), undefined);
      const r = await rt.apply(cfg([{ lun: 0, backstore: 'k0' }, { lun: 1, backstore: 'k1' }]));
      assert.ok(r.notes[0]?.includes('disconnect and reconnect with LUN 0 (k0), LUN 1 (k1)'), r.notes.join('\n'));
      assert.is((await e.cfs.readAttr(path.join(fn(e), 'lun.1/file'))).trim(), k1);
      assert.is((await e.cfs.readAttr(path.join(fn(e), 'lun.0/file'))).trim(), k0);
      assert.is(await udcOf(e), UDC);

      // The kernel refuses to open LUN 1's file this time (as it would a file in use elsewhere).
      e.wrap = (fs) => ({
        ...fs,
        writeAttr: async (p, v) => {
          if (p.endsWith('lun.1/file') && v.trim() !== '') throw Object.assign(new Error(`EBUSY: ${p}`), { code: 'EBUSY' });
          await fs.writeAttr(p, v);
        },
      });
      const bad = cfg([{ lun: 0, backstore: 'k0' }, { lun: 1, backstore: 'k1' }], { product: 'retry' });
      const err = await rt.apply(bad).then(
        () => undefined,
        (x: unknown) => x as UsbRestartError,
      );
      assert.is(err?.code, 'GADGET_DOWN', 'the restored gadget has the same LUN 1 file: it fails as well');
      e.wrap = undefined;
      // Back to one LUN: the gadget comes up again (it was down).
      const one = await rt.apply(cfg([{ lun: 0, backstore: 'k0' }]));
      assert.ok(one.notes[0]?.includes('the gadget is up with LUN 0 (k0)'), one.notes.join('\n'));
      assert.is(await e.cfs.kind(path.join(fn(e), 'lun.1')), undefined);

      // Now a refusal of the new LUN only: the one-LUN gadget is restored.
      e.wrap = (fs) => ({
        ...fs,
        writeAttr: async (p, v) => {
          if (p.endsWith('lun.1/file') && v.trim() !== '') throw Object.assign(new Error(`EBUSY: ${p}`), { code: 'EBUSY' });
          await fs.writeAttr(p, v);
        },
      });
      const err2 = await rt.apply(cfg([{ lun: 0, backstore: 'k0' }, { lun: 1, backstore: 'k1' }])).then(
        () => undefined,
        (x: unknown) => x as UsbRestartError,
      );
      assert.is(err2?.code, 'START_FAILED');
      assert.match(err2?.message ?? '', /kernel mass_storage could not open a LUN's file/);
      assert.match(err2?.message ?? '', /the previous gadget is back with LUN 0 \(k0\)/);
      assert.is(await udcOf(e), UDC);
      assert.is(await e.cfs.kind(path.join(fn(e), 'lun.1')), undefined);
      assert.equal(rt.config.usb?.luns, [{ lun: 0, backstore: 'k0' }]);
    } finally {
      e.wrap = undefined;
      await rt.stop();
    }
  });
});

test('a CD-ROM disc change on a USB LUN stays a medium change: no re-enumeration (both engines)', async () => {
  await withEnv(async (e) => {
    const a = path.join(e.dir, 'a.iso');
    const b = path.join(e.dir, 'b.iso');
    await fsp.writeFile(a, Buffer.alloc(2048 * 16));
    await fsp.writeFile(b, Buffer.alloc(2048 * 32));
    for (const engine of ['userspace', 'kernel'] as const) {
      const cfg = (iso: string): LunboxConfig => ({
        version: 1,
        backstores: [
          { name: 'k0', type: 'file', path: path.join(e.dir, `${engine}.img`), size: '1M' },
          { name: 'cd', type: 'file', path: iso, cdrom: true },
        ],
        usb: { engine, gadget: { ...GADGET }, luns: [{ lun: 0, backstore: 'k0' }, { lun: 1, backstore: 'cd' }] },
      });
      const rt = await Runtime.start(cfg(a), quiet, { usbSystem: e.system });
      try {
        const buses = e.buses.length;
        e.cfs.ops.length = 0;
        const r = await rt.apply(cfg(b));
        assert.equal(r.notes, [], engine);
        assert.ok(r.changes.includes(`backstore cd: medium ${b} inserted`), r.changes.join('\n'));
        assert.is(e.buses.length, buses, `${engine}: no new enumeration`);
        assert.not.ok(e.cfs.ops.some((o) => o.startsWith('rmdir lunbox') || o === 'write lunbox/UDC='), `${engine}: ${e.cfs.ops.join(', ')}`);
        if (engine === 'kernel') assert.ok(e.cfs.ops.includes(`write lunbox/functions/mass_storage.lunbox/lun.1/file=${b}`), e.cfs.ops.join('\n'));
        else {
          const host = e.host();
          assert.ok(await ready(host, 1));
          assert.is(await lastLba(host, 1), 31);
        }
      } finally {
        await rt.stop();
      }
    }
  });
});

test('a dependant of the gadget (the console on ttyGS0) lets go before the rebuild and comes back after', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start({ ...base(), usb: { gadget: { ...GADGET, acm: true }, luns: [{ lun: 0, backstore: 'd0' }] } }, quiet, { usbSystem: e.system });
    try {
      const seen: string[] = [];
      const acmFn = path.join(gadgetDir(e), 'functions/acm.usb0');
      const d: UsbDependant = {
        release: async () => void seen.push(`release (acm ${(await e.cfs.kind(acmFn)) ? 'present' : 'gone'})`),
        released: async () => void seen.push(`released (acm ${(await e.cfs.kind(acmFn)) ? 'present' : 'gone'})`),
        reattach: () => void seen.push('reattach'),
      };
      rt.addUsbDependant(d);
      const r = await rt.apply({ ...base([{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]), usb: { gadget: { ...GADGET, acm: true }, luns: [{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }] } });
      assert.equal(seen, ['release (acm present)', 'released (acm gone)', 'reattach']);
      assert.match(r.notes[0] ?? '', /the ACM console reconnects/);
      assert.is(await e.cfs.kind(acmFn), 'dir');
    } finally {
      await rt.stop();
    }
  });
});

test('the shell on a running daemon: create lun=1 backstore=NAME, set gadget, delete; each applied live with a note; a bad UDC an error', async () => {
  await withEnv(async (e) => {
    const rt = await Runtime.start(base(), quiet, { usbSystem: e.system });
    try {
      const shell = new Shell(new ConfigModel({ config: rt.config, runtime: rt }));
      const ok = async (line: string): Promise<string> => {
        const r = await shell.exec(line);
        assert.ok(r.ok, `${line} -> ${r.output}`);
        return r.output;
      };
      assert.is(await ok('/backstores/ram create d2 4M'), 'created ram backstore d2', 'a new backstore alone: no note, no reconnect');
      assert.is(e.buses.length, 1);
      assert.is(
        await ok('/usb/luns create lun=1 backstore=d2'),
        'created USB lun1 -> d2\nnote: usb: the USB host sees the device disconnect and reconnect with LUN 0 (d0), LUN 1 (d2) (LUN 1 (d2) added)',
      );
      assert.is(await maxLun(e.host()), 1);
      assert.ok(await ready(e.host(), 1));
      assert.is(await lastLba(e.host(), 1), (4 << 20) / 512 - 1);
      assert.match(await ok('/usb/gadget set attribute manufacturer=Example'), /note: usb: the USB host sees the device disconnect and reconnect .*\(gadget manufacturer "Example"\)/);
      assert.is((await e.cfs.readAttr(path.join(gadgetDir(e), 'strings/0x409/manufacturer'))).trim(), 'Example');
      assert.match(await ok('/usb/luns delete lun1'), /^deleted USB lun1\nnote: usb: .*reconnect with LUN 0 \(d0\) \(LUN 1 \(d2\) removed\)$/);
      assert.is(await maxLun(e.host()), 0);
      const bad = await shell.exec('/usb/gadget set attribute udc=nope.0');
      assert.not.ok(bad.ok);
      assert.match(bad.output, /^error: usb: the gadget with the new settings did not start: .*nope\.0.*Nothing was changed: the previous gadget is back with LUN 0 \(d0\)/);
      assert.is(shell.model.config.usb?.gadget?.udc, UDC, "the shell's config is what runs");
      assert.ok(await ready(e.host(), 0));
    } finally {
      await rt.stop();
    }
  });
});

test('with the USB network: the rebuild takes usb0 and its DHCP server down and up again, and says so', async () => {
  await withEnv(async (e) => {
    const ip = new FakeIpTool();
    ip.add('usb0');
    const dhcp = { created: 0, running: 0 };
    e.extra = {
      ipTool: ip,
      createDhcp: () => {
        dhcp.created++;
        return { start: async () => void dhcp.running++, stop: async () => void dhcp.running-- };
      },
      ncmPollMs: 60_000,
    };
    const cfg = (luns: { lun: number; backstore: string }[]): LunboxConfig => ({ ...base(luns), usb: { gadget: { ...GADGET, ncm: { address: '10.55.0.1/30' } }, luns } });
    const rt = await Runtime.start(cfg([{ lun: 0, backstore: 'd0' }]), quiet, { usbSystem: e.system });
    try {
      assert.equal([dhcp.created, dhcp.running], [1, 1]);
      const before = ip.commands.length;
      const r = await rt.apply(cfg([{ lun: 0, backstore: 'd0' }, { lun: 1, backstore: 'd1' }]));
      assert.match(r.notes[0] ?? '', /; the USB network goes down and up again \(iSCSI sessions over it log in again\)$/);
      assert.equal([dhcp.created, dhcp.running], [2, 1], 'the old DHCP server stopped, a new one runs');
      assert.ok(ip.commands.slice(before).includes('ip addr replace 10.55.0.1/30 broadcast + dev usb0'), ip.commands.join('\n'));
      assert.is(rt.usbNetwork()?.ifname, 'usb0');
      assert.is(rt.usbNetwork()?.board, '10.55.0.1');
    } finally {
      await rt.stop();
    }
    assert.is(dhcp.running, 0);
  });
});

test.run();
