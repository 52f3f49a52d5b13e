// Durable, atomic file replacement: the new bytes go to a temp file in the same directory,
// are fsynced, renamed over the target, and the directory is fsynced. A crash at any step
// leaves the file either old or new, never empty or half-written. Optionally the previous
// content is kept as FILE.bak (copied, not hard-linked: /boot on a Pi is FAT).
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';

export interface SaveFileHandle {
  writeFile(data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file-system calls an atomic save makes; injected by tests to fail or "crash" at each step. */
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

export class AtomicWriteError extends Error {
  readonly code = 'EATOMICWRITE';
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'AtomicWriteError';
  }
}

export interface AtomicWriteOptions {
  readonly fs?: SaveFs;
  /** Keep the previous content as FILE.bak. */
  readonly backup?: boolean;
  /** What the file is, for messages ('config', 'reservation state'). */
  readonly what?: string;
  /** Mode of a newly written file; 0600 by default (configs hold CHAP secrets). */
  readonly mode?: number;
}

export async function writeFileAtomic(file: string, data: Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const fs = opts.fs ?? nodeSaveFs;
  const what = opts.what ?? 'file';
  const dir = nodePath.dirname(file);
  const tmp = nodePath.join(dir, `.${nodePath.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const bakTmp = `${tmp}.bak`;

  let old: Buffer | undefined;
  if (opts.backup) {
    try {
      old = await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AtomicWriteError(file, `cannot read the current ${what}: ${(err as Error).message}`);
    }
  }

  let step = 'write the temp file';
  try {
    await writeDurably(fs, tmp, data, opts.mode ?? 0o600);
    if (old !== undefined) {
      step = `write ${file}.bak`;
      await writeDurably(fs, bakTmp, old, opts.mode ?? 0o600);
      await fs.rename(bakTmp, `${file}.bak`);
    }
    step = `rename the temp file over the ${what}`;
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.unlink(tmp).catch(() => {});
    await fs.unlink(bakTmp).catch(() => {});
    throw new AtomicWriteError(file, `not saved (could not ${step}: ${(err as Error).message}); the file is unchanged`);
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
    throw new AtomicWriteError(file, `saved, but syncing the directory ${dir} failed (${(err as Error).message}): a power loss could still bring back the old ${what}`);
  }
}

async function writeDurably(fs: SaveFs, path: string, data: Uint8Array, mode: number): Promise<void> {
  const fh = await fs.open(path, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
