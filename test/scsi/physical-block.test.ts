import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { MemStore, cmd } from './helpers';
import { fixture } from './setup';

const rc16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
const b0 = [0x12, 1, 0xb0, 0, 255, 0];

test('READ CAPACITY(16) LBPPBE and VPD B0 granularities follow physicalBlockSize (SBC-3 §5.16.2, §6.6.4)', async () => {
  for (const [logical, physical, exp] of [[512, 4096, 3], [512, 1024, 1], [4096, 4096, 0], [512, undefined, 0]] as const) {
    const { port } = await fixture({ blockSize: logical, ...(physical ? { physicalBlockSize: physical } : {}) }, 1024 * 4096);
    let r = await port.execute(cmd(rc16));
    assert.is(r.dataIn![13]! & 0x0f, exp, `${logical}/${physical}`);
    r = await port.execute(cmd(b0));
    assert.is(r.dataIn!.readUInt16BE(6), 1 << exp, 'OPTIMAL TRANSFER LENGTH GRANULARITY');
    assert.is(r.dataIn!.readUInt32BE(28), 1 << exp, 'OPTIMAL UNMAP GRANULARITY');
  }
});

test('physicalBlockSize must be blockSize times a power of two', () => {
  for (const bad of [256, 1536, 3000]) {
    assert.throws(() => new LogicalUnit({ backstore: new MemStore('x', 64 * 512), physicalBlockSize: bad }), /physicalBlockSize/);
  }
});

test('WRITE SAME(16) NDOB writes zeros or unmaps without a Data-Out buffer (SBC-4 §5.49)', async () => {
  const { port, store } = await fixture({ physicalBlockSize: 4096 });
  store.data.fill(0xff);
  const ws = (flags: number, lba: number, n: number) => {
    const c = Buffer.alloc(16);
    c[0] = 0x93;
    c[1] = flags;
    c.writeBigUInt64BE(BigInt(lba), 2);
    c.writeUInt32BE(n, 10);
    return c;
  };
  let r = await port.execute(cmd(ws(0x01, 1, 3)));
  assert.is(r.status, 0);
  assert.is(store.data[512], 0);
  assert.is(store.data[4 * 512 - 1], 0);
  assert.is(store.data[4 * 512], 0xff);
  r = await port.execute(cmd(ws(0x09, 8, 8)));
  assert.is(r.status, 0);
  assert.equal(store.unmaps.at(-1), { position: 8 * 512, length: 8 * 512 });
  r = await port.execute(cmd(ws(0x01, 0, 1), { data: Buffer.alloc(512) }));
  assert.is(r.status, 2, 'a Data-Out buffer with NDOB=1 is an error');
});

test.run();
