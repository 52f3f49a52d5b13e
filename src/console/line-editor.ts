// A small line editor for the serial console and the control socket (the remote end is a
// raw terminal: minicom, screen, picocom, `lunbox console`, `lunbox shell`). Handles
// printable text, backspace/delete, cursor moves (arrows, Home/End, Ctrl-A/E/B/F),
// Ctrl-U/K/W, history (up/down, Ctrl-P/N), tab completion, Ctrl-C, Ctrl-D, Ctrl-L, and
// script lines (STX at the start of a line, see framing.ts), which are never echoed.
// Pure: bytes in through feed(), text out through write(), events through onEvent().

import { STX } from './framing';

export interface Completion {
  readonly start: number;
  readonly candidates: readonly string[];
}

export type EditorEvent =
  | { readonly kind: 'line'; readonly line: string }
  | { readonly kind: 'script'; readonly line: string }
  | { readonly kind: 'eof' };

export interface LineEditorOptions {
  write(text: string): void;
  prompt(): string;
  complete?(lineBeforeCursor: string): Completion;
  onEvent(ev: EditorEvent): void;
  historySize?: number;
}

const ESC = '\x1b';

export class LineEditor {
  private buf = '';
  private cursor = 0;
  private readonly history: string[] = [];
  /** Position in history while browsing; history.length = the line being edited. */
  private hpos = 0;
  private saved = '';
  private esc: '' | 'esc' | 'csi' = '';
  private csiParams = '';
  private script: string | undefined;
  /** A command is running: input waits until ready(). */
  private busy = false;
  private pending = '';
  /** Last char was CR: a following LF belongs to the same Enter. */
  private lastCr = false;

  constructor(private readonly o: LineEditorOptions) {}

  /** Show the prompt and take input (after start, and after each command finished). */
  ready(): void {
    this.busy = false;
    this.buf = '';
    this.cursor = 0;
    this.hpos = this.history.length;
    this.o.write(this.o.prompt());
    const queued = this.pending;
    this.pending = '';
    if (queued) this.feed(queued);
  }

  get line(): string {
    return this.buf;
  }

  feed(text: string): void {
    for (let i = 0; i < text.length; i++) {
      if (this.busy) {
        this.pending += text.slice(i);
        return;
      }
      this.char(text[i]!);
    }
  }

  private emit(ev: EditorEvent): void {
    this.busy = true;
    this.o.onEvent(ev);
  }

  private char(ch: string): void {
    const wasCr = this.lastCr;
    this.lastCr = ch === '\r';
    if (this.script !== undefined) {
      if (ch === '\r' || ch === '\n') {
        const line = this.script;
        this.script = undefined;
        this.emit({ kind: 'script', line });
      } else this.script += ch;
      return;
    }
    if (this.esc) return this.escape(ch);
    switch (ch) {
      case '\r':
        return this.enter();
      case '\n':
        if (wasCr) return; // CR LF is one Enter
        return this.enter();
      case STX: // (also Ctrl-B) script mode, only at the start of a line
        if (this.buf === '') this.script = '';
        return;
      case ESC:
        this.esc = 'esc';
        return;
      case '\x7f':
      case '\b':
        return this.backspace();
      case '\t':
        return this.tab();
      case '\x01': // Ctrl-A
        return this.move(-this.cursor);
      case '\x05': // Ctrl-E
        return this.move(this.buf.length - this.cursor);
      case '\x06': // Ctrl-F
        return this.move(1);
      case '\x03': // Ctrl-C: drop the line
        this.o.write('^C\r\n');
        this.buf = '';
        this.cursor = 0;
        this.o.write(this.o.prompt());
        return;
      case '\x04': // Ctrl-D: end on an empty line, else delete forward
        if (this.buf === '') {
          this.o.write('\r\n');
          return this.emit({ kind: 'eof' });
        }
        return this.deleteForward();
      case '\x0b': // Ctrl-K
        this.buf = this.buf.slice(0, this.cursor);
        return this.redraw();
      case '\x15': // Ctrl-U
        this.buf = this.buf.slice(this.cursor);
        this.cursor = 0;
        return this.redraw();
      case '\x17': {
        // Ctrl-W: the word before the cursor
        const before = this.buf.slice(0, this.cursor).replace(/\S+\s*$/, '');
        this.buf = before + this.buf.slice(this.cursor);
        this.cursor = before.length;
        return this.redraw();
      }
      case '\x0c': // Ctrl-L
        this.o.write(`${ESC}[H${ESC}[2J`);
        return this.redraw();
      case '\x10': // Ctrl-P
        return this.historyMove(-1);
      case '\x0e': // Ctrl-N
        return this.historyMove(1);
      default:
        if (ch < ' ') return; // other control characters are ignored
        this.insert(ch);
    }
  }

  private escape(ch: string): void {
    if (this.esc === 'esc') {
      if (ch === '[' || ch === 'O') {
        this.esc = 'csi';
        this.csiParams = '';
      } else this.esc = '';
      return;
    }
    if (ch >= '0' && ch <= '9') {
      this.csiParams += ch;
      return;
    }
    if (ch === ';') {
      this.csiParams += ch;
      return;
    }
    this.esc = '';
    const p = this.csiParams;
    switch (ch) {
      case 'A':
        return this.historyMove(-1);
      case 'B':
        return this.historyMove(1);
      case 'C':
        return this.move(1);
      case 'D':
        return this.move(-1);
      case 'H':
        return this.move(-this.cursor);
      case 'F':
        return this.move(this.buf.length - this.cursor);
      case '~':
        if (p === '1' || p === '7') return this.move(-this.cursor);
        if (p === '4' || p === '8') return this.move(this.buf.length - this.cursor);
        if (p === '3') return this.deleteForward();
        return;
      default:
        return;
    }
  }

  private enter(): void {
    const line = this.buf;
    this.o.write('\r\n');
    if (line.trim() !== '' && this.history[this.history.length - 1] !== line) {
      this.history.push(line);
      const max = this.o.historySize ?? 200;
      if (this.history.length > max) this.history.splice(0, this.history.length - max);
    }
    this.buf = '';
    this.cursor = 0;
    this.emit({ kind: 'line', line });
  }

  private insert(s: string): void {
    this.buf = this.buf.slice(0, this.cursor) + s + this.buf.slice(this.cursor);
    this.cursor += s.length;
    if (this.cursor === this.buf.length) this.o.write(s);
    else this.redraw();
  }

  private backspace(): void {
    if (this.cursor === 0) return;
    this.buf = this.buf.slice(0, this.cursor - 1) + this.buf.slice(this.cursor);
    this.cursor--;
    if (this.cursor === this.buf.length) this.o.write('\b \b');
    else this.redraw();
  }

  private deleteForward(): void {
    if (this.cursor >= this.buf.length) return;
    this.buf = this.buf.slice(0, this.cursor) + this.buf.slice(this.cursor + 1);
    this.redraw();
  }

  private move(by: number): void {
    const to = Math.max(0, Math.min(this.buf.length, this.cursor + by));
    if (to === this.cursor) return;
    this.o.write(to < this.cursor ? `${ESC}[${this.cursor - to}D` : `${ESC}[${to - this.cursor}C`);
    this.cursor = to;
  }

  private historyMove(dir: -1 | 1): void {
    const to = this.hpos + dir;
    if (to < 0 || to > this.history.length) return;
    if (this.hpos === this.history.length) this.saved = this.buf;
    this.hpos = to;
    this.buf = to === this.history.length ? this.saved : (this.history[to] ?? '');
    this.cursor = this.buf.length;
    this.redraw();
  }

  /** Rewrite the prompt and line, then put the cursor back. */
  private redraw(): void {
    const back = this.buf.length - this.cursor;
    this.o.write(`\r${this.o.prompt()}${this.buf}${ESC}[K${back > 0 ? `${ESC}[${back}D` : ''}`);
  }

  private tab(): void {
    if (!this.o.complete) return;
    const before = this.buf.slice(0, this.cursor);
    const { start, candidates } = this.o.complete(before);
    if (candidates.length === 0) return;
    const word = before.slice(start);
    const common = commonPrefix(candidates);
    if (candidates.length === 1) {
      const c = candidates[0]!;
      const tail = c.endsWith('/') || c.endsWith('=') ? '' : ' ';
      return this.replaceWord(start, c + tail);
    }
    if (common.length > word.length) return this.replaceWord(start, common);
    // Nothing to add: list the choices under the line, then redraw it.
    this.o.write('\r\n' + columns(candidates) + '\r\n');
    this.redraw();
  }

  private replaceWord(start: number, text: string): void {
    this.buf = this.buf.slice(0, start) + text + this.buf.slice(this.cursor);
    this.cursor = start + text.length;
    this.redraw();
  }
}

export function commonPrefix(list: readonly string[]): string {
  if (list.length === 0) return '';
  let p = list[0]!;
  for (const s of list) while (!s.startsWith(p)) p = p.slice(0, -1);
  return p;
}

function columns(items: readonly string[], width = 78): string {
  const w = Math.min(width, Math.max(...items.map((i) => i.length)) + 2);
  const per = Math.max(1, Math.floor(width / w));
  const rows: string[] = [];
  for (let i = 0; i < items.length; i += per) rows.push(items.slice(i, i + per).map((s) => s.padEnd(w)).join('').trimEnd());
  return rows.join('\r\n');
}
