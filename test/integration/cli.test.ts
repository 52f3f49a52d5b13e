// The command line as a user meets it: help, version, clear errors for bad input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { BUNDLE, run, tempDir, writeJson } from './helpers';

const lunbox = (...args: string[]) => run(process.execPath, [BUNDLE, ...args], { timeoutMs: 15_000 });

test('--help describes serve and the embedded default', async () => {
  const r = await lunbox('--help');
  assert.is(r.code, 0);
  assert.match(r.stdout, /lunbox serve/);
  assert.match(r.stdout, /64 MiB RAM disk/);
});

test('serve --help lists the quick export flags', async () => {
  const r = await lunbox('serve', '--help');
  assert.is(r.code, 0);
  for (const flag of ['--backstore', '--listen', '--config', 'ram:SIZE', 'file:PATH[:SIZE]', 'block:DEVICE']) {
    assert.ok(r.stdout.includes(flag), `help mentions ${flag}`);
  }
});

test('--version prints the package version', async () => {
  const r = await lunbox('--version');
  assert.is(r.code, 0);
  assert.match(r.stdout, /^lunbox \d+\.\d+\.\d+\n$/);
});

test('an unknown option exits 2 naming it', async () => {
  const r = await lunbox('serve', '--bogus');
  assert.is(r.code, 2);
  assert.match(r.stderr, /unknown option '--bogus'/);
});

test('a bad --backstore names what is valid', async () => {
  const r = await lunbox('serve', '--backstore', 'tape:/dev/st0');
  assert.is(r.code, 2);
  assert.match(r.stderr, /ram:SIZE, file:PATH\[:SIZE\], block:DEVICE/);
});

test('a bad --listen port is refused', async () => {
  const r = await lunbox('serve', '--listen', '127.0.0.1:99999');
  assert.is(r.code, 2);
  assert.match(r.stderr, /port must be a number/);
});

test('a config with a bad field is refused with the path of the field', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = writeJson(join(dir, 'bad.json'), {
      version: 1,
      backstores: [{ name: 'r', type: 'ram', size: '16M' }],
      iscsi: { targets: [{ iqn: 'iqn.2026-11.org.lunbox:t', luns: [{ lun: 0, backstore: 'nope' }] }] },
    });
    const r = await lunbox('serve', '--config', file);
    assert.is(r.code, 1);
    assert.match(r.stderr, /iscsi\.targets\[0\]\.luns\[0\]\.backstore/);
    const c = await lunbox('config', 'check', file);
    assert.is(c.code, 1);
    assert.match(c.stderr, /nope/);
  } finally {
    cleanup();
  }
});

test('a config that is not JSON is refused with its line:column', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'broken.json');
    require('node:fs').writeFileSync(file, '{ "version": 1,\n  "backstores": [ }\n');
    const r = await lunbox('config', 'check', file);
    assert.is(r.code, 1);
    assert.match(r.stderr, /broken\.json: 2:\d+: invalid JSON/);
  } finally {
    cleanup();
  }
});

test('a busy port gives a clear message, not a stack trace', async () => {
  const net = await import('node:net');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    const r = await lunbox('serve', '--listen', `127.0.0.1:${port}`);
    assert.is(r.code, 1);
    assert.match(r.stderr, /already in use/);
    assert.not.match(r.stderr, /at .*\.js:\d+/);
  } finally {
    srv.close();
  }
});

test.run();
