import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Retention, type SentTask } from '../../../src/fabrics/iscsi/retention';

function status(statSN: number) {
  return { statSN, bhs: Buffer.alloc(48), data: undefined };
}
function task(itt: number, statSN: number, bytes = 1024, ttt = 0xffffffff): SentTask {
  return { itt, lun: 0, data: Buffer.alloc(bytes), status: 0, response: 0, overflow: false, underflow: false, residual: 0, senseBody: undefined, collapsed: true, r2ts: 0, offsets: [0, 512], flags: [0xc0, 0x81], statSN, ttt, ackedDataSN: 0 };
}

test('§4.2.2.2 ExpStatSN releases every status and task below it, nothing at or above', () => {
  const r = new Retention();
  for (let sn = 10; sn < 15; sn++) r.keepStatus(status(sn));
  r.keepTask(task(1, 11));
  r.keepTask(task(2, 13));
  r.acknowledge(13);
  assert.equal([...r.byStatSN.keys()], [13, 14]);
  assert.equal([...r.byItt.keys()], [2]);
  assert.is(r.retainedBytes, 1024);
});

test('acknowledgement wraps around 2^32 (serial arithmetic)', () => {
  const r = new Retention();
  r.keepStatus(status(0xfffffffe));
  r.keepStatus(status(0xffffffff));
  r.keepStatus(status(0));
  r.acknowledge(0);
  assert.equal([...r.byStatSN.keys()], [0]);
});

test('§11.16.1 Status SNACK run: exact run, RunLength 0 = all from BegRun, a missing StatSN = null', () => {
  const r = new Retention();
  for (let sn = 5; sn < 9; sn++) r.keepStatus(status(sn));
  assert.equal(r.statusRun(6, 2)!.map((s) => s.statSN), [6, 7]);
  assert.equal(r.statusRun(6, 0)!.map((s) => s.statSN), [6, 7, 8]);
  assert.is(r.statusRun(3, 2), null);
});

test('§11.16.1 DataACK by TTT moves the acknowledged DataSN forward only', () => {
  const r = new Retention();
  r.keepTask(task(7, 1, 1024, 0x55));
  assert.ok(r.dataAck(0x55, 1));
  assert.is(r.byItt.get(7)!.ackedDataSN, 1);
  assert.ok(r.dataAck(0x55, 0));
  assert.is(r.byItt.get(7)!.ackedDataSN, 1);
  assert.not.ok(r.dataAck(0x56, 1), 'unknown TTT');
  assert.not.ok(r.dataAck(0x55, 3), 'beyond the PDUs sent');
});

test('bounded: over maxBytes the oldest tasks go; over maxStatus the oldest status goes', () => {
  const r = new Retention(2048, 3);
  r.keepTask(task(1, 1));
  r.keepTask(task(2, 2));
  r.keepTask(task(3, 3));
  assert.equal([...r.byItt.keys()], [2, 3]);
  assert.is(r.retainedBytes, 2048);
  r.keepTask(task(4, 4, 4096)); // larger than the cap on its own: kept, the rest goes
  assert.equal([...r.byItt.keys()], [4]);
  for (let sn = 0; sn < 5; sn++) r.keepStatus(status(sn));
  assert.equal([...r.byStatSN.keys()], [2, 3, 4]);
});

test('takeTasks hands everything over (ERL 2 connection failure) and empties the store', () => {
  const r = new Retention();
  r.keepTask(task(1, 1, 512, 9));
  const t = r.takeTasks();
  assert.equal(t.map((x) => x.itt), [1]);
  assert.is(r.byItt.size + r.byTtt.size + r.retainedBytes, 0);
});

test.run();
