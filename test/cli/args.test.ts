import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseArgs, parseBackstore, parseListen, UsageError } from '../../src/cli/args';
import type { ServeOptions } from '../../src/cli/args';
import { quickConfig } from '../../src/cli/main';

const LISTEN: [string, string, number][] = [
  ['127.0.0.1:3260', '127.0.0.1', 3260],
  ['0.0.0.0:3261', '0.0.0.0', 3261],
  ['10.0.0.5', '10.0.0.5', 3260],
  [':3300', '127.0.0.1', 3300],
  ['[::1]:3260', '::1', 3260],
  ['[fe80::1]', 'fe80::1', 3260],
  ['::1', '::1', 3260],
  ['localhost:0', 'localhost', 0],
];
for (const [text, address, port] of LISTEN) {
  test(`--listen ${text}`, () => assert.equal(parseListen(text), { address, port }));
}

test('--listen refuses a port above 65535 and a non-number', () => {
  assert.throws(() => parseListen('127.0.0.1:65536'), (e: unknown) => e instanceof UsageError && /0 to 65535/.test(e.message));
  assert.throws(() => parseListen('127.0.0.1:http'), (e: unknown) => e instanceof UsageError);
});

test('--backstore forms', () => {
  assert.equal(parseBackstore('ram:64M'), { type: 'ram', size: '64M' });
  assert.equal(parseBackstore('file:/srv/disk.img'), { type: 'file', path: '/srv/disk.img' });
  assert.equal(parseBackstore('file:/srv/disk.img:1G'), { type: 'file', path: '/srv/disk.img', size: '1G' });
  assert.equal(parseBackstore('file:/srv/a:b.img'), { type: 'file', path: '/srv/a:b.img' }, 'colon in path, no size');
  assert.equal(parseBackstore('file:/srv/a:b.img:512MiB'), { type: 'file', path: '/srv/a:b.img', size: '512MiB' });
  assert.equal(parseBackstore('block:/dev/sda'), { type: 'block', path: '/dev/sda' });
});

test('--backstore errors name what is valid', () => {
  assert.throws(() => parseBackstore('ram'), /ram:64M/);
  assert.throws(() => parseBackstore('ram:lots'), /needs a size/);
  assert.throws(() => parseBackstore('file:'), /image path/);
  assert.throws(() => parseBackstore('nvme:/dev/nvme0'), /unknown type 'nvme'/);
});

test('no arguments, --help and help serve', () => {
  assert.equal(parseArgs([]), { kind: 'help' });
  assert.equal(parseArgs(['--help']), { kind: 'help' });
  assert.equal(parseArgs(['help', 'serve']), { kind: 'help', topic: 'serve' });
  assert.equal(parseArgs(['serve', '--help']), { kind: 'help', topic: 'serve' });
  assert.equal(parseArgs(['--version']), { kind: 'version' });
});

test('serve with no options is the embedded default', () => {
  assert.equal(parseArgs(['serve']), { kind: 'serve', opts: { listen: [], readOnly: false, verbose: false, quiet: false, usb: false, acm: false, ncm: false } });
});

test('serve quick flags, both --flag value and --flag=value', () => {
  const c = parseArgs(['serve', '--listen=127.0.0.1:3270', '-b', 'ram:1G', '--iqn', 'iqn.2026-11.org.x:y', '--read-only', '--block-size', '4096']);
  assert.equal(c, {
    kind: 'serve',
    opts: {
      listen: [{ address: '127.0.0.1', port: 3270 }],
      readOnly: true,
      verbose: false,
      quiet: false,
      usb: false,
      acm: false,
      ncm: false,
      backstore: { type: 'ram', size: '1G' },
      iqn: 'iqn.2026-11.org.x:y',
      blockSize: 4096,
    },
  });
});

test('serve errors', () => {
  assert.throws(() => parseArgs(['serve', '--block-size', '500']), /512, 1024, 2048, 4096/);
  assert.throws(() => parseArgs(['serve', '--listen']), /needs a value/);
  assert.throws(() => parseArgs(['serve', '--config', 'a.json', '--backstore', 'ram:1M']), /cannot be combined/);
  assert.throws(() => parseArgs(['serve', '-b', 'ram:1M', '-b', 'ram:2M']), /given twice/);
  assert.throws(() => parseArgs(['frobnicate']), /unknown command 'frobnicate'/);
});

test('serve --usb quick export flags', () => {
  const c = parseArgs(['serve', '--usb', '--acm', '--serial', 'LB01', '--udc', 'dummy_udc.0', '-b', 'file:/srv/d.img:1G']);
  assert.equal(c, {
    kind: 'serve',
    opts: { listen: [], readOnly: false, verbose: false, quiet: false, usb: true, acm: true, ncm: false, udc: 'dummy_udc.0', usbSerial: 'LB01', backstore: { type: 'file', path: '/srv/d.img', size: '1G' } },
  });
  assert.throws(() => parseArgs(['serve', '--acm']), /add --usb/);
  assert.throws(() => parseArgs(['serve', '--config', 'x.json', '--usb']), /cannot be combined/);
});

test('serve --usb-engine: userspace or kernel, only with --usb', () => {
  const c = parseArgs(['serve', '--usb', '--usb-engine', 'kernel', '-b', 'file:/srv/d.img']);
  assert.is(c.kind === 'serve' ? c.opts.usbEngine : undefined, 'kernel');
  assert.throws(() => parseArgs(['serve', '--usb', '--usb-engine', 'lio']), /'userspace' .* or 'kernel'/);
  assert.throws(() => parseArgs(['serve', '--usb-engine', 'kernel']), /add --usb/);
});

test('board passes its own arguments through', () => {
  assert.equal(parseArgs(['board', '--json']), { kind: 'board', argv: ['--json'] });
});

test('config check needs a file', () => {
  assert.equal(parseArgs(['config', 'check', 'x.json']), { kind: 'config-check', file: 'x.json' });
  assert.throws(() => parseArgs(['config', 'check']), /give the config file/);
});

test('serve --cdrom ISO: LUN 1 beside a disk, LUN 0 alone', () => {
  const c = parseArgs(['serve', '--usb', '--cdrom', '/srv/a.iso', '-b', 'file:/srv/d.img']);
  assert.is(c.kind === 'serve' ? c.opts.cdrom : undefined, '/srv/a.iso');
  const both = quickConfig((c as { opts: ServeOptions }).opts);
  assert.equal(both.usb?.luns, [{ lun: 0, backstore: 'file0' }, { lun: 1, backstore: 'cdrom0' }]);
  assert.equal(both.backstores[1], { name: 'cdrom0', type: 'file', path: '/srv/a.iso', cdrom: true });
  const alone = parseArgs(['serve', '--usb', '--cdrom=/srv/a.iso']) as { opts: ServeOptions };
  const cfg = quickConfig(alone.opts);
  assert.equal(cfg.usb?.luns, [{ lun: 0, backstore: 'cdrom0' }]);
  assert.is(cfg.backstores.length, 1);
  assert.throws(() => parseArgs(['serve', '--cdrom', 'a.iso', '--cdrom', 'b.iso']), /twice/);
  assert.throws(() => parseArgs(['serve', '--config', 'x.json', '--cdrom', 'a.iso']), /cannot be combined/);
});

test('serve --ncm: USB with a network; the iSCSI portal on the board address unless --listen', () => {
  const c = parseArgs(['serve', '--ncm', '-b', 'file:/srv/d.img']) as { kind: 'serve'; opts: ServeOptions };
  assert.equal([c.opts.usb, c.opts.ncm, c.opts.ncmAddress], [true, true, undefined]);
  const cfg = quickConfig(c.opts);
  assert.equal(cfg.usb?.gadget?.ncm, true);
  assert.equal(cfg.iscsi?.portals, [{ address: '10.55.0.1', port: 3260 }]);
  assert.equal(cfg.iscsi?.targets[0]?.luns, [{ lun: 0, backstore: 'file0' }]);
  const a = parseArgs(['serve', '--ncm-address', '192.168.7.1/29']) as { kind: 'serve'; opts: ServeOptions };
  assert.equal([a.opts.usb, a.opts.ncm, a.opts.ncmAddress], [true, true, '192.168.7.1/29']);
  const acfg = quickConfig(a.opts);
  assert.equal(acfg.usb?.gadget?.ncm, { address: '192.168.7.1/29' });
  assert.equal(acfg.iscsi?.portals, [{ address: '192.168.7.1', port: 3260 }]);
  const l = parseArgs(['serve', '--ncm', '--listen', '0.0.0.0:3261']) as { kind: 'serve'; opts: ServeOptions };
  assert.equal(quickConfig(l.opts).iscsi?.portals, [{ address: '0.0.0.0', port: 3261 }]);
  // Without --ncm, --usb alone still serves no iSCSI portal.
  assert.is(quickConfig((parseArgs(['serve', '--usb']) as { opts: ServeOptions }).opts).iscsi, undefined);
  assert.throws(() => parseArgs(['serve', '--ncm-address', '10.55.0.1']), /--ncm-address 10\.55\.0\.1: "10\.55\.0\.1" is not ADDRESS\/PREFIX/);
  assert.throws(() => parseArgs(['serve', '--ncm-address', '10.55.0.1/31']), /\/8\.\.\/30/);
  assert.throws(() => parseArgs(['serve', '--config', 'x.json', '--ncm']), /cannot be combined/);
});

test.run();
