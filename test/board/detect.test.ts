import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boardById, boards, checkBoardFacts, cleanModel, detectBoard, detectHostBoard, GENERIC_BOARD, resolveUdc } from '../../src/board/detect';

const BOARD_DIR = join(__dirname, '..', '..', 'board');

// Real /proc/device-tree/model contents: the firmware appends the revision; the file ends in NUL.
const REAL_MODELS: ReadonlyArray<readonly [string, string, string]> = [
  ['Raspberry Pi Zero W Rev 1.1\0', 'pi-zero-w', '20980000.usb'],
  ['Raspberry Pi Zero Rev 1.3\0', 'pi-zero-w', '20980000.usb'],
  ['Raspberry Pi Zero 2 W Rev 1.0\0', 'pi-zero-2-w', '3f980000.usb'],
  ['Raspberry Pi 4 Model B Rev 1.4\0', 'pi-4', 'fe980000.usb'],
  ['Raspberry Pi 4 Model B Rev 1.5\0', 'pi-4', 'fe980000.usb'],
  ['Raspberry Pi 5 Model B Rev 1.0\0', 'pi-5', '1000480000.usb'],
  ['TI AM335x BeagleBone Black\0', 'beaglebone-black', 'musb-hdrc.0'],
  ['AM335x BeagleBone Black\0', 'beaglebone-black', 'musb-hdrc.0'],
  ['TI AM335x BeagleBone Black Wireless\0', 'beaglebone-black', 'musb-hdrc.0'],
];

for (const [model, id, udc] of REAL_MODELS) {
  test(`detectBoard(${JSON.stringify(model)}) -> ${id}, UDC ${udc}`, () => {
    const d = detectBoard(model);
    assert.ok(d.known, `not recognised: ${model}`);
    assert.is(d.board.id, id);
    assert.is(d.board.udc[0], udc);
    assert.is(d.model, model.replace(/\0$/, ''));
    // The same bytes as read from the file (a Buffer with its NUL).
    assert.is(detectBoard(Buffer.from(model, 'latin1')).board.id, id);
  });
}

test('Zero 2 W is not taken for a Zero W, nor a Pi 400 / CM4 for a Pi 4 Model B', () => {
  assert.is(detectBoard('Raspberry Pi Zero 2 W Rev 1.0').board.id, 'pi-zero-2-w');
  assert.is(detectBoard('Raspberry Pi 400 Rev 1.0').known, false);
  assert.is(detectBoard('Raspberry Pi Compute Module 4 Rev 1.0').known, false);
  assert.is(detectBoard('Raspberry Pi 3 Model B Plus Rev 1.3').known, false);
});

test('unknown board: clear message naming the model and the supported boards, generic default', () => {
  const d = detectBoard('Radxa ROCK 5B\0');
  assert.is(d.known, false);
  if (d.known) return;
  assert.is(d.board, GENERIC_BOARD);
  assert.match(d.message, 'unknown board "Radxa ROCK 5B"');
  assert.match(d.message, 'first UDC in /sys/class/udc');
  assert.match(d.message, 'ttyGS0');
  for (const b of boards) assert.match(d.message, b.name);
  assert.is(d.board.serial.gadget, 'ttyGS0');
  assert.equal(d.board.boot.modules, ['libcomposite']);
  const none = detectBoard('');
  assert.is(none.known, false);
  if (!none.known) assert.match(none.message, 'no device-tree model');
});

test('resolveUdc: preferred name, kernel variant, first present for the generic board, none', () => {
  const bbb = boardById('beaglebone-black');
  assert.ok(bbb);
  if (!bbb) return;
  assert.is(resolveUdc(bbb, ['musb-hdrc.0']), 'musb-hdrc.0');
  assert.is(resolveUdc(bbb, ['musb-hdrc.0.auto']), 'musb-hdrc.0.auto');
  assert.is(resolveUdc(GENERIC_BOARD, ['dummy_udc.0', 'x.usb']), 'dummy_udc.0');
  assert.is(resolveUdc(GENERIC_BOARD, []), undefined);
});

test('detectHostBoard: reads the model file and /sys/class/udc; LUNBOX_BOARD forces a board', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunbox-board-'));
  try {
    writeFileSync(join(dir, 'model'), 'Raspberry Pi Zero 2 W Rev 1.0\0');
    mkdirSync(join(dir, 'udc', '3f980000.usb'), { recursive: true });
    const d = detectHostBoard({ modelPath: join(dir, 'model'), udcClass: join(dir, 'udc') }, {});
    assert.is(d.board.id, 'pi-zero-2-w');
    assert.is(d.udc, '3f980000.usb');
    const missing = detectHostBoard({ modelPath: join(dir, 'nope'), udcClass: join(dir, 'nope') }, {});
    assert.is(missing.known, false);
    assert.is(missing.udc, undefined);
    const forced = detectHostBoard({ modelPath: join(dir, 'model'), udcClass: join(dir, 'udc') }, { LUNBOX_BOARD: 'pi-5' });
    assert.is(forced.board.id, 'pi-5');
    assert.throws(() => detectHostBoard({ modelPath: join(dir, 'model') }, { LUNBOX_BOARD: 'pi-9' }), /unknown board; valid: pi-zero-w/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cleanModel strips the trailing NUL and whitespace', () => {
  assert.is(cleanModel('TI AM335x BeagleBone Black\0'), 'TI AM335x BeagleBone Black');
  assert.is(cleanModel(Buffer.from('Raspberry Pi 5 Model B Rev 1.0\0\0')), 'Raspberry Pi 5 Model B Rev 1.0');
});

test('one source of truth: the table is exactly board/*.json, ids match file names', () => {
  const files = readdirSync(BOARD_DIR).filter((f) => f.endsWith('.json')).sort();
  assert.equal(files, boards.map((b) => `${b.id}.json`).sort());
  for (const f of files) {
    const raw: unknown = JSON.parse(readFileSync(join(BOARD_DIR, f), 'utf8'));
    const b = checkBoardFacts(raw, f);
    assert.equal(b, boards.find((x) => x.id === b.id));
  }
});

test('board facts: arch, Node line, boot fragments per family', () => {
  for (const b of boards) {
    if (b.arch !== 'arm64') assert.ok(b.node.line <= 22, `${b.id}: 32-bit ARM tops out at Node 22`);
    if (b.id.startsWith('pi-')) {
      assert.ok(b.boot.configTxt.includes('dtoverlay=dwc2,dr_mode=peripheral'), b.id);
      assert.ok(b.boot.modules.includes('dwc2'), b.id);
      assert.is(b.image.bootFat, 'required');
    }
  }
  const bbb = boardById('beaglebone-black');
  assert.ok(bbb?.boot.maskUnits.includes('bb-usb-gadgets.service'));
  assert.ok(bbb?.boot.stockGadgets.includes('g_multi'));
  assert.is(bbb?.arch, 'armv7');
  assert.is(boardById('pi-zero-w')?.arch, 'armv6');
  assert.equal(boardById('pi-zero-w')?.node.tarballArch, ['armv6l']);
});

test('checkBoardFacts names the bad field', () => {
  const good = JSON.parse(readFileSync(join(BOARD_DIR, 'pi-4.json'), 'utf8')) as Record<string, unknown>;
  assert.throws(() => checkBoardFacts({ ...good, arch: 'x86' }, 'f.json'), /f\.json: arch: must be one of armv6, armv7, arm64/);
  assert.throws(() => checkBoardFacts({ ...good, modelPatterns: ['('] }, 'f.json'), /modelPatterns: "\(" is not a valid regular expression/);
  assert.throws(() => checkBoardFacts({ ...good, udc: [] }, 'f.json'), /udc: must be a non-empty array/);
  assert.throws(() => checkBoardFacts({ ...good, arch: 'armv7', node: { line: 24, tarballArch: ['armv7l'] } }, 'f.json'), /no Node line after 22/);
});

test.run();
