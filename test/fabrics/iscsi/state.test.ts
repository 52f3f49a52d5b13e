import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StateError, accepts, transition, type ConnState, type ConnEvent } from '../../../src/fabrics/iscsi/state';

const OK: readonly [ConnState, ConnEvent, ConnState][] = [
  ['free', 'login-pdu', 'login'],
  ['login', 'login-pdu', 'login'],
  ['login', 'login-complete', 'full-feature'],
  ['login', 'login-failed', 'closed'],
  ['full-feature', 'logout', 'logged-out'],
  ['full-feature', 'transport-closed', 'closed'],
  ['logged-out', 'transport-closed', 'closed'],
  ['closed', 'transport-closed', 'closed'],
  ['full-feature', 'connection-failed', 'cleanup-wait'], // ERL 2 (§8.2)
  ['cleanup-wait', 'cleanup-done', 'closed'],
];
for (const [from, ev, to] of OK) test(`${from} --${ev}--> ${to}`, () => assert.is(transition(from, ev), to));

const BAD: readonly [ConnState, ConnEvent][] = [
  ['free', 'login-complete'],
  ['free', 'logout'],
  ['full-feature', 'login-pdu'],
  ['full-feature', 'login-complete'],
  ['logged-out', 'logout'],
  ['closed', 'login-pdu'],
  ['login', 'connection-failed'], // no recovery before full feature phase
  ['logged-out', 'connection-failed'],
  ['cleanup-wait', 'login-pdu'],
];
for (const [from, ev] of BAD) {
  test(`${from} rejects ${ev}`, () => assert.throws(() => transition(from, ev), (e: unknown) => e instanceof StateError && e.code === 'ISCSI_BAD_STATE'));
}

test('before full feature phase only Login Requests are accepted (§8.1.3)', () => {
  for (const s of ['free', 'login'] as const) {
    assert.ok(accepts(s, 'login', false));
    for (const k of ['nop-out', 'scsi-command', 'text', 'data-out', 'logout', 'task-mgmt', 'snack'] as const) assert.not.ok(accepts(s, k, false), `${s} ${k}`);
  }
});

test('a discovery session carries only Text, NOP-Out and Logout (§4.3)', () => {
  assert.ok(accepts('full-feature', 'text', true));
  assert.ok(accepts('full-feature', 'nop-out', true));
  assert.ok(accepts('full-feature', 'logout', true));
  assert.not.ok(accepts('full-feature', 'scsi-command', true));
  assert.not.ok(accepts('full-feature', 'task-mgmt', true));
});

test('a normal session in full feature phase takes everything but Login', () => {
  assert.ok(accepts('full-feature', 'scsi-command', false));
  assert.ok(accepts('full-feature', 'data-out', false));
  assert.not.ok(accepts('full-feature', 'login', false));
  assert.not.ok(accepts('logged-out', 'nop-out', false));
  assert.not.ok(accepts('cleanup-wait', 'data-out', false));
});

test.run();
