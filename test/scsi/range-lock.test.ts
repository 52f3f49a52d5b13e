import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RangeLock } from '../../src/scsi/sbc/range-lock';

test('overlapping ranges wait in arrival order; disjoint ranges do not', async () => {
  const lock = new RangeLock();
  const order: string[] = [];
  const a = await lock.acquire(0, 100);
  const b = lock.acquire(50, 100).then((rel) => (order.push('b'), rel));
  const c = lock.acquire(200, 10).then((rel) => (order.push('c'), rel));
  (await c)();
  assert.equal(order, ['c']);
  a();
  (await b)();
  assert.equal(order, ['c', 'b']);
  assert.is(lock.size, 0);
});

test('with() releases on throw', async () => {
  const lock = new RangeLock();
  try {
    await lock.with(0, 1, async () => {
      throw new Error('x');
    });
  } catch {
    /* expected */
  }
  assert.is(lock.size, 0);
});

test.run();
