// The client end of a console stream, shared by `lunbox shell` (control socket) and
// `lunbox console` (serial port): script mode (-c, see framing.ts) and an interactive
// raw-terminal bridge (the line editing happens in the daemon).

import { randomBytes } from 'node:crypto';
import { ScriptReplyReader, scriptRequest } from './framing';

/** A byte stream to the daemon's shell. */
export interface ConsoleStream {
  write(text: string): void;
  onData(cb: (text: string) => void): void;
  onClose(cb: (why?: string) => void): void;
  close(): void;
}

export class ScriptTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
}

/** Run one command in script mode; resolves with its output and success. */
export function runScript(stream: ConsoleStream, command: string, timeoutMs = 30_000): Promise<{ output: string; ok: boolean }> {
  const id = randomBytes(6).toString('hex');
  const reader = new ScriptReplyReader(id);
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new ScriptTimeoutError(`no answer within ${Math.round(timeoutMs / 1000)} s (is a lunbox daemon serving its shell there?)`));
    }, timeoutMs);
    stream.onData((t) => {
      if (done) return;
      const r = reader.feed(t);
      if (r) {
        done = true;
        clearTimeout(timer);
        resolve(r);
      }
    });
    stream.onClose((why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`the connection closed before the answer${why ? ` (${why})` : ''}`));
    });
    stream.write(scriptRequest(id, command));
  });
}

/** Run several commands in order on one stream; stops at none (each gets its status). */
export async function runScripts(
  stream: ConsoleStream,
  commands: readonly string[],
  out: (text: string) => void,
  timeoutMs?: number,
): Promise<boolean> {
  let allOk = true;
  // One reader at a time: a single data listener dispatching to the current command.
  let current: ((t: string) => void) | undefined;
  let closed: ((why?: string) => void) | undefined;
  const mux: ConsoleStream = {
    write: (t) => stream.write(t),
    onData: (cb) => void (current = cb),
    onClose: (cb) => void (closed = cb),
    close: () => stream.close(),
  };
  stream.onData((t) => current?.(t));
  stream.onClose((w) => closed?.(w));
  for (const c of commands) {
    if (c.trim() === '') continue;
    const r = await runScript(mux, c, timeoutMs);
    if (r.output) out(r.output + '\n');
    if (!r.ok) allOk = false;
  }
  return allOk;
}

export interface TerminalIo {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WritableStream;
}

/** Bridge a raw terminal to the stream until it closes or the user types the escape key. */
export function bridgeTerminal(stream: ConsoleStream, io: TerminalIo, opts: { escape?: string; nudge?: boolean } = {}): Promise<void> {
  const esc = opts.escape ?? '\x1d'; // Ctrl-]
  return new Promise((resolve) => {
    const stdin = io.stdin;
    const raw = stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      stdin.off('data', onKey);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
      stream.close();
      resolve();
    };
    const onKey = (d: string): void => {
      if (d.includes(esc)) {
        io.stdout.write('\r\n');
        return finish();
      }
      stream.write(d);
    };
    stdin.on('data', onKey);
    stdin.resume();
    stream.onData((t) => io.stdout.write(t));
    stream.onClose(() => finish());
    // A serial shell may have printed its prompt long ago: ask for a fresh one.
    if (opts.nudge) stream.write('\r');
  });
}
