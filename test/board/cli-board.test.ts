import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boardCommand } from '../../src/cli/board';

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

test.run();
