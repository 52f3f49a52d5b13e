import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { cmd, rw10, rw16, sense } from './helpers';
import { fixture } from './setup';

test('ORWRITE(16) ORs the data-out into the medium', async () => {
  const { store, port } = await fixture();
  store.data.fill(0xa5, 512, 1536);
  const r = await port.execute(cmd(rw16(Op.ORWRITE_16, 1n, 2), { data: Buffer.alloc(1024, 0x5a) }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataOutExpected, 1024);
  assert.is(store.data[512], 0xff);
  assert.is(store.data[1535], 0xff);
  assert.is(store.data[1536], 0);
});

test('ORWRITE(16): zero blocks GOOD, beyond the end → LBA OUT OF RANGE, ORPROTECT → invalid field', async () => {
  const { port } = await fixture();
  assert.is((await port.execute(cmd(rw16(Op.ORWRITE_16, 0n, 0)))).status, Status.GOOD);
  const oob = cmd(rw16(Op.ORWRITE_16, 1023n, 2), { data: Buffer.alloc(1024) });
  assert.is(sense(await port.execute(oob)).asc, 0x2100);
  assert.equal(oob.pulls, []);
  const p = await port.execute(cmd(rw16(Op.ORWRITE_16, 0n, 1, 0x20), { data: Buffer.alloc(512) }));
  assert.equal(sense(p).field, { cdb: true, byte: 1, bit: 5 });
});

test('ORWRITE(16) is atomic against a concurrent WRITE of the same blocks', async () => {
  const { store, port } = await fixture();
  store.delay = 5;
  // The ORWRITE reads, then writes; a WRITE issued meanwhile must land before or after, not between.
  const or = port.execute(cmd(rw16(Op.ORWRITE_16, 0n, 1), { data: Buffer.alloc(512, 0x0f) }));
  const wr = port.execute(cmd(rw10(Op.WRITE_10, 0, 1), { data: Buffer.alloc(512, 0xf0) }));
  await Promise.all([or, wr]);
  // Either order gives 0xf0 (write last) or 0xff (OR last) — never 0x0f (write lost in between).
  assert.ok(store.data[0] === 0xf0 || store.data[0] === 0xff, `got ${store.data[0]}`);
});

test('ORWRITE(16) on a write-protected unit → DATA PROTECT', async () => {
  const { port } = await fixture({ readOnly: true });
  const r = await port.execute(cmd(rw16(Op.ORWRITE_16, 0n, 1), { data: Buffer.alloc(512) }));
  assert.is(sense(r).key, 7);
});

test.run();
