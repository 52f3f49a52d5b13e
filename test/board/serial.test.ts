import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boardSerialFrom, detectBoardSerial, eepromSerial } from '../../src/board/serial';

test('the serial is 16 hex digits, stable for one source value, different between boards', () => {
  const a = boardSerialFrom({ dtSerial: '10000000abcdef01\0' });
  assert.is(a.source, 'device-tree');
  assert.match(a.serial ?? '', /^[0-9A-F]{16}$/);
  assert.is(boardSerialFrom({ dtSerial: '10000000abcdef01' }).serial, a.serial, 'the NUL does not matter');
  assert.is.not(boardSerialFrom({ dtSerial: '10000000abcdef02' }).serial, a.serial);
});

test('sources in order: device tree, EEPROM, machine-id; placeholders are not identities', () => {
  const mid = '0123456789abcdef0123456789abcdef';
  assert.is(boardSerialFrom({ dtSerial: 'x1', eeprom: '1234BBBK5678', machineId: mid }).source, 'device-tree');
  assert.is(boardSerialFrom({ dtSerial: '0000000000000000', eeprom: '1234BBBK5678', machineId: mid }).source, 'eeprom');
  assert.is(boardSerialFrom({ machineId: `${mid}\n` }).source, 'machine-id');
  // The machine-id itself never leaves: only a hash of it.
  assert.not.match(boardSerialFrom({ machineId: mid }).serial ?? '', /0123456789ABCDEF/);
  assert.equal(boardSerialFrom({ machineId: 'uninitialized\n' }), { source: 'none', serial: undefined });
  assert.equal(boardSerialFrom({}), { source: 'none', serial: undefined });
});

test('BeagleBone EEPROM: the serial at byte 16 when the AM335x header is there', () => {
  const e = Buffer.alloc(64, 0xff);
  e.writeUInt32BE(0xaa5533ee, 0);
  e.write('A335BNLT00C0', 4, 'latin1');
  e.write('3214BBBK1234', 16, 'latin1');
  assert.is(eepromSerial(e), '3214BBBK1234');
  const wrongMagic = Buffer.from(e);
  wrongMagic[0] = 0;
  assert.is(eepromSerial(wrongMagic), undefined);
  assert.is(eepromSerial(e.subarray(0, 20)), undefined);
  const blank = Buffer.from(e);
  blank.fill(0xff, 16, 28);
  assert.is(eepromSerial(blank), undefined);
});

test('detectBoardSerial reads the files (missing ones skipped)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-serial-'));
  try {
    writeFileSync(join(dir, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
    const paths = { dtSerial: join(dir, 'none'), eeprom: join(dir, 'none2'), machineId: join(dir, 'machine-id') };
    assert.is(detectBoardSerial(paths).source, 'machine-id');
    writeFileSync(join(dir, 'serial-number'), '00000000deadbeef\0');
    assert.is(detectBoardSerial({ ...paths, dtSerial: join(dir, 'serial-number') }).source, 'device-tree');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
