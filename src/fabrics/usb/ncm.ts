// The NCM network function on the USB cable, board side: its MAC addresses, the address plan of
// the link, and NcmLink, which brings the board's interface up and hands the computer its
// address by DHCP.
//
// MAC addresses (configfs dev_addr = the board's usb0, host_addr = the computer's end, which the
// host driver reads from the iMACAddress string of the CDC Ethernet functional descriptor):
//   h = SHA-256("lunbox-ncm\0" + USB serial number)
//   board    02:h0:h1:h2:h3:h4      first octet 02 / 06: locally administered (bit 1), unicast (bit 0 clear)
//   computer 06:h0:h1:h2:h3:h4
// The same serial gives the same pair on every start, so the computer keeps its settings for the
// interface; two boards (two serials) differ in 40 bits.
//
// Link: the board takes usb.gadget.ncm.address (default 10.55.0.1/30) on the interface the
// function's `ifname` attribute names once bound (usb0, usually), sets it up, and installs a
// permanent neighbour entry for the computer's address and MAC, so unicast DHCP replies reach a
// computer that has no address yet to answer ARP with. A carrier watch redoes all three (each
// idempotent) whenever the computer brings the link up.
//
// Announcing the link again: the computer learns "connected" from f_ncm's notification, which
// waits on the interrupt endpoint until the computer opens its interface. Linux's usbnet (6.1
// stable and later, since "usbnet: Avoid potential RCU stall on LINK_CHANGE event") can lose it
// when it arrives at the moment of that open: its link worker clears EVENT_LINK_CHANGE after the
// notification set it again, and the computer's interface stays without carrier (seen in the
// first-boot VM test about one run in three; the kernel's flags keep EVENT_LINK_CARRIER_ON).
// The board cannot see the computer open the interface, but a computer with carrier talks at
// once (IPv6 DAD and router solicitation, DHCP). So while nothing at all has been received since
// the link came up, the board takes usb0 down and up (f_ncm sends "disconnected", then
// "connected", now to an open interface) after 5 s, then 10, 20, 40 and every 60 s. A computer
// whose interface is still down only finds the newest state queued; one that is open and silent
// sees its carrier blink.

import { createHash } from 'node:crypto';
import { DhcpServer } from '../../net/dhcp-server';
import type { DhcpServerOptions } from '../../net/dhcp-server';
import type { IpTool } from '../../net/ip-tool';
import { formatMac, planLink } from '../../net/ipv4';
import type { LinkPlan } from '../../net/ipv4';
import type { LogFn } from '../../util/log';

export const NcmDefaults = {
  address: '10.55.0.1/30',
  leaseTime: 3600,
  /** functions/ncm.<instance> */
  instance: 'usb0',
  /** MS OS 1.0 compatible ID that makes Windows 10 (2004+) and 11 load their UsbNcm driver. */
  compatibleId: 'WINNCM',
  /** Carrier poll interval. */
  pollMs: 1000,
  /** First re-announcement of a link nothing was heard on (then doubling up to reannounceMaxMs). */
  reannounceMs: 5000,
  reannounceMaxMs: 60_000,
} as const;

/** usb.gadget.ncm after defaults. */
export interface NcmOptions {
  /** The board's ADDRESS/PREFIX on the link. */
  readonly address?: string;
  /** Serve the computer its address by DHCP [true]. */
  readonly dhcp?: boolean;
  readonly leaseTime?: number;
  readonly deviceMac?: string;
  readonly hostMac?: string;
}

export interface NcmPlan {
  readonly link: LinkPlan;
  readonly deviceMac: string;
  readonly hostMac: string;
  readonly dhcp: boolean;
  readonly leaseTime: number;
}

/** The board's and the computer's MAC addresses for a USB serial number. */
export function ncmMacs(serial: string): { readonly deviceMac: string; readonly hostMac: string } {
  const h = createHash('sha256').update(`lunbox-ncm\0${serial}`).digest();
  const tail = h.subarray(0, 5);
  return { deviceMac: formatMac(Buffer.concat([Buffer.from([0x02]), tail])), hostMac: formatMac(Buffer.concat([Buffer.from([0x06]), tail])) };
}

export class NcmError extends Error {
  readonly code: 'BAD_NCM' | 'NO_INTERFACE';
  constructor(code: NcmError['code'], message: string) {
    super(message);
    this.name = 'NcmError';
    this.code = code;
  }
}

/** Everything the link needs, from the options and the gadget's serial (validated config assumed). */
export function planNcm(opts: NcmOptions, serial: string): NcmPlan {
  const link = planLink(opts.address ?? NcmDefaults.address);
  if (typeof link === 'string') throw new NcmError('BAD_NCM', `usb.gadget.ncm.address: ${link}`);
  const macs = ncmMacs(serial);
  return {
    link,
    deviceMac: (opts.deviceMac ?? macs.deviceMac).toLowerCase(),
    hostMac: (opts.hostMac ?? macs.hostMac).toLowerCase(),
    dhcp: opts.dhcp ?? true,
    leaseTime: opts.leaseTime ?? NcmDefaults.leaseTime,
  };
}

/** The DHCP server as NcmLink uses it (tests inject a recorder). */
export interface DhcpLike {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface NcmLinkOptions {
  readonly ifname: string;
  readonly plan: NcmPlan;
  readonly ip: IpTool;
  readonly log?: LogFn;
  readonly pollMs?: number;
  /** Re-announce a link nothing was heard on after this long (0: never). */
  readonly reannounceMs?: number;
  readonly createDhcp?: (o: DhcpServerOptions) => DhcpLike;
  /** Clock for the re-announce schedule (tests). */
  readonly now?: () => number;
}

/** A link that is up and has not heard from the computer yet. */
interface QuietLink {
  since: number;
  rx: number | undefined;
  wait: number;
}

export class NcmLink {
  private readonly o: NcmLinkOptions;
  private readonly log: LogFn;
  private dhcp: DhcpLike | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastCarrier: boolean | undefined;
  private polling = false;
  private warned = false;
  private quiet: QuietLink | undefined;
  /** Carrier changes seen, how often the link was configured and announced again. */
  readonly counters = { linkUps: 0, linkDowns: 0, configured: 0, reannounced: 0 };

  constructor(o: NcmLinkOptions) {
    this.o = o;
    this.log = o.log ?? (() => undefined);
  }

  get carrier(): boolean | undefined {
    return this.lastCarrier;
  }

  /** Up, address, neighbour entry: each idempotent. */
  async configure(): Promise<void> {
    const { ifname, plan, ip } = this.o;
    await ip.up(ifname);
    await ip.addAddress(ifname, plan.link.cidr);
    await ip.setNeighbour(ifname, plan.link.host, plan.hostMac);
    this.counters.configured++;
  }

  async start(): Promise<void> {
    const { ifname, plan, ip } = this.o;
    if (!(await ip.exists(ifname))) throw new NcmError('NO_INTERFACE', `the NCM function's interface ${ifname} does not exist (is the gadget bound?)`);
    await this.configure();
    if (plan.dhcp) {
      const opts: DhcpServerOptions = {
        lease: { serverAddress: plan.link.board, clientAddress: plan.link.host, clientMac: plan.hostMac, netmask: plan.link.netmask, leaseSeconds: plan.leaseTime },
        beforeUnicast: () => ip.setNeighbour(ifname, plan.link.host, plan.hostMac),
        log: this.log,
      };
      const dhcp = (this.o.createDhcp ?? ((x) => new DhcpServer(x)))(opts);
      try {
        await dhcp.start();
        this.dhcp = dhcp;
      } catch (e) {
        // The disk and iSCSI still work with a hand-set address on the computer: not fatal.
        this.log('error', `ncm: no DHCP server: ${(e as Error).message}; give the computer ${plan.link.host}/${plan.link.prefix} by hand`);
      }
    }
    this.lastCarrier = await ip.carrier(ifname);
    if (this.lastCarrier === true) await this.listen();
    this.timer = setInterval(() => void this.poll(), this.o.pollMs ?? NcmDefaults.pollMs);
    this.timer.unref();
    this.log(
      'info',
      `ncm: ${ifname} is ${plan.link.cidr} (MAC ${plan.deviceMac}); the computer's end is ${plan.hostMac}` +
        (this.dhcp ? `, DHCP gives it ${plan.link.host}` : plan.dhcp ? '' : `, no DHCP: give it ${plan.link.host}/${plan.link.prefix}`),
    );
  }

  /** One carrier check; a rising edge re-applies the configuration. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const { ifname, ip } = this.o;
    try {
      const c = await ip.carrier(ifname);
      if (c === true && this.lastCarrier !== true) {
        this.counters.linkUps++;
        this.log('info', `ncm: ${ifname} link up (the computer enabled the network function)`);
        await this.configure();
        await this.listen();
      } else if (c !== true && this.lastCarrier === true) {
        this.counters.linkDowns++;
        this.log('info', `ncm: ${ifname} link down`);
        this.quiet = undefined;
      } else if (c === true) {
        await this.checkQuiet();
      }
      this.lastCarrier = c;
      this.warned = false;
    } catch (e) {
      if (!this.warned) this.log('warn', `ncm: ${ifname}: ${(e as Error).message}`);
      this.warned = true;
    } finally {
      this.polling = false;
    }
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** The link just came up: wait to hear from the computer (see the header). */
  private async listen(): Promise<void> {
    const first = this.o.reannounceMs ?? NcmDefaults.reannounceMs;
    this.quiet = first > 0 ? { since: this.now(), rx: await this.o.ip.rxPackets(this.o.ifname), wait: first } : undefined;
  }

  /** Still nothing received since the link came up: announce it again when its time has come. */
  private async checkQuiet(): Promise<void> {
    const q = this.quiet;
    if (q === undefined) return;
    const { ifname, ip } = this.o;
    const rx = await ip.rxPackets(ifname);
    if (rx === undefined || q.rx === undefined) {
      q.rx ??= rx;
      return;
    }
    if (rx !== q.rx) {
      this.quiet = undefined; // the computer talks: its end is up
      return;
    }
    const waited = this.now() - q.since;
    if (waited < q.wait) return;
    this.counters.reannounced++;
    this.log(
      'info',
      `ncm: nothing received on ${ifname} ${Math.round(waited / 1000)} s after link up: announcing the link again (${ifname} down and up; a Linux computer can miss the first "connected")`,
    );
    await ip.down(ifname);
    await this.configure();
    q.since = this.now();
    q.wait = Math.min(q.wait * 2, NcmDefaults.reannounceMaxMs);
    q.rx = await ip.rxPackets(ifname);
  }

  /** Stops the watch and the DHCP server. The interface itself goes with the gadget. Idempotent. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const d = this.dhcp;
    this.dhcp = undefined;
    await d?.stop();
  }
}

/** What startNcmLink needs of the gadget (UsbGadget). */
export interface NcmGadget {
  readonly ncmFunction: string | undefined;
  ncmIfname(): Promise<string | undefined>;
}

export interface StartNcmOptions {
  readonly ip: IpTool;
  readonly log: LogFn;
  readonly createDhcp?: (o: DhcpServerOptions) => DhcpLike;
  readonly pollMs?: number;
  /** How long to wait for the interface after binding (default 3 s). */
  readonly waitMs?: number;
}

/**
 * The NCM function's interface exists once the gadget is bound: wait for it, address it and
 * serve DHCP. Shared by both USB engines (the network does not care who serves the disk).
 */
export async function startNcmLink(gadget: NcmGadget, plan: NcmPlan, opts: StartNcmOptions): Promise<{ ifname: string; link: NcmLink }> {
  const deadline = Date.now() + (opts.waitMs ?? 3000);
  let ifname = await gadget.ncmIfname();
  while ((ifname === undefined || !(await opts.ip.exists(ifname))) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    ifname = await gadget.ncmIfname();
  }
  if (ifname === undefined) throw new NcmError('NO_INTERFACE', `functions/${gadget.ncmFunction}/ifname names no interface after binding`);
  const link = new NcmLink({
    ifname,
    plan,
    ip: opts.ip,
    log: opts.log,
    ...(opts.createDhcp ? { createDhcp: opts.createDhcp } : {}),
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
  });
  await link.start();
  return { ifname, link };
}
