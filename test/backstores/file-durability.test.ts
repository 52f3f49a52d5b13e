// kill -9 after the promise resolved: the data must be in the file. (A SIGKILL leaves the
// page cache intact, so this proves "resolved ⇒ handed to the kernel and synced", the
// ordering the core relies on; power-loss durability needs the device to honour flushes.)
import { fork } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const BLOCK = 4096;
let dir = '';
test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lunbox-kill9-'));
});
test.after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function killAfter(mode: string, acks: number): Promise<number[]> {
  const p = path.join(dir, `${mode}.img`);
  await fsp.writeFile(p, Buffer.alloc(256 * BLOCK));
  const child = fork(path.join(__dirname, 'fixtures', 'durability-child.ts'), [], {
    env: { ...process.env, LUNBOX_CHILD_PATH: p, LUNBOX_CHILD_MODE: mode },
    execArgv: ['-r', require.resolve('tsx/cjs')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const seen: number[] = [];
  await new Promise<void>((resolve, reject) => {
    child.on('message', (i) => {
      // Acks already in the pipe may still arrive after the kill: they were resolved too.
      seen.push(i as number);
      // Kill the moment the N-th ack arrives: the child is mid-way through the next write.
      if (seen.length === acks) child.kill('SIGKILL');
    });
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${_code} ${signal}`))));
  });
  const file = await fsp.readFile(p);
  for (const i of seen) {
    const block = file.subarray(i * BLOCK, (i + 1) * BLOCK);
    assert.is(block.readUInt32BE(0), i, `block ${i} header`);
    assert.ok(block.subarray(4).every((b) => b === (i % 250) + 1), `block ${i} body`);
  }
  return seen;
}

test('kill -9 after FUA writes (O_DSYNC route) resolved: every acknowledged block is in the file', async () => {
  assert.ok((await killAfter('fua', 40)).length >= 40);
});

test('kill -9 after FUA writes (fdatasync route) resolved: every acknowledged block is in the file', async () => {
  assert.ok((await killAfter('fua-fdatasync', 40)).length >= 40);
});

test('kill -9 after write + flush() resolved: every acknowledged block is in the file', async () => {
  assert.ok((await killAfter('flush', 40)).length >= 40);
});

test.run();
