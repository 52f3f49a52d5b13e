// The running daemon: turns a validated LunboxConfig into open backstores, logical
// units, one SCSI target port per iSCSI target portal group, and the iSCSI server.
// Everything a transport needs to know about LUN masking is in the lunMap callback.

import type { Backstore } from './backstores/backstore';
import { openBackstore } from './config/index';
import type { Chap, IscsiTargetConfig, LunboxConfig } from './config/index';
import { IscsiServer } from './fabrics/iscsi/index';
import type { ChapCredentials, IscsiTargetDef, IscsiTargetParams } from './fabrics/iscsi/index';
import { LogicalUnit, TargetPort } from './scsi/index';
import type { LunMapEntry } from './scsi/index';
import type { Nexus } from './scsi/types';
import type { Logger } from './util/log';

export const DEFAULT_ISCSI_PORT = 3260;

export interface Portal {
  readonly address: string;
  readonly port: number;
}

interface TargetState {
  readonly cfg: IscsiTargetConfig;
  readonly port: TargetPort;
  readonly portals: readonly Portal[];
  readonly tpgLuns: ReadonlyMap<number, LunMapEntry>;
  readonly cache: Map<string, readonly LunMapEntry[]>;
}

export class Runtime {
  private readonly units = new Map<string, LogicalUnit>();
  private readonly backstores = new Map<string, Backstore>();
  private readonly targets: TargetState[] = [];
  private server: IscsiServer | undefined;
  private readonly bound: Portal[] = [];
  private stopping: Promise<void> | undefined;
  /** Portals configured with port 0 → the port the system gave us. */
  private readonly resolved = new Map<string, number>();

  private constructor(
    readonly config: LunboxConfig,
    private readonly logger: Logger,
  ) {}

  /** Open everything the config names and start listening. On any failure, what was opened is closed again. */
  static async start(config: LunboxConfig, logger: Logger): Promise<Runtime> {
    const rt = new Runtime(config, logger);
    try {
      await rt.openBackstores();
      rt.buildTargets();
      await rt.listen();
    } catch (err) {
      await rt.stop().catch(() => undefined);
      throw err;
    }
    return rt;
  }

  private async openBackstores(): Promise<void> {
    for (const b of this.config.backstores) {
      const store = await openBackstore(b);
      this.backstores.set(b.name, store);
      const unit = new LogicalUnit({
        backstore: store,
        ...(b.blockSize !== undefined ? { blockSize: b.blockSize } : {}),
        ...(b.vendor !== undefined ? { vendor: b.vendor } : {}),
        ...(b.product !== undefined ? { product: b.product } : {}),
        ...(b.revision !== undefined ? { revision: b.revision } : {}),
        ...(b.serial !== undefined ? { serial: b.serial } : {}),
        ...(b.readOnly !== undefined ? { readOnly: b.readOnly } : {}),
        ...(b.writeCache !== undefined ? { writeCache: b.writeCache } : {}),
        ...(b.thinProvisioning !== undefined ? { thinProvisioning: b.thinProvisioning } : {}),
        ...(b.removable !== undefined ? { removable: b.removable } : {}),
      });
      this.units.set(b.name, unit);
      this.logger.debug(`backstore ${b.type}:${b.name} ${store.size} bytes${store.path ? ' at ' + store.path : ''}`);
    }
  }

  private buildTargets(): void {
    const iscsi = this.config.iscsi;
    if (!iscsi) return;
    const globalPortals: Portal[] = (iscsi.portals ?? []).map((p) => ({ address: p.address, port: p.port ?? DEFAULT_ISCSI_PORT }));
    let relativePortId = 1;
    for (const t of iscsi.targets) {
      const tpgLuns = new Map<number, LunMapEntry>();
      for (const l of t.luns) {
        const unit = this.units.get(l.backstore);
        if (!unit) throw new Error(`iscsi target ${t.iqn}: LUN ${l.lun} names backstore '${l.backstore}' which is not defined`);
        tpgLuns.set(l.lun, { lun: l.lun, unit, ...(l.readOnly ? { readOnly: true } : {}) });
      }
      const cache = new Map<string, readonly LunMapEntry[]>();
      const state: TargetState = {
        cfg: t,
        tpgLuns,
        cache,
        portals: (t.portals ?? globalPortals).map((p) => ({ address: p.address, port: p.port ?? DEFAULT_ISCSI_PORT })),
        port: new TargetPort({ lunMap: (nexus: Nexus) => lunMapFor(state, nexus.initiatorName) }),
      };
      this.targets.push(state);
      relativePortId++;
    }
    void relativePortId;
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
        relativePortId: i + 1,
        port: t.port,
        ...(cfg.params ? { params: cfg.params as Partial<IscsiTargetParams> } : {}),
      };
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
    const seen = new Set<string>();
    for (const t of this.targets) {
      for (const p of t.portals) {
        const key = `${p.address}|${p.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        try {
          const at = await this.server.listen(p.address, p.port);
          this.bound.push(at);
          if (p.port === 0) this.resolved.set(key, at.port);
          this.logger.debug(`iSCSI portal listening on ${formatHostPort(at.address, at.port)}`);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          const why =
            e.code === 'EADDRINUSE' ? 'the address is already in use (another target running? choose another with --listen)'
            : e.code === 'EADDRNOTAVAIL' ? 'no interface on this machine has that address'
            : e.code === 'EACCES' ? 'permission denied (ports below 1024 need root)'
            : e.message;
          throw new Error(`cannot listen on ${formatHostPort(p.address, p.port)}: ${why}`);
        }
      }
    }
    // SendTargets must advertise the ports really bound, not a configured 0.
    if (this.resolved.size > 0) this.server.setTargets(this.targetDefs());
  }

  private portalsOf(t: TargetState): Portal[] {
    return t.portals.map((p) => ({ address: p.address, port: this.resolved.get(`${p.address}|${p.port}`) ?? p.port }));
  }

  /** Portals actually bound (an ephemeral port 0 is resolved here). */
  portals(): readonly Portal[] {
    return this.bound;
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

  /** Clean shutdown: ask initiators to log out, close portals, flush and close every backstore. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
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
