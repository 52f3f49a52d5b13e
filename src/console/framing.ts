// Script mode on a console stream (serial line or control socket): how `lunbox console -c`
// and `lunbox shell -c` know where a command's output ends and whether it failed, on a
// line that also carries an interactive shell (echo, prompts, stray log text).
//
//   client → daemon   0x15 (Ctrl-U: drop any half-typed line), then
//                     0x02 ID SP COMMAND CR          (STX at the start of a line: script mode, no echo)
//   daemon → client   0x02 ID " begin" CRLF
//                     OUTPUT LINES, each CRLF
//                     0x03 ID SP ("ok" | "fail") CRLF
// ID is a fresh random token per command (8+ of [0-9a-z]), so text in the output can never
// be taken for the end marker. The client ignores everything outside begin..end.

export const STX = '\x02';
export const ETX = '\x03';
export const KILL_LINE = '\x15';

export function scriptRequest(id: string, command: string): string {
  return `${KILL_LINE}${STX}${id} ${command.replace(/[\r\n]+/g, ' ')}\r`;
}

/** Split the line the daemon received after STX into id and command. */
export function parseScriptLine(line: string): { id: string; command: string } | undefined {
  const m = /^([0-9a-z]{4,32}) (.*)$/s.exec(line);
  return m ? { id: m[1] ?? '', command: m[2] ?? '' } : undefined;
}

export function scriptReply(id: string, output: string, ok: boolean): string {
  const body = output === '' ? '' : output.replace(/\r?\n/g, '\r\n') + '\r\n';
  return `${STX}${id} begin\r\n${body}${ETX}${id} ${ok ? 'ok' : 'fail'}\r\n`;
}

/** Incremental reader of one script reply out of a noisy stream. */
export class ScriptReplyReader {
  private buf = '';
  private started = false;
  private readonly lines: string[] = [];

  constructor(private readonly id: string) {}

  /** Feed received text; returns the result once the end marker arrived. */
  feed(text: string): { output: string; ok: boolean } | undefined {
    this.buf += text;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) return undefined;
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (!this.started) {
        if (line.endsWith(`${STX}${this.id} begin`)) this.started = true;
        continue;
      }
      const end = new RegExp(`^${ETX}${this.id} (ok|fail)$`).exec(line);
      if (end) return { output: this.lines.join('\n'), ok: end[1] === 'ok' };
      this.lines.push(line);
    }
  }
}
