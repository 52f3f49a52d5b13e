import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadConfig, redactSecrets, saveConfig } from '../../src/config';
import { fullExample } from './example';

let dir = '';
let n = 0;
const file = (): string => path.join(dir, `c${n++}.json`);
async function rejectsConfig(p: Promise<unknown>, code: string, includes: string): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.is((err as ConfigError).code, code);
    assert.ok((err as Error).message.includes(includes), (err as Error).message);
    return err as ConfigError;
  }
  throw new Error('should reject');
}

test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-config-'));
});
test.after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('save then load gives the same config', async () => {
  const f = file();
  await saveConfig(f, fullExample());
  assert.equal(await loadConfig(f), fullExample());
});

test('saved file is mode 0600 (it holds CHAP secrets)', async () => {
  const f = file();
  await saveConfig(f, fullExample());
  assert.is((await fsp.stat(f)).mode & 0o777, 0o600);
});

test('saving keeps the previous config as FILE.bak', async () => {
  const f = file();
  await saveConfig(f, { version: 1, backstores: [] });
  await saveConfig(f, fullExample());
  assert.equal(JSON.parse(await fsp.readFile(`${f}.bak`, 'utf8')), { version: 1, backstores: [] });
  assert.equal(await loadConfig(f), fullExample());
});

test('the first save makes no .bak and leaves no temp files', async () => {
  const sub = await fsp.mkdtemp(path.join(dir, 'first-'));
  await saveConfig(path.join(sub, 'lunbox.json'), fullExample());
  assert.equal(await fsp.readdir(sub), ['lunbox.json']);
});

test('an invalid config is never saved', async () => {
  const f = file();
  await saveConfig(f, { version: 1, backstores: [] });
  const bad = { ...fullExample(), version: 2 } as unknown as Parameters<typeof saveConfig>[1];
  await rejectsConfig(saveConfig(f, bad), 'ENUM', 'version');
  assert.equal(await loadConfig(f), { version: 1, backstores: [] });
});

test('JSON syntax errors name file, line and column', async () => {
  const f = file();
  await fsp.writeFile(f, '{\n  "version": 1,\n  "backstores": [],\n}\n');
  await rejectsConfig(loadConfig(f), 'JSON', `${f}: 4:1: invalid JSON`);
});

test('JSON errors V8 gives no position for still get line:column', async () => {
  const f = file();
  await fsp.writeFile(f, '{\n  "version": 1,\n  "backstores": [\n');
  await rejectsConfig(loadConfig(f), 'JSON', '4:1: invalid JSON: Unexpected end of JSON input');
  await fsp.writeFile(f, '{\n  "version": }');
  await rejectsConfig(loadConfig(f), 'JSON', '2:14: invalid JSON');
});

test('a byte-order mark is tolerated', async () => {
  const f = file();
  await fsp.writeFile(f, '\ufeff{"version": 1, "backstores": []}');
  assert.equal(await loadConfig(f), { version: 1, backstores: [] });
});

test('validation errors on load carry the file name and the field path', async () => {
  const f = file();
  await fsp.writeFile(f, JSON.stringify({ version: 1, backstores: [{ name: 'x', type: 'ram' }] }));
  const e = await rejectsConfig(loadConfig(f), 'MISSING', `${f}: backstores[0].size`);
  assert.is(e.path, 'backstores[0].size');
  assert.is(e.file, f);
});

test('a missing file is an IO error naming it', async () => {
  const f = path.join(dir, 'nope.json');
  await rejectsConfig(loadConfig(f), 'IO', `${f}: no such file`);
});

test('redactSecrets hides every CHAP secret and leaves the input alone', () => {
  const cfg = fullExample();
  const r = redactSecrets(cfg);
  assert.is(r.iscsi?.discoveryAuth?.password, '********');
  const auth = r.iscsi?.targets[0]?.acls?.[0]?.auth;
  assert.is(auth?.password, '********');
  assert.is(auth?.mutualPassword, '********');
  assert.is(auth?.userid, 'alice');
  assert.not.ok(JSON.stringify(r).includes('secret'));
  assert.is(cfg.iscsi?.discoveryAuth?.password, 'discovery-secret');
});

test.run();
