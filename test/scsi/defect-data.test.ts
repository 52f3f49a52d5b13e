import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { cmd } from './helpers';
import { fixture } from './setup';

// SBC-3 §5.18: header 1 PLISTV GLISTV FORMAT, 2..3 DEFECT LIST LENGTH = 0.
test('READ DEFECT DATA(10): empty lists, requested lists and format echoed', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd([0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 0xff, 0], { dataIn: 255 }));
  assert.is(r.status, Status.GOOD);
  assert.equal([...r.dataIn!], [0, 0x1d, 0, 0]);
  const r2 = await port.execute(cmd([0x37, 0, 0x08 | 0x03, 0, 0, 0, 0, 0, 2, 0]));
  assert.equal([...r2.dataIn!], [0, 0x0b]);
});

// SBC-3 §5.19: 8-byte header, 4..7 DEFECT LIST LENGTH.
test('READ DEFECT DATA(12): 8-byte header with zero length', async () => {
  const { port } = await fixture();
  const r = await port.execute(cmd([0xb7, 0x10 | 0x04, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], { dataIn: 256 }));
  assert.is(r.status, Status.GOOD);
  assert.equal([...r.dataIn!], [0, 0x14, 0, 0, 0, 0, 0, 0]);
});

test.run();
