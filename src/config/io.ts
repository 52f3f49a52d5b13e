// Loading and saving the configuration file.
//
// saveConfig is atomic: the new text goes to a temp file in the same directory, is fsynced,
// then renamed over the config, and the directory is fsynced. The previous config is kept
// as FILE.bak (copied, not hard-linked: /boot on a Pi is FAT). A crash at any step leaves
// FILE either the old or the new config, never empty or half-written.
import * as fsp from 'node:fs/promises';
import { AtomicWriteError, writeFileAtomic } from '../util/atomic-file';
import type { SaveFs } from '../util/atomic-file';
import { ConfigError } from './errors';
import { jsonErrorOffset, lineColumn } from './json-position';
import type { Chap, LunboxConfig } from './schema';
import { validateConfig } from './validate';

export { nodeSaveFs } from '../util/atomic-file';
export type { SaveFileHandle, SaveFs } from '../util/atomic-file';

const ioError = (file: string, message: string): ConfigError => new ConfigError([{ code: 'IO', path: '', message }], file);

/** Read, parse and validate a config file. JSON errors name line:column. */
export async function loadConfig(file: string): Promise<LunboxConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw ioError(file, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`);
  }
  // Editors on other systems may add a byte-order mark, which JSON.parse rejects.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const offset = jsonErrorOffset(text) ?? Number(/at position (\d+)/.exec((err as Error).message)?.[1] ?? 0);
    const { line, column } = lineColumn(text, offset);
    const reason = (err as Error).message.replace(/ in JSON at position \d+.*$/, '');
    throw new ConfigError([{ code: 'JSON', path: '', message: `${line}:${column}: invalid JSON: ${reason}` }], file);
  }
  try {
    return validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(err.errors, file);
    throw err;
  }
}

/** Validate and write `cfg` atomically (see top of file); mode 0600 as it holds CHAP secrets. */
export async function saveConfig(file: string, cfg: LunboxConfig, opts: { fs?: SaveFs } = {}): Promise<void> {
  validateConfig(cfg);
  const data = Buffer.from(`${JSON.stringify(cfg, null, 2)}\n`);
  try {
    await writeFileAtomic(file, data, { backup: true, what: 'config', ...(opts.fs ? { fs: opts.fs } : {}) });
  } catch (err) {
    if (err instanceof AtomicWriteError) throw ioError(file, err.message);
    throw err;
  }
}

export const REDACTED = '********';

/** A copy with every CHAP secret replaced by '********', for printing and logs. */
export function redactSecrets(cfg: LunboxConfig): LunboxConfig {
  const out = structuredClone(cfg);
  const redact = (c: Chap | undefined): void => {
    if (!c) return;
    c.password = REDACTED;
    if (c.mutualPassword !== undefined) c.mutualPassword = REDACTED;
  };
  redact(out.iscsi?.discoveryAuth);
  for (const t of out.iscsi?.targets ?? []) {
    redact(t.auth);
    for (const a of t.acls ?? []) redact(a.auth);
  }
  return out;
}
