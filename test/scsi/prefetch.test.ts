import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { Op } from '../../src/scsi/cdb';
import { cmd, rw10, rw16, sense } from './helpers';
import { fixture } from './setup';

// SBC-3 §5.9/§5.10: no cache of our own → GOOD (not CONDITION MET); range checked.
test('PRE-FETCH(10)/(16) in range → GOOD, IMMED and GROUP accepted', async () => {
  const { port } = await fixture();
  for (const c of [rw10(Op.PRE_FETCH_10, 0, 256), rw10(Op.PRE_FETCH_10, 1023, 1, 0x02), rw16(Op.PRE_FETCH_16, 0n, 1, 0x02)]) {
    const r = await port.execute(cmd(c));
    assert.is(r.status, Status.GOOD);
  }
  const g = rw10(Op.PRE_FETCH_10, 0, 1);
  g[6] = 3;
  assert.is((await port.execute(cmd(g))).status, Status.GOOD);
});

test('PRE-FETCH zero blocks: GOOD at the end, LBA OUT OF RANGE beyond it', async () => {
  const { port } = await fixture();
  assert.is((await port.execute(cmd(rw10(Op.PRE_FETCH_10, 1024, 0)))).status, Status.GOOD);
  for (const c of [rw10(Op.PRE_FETCH_10, 1025, 0), rw10(Op.PRE_FETCH_10, 1023, 2), rw16(Op.PRE_FETCH_16, 0xffffffffffffffffn, 1)]) {
    const r = await port.execute(cmd(c));
    assert.is(sense(r).asc, 0x2100);
  }
});

test('PRE-FETCH reserved bit in byte 1 → INVALID FIELD IN CDB', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd(rw10(Op.PRE_FETCH_10, 0, 1, 0x01)));
  assert.equal(sense(r).field, { cdb: true, byte: 1, bit: 0 });
});

test.run();
