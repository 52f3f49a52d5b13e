// A DHCP server for one client: the computer at the other end of the USB cable (RFC 2131
// subset). It hands out one address, to one hardware address, and never a router or DNS server,
// so the computer's default route and name servers stay as they were.
//
// Why it cannot act on the board's Wi-Fi or Ethernet, although Node cannot bind a socket to a
// device: (1) it answers only requests whose chaddr is the gadget's host_addr; (2) every reply
// leaves through a socket bound to the board's address on the USB link, and goes either to the
// leased address (on that link's subnet) or to 255.255.255.255 — Linux sends a limited broadcast
// out of the interface that owns the socket's source address (route.c, "Special hack: user can
// direct multicasts and limited broadcast via necessary interface"). So no reply can leave
// through another interface, whoever asked.
//
// Sockets: requests from a client without an address are broadcast to 255.255.255.255:67 and
// reach only a socket bound to 0.0.0.0, so one socket listens there; renewals are unicast to the
// board's address and reach the second (more specific) socket. Both set SO_REUSEADDR to share
// the port. A client that has no address yet cannot answer ARP: unicast replies need a static
// neighbour entry (beforeUnicast), as RFC 2131 §4.1 expects servers to arrange.

import * as dgram from 'node:dgram';
import type { LogFn } from '../util/log';
import {
  BROADCAST_FLAG,
  BootpOp,
  DhcpError,
  DhcpOption,
  DhcpType,
  HType,
  addressOption,
  clientHardwareAddress,
  decodeDhcp,
  dhcpTypeName,
  encodeDhcp,
  ipOption,
  messageType,
  u32Option,
} from './dhcp';
import type { DhcpMessage } from './dhcp';

/** The one lease this server knows. */
export interface DhcpLease {
  /** The board's address on the link: server identifier (option 54) and reply source. */
  readonly serverAddress: string;
  /** The address the computer gets. */
  readonly clientAddress: string;
  /** The computer's hardware address (the gadget's host_addr), aa:bb:cc:dd:ee:ff lower case. */
  readonly clientMac: string;
  readonly netmask: string;
  readonly leaseSeconds: number;
}

export type DhcpAnswer =
  | {
      readonly kind: 'reply';
      readonly type: 'OFFER' | 'ACK' | 'NAK';
      readonly message: DhcpMessage;
      /** RFC 2131 §4.1: 255.255.255.255, or unicast to the client's (new) address. Nothing else. */
      readonly to: 'broadcast' | 'client';
      readonly why: string;
    }
  | { readonly kind: 'ignore'; readonly why: string; readonly decline?: boolean };

const ZERO = '0.0.0.0';

/** What to answer to one request. Pure: the same request and lease give the same answer. */
export function answerDhcp(req: DhcpMessage, lease: DhcpLease): DhcpAnswer {
  const ignore = (why: string): DhcpAnswer => ({ kind: 'ignore', why });
  if (req.op !== BootpOp.REQUEST) return ignore('not a BOOTREQUEST');
  if (req.htype !== HType.ETHERNET || req.hlen !== 6) return ignore(`hardware type ${req.htype}/${req.hlen}: only Ethernet clients`);
  const mac = clientHardwareAddress(req);
  if (mac !== lease.clientMac.toLowerCase()) return ignore(`from ${mac}, not the computer's end of the USB link (${lease.clientMac})`);
  // A relayed request comes from another network; on a USB cable there is no relay.
  if (req.giaddr !== ZERO) return ignore(`relayed through ${req.giaddr}`);
  const type = messageType(req);
  if (type === undefined) return ignore('BOOTP request without a DHCP message type');

  const reply = (t: 'OFFER' | 'ACK' | 'NAK', why: string, o: { lease?: boolean; yiaddr?: string; ciaddr?: string } = {}): DhcpAnswer => {
    const options = new Map<number, Buffer>([
      [DhcpOption.MESSAGE_TYPE, Buffer.from([DhcpType[t]])],
      [DhcpOption.SERVER_ID, ipOption(lease.serverAddress)],
    ]);
    if (t !== 'NAK') {
      if (o.lease !== false) {
        // RFC 2132 §9.11/9.12 defaults: T1 = 0.5, T2 = 0.875 of the lease.
        options.set(DhcpOption.LEASE_TIME, u32Option(lease.leaseSeconds));
        options.set(DhcpOption.RENEWAL_TIME, u32Option(Math.floor(lease.leaseSeconds / 2)));
        options.set(DhcpOption.REBINDING_TIME, u32Option(Math.floor((lease.leaseSeconds * 7) / 8)));
      }
      options.set(DhcpOption.SUBNET_MASK, ipOption(lease.netmask));
      // Deliberately no option 3 (router) and no option 6 (DNS): see the top of this file.
    } else {
      options.set(DhcpOption.MESSAGE, Buffer.from(why, 'latin1').subarray(0, 255));
    }
    // RFC 6842: a server echoes the client identifier it was given.
    const cid = req.options.get(DhcpOption.CLIENT_ID);
    if (cid) options.set(DhcpOption.CLIENT_ID, cid);
    const message: DhcpMessage = {
      op: BootpOp.REPLY,
      htype: req.htype,
      hlen: req.hlen,
      hops: 0,
      xid: req.xid,
      secs: 0,
      flags: req.flags,
      ciaddr: o.ciaddr ?? ZERO,
      yiaddr: o.yiaddr ?? ZERO,
      siaddr: ZERO,
      giaddr: ZERO,
      chaddr: req.chaddr,
      sname: '',
      file: '',
      options,
    };
    // RFC 2131 §4.1: NAKs are broadcast; a client with an address (ciaddr) gets unicast; one that
    // asked for broadcast gets it; else unicast to yiaddr. Unicast only ever goes to the lease.
    let to: 'broadcast' | 'client' = 'broadcast';
    if (t !== 'NAK') {
      if (req.ciaddr === lease.clientAddress) to = 'client';
      else if (req.ciaddr === ZERO && (req.flags & BROADCAST_FLAG) === 0 && message.yiaddr === lease.clientAddress) to = 'client';
    }
    return { kind: 'reply', type: t, message, to, why };
  };

  const requested = addressOption(req, DhcpOption.REQUESTED_IP);
  switch (type) {
    case DhcpType.DISCOVER:
      return reply('OFFER', `offer ${lease.clientAddress}`, { yiaddr: lease.clientAddress });
    case DhcpType.REQUEST: {
      const server = req.options.get(DhcpOption.SERVER_ID);
      if (server !== undefined) {
        // SELECTING (§4.3.2): the client answers an OFFER; another server's is none of ours.
        if (addressOption(req, DhcpOption.SERVER_ID) !== lease.serverAddress) return ignore(`request for another server ${addressOption(req, DhcpOption.SERVER_ID) ?? '(malformed)'}`);
        return requested === lease.clientAddress
          ? reply('ACK', `lease ${lease.clientAddress}`, { yiaddr: lease.clientAddress })
          : reply('NAK', `requested ${requested ?? 'no address'}, offered ${lease.clientAddress}`);
      }
      if (requested !== undefined) {
        // INIT-REBOOT: the client asks to keep an address it had (maybe from another network).
        return requested === lease.clientAddress
          ? reply('ACK', `lease ${lease.clientAddress} (reboot)`, { yiaddr: lease.clientAddress })
          : reply('NAK', `${requested} is not an address on this link (${lease.clientAddress} is)`);
      }
      if (req.ciaddr !== ZERO) {
        // RENEWING / REBINDING: ciaddr is the address in use.
        return req.ciaddr === lease.clientAddress
          ? reply('ACK', `renew ${lease.clientAddress}`, { yiaddr: lease.clientAddress, ciaddr: req.ciaddr })
          : reply('NAK', `${req.ciaddr} is not an address on this link (${lease.clientAddress} is)`);
      }
      return ignore('REQUEST with neither a requested address nor ciaddr');
    }
    case DhcpType.INFORM:
      // §4.3.5: the client configured its address itself and wants parameters: no lease, no yiaddr.
      if (req.ciaddr !== lease.clientAddress) return ignore(`INFORM from ${req.ciaddr}, not ${lease.clientAddress}`);
      return reply('ACK', 'inform', { lease: false, ciaddr: req.ciaddr });
    case DhcpType.DECLINE:
      return { kind: 'ignore', why: `the computer declined ${requested ?? '?'}: something else on the link answers ARP for it`, decline: true };
    case DhcpType.RELEASE:
      return ignore(`the computer released ${req.ciaddr}`);
    default:
      return ignore(`${dhcpTypeName(type)} is not for a server`);
  }
}

export interface DhcpServerOptions {
  readonly lease: DhcpLease;
  /** Address of the listening socket [0.0.0.0]. */
  readonly anyAddress?: string;
  /** Server port [67]; 0: any free port (tests), the same for both sockets. */
  readonly serverPort?: number;
  /** Client port replies go to [68]. */
  readonly clientPort?: number;
  /** Where broadcast replies go [255.255.255.255]. */
  readonly broadcastAddress?: string;
  /** Runs before a reply is unicast to the leased address (installs the static neighbour entry). */
  readonly beforeUnicast?: () => Promise<void>;
  readonly log?: LogFn;
}

export type DhcpServerErrorCode = 'PORT_IN_USE' | 'NOT_ROOT' | 'NO_ADDRESS' | 'START_FAILED';

export class DhcpServerError extends Error {
  readonly code: DhcpServerErrorCode;
  constructor(code: DhcpServerErrorCode, message: string) {
    super(message);
    this.name = 'DhcpServerError';
    this.code = code;
  }
}

export interface DhcpEvent {
  readonly answer: DhcpAnswer;
  readonly requestType: string;
  readonly from: string;
}

const noLog: LogFn = () => undefined;

export class DhcpServer {
  private readonly opts: DhcpServerOptions;
  private readonly log: LogFn;
  private rx: dgram.Socket | undefined;
  private tx: dgram.Socket | undefined;
  private port_ = 0;
  /** Every request's answer, for the logs and tests. */
  onAnswer: ((e: DhcpEvent) => void) | undefined;
  readonly counters = { received: 0, malformed: 0, ignored: 0, offers: 0, acks: 0, naks: 0, sendErrors: 0 };

  constructor(opts: DhcpServerOptions) {
    this.opts = opts;
    this.log = opts.log ?? noLog;
  }

  /** The server port both sockets are bound to (after start). */
  get port(): number {
    return this.port_;
  }

  private bind(sock: dgram.Socket, address: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        const where = `${address}:${port || '(any)'}`;
        if (e.code === 'EADDRINUSE') {
          reject(new DhcpServerError('PORT_IN_USE', `UDP ${where} is in use: another DHCP server runs on the board (dnsmasq, NetworkManager's "shared" mode, systemd-networkd's DHCPServer=); stop it or set usb.gadget.ncm.dhcp to false`));
        } else if (e.code === 'EACCES' || e.code === 'EPERM') {
          reject(new DhcpServerError('NOT_ROOT', `UDP ${where}: ports below 1024 need root`));
        } else if (e.code === 'EADDRNOTAVAIL') {
          reject(new DhcpServerError('NO_ADDRESS', `UDP ${where}: the board has no address ${address} (the USB network interface is not configured)`));
        } else {
          reject(new DhcpServerError('START_FAILED', `UDP ${where}: ${e.message}`));
        }
      };
      sock.once('error', onError);
      sock.bind({ address, port }, () => {
        sock.removeListener('error', onError);
        resolve(sock.address().port);
      });
    });
  }

  async start(): Promise<void> {
    if (this.rx) return;
    const l = this.opts.lease;
    try {
      const tx = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      this.tx = tx;
      this.port_ = await this.bind(tx, l.serverAddress, this.opts.serverPort ?? 67);
      tx.setBroadcast(true);
      const rx = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      this.rx = rx;
      await this.bind(rx, this.opts.anyAddress ?? '0.0.0.0', this.port_);
      for (const s of [tx, rx]) {
        s.on('message', (buf, rinfo) => {
          // A bad datagram must never take the daemon down: whatever escapes is logged.
          this.onMessage(buf, `${rinfo.address}:${rinfo.port}`).catch((e: Error) => this.log('warn', `dhcp: ${e.message}`));
        });
        s.on('error', (e) => this.log('warn', `dhcp: socket error: ${e.message}`));
      }
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.log('debug', `dhcp: serving ${l.clientAddress} to ${l.clientMac} on UDP port ${this.port_}`);
  }

  async stop(): Promise<void> {
    const socks = [this.rx, this.tx].filter((s): s is dgram.Socket => s !== undefined);
    this.rx = undefined;
    this.tx = undefined;
    await Promise.all(socks.map((s) => new Promise<void>((r) => {
      try {
        s.close(() => r());
      } catch {
        r(); // never bound
      }
    })));
  }

  private async onMessage(buf: Buffer, from: string): Promise<void> {
    this.counters.received++;
    let req: DhcpMessage;
    try {
      req = decodeDhcp(buf);
    } catch (e) {
      this.counters.malformed++;
      this.log(e instanceof DhcpError ? 'debug' : 'warn', `dhcp: ${buf.length} bytes from ${from} dropped: ${(e as Error).message}`);
      return;
    }
    // Our own broadcast replies loop back to the listening socket: not requests.
    if (req.op !== BootpOp.REQUEST) return;
    const l = this.opts.lease;
    const answer = answerDhcp(req, l);
    const requestType = dhcpTypeName(messageType(req));
    this.onAnswer?.({ answer, requestType, from });
    if (answer.kind === 'ignore') {
      this.counters.ignored++;
      this.log(answer.decline ? 'warn' : 'debug', `dhcp: ${requestType} ignored: ${answer.why}`);
      return;
    }
    const tx = this.tx;
    if (!tx) return;
    try {
      if (answer.to === 'client') await this.opts.beforeUnicast?.();
      const dest = answer.to === 'client' ? l.clientAddress : this.opts.broadcastAddress ?? '255.255.255.255';
      await new Promise<void>((resolve, reject) => tx.send(encodeDhcp(answer.message), this.opts.clientPort ?? 68, dest, (e) => (e ? reject(e) : resolve())));
    } catch (e) {
      this.counters.sendErrors++;
      this.log('warn', `dhcp: sending ${answer.type} to ${l.clientMac} failed: ${(e as Error).message}`);
      return;
    }
    if (answer.type === 'OFFER') this.counters.offers++;
    else if (answer.type === 'ACK') this.counters.acks++;
    else this.counters.naks++;
    const level = answer.type === 'OFFER' ? 'debug' : 'info';
    this.log(level, `dhcp: ${requestType} → ${answer.type} (${answer.why}; ${answer.to === 'client' ? `unicast ${l.clientAddress}` : 'broadcast'})`);
  }
}
