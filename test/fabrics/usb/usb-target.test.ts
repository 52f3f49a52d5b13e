import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { openRam } from '../../../src/backstores';
import { CswStatus } from '../../../src/fabrics/usb/bot';
import type { ConfigFs } from '../../../src/fabrics/usb/gadget';
import { UsbTarget, UsbTargetError } from '../../../src/fabrics/usb/usb-target';
import type { UsbTargetOptions } from '../../../src/fabrics/usb/usb-target';
import { LogicalUnit } from '../../../src/scsi/index';
import { FakeConfigFs } from './fake-configfs';
import { FakeFfsIo } from './fake-ffs-io';
import { FakeIpTool } from './fake-ip-tool';
import { linked } from './fake-linked';
import { ncmMacs } from '../../../src/fabrics/usb/ncm';
import type { DhcpServerOptions } from '../../../src/net/dhcp-server';

const MNT = '/run/test-ffs';

interface Env {
  cfs: FakeConfigFs;
  io: FakeFfsIo;
  logs: string[];
  opts: (o?: Partial<UsbTargetOptions>) => Promise<UsbTargetOptions>;
}

async function withEnv(udcs: string[], body: (e: Env) => Promise<void>): Promise<void> {
  const cfs = await FakeConfigFs.create(udcs);
  const io = new FakeFfsIo({ timeoutMs: 2000 });
  const logs: string[] = [];
  const opts = async (o: Partial<UsbTargetOptions> = {}): Promise<UsbTargetOptions> => ({
    gadget: { acm: true, serial: 'T0001', product: 'lunbox test' },
    luns: [{ lun: 0, unit: new LogicalUnit({ backstore: await openRam({ name: 'r0', size: 1 << 20 }) }) }],
    log: (level, msg) => logs.push(`${level}: ${msg}`),
    configFs: linked(cfs, io),
    configfsRoot: cfs.configfs,
    udcClass: cfs.udcClass,
    ffsIo: io,
    mountPoint: MNT,
    preflight: false,
    ...o,
  });
  try {
    await body({ cfs, io, logs, opts });
  } finally {
    await cfs.dispose();
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, UsbTargetError);
    return (e as UsbTargetError).code;
  }
  return 'none';
}

test('start: gadget (ffs + acm) built, FunctionFS mounted, UDC bound, the host gets answers; stop removes it all', async () => {
  await withEnv(['dummy_udc.0'], async ({ cfs, io, opts, logs }) => {
    const t = new UsbTarget(await opts());
    await t.start();
    await t.start(); // idempotent
    const g = path.join(cfs.gadgets, 'lunbox');
    assert.is((await cfs.readAttr(path.join(g, 'UDC'))).trim(), 'dummy_udc.0');
    assert.equal((await cfs.readdir(path.join(g, 'functions'))).sort(), ['acm.usb0', 'ffs.lunbox']);
    assert.equal(io.mounts, [{ instance: 'lunbox', dir: MNT }]);
    assert.is(t.udc, 'dummy_udc.0');

    const host = io.bus.host;
    const inq = await host.transport({ cdb: Buffer.from([0x12, 0, 0, 0, 36, 0]), dir: 'in', length: 36 });
    assert.is(inq.csw?.bCSWStatus, CswStatus.PASSED);
    assert.is(inq.data.subarray(8, 16).toString().trim(), 'LUNBOX');
    // The new nexus starts with a power-on unit attention (TEST UNIT READY takes it).
    const ua = await host.transport({ cdb: Buffer.alloc(6), dir: 'none', length: 0 });
    assert.is(ua.csw?.bCSWStatus, CswStatus.FAILED);
    // READ CAPACITY(10): 2048 blocks of 512 → last LBA 2047.
    const cap = await host.transport({ cdb: Buffer.from([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), dir: 'in', length: 8 });
    assert.is(cap.data.readUInt32BE(0), 2047);
    assert.ok(t.counters.commands >= 2);
    assert.is(t.counters.enables, 1);

    await t.stop();
    await t.stop(); // idempotent
    assert.is(await cfs.kind(g), undefined, 'gadget removed');
    assert.equal(io.mounts, []);
    assert.ok(io.log.includes(`umount ${MNT}`));
    assert.ok(logs.some((l) => /bound to dummy_udc\.0/.test(l)));
  });
});

test('start after a crash: a bound gadget and a FunctionFS mount left behind are removed first', async () => {
  await withEnv(['dummy_udc.0'], async ({ cfs, io, opts, logs }) => {
    const crashed = new UsbTarget(await opts());
    await crashed.start();
    // kill -9: nothing torn down, files closed by the kernel.
    io.disable();
    io.bus.ep0.close();
    const io2 = new FakeFfsIo({ timeoutMs: 2000 });
    io2.mounts.push(...io.mounts);
    const t = new UsbTarget(await opts({ ffsIo: io2, configFs: linked(cfs, io2) }));
    await t.start();
    assert.ok(logs.some((l) => /removed 1 FunctionFS mount/.test(l)));
    assert.equal(io2.mounts, [{ instance: 'lunbox', dir: MNT }]);
    const tur = await io2.bus.host.transport({ cdb: Buffer.alloc(6), dir: 'none', length: 0 });
    assert.ok(tur.csw !== undefined);
    await t.stop();
    assert.is(await cfs.kind(path.join(cfs.gadgets, 'lunbox')), undefined);
  });
});

test('typed errors: no UDC, unknown UDC, no configfs, bad LUN lists', async () => {
  await withEnv([], async ({ opts }) => {
    const t = new UsbTarget(await opts());
    assert.is(await code(t.start()), 'NO_UDC');
  });
  await withEnv(['dummy_udc.0'], async ({ opts, cfs }) => {
    const o = await opts();
    assert.is(await code(new UsbTarget({ ...o, gadget: { ...o.gadget, udc: 'fe980000.usb' } }).start()), 'UDC_NOT_FOUND');
    assert.is(await code(new UsbTarget({ ...o, configfsRoot: path.join(cfs.root, 'nope') }).start()), 'NO_CONFIGFS');
    const unit = o.luns[0]?.unit as LogicalUnit;
    assert.throws(() => new UsbTarget({ ...o, luns: [] }), /at least one LUN/);
    assert.throws(() => new UsbTarget({ ...o, luns: [{ lun: 16, unit }] }), /0\.\.15/);
    assert.throws(() => new UsbTarget({ ...o, luns: [{ lun: 1, unit }, { lun: 1, unit }] }), /twice/);
  });
});

function dhcpRecorder(): { leases: unknown[]; running: number; create: NonNullable<UsbTargetOptions['createDhcp']> } {
  const r = {
    leases: [] as unknown[],
    running: 0,
    create: (o: DhcpServerOptions) => {
      r.leases.push(o.lease);
      return { start: async () => void r.running++, stop: async () => void r.running-- };
    },
  };
  return r;
}

test('NCM: the function is added, its interface addressed after binding, DHCP for host_addr; stop removes it', async () => {
  await withEnv(['dummy_udc.0'], async ({ cfs, opts, logs }) => {
    const ip = new FakeIpTool();
    ip.add('usb0');
    const d = dhcpRecorder();
    const o = await opts({ ipTool: ip, createDhcp: d.create, ncmPollMs: 60_000 });
    const t = new UsbTarget({ ...o, gadget: { ...o.gadget, ncm: { address: '192.168.7.1/30' } } });
    await t.start();
    const g = path.join(cfs.gadgets, 'lunbox');
    assert.equal((await cfs.readdir(path.join(g, 'functions'))).sort(), ['acm.usb0', 'ffs.lunbox', 'ncm.usb0']);
    const macs = ncmMacs('T0001');
    assert.is((await cfs.readAttr(path.join(g, 'functions/ncm.usb0/host_addr'))).trim(), macs.hostMac);
    assert.is(t.ncmInterface, 'usb0');
    assert.equal(ip.commands, ['ip link set dev usb0 up', 'ip addr replace 192.168.7.1/30 broadcast + dev usb0', `ip neigh replace 192.168.7.2 lladdr ${macs.hostMac} dev usb0 nud permanent`]);
    assert.equal(d.leases, [{ serverAddress: '192.168.7.1', clientAddress: '192.168.7.2', clientMac: macs.hostMac, netmask: '255.255.255.252', leaseSeconds: 3600 }]);
    assert.is(d.running, 1);
    assert.ok(logs.some((l) => /ACM console, NCM network usb0/.test(l)), logs.join('\n'));
    await t.stop();
    assert.is(d.running, 0);
    assert.is(t.ncmInterface, undefined);
    assert.is(await cfs.kind(g), undefined);
    // Another start (a restart of the daemon) derives the same MACs and addresses.
    const again = new UsbTarget({ ...o, gadget: { ...o.gadget, ncm: { address: '192.168.7.1/30' } } });
    assert.equal(again.ncm, t.ncm);
  });
});

test('NCM errors: no interface after binding, no usb_f_ncm in the kernel; the gadget is removed again', async () => {
  await withEnv(['dummy_udc.0'], async ({ cfs, opts }) => {
    const o = await opts({ ipTool: new FakeIpTool(), createDhcp: dhcpRecorder().create, ncmWaitMs: 100 });
    const t = new UsbTarget({ ...o, gadget: { ...o.gadget, ncm: {} } });
    assert.is(await code(t.start()), 'NCM_FAILED');
    assert.is(await cfs.kind(path.join(cfs.gadgets, 'lunbox')), undefined, 'torn down');
    const noModule: ConfigFs = {
      ...(o.configFs as ConfigFs),
      mkdir: async (p) => {
        if (/functions\/ncm\./.test(p)) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
        await (o.configFs as ConfigFs).mkdir(p);
      },
    };
    const u = new UsbTarget({ ...o, configFs: noModule, gadget: { ...o.gadget, ncm: {} } });
    try {
      await u.start();
      assert.unreachable();
    } catch (e) {
      assert.is((e as UsbTargetError).code, 'NO_NCM');
      assert.match((e as Error).message, 'modprobe usb_f_ncm');
    }
  });
});

test.run();
