import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chapResponse } from '../../../src/fabrics/iscsi/chap';
import { LoginMachine, type LoginContext } from '../../../src/fabrics/iscsi/login';
import { LoginStatus, type LoginRequest } from '../../../src/fabrics/iscsi/pdu';
import type { TextPair } from '../../../src/fabrics/iscsi/text';
import type { IscsiTargetDef } from '../../../src/fabrics/iscsi/types';
import type { ScsiPort } from '../../../src/scsi/types';

const port: ScsiPort = { execute: async () => ({ status: 0 }), taskManagement: async () => 'function-complete', nexusLost: () => undefined };
const IQN = 'iqn.2024-01.org.lunbox:t1';
const INI = 'iqn.1994-05.com.example:host';
function target(over: Partial<IscsiTargetDef> = {}): IscsiTargetDef {
  return { iqn: IQN, tpgt: 1, portals: [], demoMode: true, acls: [], relativePortId: 1, port, ...over };
}
function ctx(t: IscsiTargetDef, discoveryAuth?: { userid: string; password: string }): LoginContext {
  return { lookupTarget: (n) => (n.toLowerCase() === t.iqn.toLowerCase() ? t : undefined), discoveryAuth, random: (n) => Buffer.alloc(n, 7) };
}
function req(csg: number, nsg: number, transit: boolean, over: Partial<LoginRequest> = {}): LoginRequest {
  return { kind: 'login', opcode: 3, immediate: true, final: transit, totalAhsLength: 0, dataSegmentLength: 0, itt: 1, transit, continue: false, csg, nsg, versionMax: 0, versionMin: 0, isid: Buffer.from('800000000001', 'hex'), tsih: 0, cid: 0, cmdSN: 10, expStatSN: 0, ...over };
}
const first: TextPair[] = [
  ['InitiatorName', INI],
  ['TargetName', IQN],
  ['SessionType', 'Normal'],
  ['AuthMethod', 'None'],
];

test('no auth: security → operational → full feature, TPGT in the first response', () => {
  const m = new LoginMachine(ctx(target()));
  const s1 = m.process(req(0, 1, true), first);
  assert.is(s1.kind, 'respond');
  if (s1.kind !== 'respond') return;
  assert.ok(s1.transit);
  assert.equal(s1.pairs, [
    ['TargetPortalGroupTag', '1'],
    ['AuthMethod', 'None'],
  ]);
  const s2 = m.process(req(1, 3, true), [
    ['MaxBurstLength', '65536'],
    ['MaxRecvDataSegmentLength', '131072'],
  ]);
  assert.is(s2.kind, 'complete');
  if (s2.kind !== 'complete') return;
  assert.ok(s2.pairs.some(([k]) => k === 'MaxRecvDataSegmentLength'));
  assert.is(m.negotiated.maxBurstLength, 65536);
  assert.is(m.negotiated.initiatorMaxRecvDataSegmentLength, 131072);
  assert.ok(m.declaredMrdsl);
});

test('operational stage first (no security stage) when no auth is configured', () => {
  const m = new LoginMachine(ctx(target()));
  const s = m.process(req(1, 3, true), first.filter(([k]) => k !== 'AuthMethod'));
  assert.is(s.kind, 'complete');
});

test('T=0 keeps the stage; the target does not transit on its own', () => {
  const m = new LoginMachine(ctx(target()));
  const s = m.process(req(0, 1, false), first);
  assert.ok(s.kind === 'respond' && !s.transit && s.csg === 0);
});

const STATUS: readonly [string, () => [LoginMachine, LoginRequest, TextPair[]], number][] = [
  ['unsupported version → 0x0205', () => [new LoginMachine(ctx(target())), req(0, 1, true, { versionMin: 1 }), first], LoginStatus.UNSUPPORTED_VERSION],
  ['missing InitiatorName → 0x0207', () => [new LoginMachine(ctx(target())), req(0, 1, true), [['TargetName', IQN]]], LoginStatus.MISSING_PARAMETER],
  ['missing TargetName → 0x0207', () => [new LoginMachine(ctx(target())), req(0, 1, true), [['InitiatorName', INI]]], LoginStatus.MISSING_PARAMETER],
  ['unknown target → 0x0203', () => [new LoginMachine(ctx(target())), req(0, 1, true), [['InitiatorName', INI], ['TargetName', 'iqn.nope:x']]], LoginStatus.NOT_FOUND],
  ['not in ACL → 0x0202', () => [new LoginMachine(ctx(target({ demoMode: false, acls: [{ initiator: 'iqn.other:x' }] }))), req(0, 1, true), first], LoginStatus.AUTHORIZATION_FAILURE],
  ['CHAP required, initiator offers None → 0x0201', () => [new LoginMachine(ctx(target({ auth: { userid: 'u', password: 'p' } }))), req(0, 1, true), first], LoginStatus.AUTH_FAILURE],
  ['CHAP required, security stage skipped → 0x0201', () => [new LoginMachine(ctx(target({ auth: { userid: 'u', password: 'p' } }))), req(1, 3, true), first.slice(0, 3)], LoginStatus.AUTH_FAILURE],
  ['bad SessionType → 0x0209', () => [new LoginMachine(ctx(target())), req(0, 1, true), [['InitiatorName', INI], ['SessionType', 'Weird']]], LoginStatus.SESSION_TYPE_NOT_SUPPORTED],
  ['key twice → 0x0200', () => [new LoginMachine(ctx(target())), req(0, 1, true), [...first, ['AuthMethod', 'None']]], LoginStatus.INITIATOR_ERROR],
  ['NSG 2 → 0x0200', () => [new LoginMachine(ctx(target())), req(0, 2, true), first], LoginStatus.INITIATOR_ERROR],
];
for (const [name, setup, status] of STATUS) {
  test(name, () => {
    const [m, r, p] = setup();
    const s = m.process(r, p);
    assert.is(s.kind, 'fail');
    if (s.kind === 'fail') assert.is(s.status, status);
  });
}

test('per-ACL credentials override the target credentials', () => {
  const t = target({ auth: { userid: 'all', password: 'allsecret12' }, acls: [{ initiator: INI, auth: { userid: 'me', password: 'mysecret1234' } }] });
  const m = new LoginMachine(ctx(t));
  const s1 = m.process(req(0, 1, false), [...first.slice(0, 3), ['AuthMethod', 'CHAP,None']]);
  assert.ok(s1.kind === 'respond' && s1.pairs.some(([k, v]) => k === 'AuthMethod' && v === 'CHAP'));
  const s2 = m.process(req(0, 1, false), [['CHAP_A', '5']]);
  assert.ok(s2.kind === 'respond');
  if (s2.kind !== 'respond') return;
  const c = Buffer.from(s2.pairs.find(([k]) => k === 'CHAP_C')![1].slice(2), 'hex');
  const id = Number(s2.pairs.find(([k]) => k === 'CHAP_I')![1]);
  const s3 = m.process(req(0, 1, true), [
    ['CHAP_N', 'me'],
    ['CHAP_R', '0x' + chapResponse(id, 'mysecret1234', c).toString('hex')],
  ]);
  assert.ok(s3.kind === 'respond' && s3.transit && s3.nsg === 1);
  assert.is(m.process(req(1, 3, true), []).kind, 'complete');
});

test('discovery session with discovery CHAP', () => {
  const m = new LoginMachine(ctx(target(), { userid: 'd', password: 'discsecret12' }));
  const s1 = m.process(req(0, 1, false), [
    ['InitiatorName', INI],
    ['SessionType', 'Discovery'],
    ['AuthMethod', 'None'],
  ]);
  assert.ok(s1.kind === 'fail' && s1.status === LoginStatus.AUTH_FAILURE);
});

test('discovery session without auth; session keys Irrelevant', () => {
  const m = new LoginMachine(ctx(target()));
  m.process(req(0, 1, true), [
    ['InitiatorName', INI],
    ['SessionType', 'Discovery'],
    ['AuthMethod', 'None'],
  ]);
  const s = m.process(req(1, 3, true), [['MaxBurstLength', '4096']]);
  assert.ok(s.kind === 'complete' && s.pairs.some(([k, v]) => k === 'MaxBurstLength' && v === 'Irrelevant'));
  assert.is(m.sessionType, 'Discovery');
});

test('unknown key in operational stage → NotUnderstood', () => {
  const m = new LoginMachine(ctx(target()));
  m.process(req(0, 1, true), first);
  const s = m.process(req(1, 1, false), [['X-vendor.key', '1']]);
  assert.ok(s.kind === 'respond' && s.pairs.some(([k, v]) => k === 'X-vendor.key' && v === 'NotUnderstood'));
});

test.run();
