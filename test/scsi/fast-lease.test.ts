// LogicalUnit.fastPathGrant and the lease: when a fast path (the USB worker) may serve plain
// READ/WRITE for a nexus, and when the unit takes that back.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LogicalUnit, type FastPathLease } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { Asc } from '../../src/scsi/sense';
import { Status } from '../../src/scsi/types';
import { MemStore, cmd, nexus } from './helpers';

const A = nexus(1);
const B = nexus(2);

async function unit(opts: { readOnly?: boolean } = {}): Promise<{ lu: LogicalUnit; port: TargetPort }> {
  const lu = new LogicalUnit({ backstore: new MemStore('d', 64 * 512), ...opts });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  // The power-on unit attention, reported and gone.
  const r = await port.execute(cmd([0x00, 0, 0, 0, 0, 0], { nexus: A }));
  assert.is(r.status, Status.CHECK_CONDITION);
  return { lu, port };
}

function lease(holder = A.id): FastPathLease & { revoked: number } {
  const l = {
    holder,
    revoked: 0,
    revoke() {
      l.revoked++;
      return Promise.resolve();
    },
  };
  return l;
}

test('fastPathGrant: not for a nexus the unit has not met, nor while it has a unit attention', async () => {
  const lu = new LogicalUnit({ backstore: new MemStore('d', 64 * 512) });
  assert.is(lu.fastPathGrant(A, false), undefined, 'unknown nexus: its first command gets POWER ON');
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  await port.execute(cmd([0x12, 0, 0, 0, 36, 0], { nexus: A, dataIn: 36 })); // INQUIRY: no UA reported
  assert.is(lu.fastPathGrant(A, false), undefined, 'unit attention pending');
  await port.execute(cmd([0x00, 0, 0, 0, 0, 0], { nexus: A }));
  assert.equal(lu.fastPathGrant(A, false), { read: true, write: true, writeThrough: !lu.writeCacheEnabled });
});

test('fastPathGrant: reads only through a read-only map entry, a read-only unit or software write protect', async () => {
  const { lu } = await unit();
  assert.is(lu.fastPathGrant(A, true)?.write, false);
  lu.softwareWriteProtect = true;
  assert.is(lu.fastPathGrant(A, false)?.write, false);
  const ro = await unit({ readOnly: true });
  assert.is(ro.lu.fastPathGrant(A, false)?.write, false);
});

test('fastPathGrant: no lease under a reservation, PI, a sanitize condition or an unloaded medium', async () => {
  const { lu, port } = await unit();
  assert.ok(lu.fastPathGrant(A, false));
  await port.execute(cmd([0x16, 0, 0, 0, 0, 0], { nexus: A })); // RESERVE(6)
  assert.is(lu.fastPathGrant(A, false), undefined, 'SPC-2 reservation');
  await port.execute(cmd([0x17, 0, 0, 0, 0, 0], { nexus: A })); // RELEASE(6)
  assert.ok(lu.fastPathGrant(A, false));
  const prKey = Buffer.alloc(24);
  prKey.writeBigUInt64BE(0x1234n, 8);
  const register = Buffer.from([0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0]);
  const r = await port.execute(cmd(register, { nexus: A, data: prKey }));
  assert.is(r.status, Status.GOOD);
  assert.is(lu.fastPathGrant(A, false), undefined, 'a persistent registration');
  const { lu: lu2 } = await unit();
  lu2.mediumLoaded = false;
  assert.is(lu2.fastPathGrant(A, false), undefined, 'medium not loaded');
  lu2.mediumLoaded = true;
  lu2.protectionType = 1;
  assert.is(lu2.fastPathGrant(A, false), undefined, 'protection information');
});

test('lease: a command from another nexus waits for revoke() before it runs; the holder\'s own do not revoke', async () => {
  const { lu, port } = await unit();
  const l = lease();
  lu.grantLease(l);
  await port.execute(cmd([0x12, 0, 0, 0, 36, 0], { nexus: A, dataIn: 36 }));
  assert.is(l.revoked, 0, 'the holder');
  let released!: () => void;
  let ran = false;
  const slow: FastPathLease = { holder: A.id, revoke: () => new Promise<void>((r) => (released = r)) };
  lu.grantLease(slow);
  const other = port.execute(cmd([0x12, 0, 0, 0, 36, 0], { nexus: B, dataIn: 36 })).then((x) => {
    ran = true;
    return x;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.not.ok(ran, 'B waits for the fast path to stop');
  assert.is(lu.fastLease, undefined);
  released();
  assert.is((await other).status, Status.GOOD);
});

test('lease: revoked by a unit attention for the holder, nexus loss, and close; not granted while another nexus has a task', async () => {
  const { lu, port } = await unit();
  const l = lease();
  lu.grantLease(l);
  lu.raiseUa(B.id, Asc.CAPACITY_DATA_HAS_CHANGED);
  assert.is(l.revoked, 0, 'a UA for another nexus');
  lu.raiseUa(A.id, Asc.CAPACITY_DATA_HAS_CHANGED);
  assert.is(l.revoked, 1);
  const l2 = lease();
  lu.grantLease(l2);
  port.nexusLost(A);
  assert.is(l2.revoked, 1, 'nexus loss');
  const { lu: lu3 } = await unit();
  const l3 = lease();
  lu3.grantLease(l3);
  await lu3.close();
  assert.is(l3.revoked, 1, 'close');
  // Another nexus's command in flight: no grant until it is done.
  const { lu: lu4, port: p4 } = await unit();
  await p4.execute(cmd([0x00, 0, 0, 0, 0, 0], { nexus: B }));
  let hold!: () => void;
  const store = lu4.backstore as MemStore;
  const read = store.read.bind(store);
  store.read = (...a: Parameters<MemStore['read']>) => new Promise<void>((r) => (hold = r)).then(() => read(...a));
  const inFlight = p4.execute(cmd([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { nexus: B, dataIn: 512 }));
  await new Promise((r) => setTimeout(r, 10));
  assert.is(lu4.fastPathGrant(A, false), undefined, 'B has a READ in the task set');
  hold();
  await inFlight;
  assert.ok(lu4.fastPathGrant(A, false));
});

test.run();
