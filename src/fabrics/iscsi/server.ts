// The iSCSI target server: portals (TCP listeners), the session table (TSIH, session
// reinstatement §6.3.5), discovery and teardown. Protocol work is in connection.ts.

import { createServer, type Server, type Socket } from 'node:net';
import { Connection, type ConnectionOwner } from './connection';
import type { ChapCredentials } from './chap';
import type { LoginMachine } from './login';
import { resolveTargetParams } from './negotiation';
import { LoginStatus } from './pdu';
import { Session, buildNexus } from './session';
import { initiatorAllowed, sameName, type IscsiServerOptions, type IscsiTargetDef, type Logger } from './types';

export const DEFAULT_ISCSI_PORT = 3260;

/** One listening portal: as asked for (port 0 = ephemeral) and as bound. */
interface Portal {
  readonly server: Server;
  readonly address: string;
  readonly port: number;
  readonly bound: { readonly address: string; readonly port: number };
}

export interface SessionInfo {
  readonly initiator: string;
  readonly isid: string;
  readonly target: string;
  readonly connections: number;
}

export class IscsiServer implements ConnectionOwner {
  readonly log: Logger;
  readonly discoveryAuth: ChapCredentials | undefined;
  private targets: readonly IscsiTargetDef[] = [];
  private readonly portals = new Set<Portal>();
  private readonly conns = new Set<Connection>();
  /** The portal each connection came in on (a portal closed live drops its logins in progress). */
  private readonly via = new Map<Connection, Portal>();
  private readonly byTsih = new Map<number, Session>();
  private nextTsih = 1;
  private closing = false;

  constructor(opts: IscsiServerOptions) {
    this.log = opts.log ?? (() => undefined);
    this.discoveryAuth = opts.discoveryAuth;
    this.setTargets(opts.targets);
  }

  /** Open one portal. Several calls = several portals; port 0 = ephemeral. */
  listen(address: string, port: number = DEFAULT_ISCSI_PORT): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      let portal: Portal | undefined;
      const srv = createServer({ noDelay: true }, (sock) => this.accept(sock, portal));
      const onError = (e: Error) => reject(e);
      srv.once('error', onError);
      srv.listen({ host: address === '' ? undefined : address, port }, () => {
        srv.off('error', onError);
        srv.on('error', (e) => this.log('error', `iscsi portal ${address}:${port}: ${e.message}`));
        const a = srv.address();
        const bound = typeof a === 'object' && a !== null ? { address: a.address, port: a.port } : { address, port };
        portal = { server: srv, address, port, bound };
        this.portals.add(portal);
        this.log('info', `iscsi portal listening on ${bound.address}:${bound.port}`);
        resolve(bound);
      });
    });
  }

  /**
   * Stop listening on one portal (as given to listen(), or as bound). New connections to it are
   * refused at once and logins in progress on it are dropped; sessions already logged in
   * through it carry on until they log out or lose the connection, as LIO does when a network
   * portal is deleted: an established nexus is not torn down by a configuration change of
   * where new logins may arrive. Returns false when no such portal is open.
   */
  closePortal(address: string, port: number): boolean {
    const hit = [...this.portals].filter((p) => (p.address === address && p.port === port) || (p.bound.address === address && p.bound.port === port));
    for (const p of hit) {
      this.portals.delete(p);
      // close() unbinds now; its callback would wait for the remaining connections.
      p.server.close();
      for (const [c, via] of this.via) if (via === p && c.session === null) c.destroy('portal closed');
      this.log('info', `iscsi portal ${p.bound.address}:${p.bound.port} closed`);
    }
    return hit.length > 0;
  }

  /** Replace the target list; sessions already logged in keep theirs, new logins see this one. */
  setTargets(targets: readonly IscsiTargetDef[]): void {
    for (const t of targets) resolveTargetParams(t.params); // throws ParamError naming the field
    this.targets = [...targets];
  }

  sessions(): readonly SessionInfo[] {
    return [...this.byTsih.values()]
      .filter((s) => !s.discovery)
      .map((s) => ({ initiator: s.initiatorName, isid: s.isidHex, target: s.target?.iqn ?? '', connections: s.connections.size }));
  }

  /** Ask every session to log out (AsyncEvent 1), wait briefly, then close everything. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = Promise.all([...this.portals].map((p) => new Promise<void>((r) => p.server.close(() => r()))));
    for (const c of this.conns) c.requestLogout(2);
    const deadline = Date.now() + 2500;
    while (this.conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const c of [...this.conns]) c.destroy('server closed');
    for (const s of [...this.byTsih.values()]) this.endSession(s, 'server closed');
    await closed;
  }

  private accept(sock: Socket, portal: Portal | undefined): void {
    if (this.closing || (portal !== undefined && !this.portals.has(portal))) {
      sock.destroy();
      return;
    }
    const c = new Connection(sock, this);
    this.conns.add(c);
    if (portal !== undefined) this.via.set(c, portal);
    this.log('debug', `iscsi connection from ${c.remote}`);
  }

  // ------------------------------------------------------------------ ConnectionOwner

  lookupTarget(name: string, local?: { address: string; port: number }): IscsiTargetDef | undefined {
    const named = this.targets.filter((t) => sameName(t.iqn, name));
    if (named.length <= 1 || !local) return named[0];
    // Several TPGs of one target: the one that has the portal this connection arrived on.
    const addr = local.address.replace(/^::ffff:/i, '');
    const wildcard = (a: string): boolean => a === '' || a === '0.0.0.0' || a === '::';
    return named.find((t) => t.portals.some((p) => p.port === local.port && (p.address === addr || wildcard(p.address)))) ?? named[0];
  }

  discoverable(initiatorName: string): readonly IscsiTargetDef[] {
    return this.targets.filter((t) => initiatorAllowed(t, initiatorName));
  }

  private allocTsih(): number {
    // §11.12.6: TSIH is non-zero and unique among this target's live sessions.
    for (;;) {
      const t = this.nextTsih;
      this.nextTsih = this.nextTsih >= 0xffff ? 1 : this.nextTsih + 1;
      if (!this.byTsih.has(t)) return t;
    }
  }

  completeLogin(conn: Connection, login: LoginMachine): Session | { status: number; reason: string } {
    if (this.closing) return { status: LoginStatus.SERVICE_UNAVAILABLE, reason: 'server closing' };
    const neg = login.negotiated;
    if (login.sessionType === 'Discovery') {
      if (login.tsih !== 0) return { status: LoginStatus.SESSION_DOES_NOT_EXIST, reason: 'discovery sessions take one connection' };
      const s = new Session(this.allocTsih(), login.isid, login.initiatorName, true, undefined, undefined, neg, login.cmdSN);
      s.connections.add(conn);
      this.byTsih.set(s.tsih, s);
      return s;
    }
    const target = login.target!;
    if (login.tsih === 0) {
      // §6.3.5 session reinstatement: same initiator port + target portal group, TSIH 0 → old session goes.
      for (const old of [...this.byTsih.values()]) {
        if (!old.discovery && old.matches(login.initiatorName, login.isid, target.iqn, target.tpgt)) {
          this.log('info', `reinstating session ${login.initiatorName} isid 0x${old.isidHex} (tsih ${old.tsih})`);
          this.endSession(old, 'session reinstatement');
        }
      }
      const s = new Session(this.allocTsih(), login.isid, login.initiatorName, false, target, buildNexus(login.initiatorName, login.isid, target), neg, login.cmdSN);
      s.connections.add(conn);
      this.byTsih.set(s.tsih, s);
      return s;
    }
    // §6.3.? adding a connection to an existing session (MC/S), or reinstating one of its connections.
    const s = this.byTsih.get(login.tsih);
    if (s === undefined || s.discovery || !s.matches(login.initiatorName, login.isid, target.iqn, target.tpgt)) {
      return { status: LoginStatus.SESSION_DOES_NOT_EXIST, reason: `no session with TSIH ${login.tsih}` };
    }
    // §6.3.4 connection reinstatement: the old connection with this CID goes; at ERL 2 its
    // tasks wait for TASK REASSIGN, below ERL 2 they are terminated.
    for (const c of [...s.connections]) if (c.cid === login.cid) c.destroy('connection reinstatement');
    if (s.connections.size >= s.negotiated.maxConnections) return { status: LoginStatus.TOO_MANY_CONNECTIONS, reason: `MaxConnections=${s.negotiated.maxConnections}` };
    s.connections.add(conn);
    return s;
  }

  connectionClosed(conn: Connection): void {
    this.conns.delete(conn);
    this.via.delete(conn);
    const s = conn.session;
    if (s === null) return;
    s.connections.delete(conn);
    if (conn.droppedByTarget && !s.ended) {
      // §11.9.1 AsyncEvent 2: tell the initiator on another connection of the session.
      for (const c of s.connections) {
        c.notifyDropped(conn.cid);
        break;
      }
    }
    // Losing the last connection ends the session, unless tasks wait for recovery (ERL 2).
    if (s.connections.size === 0 && s.failed.size === 0 && !s.ended) this.endSession(s, 'connection lost');
  }

  connectionFailed(conn: Connection): void {
    const s = conn.session;
    if (s === null || s.ended) return;
    const cid = conn.cid;
    const old = s.failed.get(cid);
    const done = new Map(old?.done);
    if (old !== undefined) clearTimeout(old.timer);
    for (const t of s.tasks.values()) if (t.host === conn && !t.finished) t.orphan(cid);
    for (const e of conn.retention?.takeTasks() ?? []) done.set(e.itt, e);
    const n = s.negotiated;
    const timer = setTimeout(() => this.discardFailed(s, cid), (n.defaultTime2Wait + n.defaultTime2Retain) * 1000);
    timer.unref();
    if (old !== undefined && old.conn !== conn) old.conn.cleanupDone();
    s.failed.set(cid, { cid, conn, done, timer });
    this.log('info', `session tsih ${s.tsih}: connection cid ${cid} failed; tasks kept ${n.defaultTime2Wait + n.defaultTime2Retain}s for reassignment`);
  }

  discardFailed(s: Session, cid: number): void {
    const f = s.failed.get(cid);
    if (f === undefined) return;
    clearTimeout(f.timer);
    s.failed.delete(cid);
    f.conn.cleanupDone();
    for (const t of [...s.tasks.values()]) {
      if (t.host !== null || t.orphanCid !== cid) continue;
      t.abort('Time2Retain expired');
      // Not running in the core (or already settled): nothing else will remove it.
      if (!t.started || t.held !== null) {
        t.finished = true;
        t.release();
        s.tasks.delete(t.itt);
      }
    }
    if (s.connections.size === 0 && s.failed.size === 0) this.endSession(s, 'connection recovery timed out');
  }

  endSession(s: Session, reason: string): void {
    if (s.ended) return;
    s.ended = true;
    for (const f of s.failed.values()) {
      clearTimeout(f.timer);
      f.conn.cleanupDone();
    }
    s.failed.clear();
    for (const t of s.tasks.values()) t.abort(reason);
    s.cmdsn.clear();
    if (this.byTsih.get(s.tsih) === s) this.byTsih.delete(s.tsih);
    if (s.nexus !== undefined && s.target !== undefined) {
      try {
        s.target.port.nexusLost(s.nexus);
      } catch (e) {
        this.log('warn', `nexusLost failed: ${(e as Error).message}`);
      }
    }
    this.log('debug', `session tsih ${s.tsih} ended: ${reason}`);
    // A logout ends the session on the connection that asked; everything else drops now.
    if (reason !== 'logout') for (const c of [...s.connections]) c.destroy(reason);
  }

  coldReset(target: IscsiTargetDef): void {
    for (const s of [...this.byTsih.values()]) {
      if (s.target === target) for (const c of [...s.connections]) c.destroy('target cold reset', false);
    }
  }
}
