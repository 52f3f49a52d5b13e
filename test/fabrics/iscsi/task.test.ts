import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rfcDefaults, type Negotiated } from '../../../src/fabrics/iscsi/negotiation';
import type { DataOut } from '../../../src/fabrics/iscsi/pdu';
import { Task, TaskError, type TaskHost, type TaskInit } from '../../../src/fabrics/iscsi/task';
import type { Nexus } from '../../../src/scsi/types';

const nexus = { id: 'n' } as Nexus;
interface R2t { ttt: number; r2tSN: number; offset: number; length: number }
function host(over: Partial<Negotiated> = {}): TaskHost & { r2ts: R2t[] } {
  let ttt = 100;
  const r2ts: R2t[] = [];
  return { negotiated: { ...rfcDefaults(), ...over }, r2ts, allocTtt: () => ttt++, sendR2t: (_t, ttt2, r2tSN, offset, length) => r2ts.push({ ttt: ttt2, r2tSN, offset, length }) };
}
function init(over: Partial<TaskInit>): TaskInit {
  return { itt: 1, lun: 0, cdb: Buffer.alloc(16), attr: 1, read: false, write: true, edtl: 0, bidiReadLength: 0, final: true, immediateLength: 0, cmdSN: 1, immediate: false, ...over };
}
function dout(ttt: number, dataSN: number, bufferOffset: number, len: number, final = true): DataOut {
  return { kind: 'data-out', opcode: 5, immediate: false, final, totalAhsLength: 0, dataSegmentLength: len, itt: 1, lun: 0, ttt, expStatSN: 0, dataSN, bufferOffset };
}
const bytes = (n: number, start = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (start + i) & 0xff));

test('immediate data only: dataOut resolves from it, no R2T', async () => {
  const h = host();
  const t = new Task(init({ edtl: 512, immediateLength: 512 }), nexus, h);
  t.receiveImmediate([bytes(200), bytes(312, 200)]);
  const b = await t.cmd.dataOut(512);
  assert.ok(b.equals(bytes(512)));
  assert.is(h.r2ts.length, 0);
  assert.ok(t.unsolicitedComplete);
});

test('immediate data in one view covering the request: dataOut hands out that view, no copy', async () => {
  const h = host();
  const t = new Task(init({ edtl: 512, immediateLength: 512 }), nexus, h);
  const view = bytes(512);
  t.receiveImmediate([view]);
  const b = await t.cmd.dataOut(512);
  assert.is(b, view);
  // Nothing left for a second call.
  assert.is((await t.cmd.dataOut(512)).length, 0);
});

test('the settled promise is made on demand and resolves after markSettled', async () => {
  const t = new Task(init({ edtl: 0 }), nexus, host());
  let done = false;
  void t.settled.then(() => (done = true));
  await Promise.resolve();
  assert.is(done, false);
  t.markSettled();
  await t.settled;
  await Promise.resolve();
  assert.is(done, true);
});

test('no R2T before the core asks; then R2Ts of MaxBurstLength, MaxOutstandingR2T at a time', async () => {
  const h = host({ maxBurstLength: 1024, maxOutstandingR2T: 2, initialR2T: true });
  const t = new Task(init({ edtl: 4096 }), nexus, h);
  assert.is(h.r2ts.length, 0);
  const p = t.cmd.dataOut(4096);
  assert.equal(h.r2ts.map((r) => [r.offset, r.length, r.r2tSN]), [[0, 1024, 0], [1024, 1024, 1]]);
  t.receiveDataOut(dout(h.r2ts[0]!.ttt, 0, 0, 512, false), [bytes(512)]);
  t.receiveDataOut(dout(h.r2ts[0]!.ttt, 1, 512, 512), [bytes(512, 512)]);
  assert.is(h.r2ts.length, 3); // first burst done → next R2T
  t.receiveDataOut(dout(h.r2ts[1]!.ttt, 0, 1024, 1024), [bytes(1024, 1024)]);
  t.receiveDataOut(dout(h.r2ts[2]!.ttt, 0, 2048, 1024), [bytes(1024, 2048)]);
  t.receiveDataOut(dout(h.r2ts[3]!.ttt, 0, 3072, 1024), [bytes(1024, 3072)]);
  assert.ok((await p).equals(bytes(4096)));
});

test('InitialR2T=No: unsolicited data up to FirstBurstLength, R2T for the rest', async () => {
  const h = host({ initialR2T: false, firstBurstLength: 1024, maxBurstLength: 4096 });
  const t = new Task(init({ edtl: 3000, final: false, immediateLength: 512 }), nexus, h);
  t.receiveImmediate([bytes(512)]);
  t.receiveDataOut(dout(0xffffffff, 0, 512, 512), [bytes(512, 512)]);
  assert.ok(t.unsolicitedComplete);
  const p = t.cmd.dataOut(3000);
  assert.equal(h.r2ts.map((r) => [r.offset, r.length]), [[1024, 1976]]);
  t.receiveDataOut(dout(h.r2ts[0]!.ttt, 0, 1024, 1976), [bytes(1976, 1024)]);
  assert.ok((await p).equals(bytes(3000)));
});

test('core asks less than EDTL: only that much is solicited, the rest of unsolicited data is ignored', async () => {
  const h = host({ initialR2T: false, firstBurstLength: 65536 });
  const t = new Task(init({ edtl: 10000, final: false, immediateLength: 4096 }), nexus, h);
  t.receiveImmediate([bytes(4096)]);
  const b = await t.cmd.dataOut(512);
  assert.ok(b.equals(bytes(512)));
  t.receiveDataOut(dout(0xffffffff, 0, 4096, 5904), [bytes(5904, 4096)]);
  assert.ok(t.unsolicitedComplete);
  assert.is(h.r2ts.length, 0);
});

test('core asks more than EDTL: gets EDTL bytes', async () => {
  const h = host();
  const t = new Task(init({ edtl: 512, immediateLength: 512 }), nexus, h);
  t.receiveImmediate([bytes(512)]);
  assert.is((await t.cmd.dataOut(1024)).length, 512);
  assert.is((await t.cmd.dataOut(512)).length, 0);
});

const BAD: readonly [string, (t: Task) => void, string][] = [
  ['unsolicited DataSN repeated', (t) => { t.receiveDataOut(dout(0xffffffff, 0, 0, 512, false), [bytes(512)]); t.receiveDataOut(dout(0xffffffff, 0, 512, 512), [bytes(512)]); }, 'ISCSI_DATASN'],
  ['unsolicited DataSN 27', (t) => t.receiveDataOut(dout(0xffffffff, 27, 0, 512), [bytes(512)]), 'ISCSI_DATASN'],
  ['unsolicited offset out of order', (t) => t.receiveDataOut(dout(0xffffffff, 0, 512, 512), [bytes(512)]), 'ISCSI_BUFFER_OFFSET'],
  ['unsolicited beyond FirstBurstLength', (t) => t.receiveDataOut(dout(0xffffffff, 0, 0, 2048), [bytes(2048)]), 'ISCSI_FIRST_BURST'],
  ['unknown TTT', (t) => t.receiveDataOut(dout(5, 0, 0, 512), [bytes(512)]), 'ISCSI_BAD_TTT'],
];
for (const [name, f, code] of BAD) {
  test(`Data-Out check: ${name} → ${code}`, () => {
    const t = new Task(init({ edtl: 1024, final: false }), nexus, host({ initialR2T: false, firstBurstLength: 1024 }));
    try {
      f(t);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, TaskError);
      assert.is((e as TaskError).code, code);
    }
  });
}

test('abort rejects a pending dataOut and later data is discarded', async () => {
  const h = host({ initialR2T: true });
  const t = new Task(init({ edtl: 1024 }), nexus, h);
  const p = t.cmd.dataOut(1024);
  t.abort();
  assert.ok(t.cmd.aborted);
  await p.then(
    () => assert.unreachable(),
    (e: unknown) => assert.is((e as TaskError).code, 'ISCSI_TASK_ABORTED'),
  );
  t.receiveDataOut(dout(h.r2ts[0]!.ttt, 0, 0, 1024), [bytes(1024)]); // no throw
});

test('ScsiCommand fields from the iSCSI command', () => {
  const t = new Task(init({ read: true, write: false, edtl: 4096, attr: 2, itt: 9 }), nexus, host());
  assert.is(t.cmd.dataInLength, 4096);
  assert.is(t.cmd.dataOutLength, 0);
  assert.is(t.cmd.attribute, 'ordered');
  assert.is(t.cmd.tag, 9);
});

test.run();
