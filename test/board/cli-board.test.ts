import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boardCommand } from '../../src/cli/board';
import { ncmMacs } from '../../src/fabrics/usb/ncm';

function run(argv: string[], model: string | undefined, udcs: string[], env: NodeJS.ProcessEnv = {}): { code: number; out: string; err: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-cli-board-'));
  try {
    if (model !== undefined) writeFileSync(join(dir, 'model'), model);
    mkdirSync(join(dir, 'udc'));
    for (const u of udcs) mkdirSync(join(dir, 'udc', u));
    let out = '';
    let err = '';
    const code = boardCommand(argv, {
      modelPath: join(dir, 'model'),
      udcClass: join(dir, 'udc'),
      env,
      exists: (p) => p === '/sys/class/leds/ACT/brightness',
      out: (s) => (out += s),
      err: (s) => (err += s),
    });
    return { code, out, err };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('lunbox board: a Pi 4 with its UDC present', () => {
  const r = run([], 'Raspberry Pi 4 Model B Rev 1.4\0', ['fe980000.usb']);
  assert.is(r.code, 0);
  assert.match(r.out, 'board:     Raspberry Pi 4 Model B (pi-4)');
  assert.match(r.out, 'model:     Raspberry Pi 4 Model B Rev 1.4');
  assert.match(r.out, 'udc:       fe980000.usb');
  assert.match(r.out, '/dev/ttyGS0');
  assert.match(r.out, 'ACT at /sys/class/leds/ACT');
  assert.match(r.out, 'dtoverlay=dwc2,dr_mode=peripheral');
  assert.is(r.err, '');
});

test('lunbox board: no UDC yet says how to turn gadget mode on', () => {
  const r = run([], 'Raspberry Pi Zero W Rev 1.1\0', []);
  assert.is(r.code, 0);
  assert.match(r.out, 'udc:       none present (expected 20980000.usb)');
  assert.match(r.err, 'dtoverlay=dwc2,dr_mode=peripheral');
});

test('lunbox board: unknown board gets the generic default and a message', () => {
  const r = run([], 'Some Vendor Board v2\0', ['ci_hdrc.0']);
  assert.is(r.code, 0);
  assert.match(r.out, 'generic Linux board (generic) - not recognised');
  assert.match(r.out, 'udc:       ci_hdrc.0');
  assert.match(r.err, 'unknown board "Some Vendor Board v2"');
});

test('lunbox board --json: one object with the facts', () => {
  const r = run(['--json'], 'TI AM335x BeagleBone Black\0', ['musb-hdrc.0']);
  assert.is(r.code, 0);
  const j = JSON.parse(r.out) as { known: boolean; udc: string; board: { id: string; boot: { maskUnits: string[] } } };
  assert.is(j.known, true);
  assert.is(j.udc, 'musb-hdrc.0');
  assert.is(j.board.id, 'beaglebone-black');
  assert.ok(j.board.boot.maskUnits.includes('bb-usb-gadgets.service'));
});

test('lunbox board: bad option is a usage error; --help', () => {
  const r = run(['--bogus'], undefined, []);
  assert.is(r.code, 2);
  assert.match(r.err, "unknown option '--bogus'");
  const h = run(['--help'], undefined, []);
  assert.is(h.code, 0);
  assert.match(h.out, 'Usage: lunbox board');
});

test('lunbox board: the default USB serial and the NCM MACs derived from it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-cli-serial-'));
  try {
    writeFileSync(join(dir, 'serial-number'), '10000000abcdef01\0');
    mkdirSync(join(dir, 'udc'));
    let out = '';
    const io = { modelPath: join(dir, 'none'), udcClass: join(dir, 'udc'), env: {}, exists: () => false, err: () => undefined, serialPaths: { dtSerial: join(dir, 'serial-number'), eeprom: join(dir, 'x'), machineId: join(dir, 'y') } };
    boardCommand([], { ...io, out: (s) => (out += s) });
    const serial = /^serial: +([0-9A-F]{16}) \(USB serial number when the config sets none; from the device-tree\)$/m.exec(out)?.[1];
    assert.ok(serial, out);
    const macs = ncmMacs(serial as string);
    assert.match(out, `ncm:       board ${macs.deviceMac}, computer ${macs.hostMac}`);
    let json = '';
    boardCommand(['--json'], { ...io, out: (s) => (json += s) });
    const j = JSON.parse(json) as { usbSerial: string; usbSerialSource: string; ncm: { hostMac: string } };
    assert.equal([j.usbSerial, j.usbSerialSource, j.ncm.hostMac], [serial, 'device-tree', macs.hostMac]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
