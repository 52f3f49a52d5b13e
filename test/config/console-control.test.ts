// The management keys of the config: console (serial shell) and control (socket).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, validateConfig } from '../../src/config';

const base = { version: 1, backstores: [] };
const codes = (raw: unknown): string[] => {
  try {
    validateConfig(raw);
    return [];
  } catch (e) {
    return (e as ConfigError).errors.map((i) => `${i.code} ${i.path}`);
  }
};

test('console and control are accepted', () => {
  const cfg = validateConfig({ ...base, console: { device: '/dev/ttyAMA0', baudRate: 115200 }, control: { socket: '/run/lunbox/control.sock' } });
  assert.equal(cfg.console, { device: '/dev/ttyAMA0', baudRate: 115200 });
  validateConfig({ ...base, console: { device: false }, control: { socket: false } });
  validateConfig({ ...base, console: {} });
});

test('bad console/control values name the field', () => {
  assert.equal(codes({ ...base, console: { device: 'ttyGS0' } }), ['FORMAT console.device']);
  assert.equal(codes({ ...base, console: { baudRate: 12345 } }), ['ENUM console.baudRate']);
  assert.equal(codes({ ...base, console: { dev: '/dev/ttyGS0' } }), ['UNKNOWN_KEY console.dev']);
  assert.equal(codes({ ...base, control: { socket: 'rel.sock' } }), ['FORMAT control.socket']);
  assert.equal(codes({ ...base, control: { socket: '/' + 'x'.repeat(200) } }), ['RANGE control.socket']);
  assert.equal(codes({ ...base, control: 'yes' }), ['TYPE control']);
});

test.run();
