import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { iscsiNameProblem } from '../../src/config';

for (const name of [
  'iqn.2024-01.org.lunbox',
  'iqn.2024-01.org.lunbox:disk1',
  'iqn.1993-08.org.debian:01:abcdef012345',
  'iqn.2003-01.org.linux-iscsi.host.x8664:sn.0123456789ab',
  'iqn.2024-12.com.example:名前',
  'eui.0123456789abcdef',
  'naa.0123456789abcdef',
  'naa.6001405abcdef0123456789abcdef012',
]) {
  test(`valid: ${name}`, () => {
    assert.is(iscsiNameProblem(name), undefined);
  });
}

const BAD: [string, string][] = [
  ['iqn.2024-01.org.Lunbox:disk', "write 'iqn.2024-01.org.lunbox:disk'"],
  ['EUI.0123456789ABCDEF', 'lowercase'],
  ['iqn.2024-13.org.lunbox', 'month 13'],
  ['iqn.24-01.org.lunbox', 'expected iqn.YYYY-MM'],
  ['iqn.2024-01.', 'expected iqn.YYYY-MM'],
  ['iqn.2024-01.org.lunbox:disk_1', 'character "_"'],
  ['iqn.2024-01.org.lunbox:a b', 'character " "'],
  ['eui.0123', 'eui. + 16 hex'],
  ['naa.0123456789abcdef01', '16 or 32 hex'],
  ['target1', 'expected iqn.YYYY-MM'],
  ['', 'empty'],
  [`iqn.2024-01.org.lunbox:${'a'.repeat(210)}`, 'the limit is 223'],
];
for (const [name, why] of BAD) {
  test(`invalid: ${JSON.stringify(name.slice(0, 40))} → ${why}`, () => {
    const p = iscsiNameProblem(name);
    assert.ok(p?.includes(why), p);
  });
}

test.run();
