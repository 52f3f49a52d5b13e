// A USB mass-storage target: a configfs gadget with one FunctionFS function running the
// Bulk-Only Transport over the SCSI core (plus an optional ACM serial console and an optional
// NCM network link).
//
// start(): preflight (root, configfs, UDC) → remove leftovers of a crashed run (unbind,
//   umount, rmdir) → create the gadget → mount FunctionFS → descriptors + strings to ep0 →
//   open ep1/ep2 → bind the UDC → serve ep0 events (ENABLE starts the BOT machine at the
//   packet size of /sys/class/udc/<udc>/current_speed; DISABLE/UNBIND stop it) → with NCM,
//   configure the function's interface (ifname) and start its DHCP server (NcmLink).
// stop(): NCM link down → unbind (the kernel completes pending endpoint I/O with ESHUTDOWN and
//   queues DISABLE/UNBIND, which ends the ep0 read) → close files → umount → remove the gadget
//   (its NCM interface goes with it).
// The logical units belong to the caller: stop() neither flushes nor closes them.

import { promises as fsp, constants as C } from 'node:fs';
import { execFile } from 'node:child_process';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { TargetPort } from '../../scsi/port';
import type { LogicalUnit, LunMapEntry } from '../../scsi/index';
import type { LogFn } from '../../util/log';
import { BotFunction, usbNexus } from './bot';
import { BotFastPath } from './bot-fast';
import { findFastAddon } from './fast-addon';
import type { BotEndpoints, BotOutcome } from './bot';
import type { ScsiPort } from '../../scsi/types';
import { serveEp0 } from './ep0-events';
import type { Ep0Handler } from './ep0-events';
import { encodeBotDescriptors, encodeBotStrings } from './functionfs-descriptors';
import { FfsError, FunctionFs, currentMaxPacket, nodeFfsIo } from './functionfs';
import type { FfsIo } from './functionfs';
import { GadgetDefaults, GadgetError, UsbGadget, nodeConfigFs } from './gadget';
import type { ConfigFs, GadgetSpec } from './gadget';
import { NcmError, NcmLink, planNcm, startNcmLink } from './ncm';
import type { DhcpLike, NcmOptions, NcmPlan } from './ncm';
import { IpToolError, nodeIpTool } from '../../net/ip-tool';
import type { IpTool } from '../../net/ip-tool';
import type { DhcpServerOptions } from '../../net/dhcp-server';

/** The gadget as a user configures it (config file `usb.gadget`). */
export interface UsbGadgetOptions {
  /** configfs gadget directory name; default "lunbox". */
  readonly name?: string;
  readonly vendorId?: number;
  readonly productId?: number;
  readonly manufacturer?: string;
  readonly product?: string;
  readonly serial?: string;
  /** UDC name from /sys/class/udc; default the first one. */
  readonly udc?: string;
  /** Add an ACM serial function (host: /dev/ttyACM0, board: /dev/ttyGS0). Default false. */
  readonly acm?: boolean;
  readonly maxPower?: number;
  /** An NCM network function with the board's address and a DHCP server for the computer. */
  readonly ncm?: NcmOptions;
}

export interface UsbLun {
  readonly lun: number;
  readonly unit: LogicalUnit;
  readonly readOnly?: boolean;
}

/** The system under a USB engine (tests inject fakes; default: the real one). */
export interface UsbEngineSystem {
  readonly configFs?: ConfigFs;
  readonly configfsRoot?: string;
  readonly udcClass?: string;
  /** Skip the uid/modprobe preflight (tests). */
  readonly preflight?: boolean;
  /** The board's interfaces (`ip`, /sys/class/net). */
  readonly ipTool?: IpTool;
  readonly createDhcp?: (o: DhcpServerOptions) => DhcpLike;
  /** NCM carrier poll interval (ms). */
  readonly ncmPollMs?: number;
  /** How long to wait for the NCM interface after binding (ms) [3000]. */
  readonly ncmWaitMs?: number;
}

/** What both USB engines (this one and kernel-msc.ts) take besides their LUNs. */
export interface UsbEngineOptions extends UsbEngineSystem {
  readonly gadget: UsbGadgetOptions;
  readonly log?: LogFn;
}

export interface UsbTargetOptions extends UsbEngineOptions {
  /** LUNs 0..15 (BOT); gaps answer LOGICAL UNIT NOT SUPPORTED. */
  readonly luns: readonly UsbLun[];
  /** Largest bulk transfer per read/write (default 1 MiB; USB 2.0 hosts send 120 KiB commands, USB 3 hosts 1 MiB). */
  readonly chunkSize?: number;
  /** FunctionFS mount point; default /dev/ffs-<name>. */
  readonly mountPoint?: string;
  /**
   * Serve plain READ and WRITE in a worker thread that owns the bulk endpoints (bot-fast.ts).
   * Default true with the real FunctionFS; LUNBOX_USB_FASTPATH=0 in the environment turns it off.
   */
  readonly fastPath?: boolean;
  // FunctionFS injection points for tests (defaults: the real system).
  readonly ffsIo?: FfsIo;
  readonly procMounts?: string;
}

/** Why the USB target could not start, with a stable code and what to do about it. */
export class UsbTargetError extends Error {
  readonly code: 'NOT_ROOT' | 'NO_CONFIGFS' | 'NO_UDC' | 'UDC_NOT_FOUND' | 'UDC_BUSY' | 'NO_FUNCTIONFS' | 'NO_NCM' | 'NCM_FAILED' | 'BAD_LUNS' | 'START_FAILED';
  constructor(code: UsbTargetError['code'], message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'UsbTargetError';
    this.code = code;
  }
}

const UDC_HINT =
  'in a VM: modprobe dummy_hcd; on a Raspberry Pi: dtoverlay=dwc2,dr_mode=peripheral in config.txt and modprobe dwc2; ' +
  'on a BeagleBone: the musb driver in peripheral mode (and no other gadget on the UDC)';

function modprobe(mod: string): Promise<boolean> {
  return new Promise((resolve) => execFile('modprobe', [mod], { timeout: 20_000 }, (e) => resolve(!e)));
}

/** A function's LUN numbers (BOT Get Max LUN, f_mass_storage lun.N): 0..15, each once, at least one. */
export function checkUsbLuns(luns: readonly { readonly lun: number }[], range: string): void {
  const seen = new Set<number>();
  for (const l of luns) {
    if (!Number.isInteger(l.lun) || l.lun < 0 || l.lun > 15) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun}: ${range} are 0..15`);
    if (seen.has(l.lun)) throw new UsbTargetError('BAD_LUNS', `usb LUN ${l.lun} is given twice`);
    seen.add(l.lun);
  }
  if (luns.length === 0) throw new UsbTargetError('BAD_LUNS', 'usb: at least one LUN is needed');
}

/**
 * The configfs gadget both engines build from the user's options; `fn` is the engine's own
 * storage function (FunctionFS instance, or the kernel's mass_storage LUNs).
 */
export function gadgetSpec(g: UsbGadgetOptions, ncm: NcmPlan | undefined, fn: Pick<GadgetSpec, 'ffsInstance' | 'massStorage'>): GadgetSpec {
  return {
    name: g.name ?? 'lunbox',
    ...fn,
    acmInstance: g.acm === true ? GadgetDefaults.acmInstance : false,
    ...(g.vendorId !== undefined ? { idVendor: g.vendorId } : {}),
    ...(g.productId !== undefined ? { idProduct: g.productId } : {}),
    ...(g.manufacturer !== undefined ? { manufacturer: g.manufacturer } : {}),
    ...(g.product !== undefined ? { product: g.product } : {}),
    ...(g.serial !== undefined ? { serialnumber: g.serial } : {}),
    ...(g.udc !== undefined ? { udc: g.udc } : {}),
    ...(g.maxPower !== undefined ? { maxPower: g.maxPower } : {}),
    ...(ncm ? { ncm: { devAddr: ncm.deviceMac, hostAddr: ncm.hostMac } } : {}),
  };
}

/** The NCM plan of a gadget: MACs from the serial, or (no board identity found) from the host name. */
export function gadgetNcm(g: UsbGadgetOptions): NcmPlan | undefined {
  return g.ncm ? planNcm(g.ncm, g.serial ?? hostname()) : undefined;
}

/** Both engines: once the gadget is bound, address its NCM interface and serve DHCP there. */
export function startEngineNcm(gadget: UsbGadget, plan: NcmPlan, opts: UsbEngineOptions, log: LogFn): Promise<{ ifname: string; link: NcmLink }> {
  return startNcmLink(gadget, plan, {
    ip: opts.ipTool ?? nodeIpTool(),
    log,
    ...(opts.createDhcp ? { createDhcp: opts.createDhcp } : {}),
    ...(opts.ncmPollMs !== undefined ? { pollMs: opts.ncmPollMs } : {}),
    ...(opts.ncmWaitMs !== undefined ? { waitMs: opts.ncmWaitMs } : {}),
  });
}

/**
 * Before touching configfs: load libcomposite (what a board's modules-load would have done;
 * harmless when loaded) and the engine's `modules` when root, then make sure the gadget tree
 * is there and writable. `needs` says what else root is needed for.
 */
export async function usbPreflight(configfsRoot: string, modules: readonly string[], needs: string): Promise<void> {
  const gadgets = path.join(configfsRoot, 'usb_gadget');
  const isDir = async (p: string): Promise<boolean> => (await fsp.stat(p).catch(() => undefined))?.isDirectory() === true;
  const root = typeof process.getuid === 'function' ? process.getuid() === 0 : true;
  if (root) {
    if (!(await isDir(gadgets))) await modprobe('libcomposite');
    for (const m of modules) await modprobe(m);
  }
  if (!(await isDir(gadgets))) {
    throw new UsbTargetError(
      'NO_CONFIGFS',
      `${gadgets} is missing: mount configfs (mount -t configfs none ${configfsRoot}) and load libcomposite (modprobe libcomposite)`,
    );
  }
  if (!root && (await fsp.access(gadgets, C.W_OK).then(() => false, () => true))) {
    throw new UsbTargetError('NOT_ROOT', `USB gadget setup needs root (configfs ${gadgets}, ${needs}): run lunbox as root`);
  }
}

/**
 * A setup failure as a UsbTargetError. `own` maps what only the engine knows (its storage
 * function missing from the kernel, ...) first; then what both share: root, configfs, the UDC,
 * the NCM function and link. Anything else is START_FAILED with `label` in front.
 */
export function usbSetupError(e: unknown, udcClass: string, label: string, own: (e: unknown, msg: string) => UsbTargetError | undefined): UsbTargetError {
  if (e instanceof UsbTargetError) return e;
  const errno = (e as { errno?: unknown }).errno;
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  const mine = own(e, msg);
  if (mine) return mine;
  if (errno === 'EACCES' || errno === 'EPERM' || code === 'NOT_ROOT') {
    return new UsbTargetError('NOT_ROOT', `USB gadget setup needs root: ${msg}`, e);
  }
  if (e instanceof GadgetError) {
    if (e.code === 'NO_CONFIGFS') return new UsbTargetError('NO_CONFIGFS', `${msg} (modprobe libcomposite)`, e);
    if (e.code === 'NO_UDC') return new UsbTargetError('NO_UDC', `no USB device controller in ${udcClass}: ${UDC_HINT}`, e);
    if (e.code === 'UDC_NOT_FOUND') return new UsbTargetError('UDC_NOT_FOUND', `${msg}; ${UDC_HINT}`, e);
    if (e.code === 'UDC_BUSY') return new UsbTargetError('UDC_BUSY', msg, e);
    if (e.code === 'CONFIGFS' && errno === 'ENOENT' && /functions\/ncm\./.test(msg)) {
      return new UsbTargetError('NO_NCM', `${msg}: the kernel has no NCM gadget function (modprobe usb_f_ncm; CONFIG_USB_CONFIGFS_NCM), or set usb.gadget.ncm to false`, e);
    }
  }
  if (e instanceof NcmError || e instanceof IpToolError) return new UsbTargetError('NCM_FAILED', `USB network (NCM): ${msg}`, e);
  return new UsbTargetError('START_FAILED', `${label}: ${msg}`, e);
}

const noLog: LogFn = () => undefined;

export class UsbTarget {
  readonly gadget: UsbGadget;
  readonly ffs: FunctionFs;
  private readonly opts: UsbTargetOptions;
  private readonly log: LogFn;
  private readonly io: FfsIo;
  private readonly udcClass: string;
  private readonly configfsRoot: string;
  private readonly entries: readonly LunMapEntry[];
  private bot: BotFunction | undefined;
  private fast: BotFastPath | undefined;
  private ep0Loop: Promise<unknown> | undefined;
  private stopping = false;
  private started = false;
  private udc_: string | undefined;
  private profile: UsbProfile | undefined;
  private ncmLink: NcmLink | undefined;
  private ifname_: string | undefined;
  /** The NCM link's addresses and MACs, when the gadget has NCM. */
  readonly ncm: NcmPlan | undefined;
  /** Counters for the console/logs. */
  readonly counters = { commands: 0, phaseErrors: 0, invalidCbws: 0, resets: 0, ioErrors: 0, enables: 0 };

  constructor(opts: UsbTargetOptions) {
    this.opts = opts;
    this.log = opts.log ?? noLog;
    this.io = opts.ffsIo ?? nodeFfsIo();
    this.udcClass = opts.udcClass ?? '/sys/class/udc';
    this.configfsRoot = opts.configfsRoot ?? '/sys/kernel/config';
    const name = opts.gadget.name ?? 'lunbox';
    this.ncm = gadgetNcm(opts.gadget);
    const spec = gadgetSpec(opts.gadget, this.ncm, { ffsInstance: name });
    this.gadget = new UsbGadget(spec, { fs: opts.configFs ?? nodeConfigFs(), configfs: this.configfsRoot, udcClass: this.udcClass });
    this.ffs = new FunctionFs({
      instance: name,
      io: this.io,
      ...(opts.mountPoint !== undefined ? { mountPoint: opts.mountPoint } : {}),
      ...(opts.procMounts !== undefined ? { procMounts: opts.procMounts } : {}),
    });
    checkUsbLuns(opts.luns, 'Bulk-Only Transport LUNs');
    this.entries = [...opts.luns]
      .sort((a, b) => a.lun - b.lun)
      .map((l) => ({ lun: l.lun, unit: l.unit, ...(l.readOnly ? { readOnly: true } : {}) }));
  }

  /** The UDC the gadget is bound to (after start). */
  get udc(): string | undefined {
    return this.udc_;
  }

  get state(): string {
    return this.bot?.state ?? 'stopped';
  }

  /** The board's NCM interface (usb0, ...), once started. */
  get ncmInterface(): string | undefined {
    return this.ifname_;
  }

  private fail(e: unknown): UsbTargetError {
    return usbSetupError(e, this.udcClass, 'USB target', (err, msg) => {
      if (err instanceof GadgetError && err.code === 'CONFIGFS' && err.errno === 'ENOENT' && /functions\/ffs\./.test(msg)) {
        return new UsbTargetError('NO_FUNCTIONFS', `${msg}: the kernel has no FunctionFS gadget function (modprobe usb_f_fs; CONFIG_USB_CONFIGFS_F_FS)`, err);
      }
      if (err instanceof FfsError && err.code === 'NO_FUNCTIONFS') return new UsbTargetError('NO_FUNCTIONFS', msg, err);
      return undefined;
    });
  }

  /** Build, mount, bind and serve. Idempotent; leftovers of a crashed run are removed first. */
  async start(): Promise<void> {
    if (this.started) return;
    this.stopping = false;
    try {
      if (this.opts.preflight !== false) await usbPreflight(this.configfsRoot, [], 'mount, UDC binding');
      // Fail early (before touching anything) when there is no UDC to bind to.
      const udc = await this.gadget.chooseUdc();
      // Leftovers: a bound gadget of our name, a FunctionFS mount of our instance.
      await this.gadget.unbind().catch(() => undefined);
      const left = await this.ffs.unmountLeftovers();
      if (left > 0) this.log('info', `usb: removed ${left} FunctionFS mount(s) left by an earlier run`);
      await this.gadget.create(); // destroys a leftover gadget of the same name first
      await this.ffs.mount();
      await this.ffs.writeDescriptors(encodeBotDescriptors(), encodeBotStrings(this.opts.gadget.product ?? 'lunbox mass storage'));
      const ffsEndpoints = await this.ffs.openEndpoints();
      let endpoints: BotEndpoints = ffsEndpoints;
      let port: ScsiPort = new TargetPort({ lunMap: () => this.entries });
      if (process.env['LUNBOX_USB_PROFILE']) {
        this.profile = new UsbProfile();
        endpoints = this.profile.endpoints(endpoints);
        port = this.profile.port(port);
      }
      const lunCount = (this.entries[this.entries.length - 1]?.lun ?? 0) + 1;
      const nexus = usbNexus({ gadget: this.gadget.spec.name, udc });
      // The fast path needs the real endpoint files (its worker does blocking I/O on them).
      const fast =
        this.opts.fastPath !== false && process.env['LUNBOX_USB_FASTPATH'] !== '0' && this.opts.ffsIo === undefined && !this.profile;
      const bot = new BotFunction({
        port,
        nexus,
        endpoints,
        lunCount,
        ...(this.opts.chunkSize !== undefined ? { chunkSize: this.opts.chunkSize } : {}),
        // With the fast path the core's CSW must be out before the worker writes again.
        pipelineStatus: !fast,
        externalCbws: fast,
        onReset: () => this.fast?.reset(),
        onOutcome: (o) => this.outcome(o),
      });
      this.bot = bot;
      if (fast) {
        const addon = findFastAddon();
        if (addon.path === undefined) this.log('info', `usb: fast path runs its JavaScript loop: ${addon.why}`);
        this.fast = new BotFastPath({
          bot,
          endpoints: ffsEndpoints,
          entries: this.entries,
          nexus,
          lunCount,
          onOutcome: (o) => this.outcome(o),
          log: this.log,
          ...(addon.path !== undefined ? { native: addon.path } : {}),
        });
        this.fast.start();
      }
      this.udc_ = await this.gadget.bind(udc);
      this.ep0Loop = serveEp0(this.ffs.ep0, this.ep0Handler(bot, udc), () => this.stopping).then((err) => {
        if (err !== undefined && !this.stopping) this.log('error', `usb: ep0 loop ended: ${(err as Error).message ?? String(err)}`);
        return err;
      });
      if (this.ncm) await this.startNcm(this.ncm);
      this.started = true;
      const extras = [
        this.gadget.spec.acmInstance !== false ? ', ACM console' : '',
        this.ifname_ ? `, NCM network ${this.ifname_}` : '',
        this.fast ? ', READ/WRITE fast path in a worker thread' : '',
      ].join('');
      this.log('info', `usb: gadget ${this.gadget.spec.name} bound to ${udc}: ${this.entries.length} LUN(s), FunctionFS at ${this.ffs.mountPoint}${extras}`);
    } catch (e) {
      await this.teardown().catch(() => undefined);
      throw this.fail(e);
    }
  }

  /** The NCM function's interface exists once the gadget is bound: address it, serve DHCP. */
  private async startNcm(plan: NcmPlan): Promise<void> {
    const { ifname, link } = await startEngineNcm(this.gadget, plan, this.opts, this.log);
    this.ifname_ = ifname;
    this.ncmLink = link;
  }

  private ep0Handler(bot: BotFunction, udc: string): Ep0Handler {
    return {
      event: async (kind) => {
        if (kind === 'enable') {
          const { speed, mps } = await currentMaxPacket(this.io, this.udcClass, udc);
          this.counters.enables++;
          this.log('debug', `usb: ENABLE at ${speed ?? 'unknown'} speed (bulk packets of ${mps} bytes)`);
          bot.enable(mps);
          this.fast?.enable(mps);
        } else if (kind === 'disable' || kind === 'unbind') {
          this.log('debug', `usb: ${kind.toUpperCase()}`);
          this.fast?.disable();
          await bot.disable();
        }
      },
      setup: (s) => bot.setup(s),
    };
  }

  private outcome(o: BotOutcome): void {
    switch (o.kind) {
      case 'csw':
        this.counters.commands++;
        if (o.status === 2) {
          this.counters.phaseErrors++;
          this.log('debug', `usb: tag ${o.tag} LUN ${o.lun}: phase error (${o.botCase}${o.coreError ? ', ' + o.coreError : ''})`);
        }
        return;
      case 'invalid-cbw':
        this.counters.invalidCbws++;
        this.log('warn', `usb: invalid CBW (${o.problem}, ${o.length} bytes): stalled until Reset Recovery`);
        return;
      case 'reset-recovered':
        this.counters.resets++;
        return;
      case 'aborted':
        this.counters.resets++;
        this.log('debug', `usb: tag ${o.tag} abandoned by a reset`);
        return;
      case 'io-error':
        this.counters.ioErrors++;
        if (o.code !== 'ESHUTDOWN') this.log('warn', `usb: endpoint I/O failed: ${o.message}`);
        return;
      case 'stopped':
        return;
    }
  }

  private async teardown(): Promise<void> {
    this.stopping = true;
    const errors: string[] = [];
    const step = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    if (this.ncmLink) await step('NCM link', () => (this.ncmLink as NcmLink).stop());
    this.ncmLink = undefined;
    this.ifname_ = undefined;
    // Unbinding completes pending endpoint I/O (ESHUTDOWN) and queues DISABLE/UNBIND on ep0.
    await step('unbind', () => this.gadget.unbind());
    if (this.profile) {
      const ra = this.entries
        .map((e) => ({ lun: e.lun, stats: (e.unit.backstore as { readAheadStats?: object }).readAheadStats }))
        .filter((x) => x.stats !== undefined)
        .map((x) => `LUN ${x.lun} read-ahead ${JSON.stringify(x.stats)}`);
      this.log('info', `usb profile: ${this.profile.summary()}${ra.length > 0 ? '; ' + ra.join('; ') : ''}`);
    }
    if (this.fast) {
      const f = this.fast;
      const c = f.counters;
      this.log('info', `usb: fast path served ${c.reads} READs and ${c.writes} WRITEs (${c.mib} MiB), handed ${c.forwarded} commands to the core`);
      await step('fast path', () => f.stop());
      this.fast = undefined;
    }
    if (this.bot) await step('disable', () => (this.bot as BotFunction).disable());
    if (this.ep0Loop) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.ep0Loop, new Promise((r) => (timer = setTimeout(r, 3000)))]);
      if (timer) clearTimeout(timer);
    }
    await step('unmount', () => this.ffs.unmount());
    await step('destroy gadget', () => this.gadget.destroy());
    this.bot = undefined;
    this.ep0Loop = undefined;
    this.udc_ = undefined;
    if (errors.length > 0) throw new UsbTargetError('START_FAILED', `USB teardown: ${errors.join('; ')}`);
  }

  /** Unbind, unmount, remove the gadget. Idempotent. The LUNs stay open (the caller's). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.teardown();
    this.log('info', `usb: gadget ${this.gadget.spec.name} removed`);
  }
}

/** Where the time goes (LUNBOX_USB_PROFILE=1): totals per endpoint operation and core execute. */
class UsbProfile {
  private readonly t: Record<string, { n: number; ms: number; bytes: number }> = {};
  private add(k: string, t0: bigint, bytes: number): void {
    const e = (this.t[k] ??= { n: 0, ms: 0, bytes: 0 });
    e.n++;
    e.ms += Number(process.hrtime.bigint() - t0) / 1e6;
    e.bytes += bytes;
  }
  endpoints(ep: BotEndpoints): BotEndpoints {
    const timed = async <T>(k: string, f: () => Promise<T>, bytes: (v: T) => number): Promise<T> => {
      const t0 = process.hrtime.bigint();
      const v = await f();
      this.add(k, t0, bytes(v));
      return v;
    };
    const out: BotEndpoints = {
      readOut: (max) => timed(max <= 1024 ? 'readCbw' : 'readData', () => ep.readOut(max), (b) => b.length),
      writeIn: (d) => timed(d.length === 13 ? 'writeCsw' : 'writeData', () => ep.writeIn(d), () => d.length),
      ...(ep.writeInv ? { writeInv: (parts: readonly Buffer[]) => timed('writeDataCsw', () => (ep.writeInv as (p: readonly Buffer[]) => Promise<void>)(parts), () => 0) } : {}),
      haltIn: () => timed('haltIn', () => ep.haltIn(), () => 0),
      haltOut: () => timed('haltOut', () => ep.haltOut(), () => 0),
    };
    if (ep.cancel) out.cancel = () => ep.cancel?.();
    return out;
  }
  port(p: ScsiPort): ScsiPort {
    return {
      execute: async (cmd) => {
        const t0 = process.hrtime.bigint();
        const r = await p.execute(cmd);
        this.add(`exec${(cmd.cdb[0] ?? 0).toString(16)}`, t0, r.dataIn?.length ?? 0);
        return r;
      },
      taskManagement: (r) => p.taskManagement(r),
      nexusLost: (n) => p.nexusLost(n),
    };
  }
  summary(): string {
    return Object.entries(this.t)
      .map(([k, e]) => `${k} n=${e.n} avg=${((e.ms / e.n) * 1000).toFixed(0)}us total=${e.ms.toFixed(0)}ms`)
      .join('; ');
  }
}
