import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ScriptReplyReader, parseScriptLine, scriptReply, scriptRequest } from '../../src/console/framing';
import { ConfigModel } from '../../src/console/model';
import { ConsoleSession } from '../../src/console/session';

test('request and reply round-trip through noise and odd chunking', () => {
  const req = scriptRequest('abc123', 'ls /\nmore');
  assert.is(req, '\x15\x02abc123 ls / more\r');
  assert.equal(parseScriptLine('abc123 ls / more'), { id: 'abc123', command: 'ls / more' });
  const reply = 'lunbox /> junk\r\n' + scriptReply('abc123', 'line 1\nline 2', false) + 'lunbox /> ';
  const r = new ScriptReplyReader('abc123');
  let got: { output: string; ok: boolean } | undefined;
  for (const ch of reply) got ??= r.feed(ch);
  assert.equal(got, { output: 'line 1\nline 2', ok: false });
});

test('a reply for another id, or an end marker inside output, is not taken', () => {
  const r = new ScriptReplyReader('aaaa1111');
  assert.is(r.feed(scriptReply('bbbb2222', 'x', true)), undefined);
  const got = r.feed(scriptReply('aaaa1111', '\x03bbbb2222 ok', true));
  assert.equal(got, { output: '\x03bbbb2222 ok', ok: true });
});

test('a console session answers script lines with framed output', async () => {
  let out = '';
  const s = new ConsoleSession(new ConfigModel({ config: { version: 1, backstores: [] } }), { write: (t) => (out += t) });
  s.start();
  const r = new ScriptReplyReader('feed0001');
  s.feed(scriptRequest('feed0001', 'pwd'));
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(r.feed(out), { output: '/', ok: true });
  out = '';
  const r2 = new ScriptReplyReader('feed0002');
  s.feed(Buffer.from(scriptRequest('feed0002', 'cd /nope')));
  await new Promise((res) => setTimeout(res, 10));
  assert.is(r2.feed(out)?.ok, false);
});

test.run();
