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
import type { UsbGadgetOptions } from './fabrics/usb/usb-target';
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

export interface RuntimeOptions {
  /** Directory for state that must survive a restart (APTPL reservations under pr/). */
  readonly stateDir?: string;
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
  /** Backstores the running USB gadget exports (its LUN set is fixed until a restart). */
  private readonly usbBackstores = new Map<string, number>();

  private constructor(
    config: LunboxConfig,
    private readonly logger: Logger,
    opts: RuntimeOptions,
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
   */
  apply(next: LunboxConfig): Promise<ApplyReport> {
    const run = this.applying.then(() => this.applyNow(validateConfig(next)));
    this.applying = run.catch(() => undefined);
    return run;
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
    try {
      for (const b of next.backstores) {
        const o = oldBs.get(b.name);
        if (o && same(o, b)) continue;
        if (o && discOnly(o, b) && this.units.has(b.name)) {
          discs.set(b.name, b.path === undefined ? null : await openIso(b.name, b.path));
          continue;
        }
        const lun = this.usbBackstores.get(b.name);
        if (o && lun !== undefined) {
          throw new Error(`backstore ${b.name} is exported by the running USB gadget (LUN ${lun}): its settings change only with a restart (edit the config file, then restart lunbox)`);
        }
        opened.set(b.name, await this.openUnit(b));
      }
      for (const [name, lun] of this.usbBackstores) {
        if (!newBs.has(name)) throw new Error(`backstore ${name} is exported by the running USB gadget (LUN ${lun}): it can be removed only with a restart`);
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
      // (it enforces the host's PREVENT there); a refusal leaves everything as it was.
      if (this.usb instanceof KernelUsbTarget) {
        for (const [name, disc] of discs) {
          const lun = this.usbBackstores.get(name);
          if (lun !== undefined) await this.usb.setMedium(lun, disc ? (disc as { path?: string }).path ?? null : null);
        }
      }
    } catch (err) {
      await closeNew();
      throw err;
    }
    const units = new Map(this.units);
    const retired: { name: string; store: Backstore; unit: LogicalUnit }[] = [];
    for (const [name, o] of oldBs) {
      if (newBs.has(name) && !opened.has(name)) continue;
      const unit = this.units.get(name);
      const store = this.backstores.get(name);
      if (unit && store) retired.push({ name, store, unit });
      units.delete(name);
      if (!newBs.has(name)) changes.push(`backstore ${o.type}:${name} removed`);
    }
    for (const [name, { unit }] of opened) {
      units.set(name, unit);
      changes.push(`backstore ${newBs.get(name)?.type}:${name} ${oldBs.has(name) ? 'reopened with new settings' : 'added'}`);
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
    if (!same(prev.usb, next.usb)) notes.push('usb: the gadget and its LUNs change at the next start (saveconfig, then restart lunbox)');
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
    const u = this.config.usb;
    if (!u) return;
    if (u.luns.length === 0) {
      this.logger.warn('usb: no LUNs configured: the gadget is not started');
      return;
    }
    const luns = u.luns.map((l) => {
      const unit = this.units.get(l.backstore);
      if (!unit) throw new Error(`usb: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
      return { lun: l.lun, unit, ...(l.readOnly ? { readOnly: true } : {}) };
    });
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
    if (u.engine === 'kernel') {
      this.usb = new KernelUsbTarget({ gadget, luns: u.luns.map((l) => this.kernelLun(l)), log: this.logger.log });
    } else {
      this.usb = new UsbTarget({ gadget, luns, log: this.logger.log });
    }
    await this.usb.start();
    for (const l of u.luns) this.usbBackstores.set(l.backstore, l.lun);
  }

  /**
   * A USB LUN as the kernel's mass_storage function takes it: the backing path and flags. What
   * f_mass_storage has no setting for is named in a warning, never dropped silently.
   */
  private kernelLun(l: { lun: number; backstore: string; readOnly?: boolean }): KernelMscLun {
    const cfg = this.cfg.backstores.find((b) => b.name === l.backstore);
    if (!cfg) throw new Error(`usb: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
    if (cfg.type === 'ram') {
      throw new Error(`usb: LUN ${l.lun}: '${cfg.name}' is a ram backstore; the kernel engine serves files and block devices only`);
    }
    const store = this.backstores.get(cfg.name) as { path?: string } | undefined;
    const cdrom = cfg.cdrom === true;
    const ignored: string[] = [];
    if (!cdrom && cfg.blockSize !== undefined && cfg.blockSize !== 512) ignored.push(`blockSize ${cfg.blockSize} (the kernel uses 512, or the device's own)`);
    for (const k of ['protection', 'thinProvisioning', 'physicalBlockSize', 'serial', 'sanitizeRate', 'writeCache'] as const) {
      if (cfg[k] !== undefined) ignored.push(k);
    }
    if (ignored.length > 0) this.logger.warn(`usb (kernel engine): backstore ${cfg.name}: ${ignored.join(', ')} not applied: the kernel's mass_storage function has no such setting`);
    const pad = (s: string, n: number): string => s.slice(0, n).padEnd(n, ' ');
    const unit = this.units.get(cfg.name);
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
