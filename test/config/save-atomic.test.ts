// saveConfig under injected failures: at every file-system step, either fail (the error is
// reported and cleanup runs) or "crash" (that step and everything after it fail, so no
// cleanup), and a partial write of the temp file. Afterwards the config file must be
// exactly the old or the new config: never empty, never half-written.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, nodeSaveFs, saveConfig } from '../../src/config';
import type { LunboxConfig, SaveFileHandle, SaveFs } from '../../src/config';
import { fullExample } from './example';

const OLD: LunboxConfig = { version: 1, backstores: [{ name: 'old', type: 'ram', size: '1M' }] };
const NEW = fullExample();

type Mode = 'fail' | 'crash' | 'partial';
class Injected extends Error {}

/** The real fs, with every call counted and labelled; call number `at` misbehaves per `mode`. */
function faultyFs(at: number, mode: Mode, log: string[]): SaveFs {
  let count = 0;
  let dead = false;
  const step = async <T>(label: string, real: () => Promise<T>, partial?: () => Promise<void>): Promise<T> => {
    const k = count++;
    log.push(label);
    if (dead) throw new Injected(`after crash: ${label}`);
    if (k === at) {
      if (mode !== 'fail') dead = true;
      if (mode === 'partial' && partial) await partial();
      throw new Injected(`injected at ${label}`);
    }
    return real();
  };
  const base = (p: string): string => path.basename(p).replace(/\.\d+\.[0-9a-f]+\.tmp/, '.TMP');
  return {
    open: (p, flags, mode) =>
      step(`open ${base(p)}`, async () => {
        const fh = await nodeSaveFs.open(p, flags, mode);
        const h: SaveFileHandle = {
          writeFile: (d) => step(`write ${base(p)}`, () => fh.writeFile(d), () => fh.writeFile(d.subarray(0, d.length >> 1))),
          sync: () => step(`fsync ${base(p)}`, () => fh.sync()),
          // close always releases the real fd, even "after a crash" (the kernel would).
          close: () => step(`close ${base(p)}`, () => fh.close()).finally(() => fh.close().catch(() => {})),
        };
        return h;
      }),
    readFile: (p) => step(`read ${base(p)}`, () => nodeSaveFs.readFile(p)),
    rename: (a, b) => step(`rename ${base(a)} → ${base(b)}`, () => nodeSaveFs.rename(a, b)),
    unlink: (p) => step(`unlink ${base(p)}`, () => nodeSaveFs.unlink(p)),
  };
}

let root = '';
test.before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-atomic-'));
});
test.after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function freshDir(withOld: boolean): Promise<string> {
  const d = await fsp.mkdtemp(path.join(root, 'case-'));
  if (withOld) await saveConfig(path.join(d, 'lunbox.json'), OLD);
  return path.join(d, 'lunbox.json');
}

async function stepsOfCleanSave(withOld: boolean): Promise<{ steps: string[]; dirName: string }> {
  const log: string[] = [];
  const f = await freshDir(withOld);
  await saveConfig(f, NEW, { fs: faultyFs(-1, 'fail', log) });
  return { steps: log, dirName: path.basename(path.dirname(f)) };
}

test('a clean save fsyncs the temp file before the rename and the directory after it', async () => {
  const { steps, dirName } = await stepsOfCleanSave(true);
  assert.equal(steps, [
    'read lunbox.json',
    'open .lunbox.json.TMP',
    'write .lunbox.json.TMP',
    'fsync .lunbox.json.TMP',
    'close .lunbox.json.TMP',
    'open .lunbox.json.TMP.bak',
    'write .lunbox.json.TMP.bak',
    'fsync .lunbox.json.TMP.bak',
    'close .lunbox.json.TMP.bak',
    'rename .lunbox.json.TMP.bak → lunbox.json.bak',
    'rename .lunbox.json.TMP → lunbox.json',
    `open ${dirName}`,
    `fsync ${dirName}`,
    `close ${dirName}`,
  ]);
});

for (const withOld of [true, false]) {
  for (const mode of ['fail', 'crash', 'partial'] as const) {
    test(`${mode} at every step (${withOld ? 'replacing a config' : 'first save'}): the file is always old or new`, async () => {
      const { steps } = await stepsOfCleanSave(withOld);
      for (let k = 0; k < steps.length; k++) {
        const f = await freshDir(withOld);
        const log: string[] = [];
        let error: unknown;
        try {
          await saveConfig(f, NEW, { fs: faultyFs(k, mode, log) });
        } catch (err) {
          error = err;
        }
        assert.ok(error, `step ${k} (${steps[k]}) must make saveConfig reject`);
        if (mode === 'fail') {
          // A plain failure is reported as a typed error naming the file.
          assert.instance(error, ConfigError, `step ${k}: ${String(error)}`);
          assert.is((error as ConfigError).code, 'IO');
          assert.match((error as Error).message, f);
        }
        let text: string | undefined;
        try {
          text = await fsp.readFile(f, 'utf8');
        } catch (err) {
          assert.is((err as NodeJS.ErrnoException).code, 'ENOENT');
        }
        const renamed = steps.slice(0, k).includes('rename .lunbox.json.TMP → lunbox.json');
        if (text === undefined) {
          assert.not.ok(withOld, `step ${k} (${steps[k]}): the old config vanished`);
          assert.not.ok(renamed, `step ${k}: renamed but no file`);
        } else {
          const got = JSON.parse(text) as unknown; // never empty or half-written
          assert.equal(got, renamed ? NEW : OLD, `step ${k} (${steps[k]}) in ${mode} mode`);
        }
        if (mode === 'fail' && !renamed) {
          // Cleanup ran: no temp files left beside the config.
          const left = (await fsp.readdir(path.dirname(f))).filter((x) => x.endsWith('.tmp') || x.endsWith('.tmp.bak'));
          assert.equal(left, [], `step ${k}: leftovers ${left.join(', ')}`);
        }
      }
    });
  }
}

test.run();
