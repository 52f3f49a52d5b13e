// The USB fast path, main-thread side: starts the worker of bot-fast-worker.ts, keeps its
// leases (what it may serve per LUN) in step with the SCSI core, and serves the CBWs it
// hands over through the BotFunction (externalCbws) and the core.
//
// The rules that keep the worker's answers the core's:
// - A lease is granted only when LogicalUnit.fastPathGrant says so (no unit attention for
//   this nexus, no other nexus's command in the task set, no reservation, no PI, medium
//   loaded, ALUA active, a disk on a file or block backstore) and the BOT machine holds no
//   sense for the LUN. It is computed again after every command the core answers, so the
//   core's own changes (MODE SELECT, START STOP UNIT, RESERVE, ...) take effect there.
// - The unit takes the lease back (revoke) before a command from any other nexus runs, when a
//   unit attention is raised for this nexus, on nexus loss and close. revoke() clears the
//   flags (no new fast command) and waits until the worker's backstore I/O in flight is done.
// - Before a lease allows writes the backstore drops its read-ahead, which the worker's
//   writes would make stale.
// - BOT is one command at a time: while the core serves a handed-over CBW the worker waits,
//   so the endpoints have one user at a time.

import { Worker } from 'node:worker_threads';
import type { LunMapEntry } from '../../scsi/port';
import type { FastPathLease } from '../../scsi/logical-unit';
import type { Nexus } from '../../scsi/types';
import { Asc, SenseKey, encodeFixedSense } from '../../scsi/sense';
import type { BotFunction, BotOutcome } from './bot';
import type { FfsEndpoints } from './functionfs';
import { CTL_WORDS, Ctl, Lease, LEASE_STRIDE, LeaseFlag, fastWorkerSource, nativeLayout } from './bot-fast-worker';
import type { FastAddon, FastWorkerData, FastWorkerMessage } from './bot-fast-worker';

/** Atomics.waitAsync (Node 16+; not in this TypeScript lib). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number, t: number): { async: boolean; value: Promise<unknown> | string };
}).waitAsync;

/** Where LUN `lun`'s lease fields start in the control block. */
const leaseAt = (lun: number): number => Ctl.LEASES + lun * LEASE_STRIDE;

/** Largest command the worker serves itself (bigger ones stream through the core). */
export const FAST_MAX_BYTES = 4 * 1024 * 1024;
const MAX_TRANSFER = 1024 * 1024;
/**
 * How long a Bulk-Only reset waits for the JavaScript loop's blocking bulk-IN write to end (the
 * host may have taken it just before resetting) before it refuses the reset.
 */
const RESET_WAIT_MS = 200;

export interface FastPathOptions {
  readonly bot: BotFunction;
  readonly endpoints: FfsEndpoints;
  readonly entries: readonly LunMapEntry[];
  readonly nexus: Nexus;
  readonly lunCount: number;
  /** Outcomes of the commands the core answered, and endpoint failures (as BotOutcome). */
  readonly onOutcome: (o: BotOutcome) => void;
  readonly log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;
  /** The lunbox-fast addon's path: the worker runs its serve loop in C (fast-addon.ts). */
  readonly native?: string;
}

export interface FastPathCounters {
  readonly reads: number;
  readonly writes: number;
  readonly forwarded: number;
  readonly mib: number;
}

export class BotFastPath {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
  private readonly opts: FastPathOptions;
  private readonly leases = new Map<number, FastPathLease>();
  private worker: Worker | undefined;
  private exited: Promise<void> | undefined;
  private epoch = 0;
  private enabled = false;
  /** The core is serving a handed-over CBW: the worker waits. */
  private serving = false;
  private stopped = false;
  /** Whether the worker runs the addon's serve loop (once it said so). */
  native = false;
  /** The addon as loaded on this thread, for cancelIn on a reset. */
  private addon: FastAddon | undefined;

  constructor(opts: FastPathOptions) {
    this.opts = opts;
    for (const e of opts.entries) {
      this.leases.set(e.lun, { holder: opts.nexus.id, revoke: () => this.revoke(e.lun) });
    }
  }

  get counters(): FastPathCounters {
    const c = this.ctl;
    return { reads: c[Ctl.FAST_READS] ?? 0, writes: c[Ctl.FAST_WRITES] ?? 0, forwarded: c[Ctl.FORWARDED] ?? 0, mib: c[Ctl.MIB] ?? 0 };
  }

  /** Whether the worker may serve LUN `lun` now (tests, console): 'read', 'read-write' or 'no'. */
  leaseOf(lun: number): 'no' | 'read' | 'read-write' {
    const f = Atomics.load(this.ctl, leaseAt(lun) + Lease.FLAGS);
    return (f & LeaseFlag.WRITE) !== 0 ? 'read-write' : (f & LeaseFlag.READ) !== 0 ? 'read' : 'no';
  }

  /** Start the worker (waiting for the first ENABLE). */
  start(): void {
    const data: FastWorkerData = {
      ctl: this.ctl.buffer as SharedArrayBuffer,
      inFd: this.opts.endpoints.inFd,
      outFd: this.opts.endpoints.outFd,
      lunCount: this.opts.lunCount,
      maxTransfer: MAX_TRANSFER,
      maxBytes: FAST_MAX_BYTES,
      layout: { ...Ctl, LEASE_STRIDE },
      nativeLayout: nativeLayout(),
      ...(this.opts.native !== undefined ? { native: this.opts.native } : {}),
    };
    // Loaded here too, before the worker starts: a reset may come before its 'native' message.
    if (this.opts.native !== undefined) this.addon = this.loadAddon();
    const w = new Worker(fastWorkerSource(), { eval: true, workerData: data, stdout: false, stderr: false });
    this.worker = w;
    w.on('message', (m: FastWorkerMessage) => this.onMessage(m));
    this.exited = new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
    });
    w.on('error', (e) => this.workerFailed(e));
    w.once('exit', (code) => {
      if (!this.stopped) this.workerFailed(new Error(`the worker exited with code ${code}`));
    });
  }

  /** FUNCTIONFS_ENABLE (after bot.enable): the worker reads CBWs at this packet size. */
  enable(maxPacketSize: number): void {
    Atomics.store(this.ctl, Ctl.MPS, maxPacketSize);
    this.enabled = true;
    if (!this.serving) this.go();
  }

  /** FUNCTIONFS_DISABLE / UNBIND: no lease; the worker stops after what it is doing. */
  disable(): void {
    this.enabled = false;
    this.revokeAll();
    Atomics.store(this.ctl, Ctl.GO, 0);
  }

  /**
   * Bulk-Only Mass Storage Reset: a transfer of the worker's that spans it is abandoned. Called
   * before the reset's control request completes: the C loop's bulk-IN requests (a READ's data
   * and CSW, a WRITE's CSW) are cancelled here and now, since the host, once the reset is done,
   * may take whatever is still queued as its next command's data before the worker sees that
   * command's CBW. The JavaScript loop's blocking write cannot be taken back: should one be
   * outstanding (IN_BUSY) still after RESET_WAIT_MS, false: the reset is to be refused, so
   * that the host resets the port, which ends the write (Linux's usb-storage goes on to a port
   * reset when the class reset fails).
   */
  async reset(): Promise<boolean> {
    Atomics.add(this.ctl, Ctl.RESET, 1);
    this.addon?.cancelIn?.(this.ctl); // nothing to cancel unless the C loop runs
    const until = Date.now() + RESET_WAIT_MS;
    while (Atomics.load(this.ctl, Ctl.IN_BUSY) !== 0 && this.worker !== undefined && !this.stopped) {
      if (Date.now() >= until) {
        this.opts.log('warn', "usb: Bulk-Only reset: the worker's bulk-IN write cannot be taken back; refusing the reset so that the host resets the port");
        return false;
      }
      const w = waitAsync(this.ctl, Ctl.IN_BUSY, 1, 5);
      if (w.async) await w.value;
    }
    return true;
  }

  /** Stop the worker for good (the gadget is going away). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.enabled = false;
    this.revokeAll();
    Atomics.store(this.ctl, Ctl.STOP, 1);
    Atomics.store(this.ctl, Ctl.GO, ++this.epoch);
    Atomics.notify(this.ctl, Ctl.GO);
    const w = this.worker;
    if (!w) return;
    // The worker returns at once unless it is blocked in endpoint I/O: unbinding the gadget
    // (done before this) ends that with ESHUTDOWN. Terminate it if it still has not returned.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 2000)));
    const gone = await Promise.race([this.exited!.then(() => false), late]);
    if (timer) clearTimeout(timer);
    // terminate() cannot end a blocked syscall either: do not wait for it past a second.
    if (gone) await Promise.race([w.terminate(), new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  /** Let the worker read CBWs again, with leases as the core stands now. */
  private go(): void {
    if (!this.enabled || this.stopped || !this.worker) return;
    this.grantAll();
    this.epoch = (this.epoch % 0x7fffffff) + 1;
    Atomics.store(this.ctl, Ctl.GO, this.epoch);
    Atomics.notify(this.ctl, Ctl.GO);
  }

  private grantAll(): void {
    const { bot, nexus } = this.opts;
    for (const e of this.opts.entries) {
      const at = leaseAt(e.lun);
      const unit = e.unit;
      const grant = unit.fastPathGrant(nexus, e.readOnly === true);
      const fd = unit.backstore.directFd?.();
      if (grant === undefined || fd === undefined || bot.holdsSense(e.lun)) {
        Atomics.store(this.ctl, at + Lease.FLAGS, 0);
        continue;
      }
      if (grant.write) unit.backstore.dropReadAhead?.();
      const blocks = unit.blockCount;
      this.ctl[at + Lease.FD] = fd;
      this.ctl[at + Lease.BLOCK_SIZE] = unit.blockSize;
      this.ctl[at + Lease.BLOCKS_LO] = blocks % 4294967296 | 0;
      this.ctl[at + Lease.BLOCKS_HI] = Math.floor(blocks / 4294967296);
      this.ctl[at + Lease.MAX_BLOCKS] = unit.maxTransferBlocks;
      const flags = LeaseFlag.READ | (grant.write ? LeaseFlag.WRITE : 0) | (grant.writeThrough ? LeaseFlag.WRITE_THROUGH : 0);
      Atomics.store(this.ctl, at + Lease.FLAGS, flags);
      unit.grantLease(this.leases.get(e.lun)!);
    }
  }

  private revokeAll(): void {
    for (const e of this.opts.entries) {
      if (e.unit.fastLease === this.leases.get(e.lun)) void e.unit.dropLease();
      else Atomics.store(this.ctl, leaseAt(e.lun) + Lease.FLAGS, 0);
    }
  }

  /** The unit takes LUN `lun` back: no new fast command; resolves when the worker's I/O is done. */
  private async revoke(lun: number): Promise<void> {
    Atomics.store(this.ctl, leaseAt(lun) + Lease.FLAGS, 0);
    // The worker sets BUSY before it looks at the flags again: either it sees them cleared,
    // or this sees BUSY and waits for the I/O it started.
    // The JavaScript loop notifies when it clears BUSY; the C loop cannot (V8's waiters are
    // not futexes), so look again every millisecond.
    while (Atomics.load(this.ctl, Ctl.BUSY) !== 0) {
      const w = waitAsync(this.ctl, Ctl.BUSY, 1, this.opts.native !== undefined ? 1 : 1000);
      if (w.async) await w.value;
    }
  }

  private onMessage(m: FastWorkerMessage): void {
    if (m.t === 'cbw') {
      void this.serve(Buffer.from(m.cbw.buffer, m.cbw.byteOffset, m.cbw.byteLength), m.data ? Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength) : undefined);
      return;
    }
    if (m.t === 'read-error') {
      const unit = this.opts.entries.find((e) => e.lun === m.lun)?.unit;
      const spec = { key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR, information: m.lba };
      this.opts.bot.holdSense(m.lun, unit?.senseResult(spec).sense ?? encodeFixedSense(spec));
      this.opts.log('warn', `usb: LUN ${m.lun}: READ failed at LBA ${m.lba} after part of its data went out (backstore I/O error): answered MEDIUM ERROR`);
      return;
    }
    if (m.t === 'native') {
      this.native = m.ok;
      if (m.ok) this.opts.log('info', `usb: fast path runs its serve loop in C (${m.message})`);
      else this.opts.log('warn', `usb: the fast path addon did not load (${m.message}); it runs its JavaScript loop`);
      return;
    }
    this.opts.onOutcome({ kind: 'io-error', code: m.code, message: m.message });
  }

  /** The addon on this thread (the worker loaded it already: the same library, its state shared). */
  private loadAddon(): FastAddon | undefined {
    const path = this.opts.native;
    if (path === undefined) return undefined;
    try {
      const m = { exports: {} as FastAddon };
      process.dlopen(m, path);
      if (typeof m.exports.cancelIn !== 'function') throw new Error('no cancelIn() (an addon older than this bundle)');
      return m.exports;
    } catch (e) {
      // The worker reports the same file failing to load, if it does.
      this.opts.log('warn', `usb: ${path}: ${(e as Error).message}: a Bulk-Only reset cannot take back what the C loop queued`);
      return undefined;
    }
  }

  /** A CBW the worker handed over: the core answers it, then the worker goes on. */
  private async serve(cbw: Buffer, dataOut: Buffer | undefined): Promise<void> {
    const { bot, endpoints } = this.opts;
    this.serving = true;
    try {
      if (dataOut !== undefined) endpoints.unread(dataOut);
      this.report(await bot.serveCbw(cbw));
      // An invalid CBW: both pipes stay stalled until Reset Recovery.
      while (bot.state === 'needs-reset') this.report(await bot.serveOne());
      // A reset abandoned a bulk-OUT read of the core's: the kernel still holds it, and what it
      // gets is the next CBW, which the core's endpoints hand to the next read they do.
      while (endpoints.hasOrphan && bot.state === 'ready') this.report(await bot.serveOne());
    } catch (e) {
      this.opts.log('error', `usb: fast path: ${(e as Error).message ?? String(e)}`);
    } finally {
      this.serving = false;
    }
    this.go();
  }

  private report(o: BotOutcome): void {
    if (o.kind !== 'stopped') this.opts.onOutcome(o);
  }

  /** The worker died (a bug): the main thread reads CBWs itself from now on. */
  private workerFailed(e: Error): void {
    if (this.stopped || this.worker === undefined) return;
    this.worker = undefined;
    this.opts.log('error', `usb: fast path worker failed (${e.message}); serving every command on the main thread`);
    this.revokeAll();
    // A dead worker does no I/O: nobody should wait for the BUSY it may have left set.
    Atomics.store(this.ctl, Ctl.BUSY, 0);
    Atomics.notify(this.ctl, Ctl.BUSY);
    this.opts.bot.readCbws();
  }
}
