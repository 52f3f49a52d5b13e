import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { MemStore, cmd, sense } from './helpers';
import { fixture } from './setup';

/** A store that reports 64 KiB extents, mapped only where written. */
class ExtentStore extends MemStore {
  readonly mappedExtents = new Set<number>();
  override async write(data: Buffer, position: number): Promise<void> {
    await super.write(data, position);
    for (let p = position; p < position + data.length; p += 65536) this.mappedExtents.add(Math.floor(p / 65536));
  }
  override async mapping(position: number, length: number): Promise<{ mapped: boolean; length: number }> {
    const first = Math.floor(position / 65536);
    const mapped = this.mappedExtents.has(first);
    let i = first + 1;
    while (i * 65536 < position + length && this.mappedExtents.has(i) === mapped) i++;
    return { mapped, length: Math.min(position + length, i * 65536) - position };
  }
}

function gls(lba: bigint, alloc: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x9e;
  b[1] = 0x12;
  b.writeBigUInt64BE(lba, 2);
  b.writeUInt32BE(alloc, 10);
  return b;
}

async function thinFixture() {
  const store = new ExtentStore('thin', 1024 * 512);
  const lu = new LogicalUnit({ backstore: store });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  return { store, port };
}

test('GET LBA STATUS: descriptors of mapped and deallocated extents from the backstore', async () => {
  const { store, port } = await thinFixture();
  await store.write(Buffer.alloc(512, 1), 65536 + 512); // maps extent 1 (blocks 128..255)
  const r = await port.execute(cmd(gls(0n, 1024), { dataIn: 1024 }));
  assert.is(r.status, Status.GOOD);
  const d = r.dataIn!;
  assert.is(d.readUInt32BE(0), 4 + 3 * 16);
  const desc = (i: number) => [Number(d.readBigUInt64BE(8 + i * 16)), d.readUInt32BE(16 + i * 16), d[20 + i * 16]];
  assert.equal(desc(0), [0, 128, 1]);
  assert.equal(desc(1), [128, 128, 0]);
  assert.equal(desc(2), [256, 768, 1]);
});

test('GET LBA STATUS: first descriptor starts at the requested LBA; allocation length truncates', async () => {
  const { port } = await thinFixture();
  const r = await port.execute(cmd(gls(130n, 24), { dataIn: 24 }));
  assert.is(r.dataIn!.length, 24);
  assert.is(Number(r.dataIn!.readBigUInt64BE(8)), 130);
  assert.is(r.dataIn!.readUInt32BE(16), 1024 - 130);
});

test('GET LBA STATUS beyond the last LBA → LBA OUT OF RANGE; not offered on a full unit', async () => {
  const { port } = await thinFixture();
  assert.is(sense(await port.execute(cmd(gls(1024n, 24)))).asc, 0x2100);
  const full = await fixture({ thinProvisioning: false });
  assert.is(sense(await full.port.execute(cmd(gls(0n, 24)))).asc, 0x2000);
});

test.run();
