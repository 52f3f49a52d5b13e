// Public configuration types of the iSCSI fabric (re-exported by index.ts).

import type { ScsiPort } from '../../scsi/types';
import type { ChapCredentials } from './chap';
import type { IscsiTargetParams } from './negotiation';

export type { ChapCredentials } from './chap';
export type { IscsiTargetParams } from './negotiation';

export interface IscsiAcl {
  readonly initiator: string;
  readonly auth?: ChapCredentials;
}

export interface IscsiTargetDef {
  readonly iqn: string;
  /** Target portal group tag, usually 1. */
  readonly tpgt: number;
  readonly alias?: string;
  /** Advertised in SendTargets (TargetAddress=addr:port,tpgt). */
  readonly portals: readonly { address: string; port: number }[];
  /** Any initiator may log in (LIO generate_node_acls). */
  readonly demoMode: boolean;
  /** When demoMode is false only these initiators may log in. */
  readonly acls: readonly IscsiAcl[];
  /** CHAP required for everybody (a per-ACL auth overrides it for that initiator). */
  readonly auth?: ChapCredentials;
  /** Goes into Nexus.relativeTargetPortId. */
  readonly relativePortId: number;
  /** The core; LUN masking per initiator happens inside it (by nexus.initiatorName). */
  readonly port: ScsiPort;
  readonly params?: Partial<IscsiTargetParams>;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type Logger = (level: LogLevel, msg: string) => void;

export interface IscsiServerOptions {
  targets: readonly IscsiTargetDef[];
  discoveryAuth?: ChapCredentials;
  log?: Logger;
}

/** iSCSI names compare case-insensitively (RFC 3722 stringprep folds case). */
export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** May this initiator log in to (and discover) this target? */
export function initiatorAllowed(t: IscsiTargetDef, initiator: string): boolean {
  return t.demoMode || t.acls.some((a) => sameName(a.initiator, initiator));
}

/** CHAP credentials this initiator must prove for this target (per-ACL auth overrides). */
export function authFor(t: IscsiTargetDef, initiator: string): ChapCredentials | undefined {
  const acl = t.acls.find((a) => sameName(a.initiator, initiator));
  return acl?.auth ?? t.auth;
}
