import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort, type LunMapEntry } from '../../src/scsi/port';
import { MemStore, cmd, nexus, rw10, sense } from './helpers';

function setup() {
  const a = new LogicalUnit({ backstore: new MemStore('a', 65536) });
  const b = new LogicalUnit({ backstore: new MemStore('b', 65536) });
  let map: LunMapEntry[] = [
    { lun: 0, unit: a },
    { lun: 3, unit: b, readOnly: true },
  ];
  const port = new TargetPort({ lunMap: () => map });
  return { a, b, port, setMap: (m: LunMapEntry[]) => (map = m) };
}

const reportLuns = (select = 0, alloc = 1024) => [0xa0, 0, select, 0, 0, 0, (alloc >> 24) & 0xff, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0];

test('REPORT LUNS lists the map, any LUN, select report 0/1/2', async () => {
  const { port } = setup();
  let r = await port.execute(cmd(reportLuns(), { lun: 9 }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn!.readUInt32BE(0), 16);
  assert.is(r.dataIn![9], 0);
  assert.is(r.dataIn![17], 3);
  r = await port.execute(cmd(reportLuns(1)));
  assert.is(r.dataIn!.readUInt32BE(0), 0);
  r = await port.execute(cmd(reportLuns(2)));
  assert.is(r.dataIn!.readUInt32BE(0), 16);
  r = await port.execute(cmd(reportLuns(3)));
  assert.is(sense(r).asc, 0x2400);
  r = await port.execute(cmd(reportLuns(0, 8)));
  assert.is(r.dataIn!.length, 8);
});

test('unmapped LUN: INQUIRY qualifier 3 / type 1Fh, others 05/25/00', async () => {
  const { port } = setup();
  let r = await port.execute(cmd([0x12, 0, 0, 0, 96, 0], { lun: 7 }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn![0], 0x7f);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { lun: 7 }));
  assert.is(sense(r).asc, 0x2500);
  r = await port.execute(cmd([0x03, 0, 0, 0, 18, 0], { lun: 7 }));
  assert.is(r.status, Status.GOOD);
  assert.is(r.dataIn![12], 0x25);
});

test('read-only map entry protects writes', async () => {
  const { port } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { lun: 3 }));
  const r = await port.execute(cmd(rw10(0x2a, 0, 1), { lun: 3, data: Buffer.alloc(512) }));
  assert.is(sense(r).key, 7);
  const m = await port.execute(cmd([0x1a, 0, 0x3f, 0, 255, 0], { lun: 3 }));
  assert.is(m.dataIn![2]! & 0x80, 0x80);
});

test('lunsChanged raises 3F/0E; REPORT LUNS clears it', async () => {
  const { port } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  port.lunsChanged();
  let r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x3f0e);
  port.lunsChanged();
  await port.execute(cmd(reportLuns()));
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(r.status, Status.GOOD);
});

test('LUN reset: UA 29/03 to every nexus, reservation cleared', async () => {
  const { port, a } = setup();
  const n2 = nexus(2);
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  await port.execute(cmd([0x16, 0, 0, 0, 0, 0]));
  assert.is(await port.taskManagement({ fn: 'lun-reset', nexus: nexus(1), lun: 0 }), 'function-complete');
  assert.is(a.reservationHolder, undefined);
  for (const n of [nexus(1), n2]) {
    const r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n }));
    assert.is(sense(r).asc, 0x2903);
  }
  assert.is(await port.taskManagement({ fn: 'lun-reset', nexus: nexus(1), lun: 5 }), 'incorrect-lun');
});

test('ABORT TASK resolves the aborted command with TASK ABORTED', async () => {
  const { port, a } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  (a.backstore as MemStore).delay = 30;
  const p = port.execute(cmd(rw10(0x28, 0, 1), { tag: 77 }));
  await new Promise((r) => setTimeout(r, 5));
  assert.is(await port.taskManagement({ fn: 'query-task', nexus: nexus(1), lun: 0, referencedTag: 77 }), 'function-succeeded');
  const t = port.taskManagement({ fn: 'abort-task', nexus: nexus(1), lun: 0, referencedTag: 77 });
  assert.is((await p).status, Status.TASK_ABORTED);
  assert.is(await t, 'function-complete');
  assert.is(a.tasksInFlight, 0);
});

test('a write waiting for data-out is aborted promptly', async () => {
  const { port, a } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  const c = cmd(rw10(0x2a, 0, 1), { tag: 5, data: Buffer.alloc(512) });
  const hang = { ...c, dataOut: () => new Promise<Buffer>(() => undefined) };
  const p = port.execute(hang);
  await new Promise((r) => setTimeout(r, 5));
  assert.is(await port.taskManagement({ fn: 'abort-task-set', nexus: nexus(1), lun: 0 }), 'function-complete');
  assert.is((await p).status, Status.TASK_ABORTED);
  assert.is(a.tasksInFlight, 0);
});

test('ORDERED waits for older tasks; HEAD OF QUEUE runs at once', async () => {
  const { port, a } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  const store = a.backstore as MemStore;
  store.delay = 20;
  const order: string[] = [];
  const s1 = port.execute(cmd(rw10(0x28, 0, 1))).then(() => order.push('simple1'));
  const o = port.execute(cmd(rw10(0x28, 0, 1), { attribute: 'ordered' })).then(() => order.push('ordered'));
  const s2 = port.execute(cmd(rw10(0x28, 0, 1))).then(() => order.push('simple2'));
  const h = port.execute(cmd([0, 0, 0, 0, 0, 0], { attribute: 'head-of-queue' })).then(() => order.push('hoq'));
  await Promise.all([s1, o, s2, h]);
  assert.equal(order, ['hoq', 'simple1', 'ordered', 'simple2']);
});

test('I_T nexus reset: 29/07 to that nexus only', async () => {
  const { port } = setup();
  const n2 = nexus(2);
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(await port.taskManagement({ fn: 'i-t-nexus-reset', nexus: nexus(1), lun: 0 }), 'function-complete');
  let r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc, 0x2907);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { nexus: n2 }));
  assert.is(r.status, Status.GOOD);
});

test('target reset resets every unit; clear-aca not supported', async () => {
  const { port } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  await port.execute(cmd([0, 0, 0, 0, 0, 0], { lun: 3 }));
  assert.is(await port.taskManagement({ fn: 'target-warm-reset', nexus: nexus(1), lun: 0 }), 'function-complete');
  let r = await port.execute(cmd([0, 0, 0, 0, 0, 0], { lun: 3 }));
  assert.is(sense(r).asc >> 8, 0x29);
  r = await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  assert.is(sense(r).asc >> 8, 0x29);
  assert.is(await port.taskManagement({ fn: 'clear-aca', nexus: nexus(1), lun: 0 }), 'not-supported');
});

test('an exception inside a handler becomes 04/44/00', async () => {
  const { port, a } = setup();
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  (a.backstore as MemStore).flush = () => {
    throw new Error('boom');
  };
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const r = await port.execute(cmd([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.is(sense(r).key, 4);
    assert.is(sense(r).asc, 0x4400);
  } finally {
    process.stderr.write = orig;
  }
});

test.run();
