import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { jsonErrorOffset, lineColumn } from '../../src/config/json-position';

const CASES: [string, string, number | undefined][] = [
  ['valid object', '{"a": [1, -2.5e3, true, null, "x\\n\\u00e9"]}', undefined],
  ['trailing comma in object', '{\n  "a": 1,\n}', 12],
  ['missing value', '{"a":}', 5],
  ['unterminated', '{"a":1', 6],
  ['empty text', '', 0],
  ['bad escape', '"\\x"', 2],
  ['control char in string', '"a\u0001"', 2],
  ['garbage after value', '{} x', 3],
  ['leading zero number', '01', 1],
];
for (const [name, text, offset] of CASES) {
  test(`jsonErrorOffset: ${name}`, () => {
    assert.is(jsonErrorOffset(text), offset);
    let threw = false;
    try {
      JSON.parse(text);
    } catch {
      threw = true;
    }
    assert.is(threw, offset !== undefined, 'agrees with JSON.parse');
  });
}

test('lineColumn is 1-based', () => {
  assert.equal(lineColumn('ab\ncd\nef', 0), { line: 1, column: 1 });
  assert.equal(lineColumn('ab\ncd\nef', 4), { line: 2, column: 2 });
  assert.equal(lineColumn('ab\ncd\nef', 6), { line: 3, column: 1 });
});

test.run();
