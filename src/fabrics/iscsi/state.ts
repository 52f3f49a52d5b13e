// Per-connection state machine (RFC 7143 §8.1.3, target side; CLEANUP_WAIT of §8.2 for ERL 2).
// The connection object asks this table what a state accepts and where an event leads,
// so the rules are in one place and unit-tested without sockets.
//
//   free ──login──► login ──final login response──► full-feature ──logout──► logged-out
//     │               │ (security/operational stages live in the LoginMachine)      │
//     └───────────────┴──────── login reject / transport error ───────► closed ◄────┘
//                                         │ ERL 2: transport failure          ▲
//                                         └──► cleanup-wait ──cleanup-done────┘
//   cleanup-wait: the socket is gone, its tasks wait for TASK REASSIGN (§7.2.2) until
//   Time2Wait + Time2Retain run out or the initiator closes the CID (Logout reason 1).

export type ConnState = 'free' | 'login' | 'full-feature' | 'logged-out' | 'cleanup-wait' | 'closed';

export type ConnEvent =
  | 'login-pdu' // a Login Request arrived
  | 'login-complete' // final Login Response (T=1, NSG=3) sent
  | 'login-failed' // Login Response with a non-zero status class sent
  | 'logout' // Logout Response sent
  | 'transport-closed' // socket closed or dropped for a protocol error
  | 'connection-failed' // transport lost in full feature phase with ERL 2: tasks kept
  | 'cleanup-done'; // Time2Retain expired or the failed CID was logged out

export class StateError extends Error {
  readonly code = 'ISCSI_BAD_STATE';
  constructor(
    readonly state: ConnState,
    readonly event: string,
  ) {
    super(`event ${event} is not valid in connection state ${state}`);
    this.name = 'StateError';
  }
}

const TRANSITIONS: Readonly<Record<ConnState, Partial<Record<ConnEvent, ConnState>>>> = {
  free: { 'login-pdu': 'login', 'transport-closed': 'closed' },
  login: { 'login-pdu': 'login', 'login-complete': 'full-feature', 'login-failed': 'closed', 'transport-closed': 'closed' },
  'full-feature': { logout: 'logged-out', 'transport-closed': 'closed', 'connection-failed': 'cleanup-wait' },
  'logged-out': { 'transport-closed': 'closed' },
  'cleanup-wait': { 'cleanup-done': 'closed', 'transport-closed': 'cleanup-wait' },
  closed: { 'transport-closed': 'closed' },
};

export function transition(state: ConnState, event: ConnEvent): ConnState {
  const next = TRANSITIONS[state][event];
  if (next === undefined) throw new StateError(state, event);
  return next;
}

export type PduKind = 'nop-out' | 'scsi-command' | 'task-mgmt' | 'login' | 'text' | 'data-out' | 'logout' | 'snack';

/**
 * Which initiator PDUs a state accepts. §8.1.3: only Login Requests before full feature
 * phase; a discovery session (§4.3) carries only Text, NOP-Out and Logout.
 */
export function accepts(state: ConnState, kind: PduKind, discovery: boolean): boolean {
  switch (state) {
    case 'free':
    case 'login':
      return kind === 'login';
    case 'full-feature':
      if (kind === 'login') return false;
      if (discovery) return kind === 'text' || kind === 'nop-out' || kind === 'logout';
      return true;
    case 'logged-out':
    case 'cleanup-wait':
    case 'closed':
      return false;
  }
}
