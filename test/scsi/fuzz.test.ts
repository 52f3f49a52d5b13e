// Seeded fuzz: random CDBs for every opcode in the table (and random opcodes) into a small
// unit. Only GOOD / CHECK CONDITION / RESERVATION CONFLICT may come back; never a throw or hang.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';
import { COMMANDS, MMC_COMMANDS } from '../../src/scsi/commands';
import { cdbLengthOf } from '../../src/scsi/cdb';
import { LogicalUnit } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { MemStore, cmd, nexus } from './helpers';

/** xorshift32, deterministic per seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const ALLOWED = new Set<number>([Status.GOOD, Status.CHECK_CONDITION, Status.RESERVATION_CONFLICT]);

/** A random CDB: mostly a known opcode, mostly small field values so that some commands get past the range checks. */
function randomCdb(rand: () => number, opcodes: readonly number[]): Buffer {
  const byte = () => Math.floor(rand() * 256);
  const op = rand() < 0.9 ? opcodes[Math.floor(rand() * opcodes.length)]! : byte();
  const len = cdbLengthOf(op) ?? 16;
  const cdb = Buffer.alloc(16);
  cdb[0] = op;
  for (let j = 1; j < len; j++) {
    const r = rand();
    cdb[j] = r < 0.6 ? 0 : r < 0.85 ? byte() & 0x0f : byte();
  }
  if (rand() < 0.5) cdb[len - 1] = 0;
  return cdb;
}

test('random CDBs never throw or hang', async () => {
  const rand = rng(0x5eed);
  const byte = () => Math.floor(rand() * 256);
  const store = new MemStore('fuzz', 64 * 512);
  const lu = new LogicalUnit({ backstore: store, removable: true });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  const opcodes = [...new Set(COMMANDS.map((c) => c.opcode))];
  const counts = { good: 0, check: 0 };
  for (let i = 0; i < 6000; i++) {
    const cdb = randomCdb(rand, opcodes);
    const data = Buffer.alloc(Math.floor(rand() * 4096), byte());
    const c = cmd(cdb, { data, nexus: nexus(1 + Math.floor(rand() * 2)), dataIn: Math.floor(rand() * 8192) });
    const r = await Promise.race([
      port.execute(c),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`hang on ${cdb.toString('hex')}`)), 2000)),
    ]);
    assert.ok(ALLOWED.has(r.status), `status ${r.status} for ${cdb.toString('hex')}`);
    if (r.status === Status.CHECK_CONDITION) {
      assert.ok(r.sense && r.sense.length >= 8, 'sense present');
      counts.check++;
    } else counts.good++;
    // Reload the medium now and then so that medium commands get exercised.
    if (!lu.mediumLoaded && rand() < 0.2) lu.mediumLoaded = true;
  }
  assert.ok(counts.good > 500, `some GOOD results (${counts.good})`);
  assert.ok(counts.check > 500, `some CHECK CONDITION results (${counts.check})`);
});

test('random CDBs to a CD-ROM unit: only typed results, never HARDWARE ERROR', async () => {
  const rand = rng(0xcd05);
  const byte = () => Math.floor(rand() * 256);
  const lu = new LogicalUnit({ backstore: new MemStore('cd', 64 * 2048), deviceType: 'cdrom' });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  const opcodes = [...new Set(MMC_COMMANDS.map((c) => c.opcode))];
  const counts = { good: 0, check: 0 };
  for (let i = 0; i < 4000; i++) {
    const cdb = randomCdb(rand, opcodes);
    const c = cmd(cdb, { data: Buffer.alloc(Math.floor(rand() * 4096)), nexus: nexus(1 + Math.floor(rand() * 2)), dataIn: Math.floor(rand() * 8192) });
    const r = await port.execute(c);
    assert.ok(ALLOWED.has(r.status), `status ${r.status} for ${cdb.toString('hex')}`);
    if (r.status === Status.CHECK_CONDITION) {
      assert.ok((r.sense![2]! & 0x0f) !== 0x4, `HARDWARE ERROR for ${cdb.toString('hex')}`);
      counts.check++;
    } else counts.good++;
    if (lu.trayOpen && rand() < 0.2) lu.closeTray();
    if (lu.isPrevented() && rand() < 0.05) lu.setPrevent(nexus(1).id, false);
  }
  assert.ok(counts.good > 300, `some GOOD results (${counts.good})`);
  assert.ok(counts.check > 300, `some CHECK CONDITION results (${counts.check})`);
});

test.run();
