// Loading and saving the configuration file.
//
// saveConfig is atomic: the new text goes to a temp file in the same directory, is fsynced,
// then renamed over the config, and the directory is fsynced. The previous config is kept
// as FILE.bak (copied, not hard-linked: /boot on a Pi is FAT). A crash at any step leaves
// FILE either the old or the new config, never empty or half-written.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { ConfigError } from './errors';
import { jsonErrorOffset, lineColumn } from './json-position';
import type { Chap, LunboxConfig } from './schema';
import { validateConfig } from './validate';

export interface SaveFileHandle {
  writeFile(data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file-system calls saveConfig makes; injected by tests to fail or "crash" at each step. */
export interface SaveFs {
  open(path: string, flags: string, mode?: number): Promise<SaveFileHandle>;
  readFile(path: string): Promise<Buffer>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

export const nodeSaveFs: SaveFs = {
  open: (p, flags, mode) => fsp.open(p, flags, mode),
  readFile: (p) => fsp.readFile(p),
  rename: (a, b) => fsp.rename(a, b),
  unlink: (p) => fsp.unlink(p),
};

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
  const fs = opts.fs ?? nodeSaveFs;
  validateConfig(cfg);
  const data = Buffer.from(`${JSON.stringify(cfg, null, 2)}\n`);
  const dir = nodePath.dirname(file);
  const tmp = nodePath.join(dir, `.${nodePath.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const bakTmp = `${tmp}.bak`;

  let old: Buffer | undefined;
  try {
    old = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(file, `cannot read the current config: ${(err as Error).message}`);
  }

  let step = 'write the temp file';
  try {
    await writeDurably(fs, tmp, data);
    if (old !== undefined) {
      step = `write ${file}.bak`;
      await writeDurably(fs, bakTmp, old);
      await fs.rename(bakTmp, `${file}.bak`);
    }
    step = 'rename the temp file over the config';
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.unlink(tmp).catch(() => {});
    await fs.unlink(bakTmp).catch(() => {});
    throw ioError(file, `not saved (could not ${step}: ${(err as Error).message}); the file is unchanged`);
  }
  try {
    // The rename is durable only once the directory entry is on disk.
    const dh = await fs.open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (err) {
    throw ioError(file, `saved, but syncing the directory ${dir} failed (${(err as Error).message}): a power loss could still bring back the old config`);
  }
}

async function writeDurably(fs: SaveFs, path: string, data: Buffer): Promise<void> {
  const fh = await fs.open(path, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
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
