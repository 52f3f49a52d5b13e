// A per-logical-unit byte-range lock that every medium write takes.
//
// SBC-3 §5.2 (COMPARE AND WRITE) and §5.30 (ORWRITE) need their read-modify-write to be
// atomic against every other write to the same blocks; WRITE ATOMIC(16) (SBC-4 §5.48) needs
// the whole range written as one. Plain writes take the lock per backstore call (a chunk
// of at most PULL_CHUNK bytes), never across a data-out transfer, so an initiator that is
// slow to send data never blocks others. Waiters are served in arrival order per overlap:
// a request waits only for earlier overlapping holders, so there is no deadlock.

import type { LogicalUnit } from '../logical-unit';

interface Held {
  readonly start: number;
  readonly end: number;
  readonly released: Promise<void>;
}

export type Release = () => void;

export class RangeLock {
  private readonly held: Held[] = [];

  /** Number of ranges held or waited for (tests). */
  get size(): number {
    return this.held.length;
  }

  /**
   * Lock bytes [start, start+length). Resolves with the release function once every
   * earlier overlapping request has released.
   */
  acquire(start: number, length: number): Promise<Release> {
    const end = start + length;
    const waits: Promise<void>[] = [];
    for (const h of this.held) if (h.start < end && start < h.end) waits.push(h.released);
    let done!: () => void;
    const entry: Held = { start, end, released: new Promise<void>((r) => (done = r)) };
    this.held.push(entry);
    const release: Release = () => {
      const i = this.held.indexOf(entry);
      if (i < 0) return;
      this.held.splice(i, 1);
      done();
    };
    if (waits.length === 0) return Promise.resolve(release);
    return Promise.all(waits).then(() => release);
  }

  /** Run `body` with the range locked. */
  async with<T>(start: number, length: number, body: () => Promise<T>): Promise<T> {
    const release = await this.acquire(start, length);
    try {
      return await body();
    } finally {
      release();
    }
  }
}

// Kept beside the unit rather than in it: the lock is SBC data-path state only.
const LOCKS = new WeakMap<LogicalUnit, RangeLock>();

export function rangeLockOf(lu: LogicalUnit): RangeLock {
  let l = LOCKS.get(lu);
  if (!l) {
    l = new RangeLock();
    LOCKS.set(lu, l);
  }
  return l;
}
