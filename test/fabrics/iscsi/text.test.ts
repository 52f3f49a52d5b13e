import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TextError, decodeText, encodeText } from '../../../src/fabrics/iscsi/text';
import { randomBytes, rng } from './rng';

test('§6.1 decodes NUL-terminated pairs in order, values may contain "="', () => {
  const b = Buffer.from('InitiatorName=iqn.1994-05.com.example:a\0SessionType=Normal\0X-odd=a=b\0');
  assert.equal(decodeText(b), [
    ['InitiatorName', 'iqn.1994-05.com.example:a'],
    ['SessionType', 'Normal'],
    ['X-odd', 'a=b'],
  ]);
});

test('several views are joined', () => {
  assert.equal(decodeText([Buffer.from('Max'), Buffer.from('Connections=1\0')]), [['MaxConnections', '1']]);
});

test('trailing NUL padding is accepted, empty value allowed', () => {
  assert.equal(decodeText(Buffer.from('SendTargets=\0\0\0\0')), [['SendTargets', '']]);
});

test('round trip', () => {
  const pairs = [
    ['HeaderDigest', 'None,CRC32C'],
    ['CHAP_C', '0x0011'],
  ] as const;
  assert.equal(decodeText(encodeText(pairs)), pairs);
});

const BAD: readonly [string, string, string][] = [
  ['unterminated', 'A=b', 'ISCSI_TEXT_UNTERMINATED'],
  ['no equals', 'Abc\0', 'ISCSI_TEXT_NO_EQUALS'],
  ['empty key', '=x\0', 'ISCSI_TEXT_BAD_KEY'],
  ['bad key char', 'A b=x\0', 'ISCSI_TEXT_BAD_KEY'],
  ['key too long', 'K'.repeat(64) + '=x\0', 'ISCSI_TEXT_BAD_KEY'],
  ['value too long', 'K=' + 'v'.repeat(8193) + '\0', 'ISCSI_TEXT_VALUE_TOO_LONG'],
  ['empty pair mid-text', 'A=b\0\0C=d\0', 'ISCSI_TEXT_EMPTY_PAIR'],
];
for (const [name, text, code] of BAD) {
  test(`rejects ${name} with ${code}`, () => {
    try {
      decodeText(Buffer.from(text));
      assert.unreachable();
    } catch (e) {
      assert.instance(e, TextError);
      assert.is((e as TextError).code, code);
    }
  });
}

test('fuzz: decodeText only returns pairs or throws TextError (seeded)', () => {
  const next = rng(7143);
  const alphabet = Buffer.from('AB=\0x_.9');
  for (let i = 0; i < 5000; i++) {
    const n = Math.floor(next() * 64);
    const b = i % 2 ? randomBytes(next, n) : Buffer.from(Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]!));
    try {
      for (const [k] of decodeText(b)) assert.ok(k.length > 0);
    } catch (e) {
      if (!(e instanceof TextError)) throw e;
    }
  }
});

test.run();
