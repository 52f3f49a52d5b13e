// The configuration file: schema, validation, load, atomic save, redaction.
export * from './schema';
export { ConfigError } from './errors';
export type { ConfigErrorCode, ConfigIssue } from './errors';
export { validateConfig, configWarnings, backstoreBytes, resolveTarget, MAX_LUN, CHAP_RECOMMENDED_BYTES } from './validate';
export type { ResolvedTarget } from './validate';
export { loadConfig, saveConfig, redactSecrets, nodeSaveFs, REDACTED } from './io';
export type { SaveFs, SaveFileHandle } from './io';
export { iscsiNameProblem } from './iscsi-name';
export { openBackstore, openIso } from './open-backstore';
