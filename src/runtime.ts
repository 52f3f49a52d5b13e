// The running daemon: turns a validated LunboxConfig into open backstores, logical
// units, one SCSI target port per iSCSI target portal group, and the iSCSI server.
// Everything a transport needs to know about LUN masking is in the lunMap callback.

import * as nodePath from 'node:path';
import type { Backstore } from './backstores/backstore';
import { openBackstore, openIso, validateConfig } from './config/index';
import { FilePrStore } from './config/pr-store';
import type { BackstoreConfig, Chap, IscsiTargetConfig, LunboxConfig } from './config/index';
import { IscsiServer } from './fabrics/iscsi/index';
import type { ChapCredentials, IscsiTargetDef, IscsiTargetParams } from './fabrics/iscsi/index';
import { AluaGroups, LogicalUnit, TargetPort, usePrStore } from './scsi/index';
import { MediumRemovalPreventedError } from './scsi/logical-unit';
import { UsbTarget } from './fabrics/usb/usb-target';
import { KernelUsbTarget } from './fabrics/usb/kernel-msc';
import type { KernelMscLun } from './fabrics/usb/gadget';
import type { UsbEngineSystem, UsbGadgetOptions, UsbLun, UsbTargetOptions } from './fabrics/usb/usb-target';
import { parseSize } from './backstores/index';
import { detectHostBoard } from './board/detect';
import { detectBoardSerial } from './board/serial';
import type { LunMapEntry, PrStore } from './scsi/index';
import type { Nexus } from './scsi/types';
import type { Logger } from './util/log';

export const DEFAULT_ISCSI_PORT = 3260;

export interface Portal {
  readonly address: string;
  readonly port: number;
}

interface TargetState {
  // Mutable: a live change (Runtime.apply) updates them in place, so sessions already
  // logged in keep the same TargetPort and see the new LUN map on their next command.
  cfg: IscsiTargetConfig;
  readonly port: TargetPort;
  portals: readonly Portal[];
  tpgLuns: ReadonlyMap<number, LunMapEntry>;
  readonly cache: Map<string, readonly LunMapEntry[]>;
  /** Every IscsiTargetDef handed to the server for this target (sessions hold one of them). */
  readonly defs: IscsiTargetDef[];
}

/** What a live change did, one line per change, plus what needs a restart. */
export interface ApplyReport {
  readonly changes: string[];
  readonly notes: string[];
}

const targetKey = (t: IscsiTargetConfig): string => `${t.iqn.toLowerCase()}|${t.tpgt ?? 1}`;
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
/** A cdrom backstore whose only change is its disc: a medium change, not a new unit. */
function discOnly(o: BackstoreConfig, b: BackstoreConfig): boolean {
  const { path: _a, ...x } = o;
  const { path: _b, ...y } = b;
  return o.cdrom === true && b.cdrom === true && same(x, y);
}

/** The system under the USB fabric, for both engines (tests inject fakes; default: the real one). */
export type UsbSystem = UsbEngineSystem & Pick<UsbTargetOptions, 'ffsIo' | 'mountPoint' | 'procMounts'>;

/**
 * Something that holds on to a part of the USB gadget and must let go while a live change
 * rebuilds it: the serial console on the gadget's ACM port (/dev/ttyGS0), whose function
 * cannot be removed while the tty is open (u_serial waits for the close).
 */
export interface UsbDependant {
  /** Before the gadget is removed: begin letting go (begin closing the port). */
  release(): Promise<void>;
  /** After the gadget is removed: wait (bounded) until it has let go. */
  released(): Promise<void>;
  /** After the new gadget is up (or the old one is back, or none): take hold again. */
  reattach(): void;
}

/** A live change of the USB gadget that could not be made; `code` says whether a gadget runs. */
export class UsbRestartError extends Error {
  /**
   * START_FAILED: the new gadget was refused or did not start; the previous one runs again (or
   * there was none) and nothing was changed. GADGET_DOWN: restoring the previous one failed
   * too: no gadget runs until the next change or a restart.
   */
  readonly code: 'START_FAILED' | 'GADGET_DOWN';
  constructor(
    code: UsbRestartError['code'],
    message: string,
    readonly startError: Error,
    readonly restoreError?: Error,
  ) {
    super(message, { cause: startError });
    this.name = 'UsbRestartError';
    this.code = code;
  }
}

export interface RuntimeOptions {
  /** Directory for state that must survive a restart (APTPL reservations under pr/). */
  readonly stateDir?: string;
  /** The USB fabric's system, asked anew for every gadget started (tests: fresh fakes each time). */
  readonly usbSystem?: () => UsbSystem;
}

/** A USB target built from a config, not started yet. */
interface UsbPlan {
  readonly target: UsbTarget | KernelUsbTarget;
  /** Backstore name → the USB LUN(s) exporting it. */
  readonly exported: ReadonlyMap<string, readonly number[]>;
  /** `LUN 0 (disk0), LUN 1 (cd0)`. */
  readonly luns: string;
}

/** How long a re-enumeration waits for commands still running on a unit it unplugs. */
const USB_SETTLE_MS = 5000;

/** Resolves true when `p` settles within `ms`, else false (and `p` is left to finish on its own). */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => clearTimeout(timer));
}

export class Runtime {
  private readonly units = new Map<string, LogicalUnit>();
  private readonly backstores = new Map<string, Backstore>();
  private readonly targets: TargetState[] = [];
  private server: IscsiServer | undefined;
  /** Every portal listening: `address|port` as configured (port 0 included) → as bound. */
  private readonly listening = new Map<string, Portal>();
  private stopping: Promise<void> | undefined;
  /** Portals configured with port 0 → the port the system gave us. */
  private readonly resolved = new Map<string, number>();

  private cfg: LunboxConfig;
  /** Serialises apply() calls. */
  private applying: Promise<unknown> = Promise.resolve();

  /** Where APTPL reservation state lives; without it APTPL is refused (PTPL_C=0). */
  private readonly prStore: PrStore | undefined;
  /** ALUA target port groups, shared by every target port (SPC-4 §5.15). */
  private readonly alua: AluaGroups | undefined;
  private usb: UsbTarget | KernelUsbTarget | undefined;
  /** Backstores the running USB gadget exports → its LUNs (fixed until the gadget is rebuilt). */
  private usbBackstores = new Map<string, readonly number[]>();
  /** The config wants a gadget but none runs: a live change failed and so did the restore. */
  private usbDown = false;
  private readonly usbDependants: UsbDependant[] = [];

  private constructor(
    config: LunboxConfig,
    private readonly logger: Logger,
    private readonly opts: RuntimeOptions,
  ) {
    this.cfg = config;
    this.prStore = opts.stateDir !== undefined ? new FilePrStore(nodePath.join(opts.stateDir, 'pr'), logger.log) : undefined;
    const groups = config.iscsi?.portGroups;
    this.alua = groups ? new AluaGroups({ portGroups: groups, ...(config.iscsi?.alua ? { alua: config.iscsi.alua } : {}) }) : undefined;
  }

  /** The configuration running now (after any live change). */
  get config(): LunboxConfig {
    return this.cfg;
  }

  /** Open everything the config names and start listening. On any failure, what was opened is closed again. */
  static async start(config: LunboxConfig, logger: Logger, opts: RuntimeOptions = {}): Promise<Runtime> {
    const rt = new Runtime(config, logger, opts);
    try {
      await rt.openBackstores();
      rt.buildTargets();
      // A portal on the USB network's address can only open once the gadget has made usb0.
      if (config.usb?.gadget?.ncm) {
        await rt.startUsb();
        await rt.listen();
      } else {
        await rt.listen();
        await rt.startUsb();
      }
    } catch (err) {
      await rt.stop().catch(() => undefined);
      throw err;
    }
    return rt;
  }

  private async openBackstores(): Promise<void> {
    for (const b of this.config.backstores) {
      const { store, unit } = await this.openUnit(b);
      this.backstores.set(b.name, store);
      this.units.set(b.name, unit);
    }
  }

  private async openUnit(b: BackstoreConfig): Promise<{ store: Backstore; unit: LogicalUnit }> {
    {
      const store = await openBackstore(b);
      const unit = new LogicalUnit({
        backstore: store,
        ...(b.cdrom === true ? { deviceType: 'cdrom' as const } : {}),
        ...(b.blockSize !== undefined ? { blockSize: b.blockSize } : {}),
        ...(b.vendor !== undefined ? { vendor: b.vendor } : {}),
        ...(b.product !== undefined ? { product: b.product } : {}),
        ...(b.revision !== undefined ? { revision: b.revision } : {}),
        ...(b.serial !== undefined ? { serial: b.serial } : {}),
        ...(b.readOnly !== undefined ? { readOnly: b.readOnly } : {}),
        ...(b.writeCache !== undefined ? { writeCache: b.writeCache } : {}),
        ...(b.thinProvisioning !== undefined ? { thinProvisioning: b.thinProvisioning } : {}),
        ...(b.removable !== undefined ? { removable: b.removable } : {}),
        ...(b.physicalBlockSize !== undefined ? { physicalBlockSize: b.physicalBlockSize } : {}),
        ...(b.protection !== undefined ? { protection: { type: b.protection } } : {}),
        ...(b.sanitizeRate !== undefined ? { sanitizeRate: typeof b.sanitizeRate === 'number' ? b.sanitizeRate : parseSize(b.sanitizeRate) } : {}),
      });
      // Persistent reservations made with APTPL come back before the unit takes a command.
      if (this.prStore) await usePrStore(unit, this.prStore);
      this.logger.debug(`backstore ${b.type}:${b.name} ${store.size} bytes${store.path ? ' at ' + store.path : ''}`);
      return { store, unit };
    }
  }

  private buildTargets(): void {
    const iscsi = this.config.iscsi;
    if (!iscsi) return;
    for (const t of iscsi.targets) this.targets.push(this.newTargetState(t, this.units));
  }

  private tpgLunsOf(t: IscsiTargetConfig, units: ReadonlyMap<string, LogicalUnit>): Map<number, LunMapEntry> {
    const tpgLuns = new Map<number, LunMapEntry>();
    for (const l of t.luns) {
      const unit = units.get(l.backstore);
      if (!unit) throw new Error(`iscsi target ${t.iqn}: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
      tpgLuns.set(l.lun, { lun: l.lun, unit, ...(l.readOnly ? { readOnly: true } : {}) });
    }
    return tpgLuns;
  }

  private portalsFor(t: IscsiTargetConfig, cfg: LunboxConfig): Portal[] {
    return (t.portals ?? cfg.iscsi?.portals ?? []).map((p) => ({ address: p.address, port: p.port ?? DEFAULT_ISCSI_PORT }));
  }

  private newTargetState(t: IscsiTargetConfig, units: ReadonlyMap<string, LogicalUnit>, cfg: LunboxConfig = this.config): TargetState {
    const state: TargetState = {
      cfg: t,
      tpgLuns: this.tpgLunsOf(t, units),
      cache: new Map<string, readonly LunMapEntry[]>(),
      portals: this.portalsFor(t, cfg),
      port: new TargetPort({ lunMap: (nexus: Nexus) => lunMapFor(state, nexus.initiatorName), ...(this.alua ? { alua: this.alua } : {}) }),
      defs: [],
    };
    return state;
  }

  private targetDefs(): IscsiTargetDef[] {
    return this.targets.map((t, i) => {
      const cfg = t.cfg;
      const def: IscsiTargetDef = {
        iqn: cfg.iqn,
        tpgt: cfg.tpgt ?? 1,
        ...(cfg.alias !== undefined ? { alias: cfg.alias } : {}),
        portals: this.portalsOf(t),
        demoMode: cfg.demoMode ?? !(cfg.acls && cfg.acls.length > 0),
        acls: (cfg.acls ?? []).map((a) => ({ initiator: a.initiator, ...(a.auth ? { auth: chap(a.auth) } : {}) })),
        ...(cfg.auth ? { auth: chap(cfg.auth) } : {}),
        relativePortId: cfg.relativePortId ?? i + 1,
        port: t.port,
        ...(cfg.params ? { params: cfg.params as Partial<IscsiTargetParams> } : {}),
      };
      t.defs.push(def);
      return def;
    });
  }

  private async listen(): Promise<void> {
    if (this.targets.length === 0) return;
    const iscsi = this.config.iscsi;
    this.server = new IscsiServer({
      targets: this.targetDefs(),
      ...(iscsi?.discoveryAuth ? { discoveryAuth: chap(iscsi.discoveryAuth) } : {}),
      log: this.logger.log,
    });
    await this.listenNew();
    // SendTargets must advertise the ports really bound, not a configured 0.
    if (this.resolved.size > 0) this.server.setTargets(this.targetDefs());
  }

  /** Open every target portal not open yet. */
  private async listenNew(): Promise<string[]> {
    const server = this.server;
    if (!server) return [];
    const opened: string[] = [];
    const seen = new Set<string>(this.listening.keys());
    for (const t of this.targets) {
      for (const p of t.portals) {
        const key = `${p.address}|${p.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        try {
          const at = await server.listen(p.address, p.port);
          this.listening.set(key, at);
          opened.push(formatHostPort(at.address, at.port));
          if (p.port === 0) this.resolved.set(key, at.port);
          this.logger.debug(`iSCSI portal listening on ${formatHostPort(at.address, at.port)}`);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          const why =
            e.code === 'EADDRINUSE' ? 'the address is already in use (another target running? choose another with --listen)'
            : e.code === 'EADDRNOTAVAIL' ? `no interface on this machine has that address${this.usb?.ncm ? ` (the USB network's is ${this.usb.ncm.link.board})` : ''}`
            : e.code === 'EACCES' ? 'permission denied (ports below 1024 need root)'
            : e.message;
          throw new Error(`cannot listen on ${formatHostPort(p.address, p.port)}: ${why}`);
        }
      }
    }
    return opened;
  }

  /**
   * Change the running daemon to `next` without a restart: open new backstores, swap
   * changed ones, add/remove targets, LUNs, ACLs and portals. Initiators logged in keep
   * their sessions; when the LUNs they see change they get REPORTED LUNS DATA HAS CHANGED
   * (SPC-4 §7.6) on their next command. Nothing changes if a new backstore cannot be opened.
   *
   * A USB host reads the LUN count (Get Max LUN) and the descriptors only when it enumerates
   * the device, so a change of the `usb` section, or of a backstore the gadget exports, rebuilds
   * the gadget: the host sees the device disconnect and reconnect with the new LUN set. A CD-ROM
   * disc change stays a medium change. If the new gadget does not start, the previous one is
   * restored and nothing changes (UsbRestartError).
   */
  apply(next: LunboxConfig): Promise<ApplyReport> {
    const run = this.applying.then(() => this.applyNow(validateConfig(next)));
    this.applying = run.catch(() => undefined);
    return run;
  }

  /** Register something that must let go of the gadget while a live change rebuilds it. */
  addUsbDependant(d: UsbDependant): void {
    this.usbDependants.push(d);
  }

  private async applyNow(next: LunboxConfig): Promise<ApplyReport> {
    if (this.stopping) throw new Error('the daemon is shutting down');
    const changes: string[] = [];
    const notes: string[] = [];
    const prev = this.cfg;

    // 1. Backstores: open what is new or changed first, so a failure changes nothing.
    const oldBs = new Map(prev.backstores.map((b) => [b.name, b]));
    const newBs = new Map(next.backstores.map((b) => [b.name, b]));
    const opened = new Map<string, { store: Backstore; unit: LogicalUnit }>();
    // A cdrom whose only change is `path` keeps its unit: the disc changes (null: ejected).
    const discs = new Map<string, Backstore | null>();
    const closeNew = async (): Promise<void> => {
      for (const { unit } of opened.values()) await unit.close().catch(() => undefined);
      for (const d of discs.values()) await d?.close().catch(() => undefined);
    };
    // Why the USB gadget must be rebuilt (empty: it stays as it is).
    const usbWhy = this.usbChanges(prev, next);
    try {
      for (const b of next.backstores) {
        const o = oldBs.get(b.name);
        if (o && same(o, b)) continue;
        if (o && discOnly(o, b) && this.units.has(b.name)) {
          discs.set(b.name, b.path === undefined ? null : await openIso(b.name, b.path));
          continue;
        }
        opened.set(b.name, await this.openUnit(b));
      }
      // A host that locked the tray keeps its disc (MMC-6 §6.7.2.5: it is sent an eject request).
      for (const name of discs.keys()) {
        const unit = this.units.get(name)!;
        if (unit.mediumPresent && unit.isPrevented()) {
          unit.ejectMedium(); // throws MediumRemovalPreventedError and posts the eject request
          throw new MediumRemovalPreventedError(name);
        }
      }
      // The kernel engine serves the USB side of these drives: the kernel changes its disc first
      // (it enforces the host's PREVENT there); a refusal leaves everything as it was. A gadget
      // about to be rebuilt gets the new disc when it starts.
      if (this.usb instanceof KernelUsbTarget && usbWhy.length === 0) {
        for (const [name, disc] of discs) {
          for (const lun of this.usbBackstores.get(name) ?? []) await this.usb.setMedium(lun, disc ? (disc as { path?: string }).path ?? null : null);
        }
      }
    } catch (err) {
      await closeNew();
      throw err;
    }
    const units = new Map(this.units);
    const stores = new Map(this.backstores);
    const retired: { name: string; store: Backstore; unit: LogicalUnit }[] = [];
    for (const [name, o] of oldBs) {
      if (newBs.has(name) && !opened.has(name)) continue;
      const unit = this.units.get(name);
      const store = this.backstores.get(name);
      if (unit && store) retired.push({ name, store, unit });
      units.delete(name);
      stores.delete(name);
      if (!newBs.has(name)) changes.push(`backstore ${o.type}:${name} removed`);
    }
    for (const [name, { unit, store }] of opened) {
      units.set(name, unit);
      stores.set(name, store);
      changes.push(`backstore ${newBs.get(name)?.type}:${name} ${oldBs.has(name) ? 'reopened with new settings' : 'added'}`);
    }
    for (const [name, disc] of discs) if (disc) stores.set(name, disc);

    // The USB gadget: unplugged, then plugged in again with the new LUN set (or restored).
    if (usbWhy.length > 0) {
      try {
        const r = await this.rebuildUsb(prev, next, units, stores, usbWhy);
        changes.push(...r.changes);
        notes.push(...r.notes);
      } catch (err) {
        await closeNew();
        throw err;
      }
    }

    // 2. Targets: reuse the TargetPort of a target that stays, so its sessions carry on.
    const byKey = new Map(this.targets.map((t) => [targetKey(t.cfg), t]));
    const nextTargets: TargetState[] = [];
    const changed: TargetState[] = [];
    for (const t of next.iscsi?.targets ?? []) {
      const key = targetKey(t);
      const cur = byKey.get(key);
      if (!cur) {
        nextTargets.push(this.newTargetState(t, units, next));
        changes.push(`iscsi target ${t.iqn} tpg ${t.tpgt ?? 1} added`);
        continue;
      }
      byKey.delete(key);
      const tpgLuns = this.tpgLunsOf(t, units);
      const lunsMoved =
        tpgLuns.size !== cur.tpgLuns.size ||
        [...tpgLuns].some(([n, e]) => {
          const o = cur.tpgLuns.get(n);
          return !o || o.unit !== e.unit || o.readOnly !== e.readOnly;
        });
      const aclsMoved = !same(t.acls, cur.cfg.acls) || !same(t.demoMode, cur.cfg.demoMode);
      if (lunsMoved) changes.push(`iscsi target ${t.iqn} tpg ${t.tpgt ?? 1}: LUNs ${[...tpgLuns.keys()].sort((a, b) => a - b).join(', ') || 'none'}`);
      if (aclsMoved) changes.push(`iscsi target ${t.iqn} tpg ${t.tpgt ?? 1}: ACLs changed`);
      if (!same(t.params, cur.cfg.params) || !same(t.auth, cur.cfg.auth) || t.alias !== cur.cfg.alias) {
        changes.push(`iscsi target ${t.iqn} tpg ${t.tpgt ?? 1}: settings changed (for new logins)`);
      }
      cur.cfg = t;
      cur.tpgLuns = tpgLuns;
      cur.portals = this.portalsFor(t, next);
      cur.cache.clear();
      nextTargets.push(cur);
      if (lunsMoved || aclsMoved) changed.push(cur);
    }
    const removed = [...byKey.values()];
    for (const t of removed) changes.push(`iscsi target ${t.cfg.iqn} tpg ${t.cfg.tpgt ?? 1} removed (its sessions are closed)`);

    // 3. Commit, then tell the fabric and the initiators.
    this.cfg = next;
    if ((next.usb?.luns.length ?? 0) === 0) this.usbDown = false; // no gadget wanted: none missing
    this.units.clear();
    for (const [n, u] of units) this.units.set(n, u);
    for (const r of retired) this.backstores.delete(r.name);
    for (const [n, { store }] of opened) this.backstores.set(n, store);
    const oldDiscs: { name: string; unit: LogicalUnit; previous: Backstore }[] = [];
    for (const [name, disc] of discs) {
      const unit = this.units.get(name)!;
      const change = disc ? unit.insertMedium(disc) : unit.ejectMedium();
      this.backstores.set(name, unit.backstore);
      if (change.previous) oldDiscs.push({ name, unit, previous: change.previous });
      changes.push(`backstore ${name}: ${disc ? `medium ${newBs.get(name)?.path} inserted` : 'medium ejected'}`);
    }
    this.targets.length = 0;
    this.targets.push(...nextTargets);

    if (this.targets.length > 0 && !this.server) {
      this.server = new IscsiServer({ targets: [], log: this.logger.log, ...(next.iscsi?.discoveryAuth ? { discoveryAuth: chap(next.iscsi.discoveryAuth) } : {}) });
    }
    if (!same(prev.iscsi?.discoveryAuth, next.iscsi?.discoveryAuth)) notes.push('iscsi discovery auth: takes effect after a restart');
    if (this.server) {
      // Portals no target has any more close first (a new one may want the same port).
      const wanted = new Set(this.targets.flatMap((t) => t.portals.map((p) => `${p.address}|${p.port}`)));
      for (const [key, at] of [...this.listening]) {
        if (wanted.has(key)) continue;
        this.server.closePortal(at.address, at.port);
        this.listening.delete(key);
        this.resolved.delete(key);
        changes.push(`iscsi portal ${formatHostPort(at.address, at.port)} closed (sessions logged in through it stay until they log out)`);
      }
      try {
        for (const p of await this.listenNew()) changes.push(`iscsi portal ${p} listening`);
      } catch (err) {
        notes.push((err as Error).message);
      }
      this.server.setTargets(this.targetDefs());
      for (const t of removed) for (const d of t.defs) this.server.coldReset(d);
    }
    for (const t of changed) t.port.lunsChanged();

    // 4. Close what is no longer used (after flushing acknowledged writes).
    for (const r of retired) {
      await r.store.flush().catch((e: Error) => this.logger.error(`flushing backstore ${r.name}: ${e.message}`));
      await r.unit.close().catch((e: Error) => this.logger.warn(`closing backstore ${r.name}: ${e.message}`));
    }
    for (const d of oldDiscs) {
      await d.unit.idle();
      await d.previous.close().catch((e: Error) => this.logger.warn(`closing the old medium of ${d.name}: ${e.message}`));
    }
    for (const c of changes) this.logger.info(`live change: ${c}`);
    return { changes, notes };
  }

  /**
   * Change the disc of a cdrom backstore: `isoPath` goes in (replacing the one there), null
   * ejects it. The host sees NOT READY TO READY CHANGE and a GESN media event; a PREVENT from
   * the host refuses the change (MediumRemovalPreventedError, an eject request is posted to
   * the host) unless `force`, which is logged. The running config follows (path set or removed).
   */
  changeMedium(backstoreName: string, isoPath: string | null, opts: { force?: boolean } = {}): Promise<{ forced: boolean }> {
    const run = this.applying.then(() => this.changeMediumNow(backstoreName, isoPath, opts));
    this.applying = run.catch(() => undefined);
    return run;
  }

  private async changeMediumNow(backstoreName: string, isoPath: string | null, opts: { force?: boolean }): Promise<{ forced: boolean }> {
    if (this.stopping) throw new Error('the daemon is shutting down');
    const unit = this.units.get(backstoreName);
    const cfg = this.cfg.backstores.find((b) => b.name === backstoreName);
    if (!unit || !cfg) throw new Error(`no backstore named '${backstoreName}'`);
    if (!unit.isCdrom) throw new Error(`backstore '${backstoreName}' is not a cdrom (set cdrom: true)`);
    const store = isoPath === null ? undefined : await openIso(backstoreName, isoPath);
    // The kernel engine serves the USB LUNs of this backstore itself: it changes the disc there
    // first (the host's PREVENT is the kernel's to enforce), then lunbox's own view follows.
    if (this.usb instanceof KernelUsbTarget) {
      for (const l of this.config.usb?.luns ?? []) {
        if (l.backstore !== backstoreName) continue;
        try {
          await this.usb.setMedium(l.lun, store ? (store as { path?: string }).path ?? isoPath : null, { force: opts.force === true });
        } catch (err) {
          await store?.close().catch(() => undefined);
          throw err;
        }
      }
    }
    let change;
    try {
      change = store ? unit.insertMedium(store, opts) : unit.ejectMedium(opts);
    } catch (err) {
      await store?.close().catch(() => undefined);
      throw err;
    }
    if (change.forced) this.logger.warn(`backstore ${backstoreName}: medium removal was prevented by the host; changed anyway (force)`);
    this.backstores.set(backstoreName, unit.backstore);
    const { path: _old, ...rest } = cfg;
    const next = isoPath === null ? rest : { ...rest, path: isoPath };
    this.cfg = { ...this.cfg, backstores: this.cfg.backstores.map((b) => (b === cfg ? next : b)) };
    this.logger.info(`backstore ${backstoreName}: ${isoPath === null ? 'medium ejected' : `medium ${isoPath} inserted`}`);
    // Commands still reading the old disc finish before it is closed.
    if (change.previous) {
      await unit.idle();
      await change.previous.close().catch((e: Error) => this.logger.warn(`closing the old medium of ${backstoreName}: ${e.message}`));
    }
    return { forced: change.forced };
  }

  /** The logical unit of a backstore (diagnostics and tests). */
  unit(backstoreName: string): LogicalUnit | undefined {
    return this.units.get(backstoreName);
  }

  /** The SCSI target port of one iSCSI target portal group (diagnostics and tests). */
  targetPort(iqn: string, tpgt = 1): TargetPort | undefined {
    return this.targets.find((t) => t.cfg.iqn.toLowerCase() === iqn.toLowerCase() && (t.cfg.tpgt ?? 1) === tpgt)?.port;
  }

  /** iSCSI sessions logged in now. */
  sessions(): readonly { initiator: string; target: string; connections: number }[] {
    return this.server?.sessions() ?? [];
  }

  private portalsOf(t: TargetState): Portal[] {
    return t.portals.map((p) => ({ address: p.address, port: this.resolved.get(`${p.address}|${p.port}`) ?? p.port }));
  }

  /** Portals actually bound (an ephemeral port 0 is resolved here). */
  portals(): readonly Portal[] {
    return [...this.listening.values()];
  }

  /** One `iscsi://host:port/iqn/lun` URL per exported LUN, on the first portal of each target. */
  urls(): string[] {
    const out: string[] = [];
    for (const t of this.targets) {
      const bound = this.portalsOf(t)[0];
      if (!bound) continue;
      const host = bound.address === '0.0.0.0' ? '127.0.0.1' : bound.address === '::' ? '::1' : bound.address;
      for (const lun of [...t.tpgLuns.keys()].sort((a, b) => a - b)) {
        out.push(`iscsi://${formatHostPort(host, bound.port)}/${t.cfg.iqn}/${lun}`);
      }
    }
    return out;
  }

  /** USB mass storage on the board's device port: gadget, FunctionFS, Bulk-Only Transport. */
  private async startUsb(): Promise<void> {
    if (this.cfg.usb && this.cfg.usb.luns.length === 0) {
      this.logger.warn('usb: no LUNs configured: the gadget is not started (the shell adds one live: /usb/luns create BACKSTORE)');
    }
    const plan = this.planUsb(this.cfg, this.units, this.backstores);
    if (!plan) return;
    this.usb = plan.target;
    await plan.target.start();
    this.usbBackstores = new Map(plan.exported);
  }

  /** Start a planned gadget; once it runs it is the daemon's. */
  private async startPlanned(plan: UsbPlan): Promise<void> {
    await plan.target.start();
    this.usb = plan.target;
    this.usbBackstores = new Map(plan.exported);
  }

  /**
   * The USB target `cfg` describes over these units and stores, built but not started (no
   * system call yet), or undefined when it has no LUNs. Throws what the engine refuses.
   */
  private planUsb(cfg: LunboxConfig, units: ReadonlyMap<string, LogicalUnit>, stores: ReadonlyMap<string, Backstore>): UsbPlan | undefined {
    const u = cfg.usb;
    if (!u || u.luns.length === 0) return undefined;
    const g = u.gadget ?? {};
    // 'auto' (or nothing): the board's own UDC when lunbox knows the board, else the first one.
    const udc = g.udc === undefined || g.udc === 'auto' ? detectHostBoard().udc : g.udc;
    // No serial configured: the board's own (stable per board; it also seeds the NCM MACs).
    let serial = g.serial;
    if (serial === undefined) {
      const id = detectBoardSerial();
      serial = id.serial;
      if (serial !== undefined) this.logger.debug(`usb: serial number ${serial} (from the ${id.source})`);
      else if (g.ncm) this.logger.warn('usb: no board serial found (device tree, EEPROM, /etc/machine-id): NCM MAC addresses come from the host name; set usb.gadget.serial');
    }
    const gadget: UsbGadgetOptions = {
      ...(g.name !== undefined ? { name: g.name } : {}),
      ...(g.vendorId !== undefined ? { vendorId: g.vendorId } : {}),
      ...(g.productId !== undefined ? { productId: g.productId } : {}),
      ...(g.manufacturer !== undefined ? { manufacturer: g.manufacturer } : {}),
      ...(g.product !== undefined ? { product: g.product } : {}),
      ...(serial !== undefined ? { serial } : {}),
      ...(udc !== undefined ? { udc } : {}),
      ...(g.acm !== undefined ? { acm: g.acm } : {}),
      ...(g.maxPower !== undefined ? { maxPower: g.maxPower } : {}),
      ...(g.ncm ? { ncm: g.ncm === true ? {} : g.ncm } : {}),
    };
    const sys = this.opts.usbSystem?.() ?? {};
    let target: UsbTarget | KernelUsbTarget;
    if (u.engine === 'kernel') {
      // The kernel engine has no FunctionFS: those seams are the userspace engine's only.
      const { ffsIo: _io, mountPoint: _mp, procMounts: _pm, ...kernelSys } = sys;
      target = new KernelUsbTarget({ gadget, luns: u.luns.map((l) => this.kernelLun(l, cfg, units, stores)), log: this.logger.log, ...kernelSys });
    } else {
      const luns: UsbLun[] = u.luns.map((l) => {
        const unit = units.get(l.backstore);
        if (!unit) throw new Error(`usb: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
        return { lun: l.lun, unit, ...(l.readOnly ? { readOnly: true } : {}) };
      });
      target = new UsbTarget({ gadget, luns, log: this.logger.log, ...(u.fastPath === false ? { fastPath: false } : {}), ...sys });
    }
    const exported = new Map<string, number[]>();
    for (const l of [...u.luns].sort((x, y) => x.lun - y.lun)) exported.set(l.backstore, [...(exported.get(l.backstore) ?? []), l.lun]);
    const luns = [...u.luns].sort((x, y) => x.lun - y.lun).map((l) => `LUN ${l.lun} (${l.backstore}${l.readOnly ? ', read-only' : ''})`).join(', ');
    return { target, exported, luns };
  }

  /**
   * What about the gadget differs between `prev` (running) and `next`, one phrase each; empty
   * when the gadget stays as it is. A CD-ROM disc change is not here: it is a medium change
   * (UNIT ATTENTION on the same device, no re-enumeration).
   */
  private usbChanges(prev: LunboxConfig, next: LunboxConfig): string[] {
    const a = prev.usb;
    const b = next.usb;
    const wanted = (b?.luns.length ?? 0) > 0;
    // Nothing runs and nothing will: only the config changes.
    if (!this.usb && !wanted) return [];
    const out: string[] = [];
    if (this.usbDown) out.push('the gadget was down after a failed change');
    if ((a?.engine ?? 'userspace') !== (b?.engine ?? 'userspace')) out.push(`engine ${b?.engine ?? 'userspace'}`);
    if ((a?.fastPath ?? true) !== (b?.fastPath ?? true)) out.push(`fast path ${b?.fastPath === false ? 'off' : 'on'}`);
    const ga: Readonly<Record<string, unknown>> = a?.gadget ?? {};
    const gb: Readonly<Record<string, unknown>> = b?.gadget ?? {};
    for (const k of new Set([...Object.keys(ga), ...Object.keys(gb)])) {
      const v = gb[k];
      if (same(ga[k], v)) continue;
      const shown = typeof v === 'number' && (k === 'vendorId' || k === 'productId') ? `0x${v.toString(16).padStart(4, '0')}` : JSON.stringify(v);
      out.push(v === undefined ? `gadget ${k} back to its default` : `gadget ${k} ${shown}`);
    }
    const la = new Map((a?.luns ?? []).map((l) => [l.lun, l]));
    const lb = new Map((b?.luns ?? []).map((l) => [l.lun, l]));
    for (const n of [...new Set([...la.keys(), ...lb.keys()])].sort((x, y) => x - y)) {
      const x = la.get(n);
      const y = lb.get(n);
      if (x && !y) out.push(`LUN ${n} (${x.backstore}) removed`);
      else if (!x && y) out.push(`LUN ${n} (${y.backstore}) added`);
      else if (x && y && x.backstore !== y.backstore) out.push(`LUN ${n} now ${y.backstore} (was ${x.backstore})`);
      else if (x && y && (x.readOnly === true) !== (y.readOnly === true)) out.push(`LUN ${n} ${y.readOnly ? 'read-only' : 'read-write'}`);
    }
    // A backstore the gadget exports and keeps exporting, reopened with new settings.
    const oldBs = new Map(prev.backstores.map((x) => [x.name, x]));
    for (const nb of next.backstores) {
      const ob = oldBs.get(nb.name);
      const luns = this.usbBackstores.get(nb.name);
      if (!ob || !luns || same(ob, nb) || discOnly(ob, nb)) continue;
      if (!(b?.luns ?? []).some((l) => l.backstore === nb.name)) continue;
      out.push(`backstore ${nb.name} (LUN ${luns.join(', ')}) reopened with new settings`);
    }
    return out;
  }

  /**
   * Re-enumeration: unplug the running gadget (unbind ends the commands in flight; what the
   * host wrote is flushed), then plug in the one `next` describes. If it does not start, the
   * previous one is built again from `prev`, and the error says what failed and what runs now.
   * The units and stores are those of `next`; this.units/this.backstores are still `prev`'s.
   */
  private async rebuildUsb(
    prev: LunboxConfig,
    next: LunboxConfig,
    units: ReadonlyMap<string, LogicalUnit>,
    stores: ReadonlyMap<string, Backstore>,
    why: readonly string[],
  ): Promise<ApplyReport> {
    // Built before anything is unplugged: a LUN set the engine refuses changes nothing.
    let plan: UsbPlan | undefined;
    try {
      plan = this.planUsb(next, units, stores);
    } catch (err) {
      const e = err as Error;
      throw new UsbRestartError('START_FAILED', `usb: ${e.message.replace(/^usb: /, '')} (nothing was changed; ${this.usb ? 'the gadget runs as before' : 'no gadget was running'})`, e);
    }
    const old = this.usb;
    const hadNcm = old?.ncm !== undefined;
    for (const d of this.usbDependants) await d.release().catch((e: Error) => this.logger.warn(`usb: before the gadget is rebuilt: ${e.message}`));
    if (old) {
      const unplugged = this.usbBackstores;
      // The userspace engine's stop() unbinds (the kernel fails the endpoint I/O in flight)
      // and waits for the BOT loop; the kernel's unbind waits for f_mass_storage's command.
      await old.stop().catch((e: Error) => this.logger.warn(`usb: removing the gadget: ${e.message}`));
      this.usb = undefined;
      this.usbBackstores = new Map();
      await this.settleUnplugged(unplugged);
    }
    for (const d of this.usbDependants) await d.released().catch(() => undefined);
    let failed: Error | undefined;
    let restoreFailed: Error | undefined;
    let restored: UsbPlan | undefined;
    try {
      if (plan) await this.startPlanned(plan);
    } catch (err) {
      failed = err as Error;
      if (old) {
        try {
          restored = this.planUsb(prev, this.units, this.backstores);
          if (restored) await this.startPlanned(restored);
        } catch (e) {
          restoreFailed = e as Error;
          restored = undefined;
        }
      }
    }
    // The running config stays `prev` on failure: "down" when it wants a gadget and none runs.
    this.usbDown = failed !== undefined && !this.usb && (prev.usb?.luns.length ?? 0) > 0;
    for (const d of this.usbDependants) {
      try {
        d.reattach();
      } catch (e) {
        this.logger.warn(`usb: after the gadget was rebuilt: ${(e as Error).message}`);
      }
    }
    if (failed) {
      const what = `usb: the gadget${old ? ' with the new settings' : ''} did not start: ${failed.message.replace(/^usb: /, '')}`;
      if (restoreFailed) {
        this.logger.error(`usb: no gadget runs: ${failed.message}; restoring the previous one: ${restoreFailed.message}`);
        throw new UsbRestartError(
          'GADGET_DOWN',
          `${what}. Restoring the previous gadget failed too: ${restoreFailed.message.replace(/^usb: /, '')}. No USB gadget runs now: ` +
            'fix the settings and apply again (the next change rebuilds it), or restart lunbox',
          failed,
          restoreFailed,
        );
      }
      const now = restored ? `the previous gadget is back with ${restored.luns} (the USB host saw it disconnect and reconnect)` : 'no gadget was running';
      const e = new UsbRestartError('START_FAILED', `${what}. Nothing was changed: ${now}`, failed);
      this.logger.warn(e.message);
      throw e;
    }
    const changes: string[] = [];
    const notes: string[] = [];
    if (plan) {
      const extras = [
        next.usb?.gadget?.acm === true ? 'the ACM console reconnects (a shell on it starts anew)' : '',
        hadNcm || this.usb?.ncm ? 'the USB network goes down and up again (iSCSI sessions over it log in again)' : '',
      ].filter((x) => x !== '');
      changes.push(`usb: ${why.join('; ')}: the gadget was ${old ? 'rebuilt' : 'started'} with ${plan.luns}`);
      notes.push(
        old
          ? `usb: the USB host sees the device disconnect and reconnect with ${plan.luns} (${why.join('; ')})${extras.length ? '; ' + extras.join('; ') : ''}`
          : `usb: the gadget is up with ${plan.luns}: the USB host sees a new device`,
      );
    } else {
      changes.push(`usb: ${why.join('; ')}: no USB LUNs left, the gadget was removed`);
      notes.push('usb: no USB LUNs left: the gadget was removed (the USB host sees the device disconnect)');
    }
    return { changes, notes };
  }

  /** After the gadget is gone: commands still running on its units finish, then their stores are flushed. */
  private async settleUnplugged(exported: ReadonlyMap<string, readonly number[]>): Promise<void> {
    for (const name of exported.keys()) {
      const unit = this.units.get(name);
      if (unit && !(await within(unit.idle(), USB_SETTLE_MS))) {
        this.logger.warn(`usb: backstore ${name}: commands still running ${USB_SETTLE_MS} ms after the gadget was removed; flushing anyway`);
      }
      await this.backstores.get(name)?.flush().catch((e: Error) => this.logger.error(`flushing backstore ${name}: ${e.message}`));
    }
  }

  /**
   * A USB LUN as the kernel's mass_storage function takes it: the backing path and flags. What
   * f_mass_storage has no setting for is named in a warning, never dropped silently.
   */
  private kernelLun(
    l: { lun: number; backstore: string; readOnly?: boolean },
    config: LunboxConfig,
    units: ReadonlyMap<string, LogicalUnit>,
    stores: ReadonlyMap<string, Backstore>,
  ): KernelMscLun {
    const cfg = config.backstores.find((b) => b.name === l.backstore);
    if (!cfg) throw new Error(`usb: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
    if (cfg.type === 'ram') {
      throw new Error(`usb: LUN ${l.lun}: '${cfg.name}' is a ram backstore; the kernel engine serves files and block devices only`);
    }
    const store = stores.get(cfg.name) as { path?: string } | undefined;
    const cdrom = cfg.cdrom === true;
    const ignored: string[] = [];
    if (!cdrom && cfg.blockSize !== undefined && cfg.blockSize !== 512) ignored.push(`blockSize ${cfg.blockSize} (the kernel uses 512, or the device's own)`);
    for (const k of ['protection', 'thinProvisioning', 'physicalBlockSize', 'serial', 'sanitizeRate', 'writeCache'] as const) {
      if (cfg[k] !== undefined) ignored.push(k);
    }
    if (ignored.length > 0) this.logger.warn(`usb (kernel engine): backstore ${cfg.name}: ${ignored.join(', ')} not applied: the kernel's mass_storage function has no such setting`);
    const pad = (s: string, n: number): string => s.slice(0, n).padEnd(n, ' ');
    const unit = units.get(cfg.name);
    const inquiry = unit ? pad(unit.options.vendor, 8) + pad(unit.options.product, 16) + pad(unit.options.revision, 4) : undefined;
    return {
      lun: l.lun,
      file: cdrom && cfg.path === undefined ? '' : store?.path ?? cfg.path ?? '',
      readOnly: l.readOnly === true || cfg.readOnly === true || cdrom,
      removable: cfg.removable === true || cdrom,
      cdrom,
      ...(inquiry !== undefined ? { inquiry } : {}),
    };
  }

  /** The UDC the USB gadget is bound to, when USB is on. */
  usbUdc(): string | undefined {
    return this.usb?.udc;
  }

  /** The USB network link, when the gadget has NCM: interface, addresses, MACs. */
  usbNetwork(): { ifname: string; board: string; prefix: number; host: string; hostMac: string; deviceMac: string; dhcp: boolean } | undefined {
    const n = this.usb?.ncm;
    const ifname = this.usb?.ncmInterface;
    if (!n || ifname === undefined) return undefined;
    return { ifname, board: n.link.board, prefix: n.link.prefix, host: n.link.host, hostMac: n.hostMac, deviceMac: n.deviceMac, dhcp: n.dhcp };
  }

  /** Clean shutdown: ask initiators to log out, close portals, flush and close every backstore. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // A live change rebuilding the USB gadget finishes first (else a gadget it starts stays behind).
      await within(this.applying, 15_000);
      // The USB host goes first: unbinding the gadget ends its commands before the flush.
      if (this.usb) await this.usb.stop().catch((e: Error) => this.logger.warn(`stopping USB gadget: ${e.message}`));
      if (this.server) await this.server.close().catch((e: Error) => this.logger.warn(`closing iSCSI server: ${e.message}`));
      // Flush first so every acknowledged write is durable, then close: a LogicalUnit
      // owns its backstore and closes it.
      for (const [name, store] of this.backstores) {
        await store.flush().catch((e: Error) => this.logger.error(`flushing backstore ${name}: ${e.message}`));
      }
      for (const [name, unit] of this.units) {
        await unit.close().catch((e: Error) => this.logger.warn(`closing LUN ${name}: ${e.message}`));
      }
    })();
    return this.stopping;
  }
}

/** LUNs an initiator sees through one target: its ACL's mapped LUNs, else all (demo mode), else none. */
function lunMapFor(t: TargetState, initiator: string): readonly LunMapEntry[] {
  const hit = t.cache.get(initiator);
  if (hit) return hit;
  const acls = t.cfg.acls ?? [];
  const acl = acls.find((a) => a.initiator === initiator);
  let map: LunMapEntry[];
  if (acl) {
    if (acl.luns === undefined) {
      map = [...t.tpgLuns.values()];
    } else {
      map = [];
      for (const m of acl.luns) {
        const e = t.tpgLuns.get(m.targetLun ?? m.lun);
        if (e) map.push({ lun: m.lun, unit: e.unit, ...(m.readOnly || e.readOnly ? { readOnly: true } : {}) });
      }
    }
  } else if (t.cfg.demoMode ?? acls.length === 0) {
    map = [...t.tpgLuns.values()];
  } else {
    map = [];
  }
  map.sort((a, b) => a.lun - b.lun);
  t.cache.set(initiator, map);
  return map;
}

function chap(c: Chap): ChapCredentials {
  return {
    userid: c.userid,
    password: c.password,
    ...(c.mutualUserid !== undefined ? { mutualUserid: c.mutualUserid } : {}),
    ...(c.mutualPassword !== undefined ? { mutualPassword: c.mutualPassword } : {}),
  };
}

export function formatHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
