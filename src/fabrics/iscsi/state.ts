// Per-connection state machine (RFC 7143 §8.1.3, target side, simplified to ERL 0).
// The connection object asks this table what a state accepts and where an event leads,
// so the rules are in one place and unit-tested without sockets.
//
//   free ──login──► login ──final login response──► full-feature ──logout──► logged-out
//     │               │ (security/operational stages live in the LoginMachine)      │
//     └───────────────┴──────── login reject / transport error ───────► closed ◄────┘

export type ConnState = 'free' | 'login' | 'full-feature' | 'logged-out' | 'closed';

export type ConnEvent =
  | 'login-pdu' // a Login Request arrived
  | 'login-complete' // final Login Response (T=1, NSG=3) sent
  | 'login-failed' // Login Response with a non-zero status class sent
  | 'logout' // Logout Response sent
  | 'transport-closed'; // socket closed or dropped for a protocol error

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
  'full-feature': { logout: 'logged-out', 'transport-closed': 'closed' },
  'logged-out': { 'transport-closed': 'closed' },
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
    case 'closed':
      return false;
  }
}
