// Arguments of the management subcommands: shell, console, probe, config import|export.
// Kept apart from args.ts (serve) so each stays small; parseArgs dispatches here.

import { UsageError } from './args';

export type MgmtCommand =
  | { readonly kind: 'shell'; readonly control?: string; readonly command?: string }
  | { readonly kind: 'console'; readonly port?: string; readonly baudRate?: number; readonly command?: string; readonly timeoutMs?: number }
  | {
      readonly kind: 'probe';
      readonly device?: string;
      readonly test: boolean;
      readonly lun: number;
      readonly readMiB: number;
      readonly json: boolean;
    }
  | { readonly kind: 'config-import'; readonly file: string; readonly out?: string }
  | { readonly kind: 'config-export'; readonly file?: string; readonly out?: string };

export const MGMT_COMMANDS = ['shell', 'console', 'probe'] as const;

/** A tiny option walker: flags with values (--x V, --x=V, -x V) and positionals. */
function walk(
  cmd: string,
  args: readonly string[],
  spec: Readonly<Record<string, 'value' | 'flag'>>,
  aliases: Readonly<Record<string, string>> = {},
): { opts: Map<string, string>; positional: string[] } {
  const opts = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const raw = args[i] ?? '';
    if (raw === '--help' || raw === '-h') {
      opts.set('--help', '');
      continue;
    }
    if (!raw.startsWith('-') || raw === '-') {
      positional.push(raw);
      continue;
    }
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const name0 = eq > 0 ? raw.slice(0, eq) : raw;
    const name = aliases[name0] ?? name0;
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown option '${raw}' for ${cmd}; valid: ${Object.keys(spec).join(', ')}`);
    if (kind === 'flag') {
      opts.set(name, '');
      continue;
    }
    const v = eq > 0 ? raw.slice(eq + 1) : args[++i];
    if (v === undefined) throw new UsageError(`${name} needs a value (see lunbox ${cmd} --help)`);
    opts.set(name, v);
  }
  return { opts, positional };
}

function num(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`${name} ${text}: expected a whole number ${min}..${max}`);
  return n;
}

/** Parse `lunbox shell|console|probe ...` (argv starts after the command word); undefined = help. */
export function parseMgmt(cmd: string, args: readonly string[]): MgmtCommand | { readonly kind: 'help'; readonly topic: string } {
  switch (cmd) {
    case 'shell': {
      const { opts, positional } = walk('shell', args, { '--control': 'value', '--command': 'value' }, { '-c': '--command' });
      if (opts.has('--help')) return { kind: 'help', topic: 'shell' };
      if (positional.length) throw new UsageError(`lunbox shell: unexpected '${positional[0]}' (a command goes in -c "COMMAND")`);
      const control = opts.get('--control');
      const command = opts.get('--command');
      return { kind: 'shell', ...(control !== undefined ? { control } : {}), ...(command !== undefined ? { command } : {}) };
    }
    case 'console': {
      const { opts, positional } = walk('console', args, { '--baud': 'value', '--command': 'value', '--timeout': 'value' }, { '-c': '--command', '-b': '--baud' });
      if (opts.has('--help')) return { kind: 'help', topic: 'console' };
      if (positional.length > 1) throw new UsageError(`lunbox console: one PORT at most, got ${positional.join(' ')}`);
      const baud = opts.get('--baud');
      const command = opts.get('--command');
      const timeout = opts.get('--timeout');
      return {
        kind: 'console',
        ...(positional[0] !== undefined ? { port: positional[0] } : {}),
        ...(baud !== undefined ? { baudRate: num('--baud', baud, 50, 4000000) } : {}),
        ...(command !== undefined ? { command } : {}),
        ...(timeout !== undefined ? { timeoutMs: num('--timeout', timeout, 1, 3600) * 1000 } : {}),
      };
    }
    case 'probe': {
      const { opts, positional } = walk('probe', args, { '--test': 'flag', '--lun': 'value', '--read': 'value', '--json': 'flag' }, { '-t': '--test' });
      if (opts.has('--help')) return { kind: 'help', topic: 'probe' };
      if (positional.length > 1) throw new UsageError(`lunbox probe: one DEVICE at most, got ${positional.join(' ')}`);
      const read = opts.get('--read');
      const lun = opts.get('--lun');
      return {
        kind: 'probe',
        ...(positional[0] !== undefined ? { device: positional[0] } : {}),
        test: opts.has('--test') || positional[0] !== undefined,
        lun: lun === undefined ? 0 : num('--lun', lun, 0, 15),
        readMiB: read === undefined ? 64 : num('--read', read, 0, 1 << 20),
        json: opts.has('--json'),
      };
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

/** `lunbox config import FILE [-o OUT]`, `lunbox config export [FILE] [-o OUT]`. */
export function parseConfigIo(sub: 'import' | 'export', args: readonly string[]): MgmtCommand | { readonly kind: 'help'; readonly topic: string } {
  const { opts, positional } = walk(`config ${sub}`, args, { '--output': 'value' }, { '-o': '--output' });
  if (opts.has('--help')) return { kind: 'help', topic: 'config' };
  const out = opts.get('--output');
  if (positional.length > 1) throw new UsageError(`lunbox config ${sub}: one FILE at most, got ${positional.join(' ')}`);
  const file = positional[0];
  if (sub === 'import') {
    if (file === undefined) throw new UsageError('lunbox config import FILE: give the saveconfig.json to read (e.g. /etc/target/saveconfig.json)');
    return { kind: 'config-import', file, ...(out !== undefined ? { out } : {}) };
  }
  return { kind: 'config-export', ...(file !== undefined ? { file } : {}), ...(out !== undefined ? { out } : {}) };
}
