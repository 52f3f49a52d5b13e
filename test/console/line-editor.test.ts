import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LineEditor, commonPrefix } from '../../src/console/line-editor';
import type { Completion, EditorEvent } from '../../src/console/line-editor';

function editor(complete?: (l: string) => Completion) {
  let out = '';
  const events: EditorEvent[] = [];
  const ed: LineEditor = new LineEditor({
    write: (t) => (out += t),
    prompt: () => '> ',
    ...(complete ? { complete } : {}),
    onEvent: (ev) => {
      events.push(ev);
      ed.ready(); // the command "ran"
    },
  });
  ed.ready();
  return { ed, events, out: () => out, clear: () => (out = '') };
}

const lines = (evs: EditorEvent[]) => evs.map((e) => ('line' in e ? `${e.kind}:${e.line}` : e.kind));

test('typing, Enter (CR, LF, CRLF once), echo', () => {
  const { ed, events, out } = editor();
  ed.feed('ls /\r');
  ed.feed('pwd\n');
  ed.feed('cd\r\n');
  assert.equal(lines(events), ['line:ls /', 'line:pwd', 'line:cd']);
  assert.ok(out().startsWith('> ls /\r\n> '));
});

test('backspace, Ctrl-U, Ctrl-W, Ctrl-K, cursor moves and insert in the middle', () => {
  const { ed, events } = editor();
  ed.feed('lsx\x7f /\r');
  ed.feed('garbage\x15pwd\r');
  ed.feed('set attribute x\x17y\r');
  ed.feed('abcdef\x1b[D\x1b[D\x0b\r'); // left twice, kill to end
  ed.feed('acd\x1b[D\x1b[DB\r'); // insert in the middle: aBcd
  ed.feed('xyz\x01>\x05<\r'); // home / end
  ed.feed('abc\x1b[H\x1b[3~\r'); // Home, Delete
  assert.equal(lines(events), ['line:ls /', 'line:pwd', 'line:set attribute y', 'line:abcd', 'line:aBcd', 'line:>xyz<', 'line:bc']);
});

test('history: up/down recall, the edited line comes back', () => {
  const { ed, events } = editor();
  ed.feed('one\rtwo\r');
  ed.feed('thr');
  ed.feed('\x1b[A\x1b[A\r'); // up twice: one
  ed.feed('x\x1b[A\x1b[B\r'); // up then down: back to x
  ed.feed('\x1bOA\r'); // SS3 form of up: x
  assert.equal(lines(events), ['line:one', 'line:two', 'line:one', 'line:x', 'line:x']);
});

test('tab: one candidate completes, several extend the common prefix then list', () => {
  const calls: string[] = [];
  const { ed, events, out, clear } = editor((l) => {
    calls.push(l);
    if (l === 'cd /ba') return { start: 3, candidates: ['/backstores/'] };
    if (l.startsWith('s')) return { start: 0, candidates: ['saveconfig', 'sessions', 'set'].filter((c) => c.startsWith(l)) };
    return { start: 0, candidates: [] };
  });
  ed.feed('cd /ba\t\r');
  ed.feed('s\t');
  clear();
  ed.feed('\t');
  assert.match(out(), /saveconfig\s+sessions\s+set/);
  ed.feed('et\t\r');
  assert.equal(lines(events), ['line:cd /backstores/', 'line:set ']);
});

test('Ctrl-C drops the line; Ctrl-D on an empty line is eof', () => {
  const { ed, events, out } = editor();
  ed.feed('oops\x03');
  assert.match(out(), /\^C/);
  ed.feed('\x04');
  assert.equal(lines(events), ['eof']);
});

test('a script line (STX first) is not echoed and is its own event', () => {
  const { ed, events, out, clear } = editor();
  clear();
  ed.feed('\x02abcd1234 ls /\r');
  assert.equal(lines(events), ['script:abcd1234 ls /']);
  assert.not.match(out(), /ls \//);
});

test('input typed while a command runs waits for the prompt', () => {
  let out = '';
  const events: string[] = [];
  const ed = new LineEditor({ write: (t) => (out += t), prompt: () => '> ', onEvent: (e) => events.push('line' in e ? e.line : e.kind) });
  ed.ready();
  ed.feed('slow\rnext\r');
  assert.equal(events, ['slow']);
  ed.ready();
  assert.equal(events, ['slow', 'next']);
});

test('commonPrefix', () => {
  assert.is(commonPrefix(['abc', 'abd']), 'ab');
  assert.is(commonPrefix([]), '');
});

test.run();
