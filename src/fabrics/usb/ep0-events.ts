// FunctionFS ep0 events and the Bulk-Only class requests. Pure functions plus one small
// executor over an injected ep0 file interface.
//
// include/uapi/linux/usb/functionfs.h `struct usb_functionfs_event`, 12 bytes, little-endian:
//   0  u8   bRequestType  ┐
//   1  u8   bRequest      │ union { struct usb_ctrlrequest setup; }  (USB 2.0 §9.3, table 9-2)
//   2  le16 wValue        │ valid for FUNCTIONFS_SETUP only
//   4  le16 wIndex        │ (interface-recipient: rewritten to the function-local interface)
//   6  le16 wLength       ┘
//   8  u8   type          enum usb_functionfs_event_type
//   9  u8   _pad[3]
// A read(2) of ep0 returns whole events (at most 4 queued).
//
// BOT 1.0 §3.1 Bulk-Only Mass Storage Reset: bmRequestType 21h, bRequest FFh, wValue 0,
//   wIndex = interface, wLength 0. The device readies for the next CBW; host then clears halts.
// BOT 1.0 §3.2 Get Max LUN: bmRequestType A1h, bRequest FEh, wValue 0, wIndex = interface,
//   wLength 1; data stage 1 byte = highest LUN (0..15).
// FunctionFS ep0 I/O while a SETUP is pending (f_fs.c ffs_ep0_read / ffs_ep0_write):
//   IN request:  write() = data stage;  read()  = STALL (returns EL2HLT).
//   OUT request: read()  = data/status stage (wLength 0: any read length ACKs);  write() = STALL.

export const EVENT_LENGTH = 12;

/** functionfs.h `enum usb_functionfs_event_type`. */
export const FfsEventType = {
  BIND: 0,
  UNBIND: 1,
  ENABLE: 2,
  DISABLE: 3,
  SETUP: 4,
  SUSPEND: 5,
  RESUME: 6,
} as const;

const EVENT_NAMES = ['bind', 'unbind', 'enable', 'disable', 'setup', 'suspend', 'resume'] as const;
export type Ep0EventKind = (typeof EVENT_NAMES)[number];

/** Event byte offsets (struct usb_functionfs_event). */
export const EventOff = {
  B_REQUEST_TYPE: 0,
  B_REQUEST: 1,
  W_VALUE: 2,
  W_INDEX: 4,
  W_LENGTH: 6,
  TYPE: 8,
} as const;

/** USB 2.0 table 9-2 bmRequestType fields. */
export const RequestType = {
  DIR_IN: 0x80,
  TYPE_MASK: 0x60,
  TYPE_STANDARD: 0x00,
  TYPE_CLASS: 0x20,
  TYPE_VENDOR: 0x40,
  RECIP_MASK: 0x1f,
  RECIP_DEVICE: 0x00,
  RECIP_INTERFACE: 0x01,
  RECIP_ENDPOINT: 0x02,
} as const;

/** BOT 1.0 §3 class-specific requests. */
export const BotRequest = {
  RESET: { bmRequestType: 0x21, bRequest: 0xff },
  GET_MAX_LUN: { bmRequestType: 0xa1, bRequest: 0xfe },
} as const;

/** BOT 1.0 §3.2: at most 16 LUNs (highest LUN 0x0F). */
export const MAX_LUNS = 16;

/** USB 2.0 §9.3 setup packet, field names from the spec. */
export interface SetupPacket {
  readonly bmRequestType: number;
  readonly bRequest: number;
  readonly wValue: number;
  readonly wIndex: number;
  readonly wLength: number;
}

export type Ep0Event =
  | { readonly kind: 'setup'; readonly setup: SetupPacket }
  | { readonly kind: Exclude<Ep0EventKind, 'setup'> };

/** An ep0 event decoding error, with a stable code. */
export class Ep0EventError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'Ep0EventError';
    this.code = code;
  }
}

/** Decode one 12-byte `usb_functionfs_event` at `offset`. */
export function decodeEp0Event(buf: Buffer, offset = 0): Ep0Event {
  if (offset < 0 || buf.length - offset < EVENT_LENGTH) {
    throw new Ep0EventError('SHORT_EVENT', `ep0 event needs ${EVENT_LENGTH} bytes, have ${Math.max(0, buf.length - offset)}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, EVENT_LENGTH);
  const type = dv.getUint8(EventOff.TYPE);
  const kind = EVENT_NAMES[type];
  if (kind === undefined) throw new Ep0EventError('UNKNOWN_EVENT', `unknown FunctionFS event type ${type}`);
  if (kind !== 'setup') return { kind };
  return {
    kind,
    setup: {
      bmRequestType: dv.getUint8(EventOff.B_REQUEST_TYPE),
      bRequest: dv.getUint8(EventOff.B_REQUEST),
      wValue: dv.getUint16(EventOff.W_VALUE, true),
      wIndex: dv.getUint16(EventOff.W_INDEX, true),
      wLength: dv.getUint16(EventOff.W_LENGTH, true),
    },
  };
}

/** Decode every event of one ep0 read (the kernel returns whole events only). */
export function decodeEp0Events(buf: Buffer): Ep0Event[] {
  if (buf.length % EVENT_LENGTH !== 0) {
    throw new Ep0EventError('PARTIAL_EVENT', `ep0 read of ${buf.length} bytes is not a whole number of events`);
  }
  const out: Ep0Event[] = [];
  for (let o = 0; o < buf.length; o += EVENT_LENGTH) out.push(decodeEp0Event(buf, o));
  return out;
}

/** Encode an event (for fakes and tests: the kernel is the only real producer). */
export function encodeEp0Event(ev: Ep0Event): Buffer {
  const b = Buffer.alloc(EVENT_LENGTH);
  b[EventOff.TYPE] = FfsEventType[ev.kind.toUpperCase() as Uppercase<Ep0EventKind>];
  if (ev.kind === 'setup') {
    b[EventOff.B_REQUEST_TYPE] = ev.setup.bmRequestType;
    b[EventOff.B_REQUEST] = ev.setup.bRequest;
    b.writeUInt16LE(ev.setup.wValue, EventOff.W_VALUE);
    b.writeUInt16LE(ev.setup.wIndex, EventOff.W_INDEX);
    b.writeUInt16LE(ev.setup.wLength, EventOff.W_LENGTH);
  }
  return b;
}

/** Whether the request has a device-to-host data stage (bmRequestType bit 7). */
export function isInRequest(setup: SetupPacket): boolean {
  return (setup.bmRequestType & RequestType.DIR_IN) !== 0;
}

/**
 * What the function must do on ep0 for a SETUP:
 * - `data-in`: write `data` (the data stage of an IN request);
 * - `ack`: read on ep0 (status stage of a no-data OUT request);
 * - `reset`: perform the Bulk-Only Mass Storage Reset, then ack;
 * - `stall`: the request is unsupported or malformed; stall ep0 by doing I/O in the wrong
 *   direction (`read` for an IN request, `write` for an OUT request).
 */
export type SetupAnswer =
  | { readonly kind: 'data-in'; readonly data: Buffer }
  | { readonly kind: 'ack' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'stall'; readonly io: 'read' | 'write'; readonly reason: string };

function stall(setup: SetupPacket, reason: string): SetupAnswer {
  return { kind: 'stall', io: isInRequest(setup) ? 'read' : 'write', reason };
}

export interface ClassRequestOptions {
  /** Number of LUNs the function serves (1..16). */
  readonly lunCount: number;
  /** Function-local interface number FunctionFS reports in wIndex (0 for one interface). */
  readonly interfaceNumber?: number;
}

/**
 * Answer a SETUP addressed to the BOT function. Validation follows BOT 1.0 §3.1/§3.2 exactly
 * (as Linux f_mass_storage `fsg_setup` does): wrong wValue/wIndex/wLength stalls.
 */
export function answerSetup(setup: SetupPacket, opts: ClassRequestOptions): SetupAnswer {
  const intf = opts.interfaceNumber ?? 0;
  const { bmRequestType: t, bRequest: r } = setup;
  if (t === BotRequest.RESET.bmRequestType && r === BotRequest.RESET.bRequest) {
    if (setup.wValue !== 0 || setup.wIndex !== intf || setup.wLength !== 0) {
      return stall(setup, 'Bulk-Only Mass Storage Reset with wValue/wIndex/wLength not 0/interface/0');
    }
    return { kind: 'reset' };
  }
  if (t === BotRequest.GET_MAX_LUN.bmRequestType && r === BotRequest.GET_MAX_LUN.bRequest) {
    if (setup.wValue !== 0 || setup.wIndex !== intf || setup.wLength !== 1) {
      return stall(setup, 'Get Max LUN with wValue/wIndex/wLength not 0/interface/1');
    }
    const n = Math.max(1, Math.min(MAX_LUNS, Math.floor(opts.lunCount)));
    return { kind: 'data-in', data: Buffer.from([n - 1]) };
  }
  return stall(
    setup,
    `unsupported request bmRequestType 0x${t.toString(16).padStart(2, '0')} bRequest 0x${r.toString(16).padStart(2, '0')}`,
  );
}

/** The ep0 file as the answer executor needs it (FunctionFS: fs.read/fs.write on ep0). */
export interface Ep0Io {
  read(length: number): Promise<Buffer>;
  write(data: Buffer): Promise<void>;
}

/** Errno names that mean "done" for ep0 stalls (f_fs `__ffs_ep0_stall` returns -EL2HLT). */
const STALL_DONE = new Set(['EL2HLT']);

/**
 * Carry out a SetupAnswer on ep0. `onReset` runs before the status stage of a reset.
 * Node's fs.read never reaches the kernel for length 0, so ACK reads ask for 1 byte: the
 * kernel clamps the length to wLength (0) and queues the zero-length status stage.
 */
export async function applySetupAnswer(
  io: Ep0Io,
  setup: SetupPacket,
  answer: SetupAnswer,
  onReset?: () => Promise<void> | void,
): Promise<void> {
  switch (answer.kind) {
    case 'data-in':
      // USB 2.0 §9.3.5: never return more than wLength.
      await io.write(answer.data.length > setup.wLength ? answer.data.subarray(0, setup.wLength) : answer.data);
      return;
    case 'reset':
      if (onReset) await onReset();
      await io.read(1);
      return;
    case 'ack':
      await io.read(1);
      return;
    case 'stall':
      try {
        if (answer.io === 'read') await io.read(1);
        else await io.write(Buffer.alloc(0));
      } catch (e) {
        if (!STALL_DONE.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
      return;
  }
}

/** What the ep0 loop drives: lifecycle events and SETUP answers. */
export interface Ep0Handler {
  event(kind: Exclude<Ep0EventKind, 'setup'>): void | Promise<void>;
  setup(setup: SetupPacket): SetupAnswer | Promise<SetupAnswer>;
}

/** Errnos after which the ep0 loop carries on (f_fs: a newer SETUP superseded the data stage). */
const EP0_TRANSIENT = new Set(['EIDRM', 'EINTR', 'EAGAIN']);

/**
 * Read ep0 events until `stop()` says so or ep0 fails, answering each SETUP before the next
 * read (the kernel holds one pending SETUP; I/O on ep0 while it is pending is its data or
 * status stage). Resolves with the error that ended the loop, if any.
 */
export async function serveEp0(
  io: Ep0Io,
  handler: Ep0Handler,
  stop: () => boolean = () => false,
): Promise<unknown> {
  // f_fs queues at most 4 events; a read must be a multiple of the event size.
  const readSize = 4 * EVENT_LENGTH;
  while (!stop()) {
    let events: Ep0Event[];
    try {
      events = decodeEp0Events(await io.read(readSize));
    } catch (e) {
      if (EP0_TRANSIENT.has((e as NodeJS.ErrnoException).code ?? '')) continue;
      return e;
    }
    for (const ev of events) {
      try {
        if (ev.kind === 'setup') await applySetupAnswer(io, ev.setup, await handler.setup(ev.setup));
        else await handler.event(ev.kind);
      } catch (e) {
        if (!EP0_TRANSIENT.has((e as NodeJS.ErrnoException).code ?? '')) return e;
      }
    }
  }
  return undefined;
}
