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

/** The part of the daemon the shell needs: apply a whole new config, list sessions. */
export interface ShellRuntime {
  apply(next: LunboxConfig): Promise<ApplyReport>;
  sessions?(): readonly { initiator: string; target: string; connections: number }[];
}

export interface ConfigModelOptions {
  readonly config: LunboxConfig;
  /** Absent: the shell edits a config file only (nothing running). */
  readonly runtime?: ShellRuntime;
  /** Where saveconfig/restoreconfig go without an argument. */
  readonly file?: string;
  readonly fs?: SaveFs;
  readonly load?: (file: string) => Promise<LunboxConfig>;
}

/** A change function edits the draft and returns what it did (one line), or throws ShellError. */
export type Change = (draft: LunboxConfig) => string;

export class ConfigModel {
  private cfg: LunboxConfig;
  private queue: Promise<unknown> = Promise.resolve();
  /** Changed since the last save or restore. */
  dirty = false;
  readonly runtime: ShellRuntime | undefined;
  readonly file: string | undefined;

  constructor(private readonly opts: ConfigModelOptions) {
    this.cfg = validateConfig(opts.config);
    this.runtime = opts.runtime;
    this.file = opts.file;
  }

  /** The current config. Do not modify it: changes go through change(). */
  get config(): LunboxConfig {
    return this.cfg;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Edit a copy, validate it, apply it live, then make it current. */
  change(fn: Change): Promise<{ summary: string; report: ApplyReport }> {
    return this.serial(async () => {
      const draft = structuredClone(this.cfg);
      const summary = fn(draft);
      const next = validateConfig(draft);
      const report = await this.install(next);
      this.dirty = true;
      return { summary, report };
    });
  }

  private async install(next: LunboxConfig): Promise<ApplyReport> {
    const report = this.runtime ? await this.runtime.apply(next) : { changes: [], notes: [] };
    this.cfg = next;
    return report;
  }

  async save(file?: string): Promise<string> {
    const to = file ?? this.file;
    if (to === undefined) throw new ShellError('no config file: this daemon was started without one; give a path: saveconfig FILE');
    await this.serial(() => saveConfig(to, this.cfg, this.opts.fs ? { fs: this.opts.fs } : {}));
    if (to === this.file) this.dirty = false;
    return to;
  }

  /** Load FILE (default: the config file) and apply it in place of the current config. */
  restore(file?: string): Promise<{ file: string; report: ApplyReport }> {
    const from = file ?? this.file;
    if (from === undefined) return Promise.reject(new ShellError('no config file: give a path: restoreconfig FILE'));
    return this.serial(async () => {
      const next = await (this.opts.load ?? loadConfig)(from);
      const report = await this.install(next);
      this.dirty = from !== this.file;
      return { file: from, report };
    });
  }
}
