import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_TARGET_PARAMS, Negotiator, ParamError, parseNumber, resolveTargetParams, rfcDefaults } from '../../../src/fabrics/iscsi/negotiation';

const ours = resolveTargetParams({ maxBurstLength: 262144, firstBurstLength: 65536, maxOutstandingR2T: 4, headerDigest: ['None', 'CRC32C'], dataDigest: ['None'] });

// (key, offered, expected answer, field, expected value) — RFC 7143 §13 result functions.
const TABLE: readonly [string, string, string | null, string, unknown][] = [
  ['HeaderDigest', 'CRC32C,None', 'CRC32C', 'headerDigest', true], // §13.1 first offered that we support
  ['HeaderDigest', 'None,CRC32C', 'None', 'headerDigest', false],
  ['DataDigest', 'CRC32C', 'Reject', 'dataDigest', false], // we only allow None
  ['HeaderDigest', 'Foo,CRC32C', 'CRC32C', 'headerDigest', true], // unknown values skipped
  ['MaxConnections', '16', '8', 'maxConnections', 8], // §13.2 min (MC/S: 8 by default)
  ['MaxConnections', '1', '1', 'maxConnections', 1],
  ['InitialR2T', 'Yes', 'Yes', 'initialR2T', true], // §13.10 OR
  ['InitialR2T', 'No', 'No', 'initialR2T', false],
  ['ImmediateData', 'Yes', 'Yes', 'immediateData', true], // §13.11 AND
  ['ImmediateData', 'No', 'No', 'immediateData', false],
  ['MaxRecvDataSegmentLength', '65536', null, 'initiatorMaxRecvDataSegmentLength', 65536], // §13.12 declarative
  ['MaxBurstLength', '16776192', '262144', 'maxBurstLength', 262144], // §13.13 min
  ['FirstBurstLength', '4096', '4096', 'firstBurstLength', 4096], // §13.14 min
  ['DefaultTime2Wait', '0', '2', 'defaultTime2Wait', 2], // §13.15 max
  ['DefaultTime2Retain', '60', '20', 'defaultTime2Retain', 20], // §13.16 min
  ['DefaultTime2Retain', '0', '0', 'defaultTime2Retain', 0],
  ['MaxOutstandingR2T', '1', '1', 'maxOutstandingR2T', 1], // §13.17 min
  ['DataPDUInOrder', 'No', 'Yes', 'dataPDUInOrder', true], // §13.18 OR, we need in-order
  ['DataSequenceInOrder', 'Yes', 'Yes', 'dataSequenceInOrder', true],
  ['ErrorRecoveryLevel', '2', '0', 'errorRecoveryLevel', 0], // §13.20 min
  ['MaxBurstLength', '0x1000', '4096', 'maxBurstLength', 4096], // hex numbers
];
for (const [key, offered, answer, field, value] of TABLE) {
  test(`${key}=${offered} → ${answer ?? '(declarative, no answer)'}`, () => {
    const n = new Negotiator(ours, false);
    const r = n.handle(key, offered);
    if (answer === null) assert.is(r, null);
    else assert.equal(r, [key, answer]);
    assert.is((n.values as unknown as Record<string, unknown>)[field], value);
  });
}

const REJECTS: readonly [string, string][] = [
  ['MaxBurstLength', '511'],
  ['MaxBurstLength', '16777216'],
  ['MaxBurstLength', 'abc'],
  ['MaxBurstLength', '-1'],
  ['MaxRecvDataSegmentLength', '100'],
  ['InitialR2T', 'maybe'],
  ['ErrorRecoveryLevel', '3'],
  ['DefaultTime2Wait', '3601'],
  ['TargetPortalGroupTag', '1'],
];
for (const [key, v] of REJECTS) {
  test(`bad value ${key}=${v} → Reject`, () => {
    assert.equal(new Negotiator(ours, false).handle(key, v), [key, 'Reject']);
  });
}

test('unknown and X- keys → NotUnderstood', () => {
  const n = new Negotiator(ours, false);
  assert.equal(n.handle('FooBar', '1'), ['FooBar', 'NotUnderstood']);
  assert.equal(n.handle('X-com.example.thing', 'y'), ['X-com.example.thing', 'NotUnderstood']);
});

test('markers (removed by RFC 7143) are answered No / Irrelevant', () => {
  const n = new Negotiator(ours, false);
  assert.equal(n.handle('IFMarker', 'Yes'), ['IFMarker', 'No']);
  assert.equal(n.handle('OFMarkInt', '2048~8192'), ['OFMarkInt', 'Irrelevant']);
});

test('session keys are Irrelevant in a discovery session', () => {
  const n = new Negotiator(ours, true);
  assert.equal(n.handle('MaxBurstLength', '4096'), ['MaxBurstLength', 'Irrelevant']);
  assert.equal(n.handle('HeaderDigest', 'None'), ['HeaderDigest', 'None']);
});

test('a key offered twice is reported as duplicate', () => {
  const n = new Negotiator(ours, false);
  n.handle('MaxBurstLength', '4096');
  assert.is(n.handle('MaxBurstLength', '4096'), 'duplicate');
});

test('declarations: our MaxRecvDataSegmentLength once', () => {
  const n = new Negotiator(ours, false);
  assert.equal(n.declarations(), [['MaxRecvDataSegmentLength', String(ours.maxRecvDataSegmentLength)]]);
  assert.equal(n.declarations(), []);
});

test('FirstBurstLength is clamped to MaxBurstLength in the result (§13.14)', () => {
  const n = new Negotiator(resolveTargetParams({ firstBurstLength: 262144, maxBurstLength: 262144 }), false);
  n.handle('MaxBurstLength', '8192');
  n.handle('FirstBurstLength', '65536');
  assert.is(n.result().firstBurstLength, 8192);
});

test('RFC 7143 §13 defaults', () => {
  const d = rfcDefaults();
  assert.is(d.initialR2T, true);
  assert.is(d.immediateData, true);
  assert.is(d.maxBurstLength, 262144);
  assert.is(d.firstBurstLength, 65536);
  assert.is(d.initiatorMaxRecvDataSegmentLength, 8192);
  assert.is(d.maxOutstandingR2T, 1);
  assert.is(d.defaultTime2Retain, 20);
});

test('resolveTargetParams fills defaults and names a bad field', () => {
  assert.is(resolveTargetParams(undefined).maxRecvDataSegmentLength, DEFAULT_TARGET_PARAMS.maxRecvDataSegmentLength);
  assert.throws(() => resolveTargetParams({ maxBurstLength: 100 }), (e: unknown) => e instanceof ParamError && /maxBurstLength/.test(e.message));
  assert.throws(() => resolveTargetParams({ headerDigest: [] }), (e: unknown) => e instanceof ParamError && /headerDigest/.test(e.message));
});

test('parseNumber: decimal and hex only', () => {
  assert.is(parseNumber('8192'), 8192);
  assert.is(parseNumber('0x2000'), 8192);
  assert.is(parseNumber('1e3'), null);
  assert.is(parseNumber(''), null);
  assert.is(parseNumber(' 1'), null);
});

test('§13.20 ErrorRecoveryLevel: the lower of both sides, once the target allows more than 0', () => {
  const erl2 = resolveTargetParams({ errorRecoveryLevel: 2 });
  for (const [offered, answer] of [['0', '0'], ['1', '1'], ['2', '2']] as const) {
    assert.equal(new Negotiator(erl2, false).handle('ErrorRecoveryLevel', offered), ['ErrorRecoveryLevel', answer]);
  }
  assert.equal(new Negotiator(resolveTargetParams({ errorRecoveryLevel: 1 }), false).handle('ErrorRecoveryLevel', '2'), ['ErrorRecoveryLevel', '1']);
  assert.is(DEFAULT_TARGET_PARAMS.errorRecoveryLevel, 0);
  assert.is(DEFAULT_TARGET_PARAMS.maxConnections, 8);
});

test.run();
