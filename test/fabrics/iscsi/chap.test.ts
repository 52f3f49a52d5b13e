import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChapAuthenticator, ChapError, chapResponse, decodeChapBinary, encodeChapBinary } from '../../../src/fabrics/iscsi/chap';

// Vectors computed independently (Python hashlib): MD5(id || secret || challenge), RFC 1994 §2.
test('RFC 1994 response: id 1, "secretsecret", challenge 00..0f', () => {
  assert.is(chapResponse(1, 'secretsecret', Buffer.from(Array.from({ length: 16 }, (_, i) => i))).toString('hex'), '226dc576c33f04ff9c3a200ffe35f442');
});
test('RFC 1994 response: id 0xef, "tgtsecrettgt", challenge deadbeefcafe', () => {
  assert.is(chapResponse(0xef, 'tgtsecrettgt', Buffer.from('deadbeefcafe', 'hex')).toString('hex'), '6ff1f698d491a51de1c16a367650aab0');
});

test('§6.1 binary encodings: 0x hex and 0b base64', () => {
  assert.is(encodeChapBinary(Buffer.from([0xde, 0xad])), '0xdead');
  assert.equal([...decodeChapBinary('0xDEAD')], [0xde, 0xad]);
  assert.equal([...decodeChapBinary('0b3q0=')], [0xde, 0xad]);
  assert.throws(() => decodeChapBinary('dead'), (e: unknown) => e instanceof ChapError);
});

const fixedRandom = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (n === 1 ? 1 : i)));
const creds = { userid: 'user', password: 'secretsecret' };
const mutual = { ...creds, mutualUserid: 'tgt', mutualPassword: 'tgtsecrettgt' };
const m = (o: Record<string, string>) => new Map(Object.entries(o));

test('one-way CHAP: challenge, then correct response completes', () => {
  const a = new ChapAuthenticator(creds, fixedRandom);
  assert.equal(a.step(m({ CHAP_A: '7,5' })), [
    ['CHAP_A', '5'],
    ['CHAP_I', '1'],
    ['CHAP_C', '0x000102030405060708090a0b0c0d0e0f'],
  ]);
  assert.equal(a.step(m({ CHAP_N: 'user', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442' })), []);
  assert.ok(a.done);
});

const failures: readonly [string, ChapAuthenticator, Record<string, string>, string][] = [
  ['wrong response', new ChapAuthenticator(creds, fixedRandom), { CHAP_N: 'user', CHAP_R: '0x00000000000000000000000000000000' }, 'ISCSI_CHAP_RESPONSE'],
  ['wrong user', new ChapAuthenticator(creds, fixedRandom), { CHAP_N: 'eve', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442' }, 'ISCSI_CHAP_USER'],
  ['missing CHAP_R', new ChapAuthenticator(creds, fixedRandom), { CHAP_N: 'user' }, 'ISCSI_CHAP_MISSING'],
  ['mutual asked, none configured', new ChapAuthenticator(creds, fixedRandom), { CHAP_N: 'user', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442', CHAP_I: '2', CHAP_C: '0x1234' }, 'ISCSI_CHAP_NO_MUTUAL'],
  ['mutual configured, not asked', new ChapAuthenticator(mutual, fixedRandom), { CHAP_N: 'user', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442' }, 'ISCSI_CHAP_MUTUAL_REQUIRED'],
  ['reflected challenge', new ChapAuthenticator(mutual, fixedRandom), { CHAP_N: 'user', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442', CHAP_I: '1', CHAP_C: '0x000102030405060708090a0b0c0d0e0f' }, 'ISCSI_CHAP_REFLECTED'],
];
for (const [name, a, keys, code] of failures) {
  test(`CHAP failure: ${name} → ${code}`, () => {
    a.step(m({ CHAP_A: '5' }));
    try {
      a.step(m(keys));
      assert.unreachable();
    } catch (e) {
      assert.instance(e, ChapError);
      assert.is((e as ChapError).code, code);
    }
  });
}

test('CHAP_A without 5 fails', () => {
  assert.throws(() => new ChapAuthenticator(creds).step(m({ CHAP_A: '6,7' })), (e: unknown) => e instanceof ChapError && e.code === 'ISCSI_CHAP_ALGORITHM');
});

test('mutual CHAP: the target answers the initiator challenge with its own secret', () => {
  const a = new ChapAuthenticator(mutual, fixedRandom);
  a.step(m({ CHAP_A: '5' }));
  const out = a.step(m({ CHAP_N: 'user', CHAP_R: '0x226dc576c33f04ff9c3a200ffe35f442', CHAP_I: '239', CHAP_C: '0xdeadbeefcafe' }));
  assert.equal(out, [
    ['CHAP_N', 'tgt'],
    ['CHAP_R', '0x6ff1f698d491a51de1c16a367650aab0'],
  ]);
  assert.ok(a.done);
});

test.run();
