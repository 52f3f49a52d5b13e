// Configuration errors: a stable code, the path of the bad field, and what would be valid.

export type ConfigErrorCode =
  | 'UNKNOWN_KEY'
  | 'MISSING'
  | 'TYPE'
  | 'ENUM'
  | 'RANGE'
  | 'FORMAT'
  | 'DUPLICATE'
  | 'REFERENCE'
  | 'SIZE'
  | 'CHAP'
  | 'JSON'
  | 'IO'
  | 'INVALID';

export interface ConfigIssue {
  readonly code: ConfigErrorCode;
  /** e.g. 'iscsi.targets[0].luns[1].backstore'; '' for the whole document. */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly path: string;
  /** Every problem found (validation collects them all); the first is also code/path. */
  readonly errors: readonly ConfigIssue[];
  readonly file: string | undefined;

  constructor(issues: readonly ConfigIssue[], file?: string) {
    const first = issues[0] ?? { code: 'INVALID' as const, path: '', message: 'invalid configuration' };
    const where = (i: ConfigIssue): string => (i.path ? `${i.path}: ${i.message}` : i.message);
    const prefix = file ? `${file}: ` : '';
    super(
      issues.length <= 1
        ? prefix + where(first)
        : `${prefix}${issues.length} problems in the configuration:\n${issues.map((i) => `  - ${where(i)}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.code = first.code;
    this.path = first.path;
    this.errors = issues.length ? issues : [first];
    this.file = file;
  }
}
