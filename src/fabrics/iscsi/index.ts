// The iSCSI target fabric (RFC 7143): public API.
export { IscsiServer, DEFAULT_ISCSI_PORT } from './server';
export type { SessionInfo } from './server';
export type { ChapCredentials } from './chap';
export type { IscsiTargetParams } from './negotiation';
export { DEFAULT_TARGET_PARAMS, ParamError } from './negotiation';
export type { IscsiAcl, IscsiTargetDef, IscsiServerOptions } from './types';
