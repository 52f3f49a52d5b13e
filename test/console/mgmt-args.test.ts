// Arguments of the management subcommands (src/cli/mgmt-args.ts via parseArgs).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseArgs } from '../../src/cli/args';

test('shell, console, probe', () => {
  assert.equal(parseArgs(['shell']), { kind: 'shell' });
  assert.equal(parseArgs(['shell', '--control', '/tmp/c.sock', '-c', 'ls /']), { kind: 'shell', control: '/tmp/c.sock', command: 'ls /' });
  assert.equal(parseArgs(['console', '/dev/ttyACM0', '-c', 'ls /', '--baud=9600']), { kind: 'console', port: '/dev/ttyACM0', baudRate: 9600, command: 'ls /' });
  assert.equal(parseArgs(['console']), { kind: 'console' });
  assert.equal(parseArgs(['probe']), { kind: 'probe', test: false, lun: 0, readMiB: 64, json: false });
  assert.equal(parseArgs(['probe', '1:7', '--read', '16', '--lun', '1']), { kind: 'probe', device: '1:7', test: true, lun: 1, readMiB: 16, json: false });
  // --read 0: INQUIRY and READ CAPACITY only, no throughput test.
  assert.equal(parseArgs(['probe', '--test', '--read', '0']), { kind: 'probe', test: true, lun: 0, readMiB: 0, json: false });
  assert.equal(parseArgs(['shell', '--help']), { kind: 'help', topic: 'shell' });
});

test('config import/export', () => {
  assert.equal(parseArgs(['config', 'import', 'saveconfig.json', '-o', '/etc/lunbox/config.json']), { kind: 'config-import', file: 'saveconfig.json', out: '/etc/lunbox/config.json' });
  assert.equal(parseArgs(['config', 'export']), { kind: 'config-export' });
  assert.throws(() => parseArgs(['config', 'import']), /give the saveconfig\.json/);
  assert.throws(() => parseArgs(['config', 'frob']), /valid: check, import, export/);
});

test('serve --console and --control', () => {
  const c = parseArgs(['serve', '--console', '/dev/ttyGS0', '--control=/tmp/x.sock']);
  assert.ok(c.kind === 'serve');
  if (c.kind !== 'serve') return;
  assert.is(c.opts.console, '/dev/ttyGS0');
  assert.is(c.opts.control, '/tmp/x.sock');
});

test('usage errors name the option', () => {
  assert.throws(() => parseArgs(['console', '--bogus']), /unknown option '--bogus' for console/);
  assert.throws(() => parseArgs(['probe', '--lun', '99']), /--lun 99: expected a whole number 0\.\.15/);
  assert.throws(() => parseArgs(['shell', '-c']), /needs a value/);
});

test.run();
