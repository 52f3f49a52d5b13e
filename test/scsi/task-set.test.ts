// Task set semantics under load (SAM-5 §8.6, SPC-4 §7.5.8): ORDERED waits for every older
// task, HEAD OF QUEUE overtakes, SIMPLE tasks run concurrently; TAS, QERR and
// UA_INTLCK_CTRL through the control mode page; the per-nexus unit attention queue.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status, type ScsiResult, type TaskAttribute } from '../../src/scsi/types';
import type { TargetPort } from '../../src/scsi/port';
import { queueUa, UA_QUEUE_MAX } from '../../src/scsi/unit-attention';
import { MemStore, cmd, nexus, rw10, sense } from './helpers';
import { fixture } from './setup';

/** A backstore that counts how many reads/writes run at once. */
class SlowStore extends MemStore {
  running = 0;
  maxRunning = 0;
  override async read(into: Buffer, off: number, len: number, pos: number): Promise<void> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await super.read(into, off, len, pos);
    } finally {
      this.running--;
    }
  }
  override async write(data: Buffer, pos: number): Promise<void> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await super.write(data, pos);
    } finally {
      this.running--;
    }
  }
}

async function slowFixture(delay = 15) {
  const f = await fixture({}, 1024 * 512);
  const store = new SlowStore('slow', 1024 * 512);
  store.delay = delay;
  // Swap the backstore under the unit (the fixture's MemStore has the same shape).
  (f.lu as unknown as { backstore: MemStore }).backstore = store;
  return { ...f, store };
}

function run(port: TargetPort, c: Parameters<typeof cmd>[0], attribute: TaskAttribute, log: string[], name: string, o: Parameters<typeof cmd>[1] = {}): Promise<ScsiResult> {
  return port.execute(cmd(c, { ...o, attribute })).then((r) => {
    log.push(name);
    return r;
  });
}

test('SIMPLE tasks run concurrently; ORDERED waits for all older ones; younger SIMPLE wait for the ORDERED', async () => {
  const { port, store } = await slowFixture();
  const log: string[] = [];
  const all: Promise<ScsiResult>[] = [];
  for (let i = 0; i < 10; i++) all.push(run(port, rw10(0x28, i, 1), 'simple', log, `s${i}`));
  all.push(run(port, rw10(0x2a, 100, 1), 'ordered', log, 'ordered', { data: Buffer.alloc(512, 1) }));
  for (let i = 0; i < 5; i++) all.push(run(port, rw10(0x28, 200 + i, 1), 'simple', log, `t${i}`));
  const rs = await Promise.all(all);
  assert.ok(rs.every((r) => r.status === Status.GOOD));
  const at = log.indexOf('ordered');
  assert.is(at, 10, log.join(' '));
  assert.ok(log.slice(0, 10).every((n) => n.startsWith('s')));
  assert.ok(log.slice(11).every((n) => n.startsWith('t')));
  // The ten older SIMPLE reads overlapped (and so did the five younger ones).
  assert.ok(store.maxRunning >= 5, `max concurrent ${store.maxRunning}`);
});

test('HEAD OF QUEUE overtakes SIMPLE tasks queued behind an ORDERED one', async () => {
  const { port } = await slowFixture(25);
  const log: string[] = [];
  const all: Promise<ScsiResult>[] = [];
  all.push(run(port, rw10(0x28, 0, 1), 'simple', log, 'old'));
  all.push(run(port, rw10(0x28, 1, 1), 'ordered', log, 'ordered'));
  for (let i = 0; i < 4; i++) all.push(run(port, rw10(0x28, 10 + i, 1), 'simple', log, `young${i}`));
  all.push(run(port, rw10(0x28, 50, 1), 'head-of-queue', log, 'hoq'));
  await Promise.all(all);
  // HOQ starts at once: it finishes with (or before) the old task, before the ORDERED one.
  assert.ok(log.indexOf('hoq') < log.indexOf('ordered'), log.join(' '));
  assert.ok(log.indexOf('hoq') < log.indexOf('young0'), log.join(' '));
  assert.ok(log.indexOf('ordered') < log.indexOf('young0'), log.join(' '));
});

test('a burst of 200 mixed commands keeps the ORDERED barriers', async () => {
  const { port } = await slowFixture(2);
  const log: string[] = [];
  const all: Promise<ScsiResult>[] = [];
  const orderedAt: number[] = [];
  for (let i = 0; i < 200; i++) {
    const attr: TaskAttribute = i % 50 === 25 ? 'ordered' : 'simple';
    if (attr === 'ordered') orderedAt.push(i);
    all.push(run(port, rw10(0x28, i, 1), attr, log, String(i)));
  }
  await Promise.all(all);
  for (const o of orderedAt) {
    const pos = log.indexOf(String(o));
    // Everything submitted before the ORDERED task completed before it, everything after, after.
    for (let i = 0; i < 200; i++) {
      const p = log.indexOf(String(i));
      if (i < o) assert.ok(p < pos, `${i} before ordered ${o}`);
      if (i > o) assert.ok(p > pos, `${i} after ordered ${o}`);
    }
  }
});

/** MODE SENSE(6) of the control page (DBD), for editing and sending back. */
async function controlPage(port: TargetPort, pc = 0): Promise<Buffer> {
  const r = await port.execute(cmd([0x1a, 0x08, (pc << 6) | 0x0a, 0, 255, 0]));
  return Buffer.from(r.dataIn!.subarray(4));
}
async function selectControl(port: TargetPort, page: Buffer): Promise<ScsiResult> {
  const data = Buffer.concat([Buffer.alloc(4), page]);
  return port.execute(cmd([0x15, 0x10, 0, 0, data.length, 0], { data }));
}

test('control mode page: TAS 1 by default; QERR, UA_INTLCK_CTRL and TAS are changeable; reserved codes refused', async () => {
  const { port, lu } = await fixture();
  const cur = await controlPage(port);
  assert.is(cur[5]! & 0x40, 0x40);
  assert.is((cur[3]! >> 1) & 3, 0);
  assert.is((cur[4]! >> 4) & 3, 0);
  const ch = await controlPage(port, 1);
  assert.is(ch[3]! & 0x06, 0x06);
  assert.is(ch[4]! & 0x30, 0x30);
  assert.is(ch[5]! & 0x40, 0x40);
  const p = Buffer.from(cur);
  p[3] = (p[3]! & ~0x06) | (1 << 1);
  p[4] = (p[4]! & ~0x30) | (2 << 4);
  p[5] = p[5]! & ~0x40;
  assert.is((await selectControl(port, p)).status, Status.GOOD);
  assert.is(lu.qerr, 1);
  assert.is(lu.uaInterlock, 2);
  assert.is(lu.taskAbortedStatus, false);
  const bad = Buffer.from(p);
  bad[3] = (bad[3]! & ~0x06) | (2 << 1);
  assert.is(sense(await selectControl(port, bad)).asc, 0x2600);
  const bad2 = Buffer.from(p);
  bad2[4] = (bad2[4]! & ~0x30) | (1 << 4);
  assert.is(sense(await selectControl(port, bad2)).asc, 0x2600);
});

async function setControl(port: TargetPort, edit: (p: Buffer) => void): Promise<void> {
  const p = await controlPage(port);
  edit(p);
  assert.is((await selectControl(port, p)).status, Status.GOOD);
}

async function eatUas(port: TargetPort, n = nexus(2)): Promise<void> {
  for (let i = 0; i < 10; i++) if ((await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n }))).status === Status.GOOD) return;
}

test('TAS=1: CLEAR TASK SET ends the other nexus’s tasks with TASK ABORTED and no unit attention; TAS=0: unit attention 2F/00', async () => {
  for (const tas of [true, false]) {
    const { port, lu, store } = await slowFixture(40);
    if (!tas) await setControl(port, (p) => (p[5] = p[5]! & ~0x40));
    const n2 = nexus(2);
    await eatUas(port, n2);
    const theirs = port.execute(cmd(rw10(0x28, 0, 1), { nexus: n2 }));
    await new Promise((r) => setTimeout(r, 5));
    assert.is(await port.taskManagement({ fn: 'clear-task-set', nexus: nexus(1), lun: 0 }), 'function-complete');
    assert.is((await theirs).status, Status.TASK_ABORTED);
    store.delay = 0;
    assert.equal([...lu.pendingUas(n2.id)], tas ? [] : [0x2f00], `TAS=${tas}`);
  }
});

test('QERR=01b: a CHECK CONDITION aborts every other task; 11b: only the same nexus’s', async () => {
  for (const qerr of [1, 3]) {
    const { port, store } = await slowFixture(40);
    await setControl(port, (p) => (p[3] = (p[3]! & ~0x06) | (qerr << 1)));
    const n2 = nexus(2);
    await eatUas(port, n2);
    const mine = port.execute(cmd(rw10(0x28, 0, 1)));
    const theirs = port.execute(cmd(rw10(0x28, 1, 1), { nexus: n2 }));
    await new Promise((r) => setTimeout(r, 5));
    // LBA out of range: a CHECK CONDITION from inside the task set.
    const bad = await port.execute(cmd(rw10(0x28, 5000, 1)));
    assert.is(sense(bad).asc, 0x2100);
    assert.is((await mine).status, Status.TASK_ABORTED, `QERR=${qerr} own task`);
    assert.is((await theirs).status, qerr === 1 ? Status.TASK_ABORTED : Status.GOOD, `QERR=${qerr} other nexus`);
    store.delay = 0;
  }
});

test('QERR=00b (default): a CHECK CONDITION leaves the other tasks alone', async () => {
  const { port } = await slowFixture(30);
  const mine = port.execute(cmd(rw10(0x28, 0, 1)));
  await new Promise((r) => setTimeout(r, 5));
  assert.is(sense(await port.execute(cmd(rw10(0x28, 5000, 1)))).asc, 0x2100);
  assert.is((await mine).status, Status.GOOD);
});

test('unit attentions: reported by precedence (29h, 2Fh, 2Ah, 3Fh), one per command, duplicates dropped', async () => {
  const { port, lu, n1 } = await fixture();
  lu.raiseUa(n1.id, 0x3f0e);
  lu.raiseUa(n1.id, 0x2a01);
  lu.raiseUa(n1.id, 0x2a01);
  lu.raiseUa(n1.id, 0x2f00);
  lu.raiseUa(n1.id, 0x2a09);
  const seen: number[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
    if (r.status === Status.GOOD) break;
    seen.push(sense(r).asc);
  }
  assert.equal(seen, [0x2f00, 0x2a01, 0x2a09, 0x3f0e]);
  // A reset-family condition replaces what was queued.
  lu.raiseUa(n1.id, 0x2a01);
  lu.raiseUa(n1.id, 0x2903);
  lu.raiseUa(n1.id, 0x3f0e);
  assert.equal([...lu.pendingUas(n1.id)], [0x2903, 0x3f0e]);
});

test('unit attention queue: bounded; a full queue drops the lowest precedence, never a reset', () => {
  const q: number[] = [];
  queueUa(q, 0x2900);
  for (let i = 0; i < UA_QUEUE_MAX + 5; i++) queueUa(q, 0x3f00 + i);
  assert.is(q.length, UA_QUEUE_MAX);
  assert.is(q[0], 0x2900);
  assert.ok(queueUa(q, 0x2a01), 'a higher precedence one still gets in');
  assert.is(q.length, UA_QUEUE_MAX);
  assert.is(q[1], 0x2a01);
  assert.not.ok(queueUa(q, 0x3fff), 'a lower one does not');
});

test('UA_INTLCK_CTRL=10b: a CHECK CONDITION reports without clearing; REQUEST SENSE clears', async () => {
  const { port, lu, n1 } = await fixture();
  await setControl(port, (p) => (p[4] = (p[4]! & ~0x30) | (2 << 4)));
  lu.raiseUa(n1.id, 0x2a09);
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0]))).asc, 0x2a09);
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0]))).asc, 0x2a09);
  const rs = await port.execute(cmd([0x03, 0, 0, 0, 18, 0]));
  assert.is(rs.dataIn![12], 0x2a);
  assert.is((await port.execute(cmd([0, 0, 0, 0, 0, 0]))).status, Status.GOOD);
});

test('UA_INTLCK_CTRL=11b: RESERVATION CONFLICT leaves PREVIOUS RESERVATION CONFLICT STATUS', async () => {
  const { port, lu } = await fixture();
  await setControl(port, (p) => (p[4] = (p[4]! & ~0x30) | (3 << 4)));
  const n2 = nexus(2);
  // With 10b/11b a CHECK CONDITION does not clear the power-on UA: REQUEST SENSE does.
  assert.is(sense(await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }))).asc, 0x2900);
  assert.is((await port.execute(cmd([0x03, 0, 0, 0, 18, 0], { nexus: n2 }))).dataIn![12], 0x29);
  assert.is((await port.execute(cmd([0x16, 0, 0, 0, 0, 0]))).status, Status.GOOD); // RESERVE(6) by nexus 1
  assert.is((await port.execute(cmd(rw10(0x28, 0, 1), { nexus: n2 }))).status, Status.RESERVATION_CONFLICT);
  assert.equal([...lu.pendingUas(n2.id)], [0x2c0b]);
});

test.run();
