// The configuration the shell edits, shared by every shell session of one daemon (the
// serial console, each `lunbox shell` on the control socket). A change is made on a copy,
// validated, applied to the running daemon, and only then becomes the current config;
// so a change the daemon refuses leaves both the daemon and the config as they were.
// Changes are serialised. Saving goes through saveConfig (atomic, keeps FILE.bak).

import { loadConfig, saveConfig, validateConfig } from '../config/index';
import type { LunboxConfig, SaveFs } from '../config/index';
import { ShellError } from './words';

/** What a live change did (Runtime.apply's report). */
export interface ApplyReport {
  readonly changes: readonly string[];
  readonly notes: readonly string[];
}

/** The part of the daemon the shell needs: apply a whole new config, list sessions, change a disc. */
export interface ShellRuntime {
  apply(next: LunboxConfig): Promise<ApplyReport>;
  sessions?(): readonly { initiator: string; target: string; connections: number }[];
  /** Put ISO `iso` in the CD-ROM drive of backstore `name` (null: eject); refused under PREVENT unless force. */
  changeMedium?(name: string, iso: string | null, opts: { force?: boolean }): Promise<{ forced: boolean }>;
}

export interface ConfigModelOptions {
  /** The configuration running now (with any command-line overrides). */
  readonly config: LunboxConfig;
  /**
   * The config file's own content, without command-line overrides (serve --listen); default:
   * `config`. saveconfig writes this plus the shell's changes, never the overrides.
   */
  readonly saved?: LunboxConfig;
  /** The command-line overrides, applied again to a config that restoreconfig loads. */
  readonly overlay?: (fromFile: LunboxConfig) => LunboxConfig;
  /** Absent: the shell edits a config file only (nothing running). */
  readonly runtime?: ShellRuntime;
  /** Where saveconfig/restoreconfig go without an argument. */
  readonly file?: string;
  readonly fs?: SaveFs;
  readonly load?: (file: string) => Promise<LunboxConfig>;
  /** The daemon's directories, for tab completion of image paths; absent: no path completion. */
  readonly listDir?: (dir: string) => readonly DirEntry[];
}

export interface DirEntry {
  readonly name: string;
  readonly dir: boolean;
}

/** A change function edits the draft and returns what it did (one line), or throws ShellError. */
export type Change = (draft: LunboxConfig) => string;

/**
 * Two views of one configuration: `config` runs (the file plus command-line overrides plus the
 * shell's changes), `saved` is what saveconfig writes (the file plus the shell's changes). Every
 * change is made to both, so an override such as serve --listen never leaks into the file.
 */
export class ConfigModel {
  private cfg: LunboxConfig;
  private saved: LunboxConfig;
  private queue: Promise<unknown> = Promise.resolve();
  /** Changed since the last save or restore. */
  dirty = false;
  readonly runtime: ShellRuntime | undefined;
  readonly file: string | undefined;

  constructor(private readonly opts: ConfigModelOptions) {
    this.cfg = validateConfig(opts.config);
    this.saved = opts.saved !== undefined ? validateConfig(opts.saved) : this.cfg;
    this.runtime = opts.runtime;
    this.file = opts.file;
  }

  /** The current config. Do not modify it: changes go through change(). */
  get config(): LunboxConfig {
    return this.cfg;
  }

  /** What saveconfig writes: the file's own config plus the shell's changes (no command-line overrides). */
  get savedConfig(): LunboxConfig {
    return this.saved;
  }

  /** Entries of a directory on the daemon's side (tab completion); [] when unreadable or not offered. */
  listDir(dir: string): readonly DirEntry[] {
    try {
      return this.opts.listDir?.(dir) ?? [];
    } catch {
      return [];
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Edit a copy, validate it, apply it live, then make it current (in both views). */
  change(fn: Change): Promise<{ summary: string; report: ApplyReport }> {
    return this.serial(async () => {
      const draft = structuredClone(this.cfg);
      const summary = fn(draft);
      const next = validateConfig(draft);
      const { saved, note } = this.savedAfter(fn);
      const report = await this.install(next);
      this.saved = saved;
      this.dirty = true;
      return { summary, report: note ? { changes: report.changes, notes: [...report.notes, note] } : report };
    });
  }

  /** The same change on the saved view. It can differ only where an override does (portals). */
  private savedAfter(fn: Change): { saved: LunboxConfig; note?: string } {
    try {
      const draft = structuredClone(this.saved);
      fn(draft);
      return { saved: validateConfig(draft) };
    } catch (err) {
      return { saved: this.saved, note: `saveconfig keeps the file's own version here (the change does not fit it without the command-line overrides: ${(err as Error).message})` };
    }
  }

  private async install(next: LunboxConfig): Promise<ApplyReport> {
    const report = this.runtime ? await this.runtime.apply(next) : { changes: [], notes: [] };
    this.cfg = next;
    return report;
  }

  /**
   * The disc of CD-ROM backstore `name`: ISO `iso` goes in, null ejects. Live through the
   * runtime (PREVENT refuses it unless force); both views record the new path.
   */
  changeMedium(name: string, iso: string | null, opts: { force?: boolean } = {}): Promise<{ forced: boolean; live: boolean }> {
    return this.serial(async () => {
      const b = this.cfg.backstores.find((x) => x.name === name);
      if (!b) throw new ShellError(`no backstore '${name}'`);
      if (b.cdrom !== true) throw new ShellError(`backstore ${name} is not a CD-ROM (a disk image changes with: set attribute path=FILE)`);
      const edit = (c: LunboxConfig): LunboxConfig =>
        validateConfig({
          ...c,
          backstores: c.backstores.map((x) => {
            if (x.name !== name) return x;
            const { path: _old, ...rest } = x;
            return iso === null ? rest : { ...rest, path: iso };
          }),
        });
      const next = edit(this.cfg);
      const saved = this.saved.backstores.some((x) => x.name === name) ? edit(this.saved) : this.saved;
      let forced = false;
      if (this.runtime) {
        if (!this.runtime.changeMedium) throw new ShellError('this daemon cannot change a medium live');
        forced = (await this.runtime.changeMedium(name, iso, opts)).forced;
      }
      this.cfg = next;
      this.saved = saved;
      this.dirty = true;
      return { forced, live: this.runtime !== undefined };
    });
  }

  async save(file?: string): Promise<string> {
    const to = file ?? this.file;
    if (to === undefined) throw new ShellError('no config file: this daemon was started without one; give a path: saveconfig FILE');
    await this.serial(() => saveConfig(to, this.saved, this.opts.fs ? { fs: this.opts.fs } : {}));
    if (to === this.file) this.dirty = false;
    return to;
  }

  /**
   * Load FILE (default: the config file) and apply it in place of the current config; the
   * command-line overrides stay in force (the running view is the file plus them).
   */
  restore(file?: string): Promise<{ file: string; report: ApplyReport }> {
    const from = file ?? this.file;
    if (from === undefined) return Promise.reject(new ShellError('no config file: give a path: restoreconfig FILE'));
    return this.serial(async () => {
      const loaded = await (this.opts.load ?? loadConfig)(from);
      const running = this.opts.overlay ? validateConfig(this.opts.overlay(loaded)) : loaded;
      const report = await this.install(running);
      this.saved = loaded;
      this.dirty = from !== this.file;
      return { file: from, report };
    });
  }
}
