import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c, digestBytes } from '../../../src/fabrics/iscsi/crc32c';
import { FramingError, PduFramer, type FramerEvent } from '../../../src/fabrics/iscsi/framer';
import { randomBytes, rng } from './rng';

function pdu(opcode: number, data: Buffer, ahsWords = 0, digests = false): Buffer {
  const bhs = Buffer.alloc(48);
  bhs[0] = opcode;
  bhs[4] = ahsWords;
  bhs.writeUIntBE(data.length, 5, 3);
  const ahs = Buffer.alloc(ahsWords * 4, 0xaa);
  const pad = Buffer.alloc((4 - (data.length & 3)) & 3);
  const parts: Buffer[] = [bhs, ahs];
  if (digests) parts.push(digestBytes(crc32c(bhs, ahs)));
  parts.push(data, pad);
  if (digests && data.length > 0) parts.push(digestBytes(crc32c(data, pad)));
  return Buffer.concat(parts);
}

function drain(f: PduFramer): FramerEvent[] {
  const out: FramerEvent[] = [];
  for (let e = f.next(); e !== null; e = f.next()) out.push(e);
  return out;
}

test('one PDU in one chunk: BHS and data are views, padding dropped', () => {
  const f = new PduFramer();
  const wire = pdu(1, Buffer.from('hello'));
  f.push(wire);
  const [e] = drain(f);
  assert.ok(e && e.type === 'pdu');
  if (e?.type !== 'pdu') return;
  assert.is(e.bhs.buffer, wire.buffer); // zero-copy
  assert.is(e.dataLength, 5);
  assert.is(Buffer.concat(e.data as Buffer[]).toString(), 'hello');
  assert.is(f.buffered, 0);
});

test('split at every byte boundary gives the same PDUs', () => {
  const a = pdu(1, Buffer.from('0123456789abcdef0123'), 1);
  const b = pdu(5, Buffer.alloc(0));
  const c = pdu(4, Buffer.from('x'));
  const wire = Buffer.concat([a, b, c]);
  for (let cut = 1; cut < wire.length; cut++) {
    const f = new PduFramer();
    f.push(wire.subarray(0, cut));
    const ev = drain(f);
    f.push(wire.subarray(cut));
    ev.push(...drain(f));
    assert.is(ev.length, 3, `cut ${cut}`);
    const [x, y, z] = ev;
    if (x?.type !== 'pdu' || y?.type !== 'pdu' || z?.type !== 'pdu') return assert.unreachable();
    assert.is(Buffer.concat(x.data as Buffer[]).toString(), '0123456789abcdef0123');
    assert.is(x.ahs.length, 4);
    assert.is(y.dataLength, 0);
    assert.is(z.bhs[0], 4);
  }
});

test('byte-by-byte feeding works and never copies the data segment', () => {
  const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
  const wire = pdu(1, payload);
  const f = new PduFramer();
  const ev: FramerEvent[] = [];
  for (let i = 0; i < wire.length; i++) {
    f.push(wire.subarray(i, i + 1));
    ev.push(...drain(f));
  }
  assert.is(ev.length, 1);
  const e = ev[0];
  if (e?.type !== 'pdu') return assert.unreachable();
  assert.is(e.data.length, 300); // 300 one-byte views
  assert.ok(Buffer.concat(e.data as Buffer[]).equals(payload));
});

test('digests are verified when enabled', () => {
  const f = new PduFramer();
  f.headerDigest = f.dataDigest = true;
  f.push(pdu(1, Buffer.from('abc'), 0, true));
  const [e] = drain(f);
  assert.is(e?.type, 'pdu');
});

test('header digest mismatch is a FramingError (connection must drop)', () => {
  const f = new PduFramer();
  f.headerDigest = true;
  const w = pdu(1, Buffer.alloc(0), 0, true);
  w[48] = w[48]! ^ 1;
  f.push(w);
  assert.throws(() => f.next(), (e: unknown) => e instanceof FramingError && e.code === 'ISCSI_HEADER_DIGEST');
});

test('data digest mismatch is reported, stream stays in sync', () => {
  const f = new PduFramer();
  f.headerDigest = f.dataDigest = true;
  const bad = pdu(1, Buffer.from('abcd'), 0, true);
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
  f.push(Buffer.concat([bad, pdu(0, Buffer.alloc(0), 0, true)]));
  const ev = drain(f);
  assert.equal(ev.map((e) => e.type), ['data-digest-error', 'pdu']);
});

test('data segment over MaxRecvDataSegmentLength is skipped without buffering', () => {
  const f = new PduFramer();
  f.maxDataSegmentLength = 512;
  const big = pdu(1, Buffer.alloc(4096, 1));
  const next = pdu(0, Buffer.from('ok'));
  f.push(big.subarray(0, 100));
  const e1 = drain(f);
  assert.equal(e1.map((e) => e.type), ['oversized']);
  assert.is(f.buffered, 0);
  f.push(Buffer.concat([big.subarray(100), next]));
  const e2 = drain(f);
  assert.equal(e2.map((e) => e.type), ['pdu']);
  if (e2[0]?.type === 'pdu') assert.is(Buffer.concat(e2[0].data as Buffer[]).toString(), 'ok');
});

test('fuzz: random streams only produce events or FramingError (seeded)', () => {
  const next = rng(42);
  for (let i = 0; i < 300; i++) {
    const f = new PduFramer();
    f.maxDataSegmentLength = 1024;
    f.headerDigest = next() < 0.3;
    f.dataDigest = next() < 0.3;
    try {
      for (let j = 0; j < 20; j++) {
        f.push(randomBytes(next, Math.floor(next() * 200)));
        drain(f);
      }
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
    }
  }
});

test('§7.8 ERL >= 1: a header digest error skips the PDU by its claimed length and goes on', () => {
  const f = new PduFramer();
  f.headerDigest = f.dataDigest = true;
  f.headerDigestRecovery = true;
  const bad = pdu(1, Buffer.from('damaged'), 0, true);
  bad[48] = bad[48]! ^ 1; // header digest
  f.push(Buffer.concat([bad, pdu(2, Buffer.from('next'), 0, true)]));
  const ev = drain(f);
  assert.equal(ev.map((e) => e.type), ['header-digest-error', 'pdu']);
  assert.is(ev[1]!.type === 'pdu' ? ev[1]!.bhs[0] : -1, 2);
});

test('header digest errors in a row (stream out of sync) still throw; at ERL 0 the first one does', () => {
  const bad = pdu(1, Buffer.alloc(4), 0, true);
  bad[48] = bad[48]! ^ 1;
  const f = new PduFramer();
  f.headerDigest = f.dataDigest = true;
  f.headerDigestRecovery = true;
  f.push(Buffer.concat([bad, bad, bad]));
  assert.throws(() => drain(f), (e: unknown) => e instanceof FramingError && e.code === 'ISCSI_HEADER_DIGEST');
  const g = new PduFramer();
  g.headerDigest = g.dataDigest = true;
  g.push(bad);
  assert.throws(() => drain(g), (e: unknown) => e instanceof FramingError);
});

test.run();
