// One shell session on a byte stream: a LineEditor in front of a Shell. Used for the
// serial console and for each control-socket connection. Output goes out with CRLF
// line ends (the far end is a raw terminal).

import { StringDecoder } from 'node:string_decoder';
import { parseScriptLine, scriptReply } from './framing';
import { LineEditor } from './line-editor';
import type { ConfigModel } from './model';
import { Shell } from './shell';

export interface ConsoleIo {
  write(text: string): void;
  /** End the session (socket: close; serial: unset, the session restarts). */
  close?(): void;
}

export interface ConsoleSessionOptions {
  readonly banner?: string;
  /** Log a command (secrets redacted by the caller's policy: only the command word is logged). */
  readonly log?: (msg: string) => void;
}

const crlf = (s: string): string => s.replace(/\r?\n/g, '\r\n');

export class ConsoleSession {
  private shell: Shell;
  private readonly editor: LineEditor;
  private readonly decoder = new StringDecoder('utf8');
  private closed = false;

  constructor(
    private readonly model: ConfigModel,
    private readonly io: ConsoleIo,
    private readonly opts: ConsoleSessionOptions = {},
  ) {
    this.shell = new Shell(model);
    this.editor = new LineEditor({
      write: (t) => this.out(t),
      prompt: () => this.shell.prompt,
      complete: (l) => this.shell.complete(l),
      onEvent: (ev) => {
        if (ev.kind === 'eof') return void this.finish();
        void this.run(ev.line, ev.kind === 'script');
      },
    });
  }

  start(): void {
    if (this.opts.banner) this.out(crlf(this.opts.banner) + '\r\n');
    this.editor.ready();
  }

  feed(data: Buffer | string): void {
    if (this.closed) return;
    this.editor.feed(typeof data === 'string' ? data : this.decoder.write(data));
  }

  private out(text: string): void {
    if (!this.closed) this.io.write(text);
  }

  private async run(line: string, script: boolean): Promise<void> {
    let id: string | undefined;
    let command = line;
    if (script) {
      const p = parseScriptLine(line);
      if (!p) {
        this.out('error: malformed script line\r\n');
        return this.editor.ready();
      }
      id = p.id;
      command = p.command;
    }
    // Only the command word: arguments may hold CHAP secrets.
    const word = command.trim().split(/\s+/)[0];
    if (word) this.opts.log?.(`shell: ${word}`);
    const r = await this.shell.exec(command);
    if (id !== undefined) this.out(scriptReply(id, r.output, r.ok));
    else if (r.output) this.out(crlf(r.output) + '\r\n');
    if (r.exit && id === undefined) return this.finish();
    this.editor.ready();
  }

  private finish(): void {
    if (this.io.close) {
      this.closed = true;
      this.io.close();
      return;
    }
    // A serial line has no hang-up here: begin afresh at the top of the tree.
    this.out('bye\r\n');
    this.shell = new Shell(this.model);
    this.start();
  }
}
