// Logging to stderr in a form journald keeps: when stderr is not a terminal (systemd
// service, pipe) each line starts with a syslog priority prefix `<N>` that journald
// turns into the entry's level (systemd.exec(5) SyslogLevelPrefix=). No colour ever.

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFn = (level: LogLevel, msg: string) => void;

const PRIORITY = { error: 3, warn: 4, info: 6, debug: 7 } as const;
const RANK = { error: 0, warn: 1, info: 2, debug: 3 } as const;

export interface Logger {
  readonly log: LogFn;
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export function createLogger(opts: { verbose?: boolean; quiet?: boolean; stream?: NodeJS.WritableStream; tty?: boolean } = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? Boolean((stream as NodeJS.WriteStream).isTTY);
  const max: number = opts.quiet ? RANK.warn : opts.verbose ? RANK.debug : RANK.info;
  const log: LogFn = (level, msg) => {
    if (RANK[level] > max) return;
    const lines = msg.split('\n');
    const out = lines
      .map((l) => (tty ? `lunbox: ${level === 'info' ? '' : level + ': '}${l}` : `<${PRIORITY[level]}>${level}: ${l}`))
      .join('\n');
    stream.write(out + '\n');
  };
  return {
    log,
    error: (m) => log('error', m),
    warn: (m) => log('warn', m),
    info: (m) => log('info', m),
    debug: (m) => log('debug', m),
  };
}
