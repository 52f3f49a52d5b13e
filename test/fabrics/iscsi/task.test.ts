import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rfcDefaults, type Negotiated } from '../../../src/fabrics/iscsi/negotiation';
import type { DataOut } from '../../../src/fabrics/iscsi/pdu';
import { MAX_TASK_RECOVERIES, Task, TaskError, type TaskHost, type TaskInit } from '../../../src/fabrics/iscsi/task';
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

// ---- recovery (ERL >= 1 / 2)

test('§7.8 data digest error on a solicited Data-Out: a recovery R2T for exactly that range, data correct', async () => {
  const h = host({ maxBurstLength: 4096, maxOutstandingR2T: 1, initialR2T: true });
  const t = new Task(init({ edtl: 4096 }), nexus, h);
  const p = t.cmd.dataOut(4096);
  const src = bytes(4096);
  const ttt = h.r2ts[0]!.ttt;
  t.receiveDataOut(dout(ttt, 0, 0, 1024, false), [src.subarray(0, 1024)]);
  t.dataLost(dout(ttt, 1, 1024, 1024, false));
  t.receiveDataOut(dout(ttt, 2, 2048, 1024, false), [src.subarray(2048, 3072)]);
  assert.is(h.r2ts.length, 1, 'no recovery R2T while the R2T is still open');
  t.receiveDataOut(dout(ttt, 3, 3072, 1024), [src.subarray(3072)]);
  assert.equal(h.r2ts[1], { ttt: 101, r2tSN: 1, offset: 1024, length: 1024 });
  t.receiveDataOut(dout(101, 0, 1024, 1024), [src.subarray(1024, 2048)]);
  assert.ok((await p).equals(src));
});

test('ERL 1: a Data-Out lost to a header digest error shows as a DataSN/offset gap → recovery R2T', async () => {
  const h = host({ maxBurstLength: 4096, maxOutstandingR2T: 1, initialR2T: true, errorRecoveryLevel: 1 });
  const t = new Task(init({ edtl: 4096 }), nexus, h);
  const p = t.cmd.dataOut(4096);
  const src = bytes(4096);
  const ttt = h.r2ts[0]!.ttt;
  t.receiveDataOut(dout(ttt, 0, 0, 1024, false), [src.subarray(0, 1024)]);
  // DataSN 1 and 2 never arrived.
  t.receiveDataOut(dout(ttt, 3, 3072, 1024), [src.subarray(3072)]);
  assert.equal(h.r2ts[1], { ttt: 101, r2tSN: 1, offset: 1024, length: 2048 });
  t.receiveDataOut(dout(101, 0, 1024, 2048), [src.subarray(1024, 3072)]);
  assert.ok((await p).equals(src));
  // At ERL 0 the same gap is a sequence error.
  const z = host({ maxBurstLength: 4096, initialR2T: true });
  const u = new Task(init({ edtl: 4096 }), nexus, z);
  void u.cmd.dataOut(4096);
  assert.throws(() => u.receiveDataOut(dout(z.r2ts[0]!.ttt, 3, 3072, 1024), [src.subarray(3072)]), (e: unknown) => e instanceof TaskError && e.code === 'ISCSI_DATASN');
});

test('damaged unsolicited Data-Out: the hole is solicited once the core asks', async () => {
  const h = host({ initialR2T: false, firstBurstLength: 2048, maxBurstLength: 4096 });
  const t = new Task(init({ edtl: 2048, final: false }), nexus, h);
  const src = bytes(2048);
  t.receiveDataOut(dout(0xffffffff, 0, 0, 1024, false), [src.subarray(0, 1024)]);
  t.dataLost(dout(0xffffffff, 1, 1024, 1024));
  assert.ok(t.unsolicitedComplete, 'the damaged PDU still counts for the sequence');
  assert.is(h.r2ts.length, 0);
  const p = t.cmd.dataOut(2048);
  assert.equal(h.r2ts, [{ ttt: 100, r2tSN: 0, offset: 1024, length: 1024 }]);
  t.receiveDataOut(dout(100, 0, 1024, 1024), [src.subarray(1024)]);
  assert.ok((await p).equals(src));
});

test('a damaged Data-Out that does not fit its sequence, or too many of them, is a TaskError', () => {
  const h = host({ maxBurstLength: 1 << 20, initialR2T: true });
  const t = new Task(init({ edtl: 1 << 20 }), nexus, h);
  void t.cmd.dataOut(1 << 20).catch(() => undefined);
  const ttt = h.r2ts[0]!.ttt;
  assert.throws(() => t.dataLost(dout(ttt, 5, 0, 512)), (e: unknown) => e instanceof TaskError && e.code === 'ISCSI_DATASN');
  const u = new Task(init({ edtl: 1 << 20 }), nexus, h);
  void u.cmd.dataOut(1 << 20).catch(() => undefined);
  const ttt2 = h.r2ts[h.r2ts.length - 1]!.ttt;
  for (let i = 0; i < MAX_TASK_RECOVERIES; i++) u.dataLost(dout(ttt2, i, i * 512, 512, false));
  assert.throws(() => u.dataLost(dout(ttt2, MAX_TASK_RECOVERIES, MAX_TASK_RECOVERIES * 512, 512)), (e: unknown) => e instanceof TaskError && e.code === 'ISCSI_TOO_MANY_RECOVERIES');
});

test('§7.2.2 orphan + reassign: no R2T while orphaned; the new host gets R2Ts for what is missing', async () => {
  const a = host({ maxBurstLength: 2048, maxOutstandingR2T: 2, initialR2T: true });
  const t = new Task(init({ edtl: 4096 }), nexus, a);
  const p = t.cmd.dataOut(4096);
  const src = bytes(4096);
  assert.equal(a.r2ts.map((r) => r.offset), [0, 2048]);
  t.receiveDataOut(dout(a.r2ts[0]!.ttt, 0, 0, 2048), [src.subarray(0, 2048)]);
  t.receiveDataOut(dout(a.r2ts[1]!.ttt, 0, 2048, 512, false), [src.subarray(2048, 2560)]);
  t.orphan(1);
  assert.is(t.host, null);
  assert.is(t.orphanCid, 1);
  const b = host({ maxBurstLength: 2048, maxOutstandingR2T: 2, initialR2T: true });
  t.reassign(b);
  assert.equal(b.r2ts, [{ ttt: 100, r2tSN: 2, offset: 2560, length: 1536 }]);
  t.receiveDataOut(dout(100, 0, 2560, 1536), [src.subarray(2560)]);
  assert.ok((await p).equals(src));
});

test('§11.16.1 R2T SNACK resends open R2Ts by R2TSN; unknown runs are refused', () => {
  const h = host({ maxBurstLength: 1024, maxOutstandingR2T: 2, initialR2T: true });
  const t = new Task(init({ edtl: 4096 }), nexus, h);
  void t.cmd.dataOut(4096);
  assert.is(h.r2ts.length, 2);
  assert.ok(t.resendR2ts(1, 1));
  assert.equal(h.r2ts[2], h.r2ts[1]);
  assert.ok(t.resendR2ts(0, 0));
  assert.is(h.r2ts.length, 5);
  assert.not.ok(t.resendR2ts(7, 1));
});

test.run();
